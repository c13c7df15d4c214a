"""Canaries: workflows-emulator's own gaps, which local/ patches, are still there.

Each test runs the UNPATCHED emulator (never inside ``real_workflows_semantics()``
or the runner) and asserts that one gap listed in local/emulator_compat.py's
docstring still exists. It passes today and fails once upstream behaves as real
Workflows does, naming the patch that can then be deleted, so that a patch never
silently shadows an upstream fix. The patched behaviour itself is tested where
the patches are used (tests/workflow).

The runner's pure hooks have no canary: routing the Firestore connector to the
local emulator, surfacing getCallbackURL's URL, counting steps and running
``sys.now``, ``sys.sleep`` and retry backoff on a (virtual) clock are features of
the local stack, not upstream errors, so no upstream fix will ever make them
redundant. Only the gaps that two of those hooks also close (in ``sys.sleep_until``
and ``sys.log``) have canaries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from workflows_emulator import main as emulator
from workflows_emulator import render
from workflows_emulator.lib import map_utils, sys_utils
from workflows_emulator.lib.helpers import helpers
from workflows_emulator.utils import WorkflowError

# What the patches replace, as workflows-emulator defines it.
UPSTREAM_FUNCTIONS = [
    (render, "render_str"),
    (render, "run_code"),
    (map_utils, "get"),
    (emulator.StepAssign, "execute"),
    (emulator.StepCall, "execute"),
    (emulator.StepCall, "execute_connector"),
    (emulator, "get_step"),
    (emulator.StepRetry, "execute"),
    (emulator, "execute_step"),
    (sys_utils, "now"),
    (sys_utils, "sleep"),
    (sys_utils, "sleep_until"),
    (sys_utils, "log"),
]


@dataclass(frozen=True)
class Raised:
    """A workflow that failed: its error's tag (or the exception's type name)."""

    error: str


@pytest.fixture(autouse=True)
def unpatched_emulator() -> None:
    """Every canary sees the emulator as shipped, with its assign lock free."""
    for target, name in UPSTREAM_FUNCTIONS:
        assert getattr(target, name).__module__.startswith("workflows_emulator."), name
    assert emulator.sleep is time.sleep
    library = render.STANDARD_LIBRARY
    assert library["get_type"] is helpers["get_type"]
    assert library["default"] is helpers["default"]
    assert not {"null", "true", "false", "hash", "_workflows_if"} & library.keys()
    # An assign would wait for it forever.
    assert not emulator.LOCK.locked(), "the emulator's assign lock is held"


def run(steps: list[dict[str, Any]], **params: Any) -> Any:
    """Run ``steps`` as main in the emulator: their result, or Raised if they failed."""
    config = {"main": {"params": list(params), "steps": steps}}
    try:
        return emulator.execute_workflow(config, params)
    except WorkflowError as error:
        return Raised(error.payload["tags"][0])
    except Exception as error:  # not a workflow error: e.g. SyntaxError for an unknown name
        return Raised(type(error).__name__)


def evaluate(value: Any, **params: Any) -> Any:
    """What a step returning ``value`` (with ``${...}`` in it) returns."""
    return run([{"done": {"return": value}}], **params)


def assert_gap(got: Any, *, today: Any, workflows: Any, fixed: str, then: str) -> None:
    """``got`` is the emulator's ``today`` answer, not the ``workflows`` one."""
    assert got != workflows, f"workflows-emulator now {fixed} correctly: {then}"
    assert got == today, (
        f"workflows-emulator changed: {got!r} instead of {today!r}, though not to "
        f"Workflows' {workflows!r}; keep the patch and update this canary"
    )


def delete(patch: str, *, once: str = "") -> str:
    """What to do once the gap is closed upstream, for a patch of emulator_compat."""
    also = f" (once {once} fails too: the patch closes that gap as well)" if once else ""
    return f"delete the patch {patch} in local/emulator_compat.py{also}"


def drop_from_hook(hook: str) -> str:
    """What to do once the gap is closed upstream, for a runner hook that also closes it."""
    return (
        f"the hook {hook} in local/workflow_runner.py stays (it is a clock or log hook), "
        "but drop this gap from its entry in local/emulator_compat.py's docstring"
    )


def test_whole_value_expression_loses_its_type():
    got = evaluate({"n": "${n}", "m": "${m}", "big": "${big}"}, n=None, m={"a": None}, big=1e20)

    assert_gap(
        got,
        today={"n": "None", "m": {"a": "None"}, "big": "1e+20"},
        workflows={"n": None, "m": {"a": None}, "big": 1e20},
        fixed="keeps the type of a whole-value expression (null, a map with null, 1e20)",
        then=delete("render.render_str", once="test_expression_ends_at_its_first_brace"),
    )


def test_expression_ends_at_its_first_brace():
    assert_gap(
        evaluate('${len({"a": 1})}'),
        today=Raised("SyntaxError"),
        workflows=1,
        fixed='reads a whole-value expression with a "}" inside (a map literal)',
        then=delete("render.render_str", once="test_whole_value_expression_loses_its_type"),
    )


def test_map_get_fails_where_it_should_return_null():
    got = evaluate('${[map.get(m, ["a", "b"]), map.get(n, "k")]}', m={}, n=None)

    assert_gap(
        got,
        today=Raised("SyntaxError"),
        workflows=[None, None],
        fixed="returns null from map.get for a missing key path and for a null map",
        then=delete("map_utils.get"),
    )


