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
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
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
        yield
