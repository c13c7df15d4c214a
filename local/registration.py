"""The registration layout (function/registration_layout.py), for registering without a workflow.

The tests, ops and the benchmark register callbacks in Firestore directly,
as getCallbackURL does. They use the receiver's own module, loaded by
infra.function_modules, so there is one definition of the layout.
"""

from __future__ import annotations

from infra.function_modules import function_module

_layout = function_module("registration_layout")

KEY_FIELD: str = _layout.KEY_FIELD
key_document_id = _layout.key_document_id
Registration = _layout.Registration
rfc3339 = _layout.rfc3339
