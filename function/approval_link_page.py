"""The page of an approval link (``approver`` and ``view=page``): GET/HEAD show, POST answers.

GET and HEAD only read: the link and its group (one batch get), then, while
the request is open, the other links for the count. The page says whom the
link is for, the request, its deadline in UTC with the time left, and how
many approvals are in; once decided it shows the outcome instead of the
form, and the 410 page once the wait gave up or was cancelled. A POST
records the answer through approval_links, exactly as a machine's answer.
approval_page.py renders (and escapes); docs/protocol.md, "Approvals".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import flask

import approval_links
import callback_intake
import form_answer
import page_handler
from approval_links import LinkAnswer, Pair, Verdict
from approval_page import (
    answered_message,
    cancelled_message,
    choices_page,
    deadline_fact,
    expired_message,
    form_page,
    html_response,
    message_page,
    valid_until_fact,
)
from callback_request import CallbackIds
from receiver_config import Runtime
from registration_layout import CANCELLED_AT_FIELD, TOKEN_PARAM, WAITING

CANNOT_ANSWER_NOW = "This link cannot take an answer now."


def answer_page(
    request: flask.Request, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]
) -> tuple[str, int, flask.Response]:
    """(outcome, status, page) for a link's page whose method and ids are checked."""
    # Read on every method, bounded (page_handler.answer_page says why).
    body = callback_intake.decoded_body(request, runtime.config.max_body_bytes)
    if request.method == "POST":
        return _record_answer(request, ids, runtime, body, log)
    action = "?" + request.query_string.decode("latin-1")
    outcome, status, page = _show(request, ids, runtime, action, log)
    return outcome, status, html_response(page, status, head_only=request.method == "HEAD")


def _record_answer(
    request: flask.Request,
    ids: CallbackIds,
    runtime: Runtime,
    body: bytes,
    log: dict[str, Any],
) -> tuple[str, int, flask.Response]:
    now = datetime.now(UTC)
    choice = page_handler.answer_fields(body).get("choice", "")
    answer = approval_links.answer_in(request, ids, body, now, choice)
    result = approval_links.record(request, ids, runtime, answer, now)
    log["firestoreCalls"] = result.firestore_calls
    status, page = _answered(result)
    approval_links.forward(result, ids, runtime, log)
    approval_links.log_answer(result, ids, status)
    return result.verdict.value, status, html_response(page, status)


def _answered(result: LinkAnswer) -> tuple[int, str]:
    """The page after a POST, by what the answer came to."""
    verdict, pair = result.verdict, result.pair
    form = pair.form
    if form is None or verdict in (Verdict.NOT_REGISTERED, Verdict.FORBIDDEN):
        return 404, _unknown()
    facts = _whom(pair)
    if verdict is Verdict.STORE:
        label = form.label_of(result.answer.choice) or str(result.answer.choice)
        thanks = f"Thank you. Your answer was recorded: {label}."
        return 200, message_page(form.title, thanks, facts)
    if verdict in (Verdict.ALREADY_ANSWERED, Verdict.OTHER_CHOICE):
        status = 200 if verdict is Verdict.ALREADY_ANSWERED else 409
        return status, message_page(form.title, _already(pair), facts)
    if verdict is Verdict.LATE:
        message = (
            f"This request was already decided: {pair.decision}. "
            "Your answer was recorded but did not count."
        )
        return 409, message_page(form.title, message, facts)
    if verdict is Verdict.INVALID:
        problem = form_answer.problem(result.answer, form)
        return 422, choices_page(form, f"That answer cannot be recorded: {problem}.", facts)
    if verdict is Verdict.GONE:
        return 410, _gone(pair)
    return 409, message_page(form.title, CANNOT_ANSWER_NOW, facts)


def _show(
    request: flask.Request,
    ids: CallbackIds,
    runtime: Runtime,
    action: str,
    log: dict[str, Any],
) -> tuple[str, int, str]:
    """(outcome, status, page) for a GET or HEAD: reads only."""
    pair = approval_links.read_pair(runtime, ids)
    log["firestoreCalls"] = 1
    refused = approval_links.standing(
        pair, request.args.get(TOKEN_PARAM) or None, datetime.now(UTC)
    )
    form = pair.form
    if refused is Verdict.GONE:
        return "page_expired", 410, _gone(pair)
    if refused is not None or form is None:
        return "page_unknown", 404, _unknown()
    link, group = pair.link or {}, pair.group or {}
    facts = _whom(pair)
    if pair.decision is not None:
        message = f"This request was decided: {pair.decision}."
        if link.get("state") in approval_links.ANSWERED_STATES:
            message += f" {_already(pair)}"
        return "page_decided", 200, message_page(form.title, message, facts)
    if link.get("state") not in (WAITING, *approval_links.ANSWERED_STATES):
        return "page_unknown", 409, message_page(form.title, CANNOT_ANSWER_NOW, facts)
    links = approval_links.read_links(runtime, pair, ids)
    log["firestoreCalls"] = 2
    counted = approval_links.counted_approvals(form, links)
    facts += [
        _deadline(group, link),
        f"{counted} of {approval_links.quorum(group)} approvals",
    ]
    if link.get("state") in approval_links.ANSWERED_STATES:
        return "page_answered", 200, message_page(form.title, _already(pair), facts)
    return "page", 200, form_page(form, action, facts)


def _whom(pair: Pair) -> list[str]:
    return [f"Answering as {pair.label}"]


def _deadline(group: Mapping[str, Any], link: Mapping[str, Any]) -> str:
    """The wait's deadline once it started; before, how long the link itself lives."""
    now = datetime.now(UTC)
    deadline = group.get(approval_links.DEADLINE_FIELD)
    if isinstance(deadline, datetime):
        return deadline_fact(deadline, now)
    expire_at = link.get("expireAt")
    if isinstance(expire_at, datetime):
        return valid_until_fact(expire_at, now)
    return "No deadline is set."


def _already(pair: Pair) -> str:
    """ "Already answered: <label> (<time>).", the label of the choice the link holds."""
    link, form = pair.link or {}, pair.form
    value = link.get("value")
    label = (form.label_of(value) if form else None) or str(value)
    return answered_message(label, link.get("answeredAt") or link.get("receivedAt"))


def _gone(pair: Pair) -> str:
    form = pair.form
    title = form.title if form else "Approval"
    name, when = pair.gone_field()
    message = cancelled_message(when) if name == CANCELLED_AT_FIELD else expired_message(when)
    return message_page(title, message, _whom(pair))


def _unknown() -> str:
    return message_page("Unknown link", page_handler.UNKNOWN_LINK)
