"""The original sample's receiver, rebuilt as the baseline for bench.ingest.

It does what the seed's function did and nothing more: read runID, step and value
from the query string and overwrite workflow_callbacks/{runID}_{step} with
{responded: true, value} in one unconditional set. No token, no transaction, no
body. The collection and database come from the same environment variables as
function/main.py only so a benchmark run can give each scenario its own collection.
"""

from __future__ import annotations

import os

import flask
from google.cloud import firestore

# One client per instance, created at import as the sample did: every request reuses
# its gRPC channel.
_db = firestore.Client(database=os.environ.get("CALLBACKS_DATABASE", "(default)"))
_collection = _db.collection(os.environ.get("CALLBACKS_COLLECTION", "workflow_callbacks"))


def processEntry(request: flask.Request) -> tuple[str, int]:
    run_id = request.args.get("runID")
    step = request.args.get("step")
    if not run_id or not step:
        return "runID and step are required", 400
    _collection.document(f"{run_id}_{step}").set(
        {"responded": True, "value": request.args.get("value")}
    )
    return "OK", 200