def test_failing_assign_leaves_the_assign_lock_held():
    try:
        failed = run([{"parse": {"assign": [{"x": '${json.decode("not json")}'}]}}])
        held = emulator.LOCK.locked()
    finally:
        # Whatever the outcome, later assigns (in any test) must not wait for it.
        if emulator.LOCK.locked():
            emulator.LOCK.release()

    assert_gap(
        (failed, held),
        today=(Raised("JSONDecodeError"), True),
        workflows=(Raised("JSONDecodeError"), False),
        fixed="releases its global assign lock when an assign fails",
        then=delete("emulator.StepAssign.execute"),
    )


def test_get_type_fails_on_a_map():
    assert_gap(
        evaluate("${get_type(m)}", m={"a": 1}),
        today=Raised("ValueError"),
        workflows="map",
        fixed="returns get_type of a map",
        then=delete('library["get_type"]', once="test_get_type_names_a_double_float"),
    )


def test_get_type_names_a_double_float():
    assert_gap(
        evaluate("${get_type(1.5)}"),
        today="float",
        workflows="double",
        fixed='returns get_type of a double ("double")',
        then=delete('library["get_type"]', once="test_get_type_fails_on_a_map"),
    )


def test_default_replaces_falsy_values():
    assert_gap(
        evaluate("${default(0, 5)}"),
        today=5,
        workflows=0,
        fixed="replaces only null in default(value, fallback)",
        then=delete('library["default"]'),
    )


@pytest.mark.parametrize(("literal", "value"), [("null", None), ("true", True), ("false", False)])
def test_workflows_literal_is_undefined(literal: str, value: bool | None):
    assert_gap(
        # In a list: a whole-value null would also meet the render.render_str gap.
        evaluate(f"${{[{literal}]}}"),
        today=Raised("SyntaxError"),
        workflows=[value],
        fixed=f"knows the literal {literal}",
        then=delete(f'library["{literal}"]'),
    )


def sleep_until_error(when: str) -> str | None:
    """The error sys.sleep_until raises for a time in the past (so it never sleeps)."""
    try:
        sys_utils.sleep_until(when)
    except ValueError as error:
        return str(error)
    return None


def test_sleep_until_refuses_a_time_without_fractional_seconds():
    # Workflows' own example; in the past, so a fixed emulator returns (or fails) at once.
    error = sleep_until_error("2024-05-08T13:22:58Z") or ""

    assert_gap(
        "does not match format" in error,
        today=True,
        workflows=False,
        fixed="parses ISO 8601 times without fractional seconds in sys.sleep_until",
        then=drop_from_hook("sys_utils.sleep_until"),
    )


def test_sleep_until_fails_for_a_time_in_the_past():
    assert_gap(
        sleep_until_error("2000-01-01T00:00:00.000000Z"),
        today="sleep length must be non-negative",
        workflows=None,
        fixed="returns at once from sys.sleep_until for a time in the past",
        then=drop_from_hook("sys_utils.sleep_until"),
    )


@contextlib.contextmanager
def local_time_ahead_of_utc(seconds: int) -> Iterator[None]:
    """The process's local time zone is UTC+``seconds`` (a POSIX TZ, no tzdata needed)."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = f"LOC-0:00:{seconds:02d}"
    time.tzset()
    try:
        assert time.timezone == -seconds, "the TZ setting did not apply"
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


def test_sleep_until_reads_a_utc_time_as_local_time(monkeypatch):
    slept: list[float] = []
    # sys.sleep_until's time.sleep only records: nothing here really waits.
    monkeypatch.setattr(sys_utils, "time", SimpleNamespace(sleep=slept.append))
    with local_time_ahead_of_utc(10):
        in_two_seconds = datetime.now(UTC) + timedelta(seconds=2)
        sys_utils.sleep_until(in_two_seconds.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    assert_gap(
        [round(seconds) for seconds in slept],
        today=[-8],
        workflows=[2],
        fixed="reads a UTC (Z) time as UTC in sys.sleep_until, whatever the local time zone",
        then=drop_from_hook("sys_utils.sleep_until"),
    )


def test_sys_log_defaults_to_info_severity(caplog):
    caplog.set_level(logging.DEBUG, logger="workflows")
    run([{"log": {"call": "sys.log", "args": {"text": "canary"}}}])
    levels = [record.levelname for record in caplog.records if record.getMessage() == "canary"]

    assert_gap(
        levels,
        today=["INFO"],
        workflows=["DEFAULT"],
        fixed="logs sys.log at the documented default severity DEFAULT",
        then=drop_from_hook("sys_utils.log"),
    )


def test_hash_module_is_missing():
    digest = evaluate('${base64.encode(hash.compute_checksum(text.encode("abc"), "SHA256"))}')
    assert_gap(
        digest,
        today=Raised("SyntaxError"),
        # Workflows' documented example: base64 of the SHA-256 of the bytes.
        workflows="ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        fixed="has hash.compute_checksum",
        then=delete('library["hash"]'),
    )


def test_if_is_a_syntax_error():
    # Workflows' if(condition, ifTrue, ifFalse) expression helper; the
    # condition is a comparison because the true/false literals are gap 6-8.
    chosen = evaluate('${if(1 == 1, "yes", "no") + if(1 == 2, "yes", "no")}')
    assert_gap(
        chosen,
        today=Raised("SyntaxError"),
        workflows="yesno",
        fixed="calls if() (no longer a Python keyword clash)",
        then=delete("render.run_code"),
    )
