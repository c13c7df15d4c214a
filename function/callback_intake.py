"""The steps every path (machine, page, status) takes with a callback, each written once.

Check the method and ids, read the body, read or store, refuse, forward: a
limit, a decoding rule or a status cannot differ between the paths,
because none has its own copy.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import flask

import callback_store
import form_answer
from callback_body import BodyError, DecodedTooLarge, UnsupportedEncoding, decode_content
from callback_forward import Forwarder, forward_event
from callback_request import (
    BadRequest,
    BodyTooLarge,
    Callback,
    CallbackIds,
    header,
    parse_ids,
    read_body,
)
from callback_store import Outcome
from receiver_config import Runtime
from registration_layout import CANCELLED_AT_FIELD, EXPIRED_AT_FIELD, rfc3339_or_none
from replies import Audience, Reply

# The waiting workflow must hold the payload: Workflows caps an execution's
# variables at 512 KB in total and a string at about 256 KB, and
# waitForResponse holds the payload string and its decoded copy at once. A
# callback answered 200 that the workflow then cannot hold is a lost callback,
# so refuse it here instead (well under Firestore's 1 MiB document limit too).
MAX_STORED_PAYLOAD_BYTES = 150_000
# allow_nan=False: never store NaN or Infinity, which the workflow's
# json.decode rejects (the body parser already refuses them). Made once:
# json.dumps builds a new encoder on each call that passes options.
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# The refusals every path answers alike, a callback and a status read: the
# same 403 and 404 whatever the URL asked for, so neither tells more.
REFUSALS = {
    Outcome.FORBIDDEN: (403, "token missing or wrong for this callback"),
    Outcome.NOT_REGISTERED: (404, "no callback is registered for this runID and step"),
    Outcome.CONFLICT: (409, "this callback was already received with a different payload"),
    Outcome.UNKNOWN_STATE: (409, "this callback is in a state the receiver does not accept"),
    Outcome.EXPIRED: (410, "the workflow stopped waiting for this callback"),
    # The reason stays in Firestore, for the workflow and operators: not in an answer.
    Outcome.CANCELLED: (410, "the wait for this callback was cancelled"),
    Outcome.INVALID_CHOICE: (422, "not an answer this form takes"),
}


def refused(
    outcome: Outcome, stored: Mapping[str, Any] | None, callback: Callback | None = None
) -> Reply | None:
    """The JSON answer to ``outcome`` if it is a refusal (REFUSALS), else None."""
    return refusal_reply(outcome, stored, callback) if outcome in REFUSALS else None


def refusal_reply(
    outcome: Outcome, stored: Mapping[str, Any] | None, callback: Callback | None = None
) -> Reply:
    """The JSON answer to a refusal; 410 says when the wait ended (expired or cancelled), 422 what
    the form takes (and, given the callback, what is wrong with it)."""
    status, message = REFUSALS[outcome]
    fields: dict[str, Any] | None = None
    if outcome is Outcome.EXPIRED:
        fields = {"expiredAt": rfc3339_or_none((stored or {}).get(EXPIRED_AT_FIELD))}
    if outcome is Outcome.CANCELLED:
        fields = {"cancelledAt": rfc3339_or_none((stored or {}).get(CANCELLED_AT_FIELD))}
    if outcome is Outcome.INVALID_CHOICE:
        form = form_answer.form_of(stored)
        fields = {"allowed": list(form.values) if form else []}
        if form is not None and callback is not None:
            answer = form_answer.answer_of(callback.payload)
            message = form_answer.problem(answer, form) or message
    return Reply(status, message, outcome.value, fields=fields)


def checked_ids(request: flask.Request, audience: Audience, log: dict[str, Any]) -> CallbackIds:
    """The method and the ids, checked before anything is read."""
    if request.method not in audience.methods:
        raise Reply(
            405, f"method {request.method} is not allowed", "method_not_allowed", body_unread=True
        )
    try:
        ids = parse_ids(request.args)
    except BadRequest as error:
        raise Reply(400, str(error), "bad_request", body_unread=True) from None
    log["runID"], log["step"] = ids.run_id, ids.step
    return ids


def decoded_body(request: flask.Request, limit: int) -> bytes:
    """The body with its Content-Encoding undone, at most ``limit`` bytes either way.

    A declared length over the limit is refused before a byte is read, and a
    chunked body after limit + 1 bytes; both answers then close the
    connection without reading the rest.
    """
    try:
        sent = read_body(request, limit)
        return decode_content(header(request, "Content-Encoding"), sent, limit)
    except BodyTooLarge:
        message = f"the body is larger than {limit} bytes"
        raise Reply(413, message, "too_large", body_unread=True) from None
    except DecodedTooLarge:
        message = f"the body is larger than {limit} bytes once decoded"
        raise Reply(413, message, "too_large") from None
    except UnsupportedEncoding as error:
        raise Reply(415, str(error), "unsupported_encoding") from None
    except BodyError as error:
        raise Reply(400, str(error), "bad_request") from None


def store(
    callback: Callback, runtime: Runtime, now: datetime, page: bool = False
) -> callback_store.Recorded:
    """Record the callback (callback_store.record), or a Reply saying why not.

    ``page``: an answer from the page for people, stored only where there is
    a form (read first: the page needs the form anyway).
    """
    payload_json = _PAYLOAD_JSON.encode(callback.payload)
    if len(payload_json.encode("utf-8")) > MAX_STORED_PAYLOAD_BYTES:
        message = (
            f"the callback is too large for a workflow to hold "
            f"(its payload is over {MAX_STORED_PAYLOAD_BYTES} bytes)"
        )
        raise Reply(413, message, "too_large")
    config = runtime.config
    try:
        # Through the module, not a name imported from it: tests replace
        # callback_store.record and callback_store.decide.
        return callback_store.record(
            runtime.client,
            runtime.commits,
            config.collection,
            callback,
            payload_json,
            now,
            config.allow_unregistered,
            timedelta(seconds=config.ttl_seconds),
            judge=judge(callback, now, page),
            blind=not page,
        )
    except Exception as error:
        if callback_store.is_transient(error):
            message = "the callback store is unavailable, retry later"
            raise Reply(503, message, "unavailable") from error
        raise


def judge(callback: Callback, now: datetime, page: bool) -> callback_store.Judge:
    """How a registration, once read, takes ``callback`` (callback_store.Judge).

    With a form: only an answer it takes (form_answer), stored with the
    choice as ``value`` and the comment as ``comment`` in the payload,
    whichever way it was sent, so a workflow finds both in one place.
    Without: as it came, and never from the page (it has none).
    """

    def judged(stored: Mapping[str, Any]) -> dict[str, Any] | Outcome | None:
        form = form_answer.form_of(stored)
        if form is None:
            return Outcome.NOT_REGISTERED if page else None
        answer = form_answer.answer_of(callback.payload)
        if form_answer.problem(answer, form) is not None:
            return Outcome.INVALID_CHOICE
        payload = {**callback.payload, "value": answer.choice, "comment": answer.comment}
        answered = dataclasses.replace(callback, value=answer.choice)
        return callback_store.received_fields(answered, _PAYLOAD_JSON.encode(payload), now)

    return judged


def read_stored(runtime: Runtime, ids: CallbackIds, log: dict[str, Any]) -> dict[str, Any] | None:
    """The callback document's fields (None if absent): one bounded read, 503 if unavailable."""
    collection = runtime.client.collection(runtime.config.collection)
    try:
        snapshot = callback_store.read(collection.document(ids.document_id))
    except Exception as error:
        if callback_store.is_transient(error):
            message = "the callback store is unavailable, retry later"
            raise Reply(503, message, "unavailable") from error
        raise
    log["firestoreCalls"] = 1
    return snapshot.to_dict() if snapshot.exists else None


def forward(
    recorded: callback_store.Recorded,
    callback: Callback,
    forwarder: Forwarder,
    log: dict[str, Any],
) -> None:
    """Push the callback to the waiting execution, if its registration asked for push."""
    if recorded.forward_url and recorded.payload_json is not None and recorded.version:
        # Stored first, so the caller's 200 stands whatever the forward does:
        # a failed forward is found in Firestore at the end of the wait's slice.
        # A forward_url is only set for a registered callback, so the token
        # is the registration's (the Commit or the read proved it).
        event = forward_event(
            callback.ids.run_id,
            callback.ids.step,
            recorded.payload_json,
            recorded.version,
            callback.token or "",
        )
        result = forwarder.forward(recorded.forward_url, event)
        log.update(result.log_fields())
