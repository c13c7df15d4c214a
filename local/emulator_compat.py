"""Close workflows-emulator's expression gaps, so YAML behaves as on real Workflows.

The emulator evaluates ``${...}`` with Python's eval. Where that differs from
the documented Workflows semantics in ways the callback subworkflows (or a
user's workflow) can hit, ``real_workflows_semantics()`` patches it for the
duration of a run:

- a value that is one whole ``${...}`` expression keeps its type: the emulator
  prints any result that is not exactly a dict or a list (its own
  attribute-dict maps included) and re-parses the text as YAML, which turns a
  null inside a map into the string "None"; its lazy regex also ends an
  expression at the first "}", breaking map literals and ``{m,n}`` quantifiers;
- ``null``, ``true`` and ``false`` literals (Python knows only None/True/False);
- ``map.get`` with a key path returns null when a key is missing (the emulator
  raises KeyError);
- ``get_type`` of a map (the emulator fails on its attribute-dict maps);
- ``default(value, fallback)`` replaces only null: the emulator's is
  ``value or fallback``, which also replaces 0, 0.0, "", false and empty
  lists and maps, so an explicit ``pollInitialSeconds: 0`` would silently
  become the environment's value instead of failing validation;
- an ``assign`` whose expression fails (say ``json.decode`` of text that is
  not JSON) raises the workflow error without leaving the emulator's global
  assign lock held: the emulator acquires it and releases it only on
  success, so the next ``assign`` anywhere in the process would hang.

Every emulator internal patched for a local run follows: here (1-8) and in
local/workflow_runner.py's ``_patched_emulator`` (9-16), with the gap each one
closes and the canary for it in tests/local/test_emulator_gaps.py. A canary runs
the unpatched emulator and fails once upstream behaves as Workflows does, naming
the patch to delete (a patch closing two gaps goes when both canaries fail). In
the names, ``emulator`` is workflows_emulator.main, ``render`` is
workflows_emulator.render, ``library`` is ``render.STANDARD_LIBRARY``, and
``map_utils`` and ``sys_utils`` are modules of workflows_emulator.lib.

Patched here, by ``real_workflows_semantics()``:

1. ``render.render_str``: (a) a whole-value expression whose result is not
   exactly a dict or a list is printed and re-parsed as YAML, so null and a
   null inside a map become "None" and a double such as 1e20 becomes the
   string "1e+20"; (b) the lazy regex ends an expression at its first "}", so
   a map literal or a ``{m,n}`` quantifier fails. Canaries:
   test_whole_value_expression_loses_its_type (a),
   test_expression_ends_at_its_first_brace (b).
2. ``map_utils.get``: raises for a key path with a missing key and for a
   null map (KeyError or AttributeError; in a workflow, where maps are
   attribute dicts, a SyntaxError), where Workflows returns null.
   Canary: test_map_get_fails_where_it_should_return_null.
3. ``emulator.StepAssign.execute``: acquires the global ``emulator.LOCK`` and
   releases it only if every assignment succeeds; after a failing assign the
   next one blocks forever. Canary:
   test_failing_assign_leaves_the_assign_lock_held.
4. ``library["get_type"]``: (a) fails (ValueError) on a map, as the emulator
   holds maps as attribute dicts; (b) calls a double "float", not "double".
   Canaries: test_get_type_fails_on_a_map (a),
   test_get_type_names_a_double_float (b).
5. ``library["default"]``: ``value or fallback`` replaces 0, 0.0, "", false
   and empty lists and maps too. Canary: test_default_replaces_falsy_values.
6. ``library["null"]``, 7. ``library["true"]``, 8. ``library["false"]``: the
   Workflows literals are undefined names (a SyntaxError). Canaries:
   test_workflows_literal_is_undefined[null], [true] and [false].
18. ``library["hash"]``: upstream has no ``hash`` module; Workflows'
   ``hash.compute_checksum(data, algorithm)`` (bytes in, bytes out; MD5,
   SHA1, SHA224, SHA256, SHA384, SHA512) computes the registration's key,
   and ``hash.compute_hmac(key, data, algorithm)`` checks a forwarded
   event's proof. Canary: test_hash_module_is_missing.
19. ``render.run_code``: Workflows' expression helper ``if(condition,
   ifTrue, ifFalse)`` is a SyntaxError, ``if`` being a Python keyword (the
   emulator's own ``if`` helper can never be called). The patch renames the
   call (outside string literals) to a function that behaves as documented.
   Canary: test_if_is_a_syntax_error. The same patch, and 22, also hand
   upstream only the variables the code names (``named_only``): upstream
   deep-copies (and converts to attribute dicts) the whole context for
   every expression and every assignment, subworkflow definitions
   included, so each step cost grew with the size of workflow/callbacks.yaml
   (three times slower once it held the approval subworkflows). Code can
   only reach the names it holds, so results are the same. A hook for
   speed, not a gap: no canary.
22. ``render.assign_var``: hook: as 19, only the variables the assignment
   names. No canary.

(18, 19 and 22 were added after 9-17, hence their numbers.)

Patched by the runner (``_patched_emulator``) for one run; 9-14 are hooks, not
gaps, and 15-16 are hooks that also close gaps:

9. ``emulator.StepCall.execute_connector``: hook: the Firestore connector is
   answered by the local emulator through FirestoreRestBridge (counted, with
   faults injectable) instead of the real Google API. No canary.
10. ``emulator.StepCall.execute``: hook: runs the original, then surfaces the
    URL a getCallbackURL call returned, or the links of a getApprovalURLs
    call. No canary.
11. ``emulator.get_step``: hook: counts every step run (execute_steps_list
    looks each one up there). No canary.
12. ``emulator.sleep`` (the time.sleep of ``retry`` backoff): hook: the
    run's clock sleeps. No canary.
13. ``sys_utils.now``: hook: the run's clock. No canary.
14. ``sys_utils.sleep``: hook: the run's clock sleeps, for lengths Google's
    reference describes only (a number from 0 to a year; otherwise
    TypeError or ValueError, see ``check_sleep_seconds``). No canary.
15. ``sys_utils.sleep_until``: hook: waits on the run's clock. Gaps it also
    closes: (a) upstream parses only "%Y-%m-%dT%H:%M:%S.%fZ", refusing ISO
    8601 without fractional seconds (Workflows' own example
    "2024-05-08T13:22:58Z") or with an offset; (b) a time in the past raises
    ValueError (time.sleep of a negative length), an error Workflows does not
    document; (c) the Z time is read as local time, so the wait is off by the
    UTC offset. Canaries: test_sleep_until_refuses_a_time_without_fractional_seconds
    (a), test_sleep_until_fails_for_a_time_in_the_past (b),
    test_sleep_until_reads_a_utc_time_as_local_time (c).
16. ``sys_utils.log``: hook: the entry goes to the run (``RunResult.logs``,
    ``on_log``) instead of Python logging. Gap it also closes: upstream's
    default severity is INFO, Workflows' is DEFAULT. Canary:
    test_sys_log_defaults_to_info_severity. (The hook is laxer than Workflows
    in one respect: it logs the first of text/json/data given, or null if
    none is, where Workflows raises TypeError for more than one or none.)

17. ``render.STANDARD_LIBRARY["events"]``: hook: upstream has no ``events``
    module; ``events.create_callback_endpoint`` and ``events.await_callback``
    are served by local/callback_api.py (push delivery), which refuses a
    timeout Google's reference gives no meaning (0 or less). No canary.
20. ``emulator.StepRetry.execute`` and 21. ``emulator.execute_step``: hook:
    count each retry attempt (and each call of the retry predicate) as a
    step, as Workflows bills them; upstream runs the attempts outside the
    step loop that ``get_step`` (11) counts. No canary.

The pure hooks (9-14, 17, 20, 21) have no canary: they are what the local stack adds (a
local Firestore, a virtual clock, counters, surfaced URLs), not upstream
errors, so no upstream release can make them redundant. The hooks of 15 and 16
stay even when their canaries fail; only the gaps leave their entries.

Known and not patched, because workflow/callbacks.yaml behaves the same
either way: ``StepRetry`` reads ``backoff.delay`` (Workflows:
``initial_delay``; both are 1 in callbacks.yaml) and stops retrying once the
delay reaches ``max_delay`` (Workflows caps the delay and goes on; 1, 2, 4,
8, 16 never reach callbacks.yaml's 30). A retry policy that relies on either
difference runs differently here than on Workflows.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from workflows_emulator import main as emulator
from workflows_emulator import render
from workflows_emulator.lib import map_utils

_WHOLE_EXPRESSION = re.compile(r"\$\{(.*)\}", re.DOTALL)
_MISSING = object()
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "bool"),  # before int: a bool is an int in Python
    (int, "int"),
    (float, "double"),
    (str, "string"),
    (bytes, "bytes"),
    (list, "list"),
    (dict, "map"),
    (type(None), "null"),
)


def plain(value: Any) -> Any:
    """Emulator maps are addict dicts; turn them (deeply) into plain dicts."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def get_type(value: Any) -> str:
    """get_type as documented."""
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    raise TypeError(f"get_type: unsupported value {value!r}")


