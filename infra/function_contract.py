"""The protocol's constants and the entry point, from the receiver's own function/contract.py.

function/ is deployed as its own source root, so the receiver cannot import
from infra/; the Pulumi program (and the local stack, the benchmark and the
tests) load the receiver's file instead, so both sides of the protocol share
one definition.
"""

from __future__ import annotations

from infra.function_modules import function_module

_contract = function_module("contract")

ENTRY_POINT: str = _contract.ENTRY_POINT
RUN_ID_PATTERN: str = _contract.RUN_ID_PATTERN
STEP_PATTERN: str = _contract.STEP_PATTERN
DEFAULT_COLLECTION: str = _contract.DEFAULT_COLLECTION
DEFAULT_TTL_SECONDS: int = _contract.DEFAULT_TTL_SECONDS
DEFAULT_MAX_BODY_BYTES: int = _contract.DEFAULT_MAX_BODY_BYTES
