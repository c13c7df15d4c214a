"""The callback receiver: a public HTTP Cloud Function (entry point processEntry).

External systems call it with ?runID=..&step=..&token=.. to deliver a
callback; it stores the callback in Firestore for the waiting workflow. The
protocol is docs/protocol.md.

This module holds the entry point, CORS and the machine path. The rest has
a home of its own: receiver_config (environment, runtime), replies (every
error answer), request_log (the log line), page_handler (the page for
people), callback_status (``view=status``), callback_intake (the steps the
paths share), form_answer (what a form takes), approval_links and
approval_link_page (an approver's link: its answers, its page).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import flask

import approval_link_page
import approval_links
import callback_intake
import callback_status
import page_handler
import request_log
from callback_body import BodyError
from callback_request import BadRequest, Callback, CallbackIds, header, parse_callback
from callback_store import Outcome, Recorded
from receiver_config import LazyRuntime, ReceiverConfig, Runtime
from registration_layout import CONSUMED_AT_FIELD, rfc3339_or_none
from replies import (
    Audience,
    Reply,
    answer_and_close,
    declares_body,
    error_response,
    internal_error,
    json_response,
)

# One per instance: each functions_framework.create_app loads this module
# afresh, and with it a runtime that reads the environment on first use.
RUNTIME = LazyRuntime()

CORS_MAX_AGE_SECONDS = 600


def processEntry(request: flask.Request) -> flask.Response:
    """Receive one callback: a machine gets JSON, a person (``view=page``) a page.

    Every request, whatever its answer, logs one structured line.
    """
    started = time.monotonic()
    audience = Audience.of(request)
    log: dict[str, Any] = {"runID": None, "step": None, "method": request.method}
    origin = _allowed_origin(request, audience)
    if origin is not None and request.method == "OPTIONS":
        response = _preflight(origin, audience, request)
        _write_log(request, log, "preflight", response.status_code, started)
        return response
    try:
        outcome, status, response = _answer(request, audience, log)
    except Reply as reply:
        outcome, status = reply.outcome, reply.status
        response = error_response(reply, audience, request)
    except Exception as error:
        outcome, status = "error", 500
        response = internal_error(audience, request)
        log.update(request_log.error_fields(error, request.args.get("token")))
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    _write_log(request, log, outcome, status, started)
    return response


def _answer(
    request: flask.Request, audience: Audience, log: dict[str, Any]
) -> tuple[str, int, flask.Response]:
    ids = callback_intake.checked_ids(request, audience, log)
    runtime = RUNTIME.runtime()
    if ids.approver is not None and audience is not Audience.STATUS:
        # An approval link: never the one-Commit path (approval_links).
        log["approverIndex"] = ids.approver
        if audience is Audience.PAGE:
            return approval_link_page.answer_page(request, ids, runtime, log)
        return approval_links.answer_machine(request, ids, runtime, log)
    if audience is Audience.PAGE:
        return page_handler.answer_page(request, ids, runtime, log)
    if audience is Audience.STATUS:
        return callback_status.answer_status(request, ids, runtime, log)
    recorded = _receive(request, ids, runtime, log)
    answer: dict[str, str | None] = {"status": "received", "runID": ids.run_id, "step": ids.step}
    if recorded.outcome is Outcome.ALREADY_DELIVERED:
        # A sender's retry after the workflow took the callback: safe, and
        # it says so (the token was checked first).
        stored = recorded.stored or {}
        answer = {
            "status": "already_delivered",
            "runID": ids.run_id,
            "step": ids.step,
            "receivedAt": rfc3339_or_none(stored.get("receivedAt")),
            "consumedAt": rfc3339_or_none(stored.get(CONSUMED_AT_FIELD)),
        }
    return recorded.outcome.value, 200, json_response(answer)


def _write_log(
    request: flask.Request, log: dict[str, Any], outcome: str, status: int, started: float
) -> None:
    request_log.write_line(request, log, outcome, status, started, RUNTIME.project())


# --- CORS ------------------------------------------------------------------------------
def _allowed_origin(request: flask.Request, audience: Audience) -> str | None:
    """The request's Origin if the stack allows it (CALLBACKS_ALLOWED_ORIGINS), else None.

    Only machine URLs take part: the page posts to itself.
    """
    origin = header(request, "Origin")
    if not origin or audience is Audience.PAGE:
        return None
    try:
        config = RUNTIME.config()
    except ValueError:
        return None
    return origin if origin in config.allowed_origins else None


def _preflight(origin: str, audience: Audience, request: flask.Request) -> flask.Response:
    """The CORS preflight of a browser page on an allowed origin: which calls it may make.

    The methods are the URL's own (a status URL only reads). A browser's
    preflight has no body; one that declares a body is answered without
    reading it, and the connection closed, as every refused body is.
    """
    response = flask.Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(audience.methods),
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS),
            "Vary": "Origin",
        }
    )
    return answer_and_close(response, request) if declares_body(request) else response


# --- the machine path ------------------------------------------------------------------
def _receive(
    request: flask.Request, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]
) -> Recorded:
    """Store (and forward) one machine callback; what was decided, or a Reply for a refusal."""
    now = datetime.now(UTC)
    callback = _parse(request, ids, runtime.config, now)
    recorded = callback_intake.store(callback, runtime, now)
    log["firestoreCalls"] = recorded.firestore_calls
    refusal = callback_intake.refused(recorded.outcome, recorded.stored, callback)
    if refusal is not None:
        raise refusal
    callback_intake.forward(recorded, callback, runtime.forwarder, log)
    return recorded


def _parse(
    request: flask.Request, ids: CallbackIds, config: ReceiverConfig, now: datetime
) -> Callback:
    body = callback_intake.decoded_body(request, config.max_body_bytes)
    try:
        return parse_callback(request, ids, body, now)
    except (BadRequest, BodyError) as error:
        raise Reply(400, str(error), "bad_request") from None
