"""Load a module of the receiver (function/) from outside it: the one way to do so.

function/ is deployed as its own source root, so its modules import each
other by top-level name (``import contract``) and it cannot be imported as
a package. The Pulumi program, the local stack, ops, the benchmark and the
tests load what they share with the receiver through ``function_module``
instead, so each of those modules has one definition. Free of Pulumi, so
everything that is not the Pulumi program can import it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

FUNCTION_DIR = Path(__file__).resolve().parent.parent / "function"
# A prefix of our own: loaded here, function/contract.py is not the
# top-level module "contract" that functions-framework imports in tests.
_PREFIX = "workflow_callbacks_function."
_lock = threading.Lock()


def function_module(name: str) -> ModuleType:
    """function/<name>.py, loaded once per process."""
    qualified = _PREFIX + name
    with _lock:
        loaded = sys.modules.get(qualified)
        if loaded is not None:
            return loaded
        spec = importlib.util.spec_from_file_location(qualified, FUNCTION_DIR / f"{name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"function/{name}.py cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs: dataclasses look their module up by name.
        sys.modules[qualified] = module
        try:
            with _function_dir_on_path():
                spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[qualified]
            raise
        return module


@contextlib.contextmanager
def _function_dir_on_path() -> Iterator[None]:
    """function/ on sys.path while a module runs, as in the deployed function.

    Its own imports (``import contract``) then resolve as they do there.
    """
    entry = str(FUNCTION_DIR)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)
