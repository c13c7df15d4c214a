"""``GET <callback URL>&view=status``: where a callback stands, for whoever holds its URL.

One read, never a write, never taken as a callback (only GET is allowed:
replies.STATUS_METHODS). It answers a bad token or an unknown id exactly as
a callback would (callback_intake.REFUSALS), so it tells nobody without the
token more than a callback would. docs/protocol.md, "Status".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import flask

import approval_links
import callback_intake
import callback_store
from callback_request import CallbackIds
from callback_store import Outcome
from receiver_config import Runtime
from registration_layout import (
    CANCELLED,
    CANCELLED_AT_FIELD,
    CONSUMED,
    CONSUMED_AT_FIELD,
    EXPIRED,
    EXPIRED_AT_FIELD,
    LATE,
    RECEIVED,
    TOKEN_PARAM,
    WAITING,
    rfc3339_or_none,
)
from replies import json_response

# The document's state -> what the status calls it.
STATES = {
    WAITING: "waiting",
    RECEIVED: "received",
    CONSUMED: "consumed",
    EXPIRED: "expired",
    # An operator cancelled the wait (python -m ops cancel).
    CANCELLED: "cancelled",
    # An approval link answered after the decision (recorded, not counted).
    LATE: "late",
}
# The times the status shows, each the document field of the same name
# (null until that happened, or when the document does not hold it).
TIME_FIELDS = (
    "createdAt",
    "receivedAt",
    CONSUMED_AT_FIELD,
    EXPIRED_AT_FIELD,
    CANCELLED_AT_FIELD,
    "expireAt",
)


def answer_status(
    request: flask.Request, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]
) -> tuple[str, int, flask.Response]:
    """(outcome, status, JSON) for a status request whose method and ids are checked."""
    # Read, bounded, and dropped: nothing in a body is used, and none is left
    # for functions-framework to drain unbounded.
    callback_intake.decoded_body(request, runtime.config.max_body_bytes)
    # An approval link is read with its group (one batch get), whose state
    # the approver needs too: the link alone says "waiting" long after the
    # request was decided without it, or expired.
    pair = approval_links.read_pair(runtime, ids) if ids.approver is not None else None
    if pair is not None:
        log["firestoreCalls"] = 1
        stored = pair.link
    else:
        stored = callback_intake.read_stored(runtime, ids, log)
    if stored is None:
        raise callback_intake.refusal_reply(Outcome.NOT_REGISTERED, None)
    token = request.args.get(TOKEN_PARAM) or None
    refused = callback_store.refusal(stored, token, runtime.config.allow_unregistered)
    if refused is not None:
        raise callback_intake.refusal_reply(refused, stored)
    state = STATES.get(str(stored.get("state")))
    if state is None:
        raise callback_intake.refusal_reply(Outcome.UNKNOWN_STATE, stored)
    body = status_of(state, stored)
    if pair is not None:
        body.update(request_of(pair, datetime.now(UTC)))
    response = json_response(body)
    # The state changes, and the URL holds the token: keep it out of caches.
    response.headers["Cache-Control"] = "no-store"
    return "status", 200, response


def request_of(pair: approval_links.Pair, now: datetime) -> dict[str, Any]:
    """What an approval link's status adds: where the request (its group) stands at
    ``now`` and the wait's deadline.

    ``request``: waiting, approved, rejected, expired (also once the deadline
    has passed, before the wait writes it) or cancelled; null for a group
    that cannot be read as one.
    """
    group = pair.group or {}
    state = str(group.get("state"))
    if group.get("kind") != approval_links.GROUP_KIND:
        request = None
    elif pair.past_deadline(now):
        request = STATES[EXPIRED]
    else:
        request = approval_links.DECISIONS.get(state) or STATES.get(state)
    return {"request": request, "deadline": rfc3339_or_none(pair.deadline)}


def status_of(state: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The status body: the state and the times known, RFC 3339 (null where unknown)."""
    return {"state": state, **{name: rfc3339_or_none(stored.get(name)) for name in TIME_FIELDS}}
