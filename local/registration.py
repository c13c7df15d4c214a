"""The registration layout (function/registration.py), for registering without a workflow.

The tests and the benchmark register callbacks in Firestore directly, as
getCallbackURL does. They load the receiver's own module, so there is one
definition of the layout (function/ is deployed as its own source root and
cannot be imported as a package).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "function" / "registration.py"
_NAME = "workflow_callbacks_registration"


def _load() -> types.ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running: dataclasses look their module up by name.
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_registration = _load()

KEY_FIELD: str = _registration.KEY_FIELD
key_document_id = _registration.key_document_id
Registration = _registration.Registration
rfc3339 = _registration.rfc3339