def map_get(obj: Any, keys: str | list[str]) -> Any:
    """map.get as documented: null if any key on the path is missing."""
    path = [keys] if isinstance(keys, str) else list(keys)
    value = obj
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def default(value: Any, fallback: Any) -> Any:
    """default as documented: ``fallback`` only if ``value`` is null."""
    return fallback if value is None else value


def assign_execute(step: Any) -> tuple[Any, Any, Any]:
    """StepAssign.execute, with the lock released however it ends."""
    context = step.context
    with emulator.LOCK:
        for var in step.config["assign"]:
            name = next(iter(var))
            rendered = render.render_config(var[name], context)
            root, value = render.assign_var(name, rendered, context)
            context[root] = value
    return context, step.config.get("next"), None


_original_render_str = render.render_str


def render_str(value: Any, context: dict[str, Any]) -> Any:
    """render.render_str, except that a whole-value expression keeps its type."""
    if isinstance(value, str):
        whole = _WHOLE_EXPRESSION.fullmatch(value)
        if whole and "${" not in whole.group(1):
            return plain(render.run_code(whole.group(1), context))
    return _original_render_str(value, context)


@contextlib.contextmanager
def patched_attribute(target: object, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def patched_item(mapping: dict[str, Any], key: str, value: Any) -> Iterator[None]:
    original = mapping.get(key, _MISSING)
    mapping[key] = value
    try:
        yield
    finally:
        if original is _MISSING:
            del mapping[key]
        else:
            mapping[key] = original


HASH_ALGORITHMS = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA224": "sha224",
    "SHA256": "sha256",
    "SHA384": "sha384",
    "SHA512": "sha512",
}


