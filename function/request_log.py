"""One structured log line per request: severity, outcome, trace id, never a secret.

docs/protocol.md, "Logs", is the reference.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from typing import Any

import flask

from callback_request import header

# json.dumps(entry, ensure_ascii=False), made once: json.dumps builds a new
# encoder on each call that passes options.
_LINE_JSON = json.JSONEncoder(ensure_ascii=False)
_TRACE_HEADER = re.compile(r"([0-9a-fA-F]{32})(?:/.*)?")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def error_fields(error: BaseException, token: str | None) -> dict[str, str]:
    """What a 500 logs: the exception and its stack, without the token (it may be in either)."""
    return {
        "error": redact(f"{type(error).__name__}: {error}", token),
        "stack_trace": redact("".join(traceback.format_exception(error)), token),
    }


def trace(request: flask.Request, project: str | None) -> str | None:
    """The Cloud Trace id, so Cloud Logging groups our line with the request."""
    if not project:
        return None
    match = _TRACE_HEADER.fullmatch(header(request, "X-Cloud-Trace-Context") or "") or (
        _TRACEPARENT.fullmatch(header(request, "traceparent") or "")
    )
    return f"projects/{project}/traces/{match.group(1)}" if match else None


def write_line(
    request: flask.Request,
    fields: dict[str, Any],
    outcome: str,
    status: int,
    started: float,
    project: str | None,
) -> None:
    """One JSON line on stdout, which Cloud Logging parses into a structured entry.

    Never includes the token, the body or the payload.
    """
    severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    if severity == "INFO" and fields.get("forward") in ("failed", "refused"):
        # Stored and answered, but the waiting workflow resumes only at the
        # end of its slice.
        severity = "WARNING"
    entry = {
        "severity": severity,
        "message": f"callback {outcome} ({status})",
        **fields,
        "outcome": outcome,
        "status": status,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
    }
    trace_id = trace(request, project)
    if trace_id:
        entry["logging.googleapis.com/trace"] = trace_id
    sys.stdout.write(_LINE_JSON.encode(entry) + "\n")
    sys.stdout.flush()
