"""The protocol's constants: the one place they are written in code (docs/protocol.md).

The receiver imports them; the Pulumi program, the local stack and the
benchmark load this file too (infra/function_contract.py), and
workflow/callbacks.yaml, which cannot import, holds the same literals:
tests/test_contract_constants.py keeps it in step.
"""

from __future__ import annotations

# The function functions-framework calls (main.py defines it): the Pulumi
# program's entryPoint, and the target the local stack and benchmark serve.
ENTRY_POINT = "processEntry"

# runID: letters, digits and "-" (a Workflows execution id is a UUID); step
# adds "_". The document id is "<runID>_<step>", unambiguous because runID
# has no "_".
RUN_ID_PATTERN = r"[A-Za-z0-9-]{1,128}"
STEP_PATTERN = r"[A-Za-z0-9_-]{1,128}"
DEFAULT_COLLECTION = "workflow_callbacks"
# How long a registration lives before Firestore's TTL deletes it: a week.
DEFAULT_TTL_SECONDS = 604_800
# Largest body by default; see docs/protocol.md, "Size limits".
DEFAULT_MAX_BODY_BYTES = 65_536