def compute_checksum(data: Any, algorithm: Any) -> bytes:
    """Workflows' hash.compute_checksum: TypeError and ValueError as documented."""
    if not isinstance(data, bytes) or not isinstance(algorithm, str):
        raise TypeError("hash.compute_checksum: data must be bytes and algorithm a string")
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash.compute_checksum: unsupported algorithm {algorithm!r}")
    return hashlib.new(HASH_ALGORITHMS[algorithm], data).digest()


def compute_hmac(key: Any, data: Any, algorithm: Any) -> bytes:
    """Workflows' hash.compute_hmac(key, data, algorithm), errors as documented.

    https://cloud.google.com/workflows/docs/reference/stdlib/hash/compute_hmac:
    key and data are bytes (else TypeError), the algorithm one of MD5, SHA1,
    SHA224, SHA256, SHA384, SHA512 (else ValueError); returns the HMAC's bytes.
    """
    if not isinstance(key, bytes) or not isinstance(data, bytes) or not isinstance(algorithm, str):
        raise TypeError("hash.compute_hmac: key and data must be bytes and algorithm a string")
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash.compute_hmac: unsupported algorithm {algorithm!r}")
    return hmac.new(key, data, HASH_ALGORITHMS[algorithm]).digest()


HASH_MODULE = SimpleNamespace(compute_checksum=compute_checksum, compute_hmac=compute_hmac)

# What an if( call is renamed to; string literals are matched first, so an
# "if(" inside one is left alone.
IF_FUNCTION = "_workflows_if"
_STRING_OR_IF_CALL = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|\bif(?=\s*\()")


def workflows_if(condition: Any, if_true: Any, if_false: Any) -> Any:
    """Workflows' if(): ifTrue if the condition is true, ifFalse if it is false or null.

    https://cloud.google.com/workflows/docs/reference/stdlib/expression-helpers
    ("Conditional functions"). Any other condition is refused (TypeError):
    the reference names no other. Like the emulator, both arguments are
    evaluated before the call, so a workflow must keep both safe to evaluate.
    """
    if condition is True:
        return if_true
    if condition is False or condition is None:
        return if_false
    raise TypeError(f"if: the condition must be a boolean or null, got {get_type(condition)}")


def with_if_calls_renamed(code: str) -> str:
    """``code`` with each Workflows ``if(`` call renamed to IF_FUNCTION."""
    return _STRING_OR_IF_CALL.sub(
        lambda match: IF_FUNCTION if match.group() == "if" else match.group(), code
    )


_original_run_code = render.run_code
_original_assign_var = render.assign_var
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def named_only(code: str, context: dict[str, Any]) -> dict[str, Any]:
    """The variables of ``context`` that ``code`` names (a superset: names in strings count).

    Python's eval reaches no variable its code does not name, so evaluating
    with these gives what the whole context gives, without copying the rest.
    """
    names = set(_NAME.findall(code))
    return {name: value for name, value in context.items() if name in names}


def run_code(code: str, context: dict[str, Any]) -> Any:
    """render.run_code, with Workflows' if() callable (and only the variables it names)."""
    renamed = with_if_calls_renamed(code)
    return _original_run_code(renamed, named_only(renamed, context))


def assign_var(key: str, value: Any, context: dict[str, Any]) -> tuple[str, Any]:
    """render.assign_var, given only the variables the assignment names."""
    return _original_assign_var(key, value, named_only(key, context))


@contextlib.contextmanager
def real_workflows_semantics() -> Iterator[None]:
    library = render.STANDARD_LIBRARY
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_attribute(render, "render_str", render_str))
        stack.enter_context(patched_attribute(map_utils, "get", map_get))
        stack.enter_context(patched_attribute(emulator.StepAssign, "execute", assign_execute))
        stack.enter_context(patched_item(library, "get_type", get_type))
        stack.enter_context(patched_item(library, "default", default))
        for literal, value in (("null", None), ("true", True), ("false", False)):
            stack.enter_context(patched_item(library, literal, value))
        stack.enter_context(patched_item(library, "hash", HASH_MODULE))
        stack.enter_context(patched_attribute(render, "run_code", run_code))
        stack.enter_context(patched_attribute(render, "assign_var", assign_var))
        stack.enter_context(patched_item(library, IF_FUNCTION, workflows_if))
        yield
