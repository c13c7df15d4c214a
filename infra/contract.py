"""The protocol's constants, read from the receiver's own function/contract.py.

function/ is deployed as its own source root, so the receiver cannot import
from infra/; the Pulumi program reads the receiver's file instead, so both
sides of the protocol share one definition.
"""

from __future__ import annotations

import runpy
from pathlib import Path

_CONTRACT = runpy.run_path(str(Path(__file__).resolve().parent.parent / "function" / "contract.py"))

RUN_ID_PATTERN: str = _CONTRACT["RUN_ID_PATTERN"]
STEP_PATTERN: str = _CONTRACT["STEP_PATTERN"]
DEFAULT_COLLECTION: str = _CONTRACT["DEFAULT_COLLECTION"]
DEFAULT_TTL_SECONDS: int = _CONTRACT["DEFAULT_TTL_SECONDS"]
DEFAULT_MAX_BODY_BYTES: int = _CONTRACT["DEFAULT_MAX_BODY_BYTES"]
