"""The page for people (``view=page``): GET/HEAD render it, POST records the choice.

approval_page.py renders; this module decides what to render, and records
an answer through the same steps as a machine callback (callback_intake).
docs/protocol.md, "The page for people".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import flask

import callback_intake
import callback_store
import form_answer
from approval_page import (
    Form,
    answered_message,
    cancelled_message,
    choices_page,
    expired_message,
    form_page,
    html_response,
    message_page,
    valid_until_fact,
)
from callback_body import LONE_SURROGATE, BodyError, strict_text
from callback_request import BadRequest, CallbackIds, parse_callback
from callback_store import Outcome
from form_answer import form_of
from receiver_config import Runtime
from registration_layout import (
    ANSWER_SUFFIX,
    CANCELLED,
    CANCELLED_AT_FIELD,
    CONSUMED,
    EXPIRED,
    EXPIRED_AT_FIELD,
    RECEIVED,
    WAITING,
)
from replies import Reply

UNKNOWN_LINK = "This link has expired or is unknown."
# The states in which the page shows the answer it took: received, and
# taken by the workflow (the CONSUMED tombstone keeps value, form and time).
ANSWERED_STATES = (RECEIVED, CONSUMED)


def answer_page(
    request: flask.Request, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]
) -> tuple[str, int, flask.Response]:
    """(outcome, status, page) for a request whose method and ids are checked."""
    # Read on every method, bounded, so no body is left for functions-framework
    # to drain unbounded after the page is sent.
    body = callback_intake.decoded_body(request, runtime.config.max_body_bytes)
    if request.method == "POST":
        return _record_answer(request, ids, runtime, body, log)
    # Relative: behind Cloud Run's TLS proxy the app may see http://, and
    # an absolute http action on an https page would be blocked.
    action = "?" + request.query_string.decode("latin-1")
    outcome, status, page = _show_page(runtime, ids, request.args.get("token"), action, log)
    return outcome, status, html_response(page, status, head_only=request.method == "HEAD")


def _record_answer(
    request: flask.Request,
    ids: CallbackIds,
    runtime: Runtime,
    body: bytes,
    log: dict[str, Any],
) -> tuple[str, int, flask.Response]:
    now = datetime.now(UTC)
    choice = answer_fields(body).get("choice", "")
    try:
        callback = parse_callback(request, ids, body, now, value=choice)
    except (BadRequest, BodyError) as error:
        raise Reply(400, str(error), "bad_request") from None
    # The choice and the comment are checked against the form once it is
    # read (form_answer), as on the machine path.
    recorded = callback_intake.store(callback, runtime, now, page=True)
    outcome = recorded.outcome
    log["firestoreCalls"] = recorded.firestore_calls
    form = form_of(recorded.stored)
    stored = recorded.stored or {}
    if form is None:
        # No page to answer on (no form, a wrong token, nothing registered).
        return outcome.value, 404, html_response(message_page("Unknown link", UNKNOWN_LINK), 404)
    if outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.ALREADY_DELIVERED):
        # The same answer again, even after the workflow took it, is a thank-you.
        callback_intake.forward(recorded, callback, runtime.forwarder, log)
        label = form.label_of(choice) or choice
        page = message_page(form.title, f"Thank you. Your answer was recorded: {label}.")
        return outcome.value, 200, html_response(page)
    if outcome is Outcome.INVALID_CHOICE:
        problem = form_answer.problem(form_answer.answer_of(callback.payload), form)
        page = choices_page(form, f"That answer cannot be recorded: {problem}.")
        return outcome.value, 422, html_response(page, 422)
    if outcome is Outcome.CONFLICT:
        # Another answer after the first, taken or not: the page GET shows.
        return outcome.value, 409, html_response(_answered_page(form, stored), 409)
    if outcome is Outcome.EXPIRED:
        page = message_page(form.title, expired_message(stored.get(EXPIRED_AT_FIELD)))
        return outcome.value, 410, html_response(page, 410)
    if outcome is Outcome.CANCELLED:
        page = message_page(form.title, cancelled_message(stored.get(CANCELLED_AT_FIELD)))
        return outcome.value, 410, html_response(page, 410)
    return outcome.value, 404, html_response(message_page("Unknown link", UNKNOWN_LINK), 404)


def answer_fields(body: bytes) -> dict[str, str]:
    """The page's form fields; the page is UTF-8, so its form is too, or it is refused."""
    text = strict_text(body, "utf-8")
    try:
        pairs = parse_qsl(text or "", keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        pairs = None
    if text is None or pairs is None or any(LONE_SURROGATE.search(k + v) for k, v in pairs):
        raise Reply(400, "the answer is not valid UTF-8 text", "bad_request")
    return dict(pairs)


def _show_page(
    runtime: Runtime, ids: CallbackIds, token: str | None, action: str, log: dict[str, Any]
) -> tuple[str, int, str]:
    """(outcome, status, page) for a GET: read only, never written."""
    stored = callback_intake.read_stored(runtime, ids, log)
    if stored is not None and callback_store.token_matches(stored.get("token"), token):
        form = form_of(stored)
        state = stored.get("state")
        if form is not None and state == WAITING:
            return "page", 200, form_page(form, action, _validity(stored))
        if form is not None and state in ANSWERED_STATES:
            return "page_answered", 200, _answered_page(form, stored)
        if form is not None and state == EXPIRED:
            message = expired_message(stored.get(EXPIRED_AT_FIELD))
            return "page_expired", 410, message_page(form.title, message)
        if form is not None and state == CANCELLED:
            message = cancelled_message(stored.get(CANCELLED_AT_FIELD))
            return "page_cancelled", 410, message_page(form.title, message)
    if stored is None:
        answered = _legacy_answer_page(runtime, ids, token, log)
        if answered is not None:
            return "page_answered", 200, answered
    return "page_unknown", 404, message_page("Unknown link", UNKNOWN_LINK)


def _answered_page(form: Form, stored: Mapping[str, Any]) -> str:
    label = form.label_of(stored.get("value")) or str(stored.get("value"))
    return message_page(form.title, answered_message(label, stored.get("receivedAt")))


def _legacy_answer_page(
    runtime: Runtime, ids: CallbackIds, token: str | None, log: dict[str, Any]
) -> str | None:
    """The "already answered" page from an answer record, when the callback document is gone.

    Receivers before tombstones left ``{runID}_{step}.answer`` beside a page
    answer, because the workflow then deleted the callback document; this
    receiver writes none (the CONSUMED tombstone keeps the answer). Records
    already written live until their TTL (CALLBACKS_TTL_SECONDS after their
    registration), and this read can go one TTL after every stack runs it.
    """
    collection = runtime.client.collection(runtime.config.collection)
    answer = callback_store.read(collection.document(ids.document_id + ANSWER_SUFFIX))
    log["firestoreCalls"] = 2
    record = answer.to_dict() if answer.exists else None
    if record is None or not callback_store.token_matches(
        record.get("tokenHash"), callback_store.token_hash(token)
    ):
        return None
    form = form_of(record)
    title = form.title if form else "Already answered"
    value = record.get("value")
    shown = (form.label_of(value) if form else None) or str(value)
    return message_page(title, answered_message(shown, record.get("answeredAt")))


def _validity(stored: Mapping[str, Any]) -> list[str]:
    """Until when the link can be answered (its TTL), if the registration says."""
    expire_at = stored.get("expireAt")
    if not isinstance(expire_at, datetime):
        return []
    return [valid_until_fact(expire_at, datetime.now(UTC))]
