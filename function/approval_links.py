"""Approval links: one registration per approver, each answer judged against its group.

getApprovalURLs (workflow/callbacks.yaml) writes a group document
``{runID}_{step}`` (``kind: approval``: the approvers' labels, the form, the
push endpoint; a token never handed out) and one link per approver,
``{runID}_{step}.approver.{i}`` (``kind: approval-link``, its own token, the
same form and endpoint). waitForApprovals decides the group (APPROVED,
REJECTED) or gives up (EXPIRED); an operator may cancel it (CANCELLED).

An answer (the URL's ``approver`` parameter) reads the link and the group
in one batch get, decides (``decide``), and writes the link only: no
document is written by two approvers. The write has a precondition on the
link's version read, so of two racing answers on one link one is stored and
the other re-reads it as answered. A stored answer (RECEIVED) is forwarded
like a single callback, with ``approver``; one after the decision is
recorded (LATE) and refused with 409; nothing ever reopens the group.
docs/protocol.md, "Approvals"; the page is approval_link_page.py.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import flask

import callback_intake
import callback_store
import firestore_commit
import form_answer
from approval_page import Form
from callback_body import BodyError
from callback_forward import forward_event
from callback_request import BadRequest, CallbackIds, header, parse_callback
from callback_store import Outcome
from receiver_config import Runtime
from registration_layout import (
    CANCELLED,
    CANCELLED_AT_FIELD,
    CONSUMED,
    EXPIRED,
    EXPIRED_AT_FIELD,
    FORWARD_URL_FIELD,
    KEY_FIELD,
    LATE,
    RECEIVED,
    TOKEN_PARAM,
    WAITING,
    link_document_id,
    rfc3339,
    rfc3339_or_none,
)
from replies import Reply, json_response

GROUP_KIND = "approval"
LINK_KIND = "approval-link"
# Written on the group by waitForApprovals when it starts.
DEADLINE_FIELD = "deadline"
APPROVED = "APPROVED"
REJECTED = "REJECTED"
DECISIONS = {APPROVED: "approved", REJECTED: "rejected"}
GONE_STATES = (EXPIRED, CANCELLED)
# A link that has answered: a second answer is a duplicate or a conflict.
ANSWERED_STATES = (RECEIVED, CONSUMED, LATE)
# The answers the wait can count (LATE ones never count).
COUNTED_STATES = (RECEIVED, CONSUMED)
# userAgentHash and sourceHash: the first hex characters of an HMAC keyed by
# the link's token. Enough to tell two answers' sources apart, not to
# recover an address (and nothing without the token).
HASH_HEX_CHARS = 16
_RECORD_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_LOG_JSON = json.JSONEncoder(ensure_ascii=False)


class Verdict(enum.Enum):
    """What an answer on a link comes to; the value is the log line's outcome."""

    NOT_REGISTERED = "not_registered"
    FORBIDDEN = "forbidden"
    GONE = "expired"
    UNKNOWN_STATE = "unknown_state"
    INVALID = "invalid_choice"
    # This link answered already: with the same choice (200, nothing
    # written), or with another (409).
    ALREADY_ANSWERED = "already_answered"
    OTHER_CHOICE = "conflict"
    # The group is decided: recorded on the link, not counted (409).
    LATE = "late"
    STORE = "stored"


@dataclass(frozen=True)
class Pair:
    """A link and its group as one batch get read them (None: absent)."""

    link: dict[str, Any] | None
    link_version: Any
    group: dict[str, Any] | None

    @property
    def form(self) -> Form | None:
        return form_answer.form_of(self.link)

    @property
    def label(self) -> str:
        return str((self.link or {}).get("approver") or "")

    @property
    def decision(self) -> str | None:
        """approved / rejected once the wait decided, else None."""
        return DECISIONS.get(str((self.group or {}).get("state")))

    @property
    def deadline(self) -> datetime | None:
        """The wait's deadline (written when waitForApprovals starts), or None before."""
        deadline = (self.group or {}).get(DEADLINE_FIELD)
        return deadline if isinstance(deadline, datetime) else None

    def past_deadline(self, now: datetime) -> bool:
        """The group still waits but its deadline has passed.

        The wait times out at its read at the deadline and then marks the
        group EXPIRED; an answer stored in between would be answered 200 and
        never counted. From the deadline on, a link is therefore as gone as
        an EXPIRED group (410), on every path.
        """
        deadline = self.deadline
        return (
            (self.group or {}).get("state") == WAITING and deadline is not None and now >= deadline
        )

    def gone_field(self) -> tuple[str, Any]:
        """The 410's time: (field name, value), cancelledAt or expiredAt (else the deadline)."""
        for document in (self.group or {}, self.link or {}):
            if document.get("state") == CANCELLED:
                return CANCELLED_AT_FIELD, document.get(CANCELLED_AT_FIELD)
        for document in (self.group or {}, self.link or {}):
            if document.get("state") == EXPIRED:
                return EXPIRED_AT_FIELD, document.get(EXPIRED_AT_FIELD)
        return EXPIRED_AT_FIELD, self.deadline


def standing(pair: Pair, token: str | None, now: datetime) -> Verdict | None:
    """Why nothing can be answered (or shown) on this link at ``now``, or None.

    As for a single callback: 404 and 403 before anything else, so a wrong
    token learns nothing; then the group's end or its deadline (410).
    """
    link, group = pair.link, pair.group
    if link is None or link.get("kind") != LINK_KIND:
        return Verdict.NOT_REGISTERED
    if not callback_store.token_matches(link.get("token"), token):
        return Verdict.FORBIDDEN
    if group is None or group.get("kind") != GROUP_KIND or pair.form is None:
        return Verdict.NOT_REGISTERED
    if group.get("state") in GONE_STATES or link.get("state") in GONE_STATES:
        return Verdict.GONE
    if pair.past_deadline(now):
        return Verdict.GONE
    return None


def decide(pair: Pair, token: str | None, answer: form_answer.Answer, now: datetime) -> Verdict:
    """What ``answer`` on this link comes to at ``now`` (docs/protocol.md, "Approvals")."""
    refused = standing(pair, token, now)
    if refused is not None:
        return refused
    link, group = pair.link or {}, pair.group or {}
    form = pair.form
    if form is None or form_answer.problem(answer, form) is not None:
        return Verdict.INVALID
    if link.get("state") in ANSWERED_STATES:
        same = link.get("value") == answer.choice
        return Verdict.ALREADY_ANSWERED if same else Verdict.OTHER_CHOICE
    if link.get("state") != WAITING:
        return Verdict.UNKNOWN_STATE
    if pair.decision is not None:
        return Verdict.LATE
    return Verdict.STORE if group.get("state") == WAITING else Verdict.UNKNOWN_STATE


@dataclass
class LinkAnswer:
    """One answer on a link: what it came to, and what was read and written for it."""

    verdict: Verdict
    pair: Pair
    answer: form_answer.Answer
    # With STORE or LATE: the record written, and the link's version once it
    # held it (RFC 3339), which the forward proves.
    payload_json: str | None = None
    version: str | None = None
    firestore_calls: int = 0
    log: dict[str, Any] = field(default_factory=dict)


def read_pair(runtime: Runtime, ids: CallbackIds) -> Pair:
    """The link and its group, in one batch get (503 if Firestore is unavailable)."""
    link_id = ids.document_id
    snapshots = _get_all(runtime, [link_id, ids.group_id])
    link, group = snapshots.get(link_id), snapshots.get(ids.group_id)
    return Pair(
        link=link.to_dict() if link is not None and link.exists else None,
        link_version=link.update_time if link is not None and link.exists else None,
        group=group.to_dict() if group is not None and group.exists else None,
    )


def read_links(runtime: Runtime, pair: Pair, ids: CallbackIds) -> list[dict[str, Any] | None]:
    """The group's links in approver order (None: absent): the others in one batch get."""
    count = approver_count(pair.group or {})
    others = [index for index in range(count) if index != ids.approver]
    snapshots = _get_all(runtime, [link_document_id(ids.group_id, i) for i in others])
    links: list[dict[str, Any] | None] = []
    for index in range(count):
        snapshot = snapshots.get(link_document_id(ids.group_id, index))
        if index == ids.approver:
            links.append(pair.link)
        else:
            links.append(snapshot.to_dict() if snapshot is not None and snapshot.exists else None)
    return links


def record(
    request: flask.Request,
    ids: CallbackIds,
    runtime: Runtime,
    answer: form_answer.Answer,
    now: datetime,
) -> LinkAnswer:
    """Read, decide and (for STORE or LATE) write the link, until the version read holds.

    The write is the link alone, with a precondition on its version read:
    two answers racing on one link store one, and the other re-reads it
    answered. A Commit without an answer is never resent: the re-read tells
    whether it was applied (the link then holds this very record).
    """
    token = request.args.get(TOKEN_PARAM) or None
    calls = 0
    # The record of a Commit that got no answer: it may have been applied.
    unanswered: str | None = None
    for _ in range(callback_store.ATTEMPTS):
        pair = read_pair(runtime, ids)
        calls += 1
        if unanswered is not None and (pair.link or {}).get("payload") == unanswered:
            return _applied_after_all(pair, answer, calls)
        verdict = decide(pair, token, answer, now)
        if verdict not in (Verdict.STORE, Verdict.LATE):
            return LinkAnswer(verdict, pair, answer, firestore_calls=calls)
        state = RECEIVED if verdict is Verdict.STORE else LATE
        fields = _record_fields(request, runtime, pair, answer, state, now)
        calls += 1
        try:
            results = runtime.commits.commit(
                _writes(runtime, ids, pair, fields), callback_store.RPC_TIMEOUT_SECONDS
            )
        except callback_store.PRECONDITION_FAILED:
            continue
        except callback_store.TRANSIENT_ERRORS:
            unanswered = fields["payload"]
            continue
        version = rfc3339(results[0].update_time)
        return LinkAnswer(verdict, pair, answer, fields["payload"], version, calls)
    raise Reply(503, "the callback store is unavailable, retry later", "unavailable")


def _applied_after_all(pair: Pair, answer: form_answer.Answer, calls: int) -> LinkAnswer:
    """Our unanswered Commit was applied (the link holds its record, answeredAt to the
    microsecond): stored, and forwarded at the version read while still RECEIVED (once
    the wait took it, CONSUMED, nobody needs the forward); or LATE."""
    link = pair.link or {}
    if link.get("state") == LATE:
        return LinkAnswer(Verdict.LATE, pair, answer, firestore_calls=calls)
    payload = link.get("payload")
    version = rfc3339(pair.link_version) if link.get("state") == RECEIVED else None
    return LinkAnswer(Verdict.STORE, pair, answer, payload, version, calls)


def forward(result: LinkAnswer, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]) -> None:
    """Push a stored answer to the group's endpoint: a single callback's forward + approver."""
    link = result.pair.link or {}
    target = link.get(FORWARD_URL_FIELD)
    token = link.get("token")
    if result.verdict is not Verdict.STORE or not (target and isinstance(target, str)):
        return
    if result.payload_json is None or result.version is None or not isinstance(token, str):
        return
    event: dict[str, Any] = forward_event(
        ids.run_id, ids.step, result.payload_json, result.version, token
    )
    event["approver"] = ids.approver
    log.update(runtime.forwarder.forward(target, event).log_fields())


def log_answer(result: LinkAnswer, ids: CallbackIds, status: int) -> None:
    """The audit line of a recorded answer (stored or LATE): no token, no comment."""
    if result.verdict not in (Verdict.STORE, Verdict.LATE):
        return
    entry = {
        "severity": "INFO",
        "message": f"approval answer {result.verdict.value} ({status})",
        "event": "approval_answer",
        "runID": ids.run_id,
        "step": ids.step,
        "approver": result.pair.label,
        "approverIndex": ids.approver,
        "choice": result.answer.choice,
        "counted": result.verdict is Verdict.STORE,
        "status": status,
    }
    sys.stdout.write(_LOG_JSON.encode(entry) + "\n")
    sys.stdout.flush()


def counted_approvals(form: Form, links: Sequence[Mapping[str, Any] | None]) -> int:
    """k: links whose answer the wait can count and that is not a reject choice."""
    return sum(
        1
        for link in links
        if link is not None
        and link.get("state") in COUNTED_STATES
        and not form.is_reject(link.get("value"))
    )


def quorum(group: Mapping[str, Any]) -> int:
    """M: the group's quorum once the wait started, else every approver."""
    value = group.get("quorum")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return approver_count(group)


def approver_count(group: Mapping[str, Any]) -> int:
    approvers = group.get("approvers")
    return len(approvers) if isinstance(approvers, list) else 0


# --- the machine path ------------------------------------------------------------------
def answer_machine(
    request: flask.Request, ids: CallbackIds, runtime: Runtime, log: dict[str, Any]
) -> tuple[str, int, flask.Response]:
    """(outcome, status, JSON) for a machine's answer on a link: value and comment in the
    query, or a JSON or form body (form_answer), on any machine method."""
    now = datetime.now(UTC)
    body = callback_intake.decoded_body(request, runtime.config.max_body_bytes)
    answer = answer_in(request, ids, body, now)
    result = record(request, ids, runtime, answer, now)
    log["firestoreCalls"] = result.firestore_calls
    status, reply = machine_reply(result, ids)
    forward(result, ids, runtime, log)
    log_answer(result, ids, status)
    return result.verdict.value, status, json_response(reply, status)


def answer_in(
    request: flask.Request, ids: CallbackIds, body: bytes, now: datetime, choice: str | None = None
) -> form_answer.Answer:
    """The answer a request carries, read as a callback's payload is (400 if it cannot be).

    ``choice``: the page's button (its form's ``choice`` field).
    """
    try:
        callback = parse_callback(request, ids, body, now, value=choice)
    except (BadRequest, BodyError) as error:
        raise Reply(400, str(error), "bad_request") from None
    return form_answer.answer_of(callback.payload)


def machine_reply(result: LinkAnswer, ids: CallbackIds) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of an answer on a link (refusals as a single callback's)."""
    verdict, pair = result.verdict, result.pair
    base: dict[str, Any] = {"runID": ids.run_id, "step": ids.step, "approver": ids.approver}
    if verdict is Verdict.STORE:
        return 200, {"status": "received", **base}
    if verdict is Verdict.ALREADY_ANSWERED:
        link = pair.link or {}
        counted = link.get("state") in COUNTED_STATES
        answered = rfc3339_or_none(link.get("answeredAt"))
        return 200, {
            "status": "already_answered",
            **base,
            "answeredAt": answered,
            "counted": counted,
        }
    if verdict is Verdict.OTHER_CHOICE:
        return 409, {"error": "this approver already answered with another choice"}
    if verdict is Verdict.LATE:
        error = (
            f"this request was already decided: {pair.decision}; "
            "the answer was recorded but did not count"
        )
        return 409, {"error": error, "status": "decided", "decision": pair.decision, **base}
    if verdict is Verdict.INVALID:
        form = pair.form
        problem = form_answer.problem(result.answer, form) if form else None
        allowed = list(form.values) if form else []
        return 422, {"error": problem or "not an answer this form takes", "allowed": allowed}
    if verdict is Verdict.GONE:
        name, when = pair.gone_field()
        error = (
            "this approval was cancelled"
            if name == CANCELLED_AT_FIELD
            else "the workflow stopped waiting for this approval"
        )
        return 410, {"error": error, name: rfc3339_or_none(when)}
    status, message = callback_intake.REFUSALS[_REFUSAL_OUTCOMES[verdict]]
    return status, {"error": message}


_REFUSAL_OUTCOMES = {
    Verdict.NOT_REGISTERED: Outcome.NOT_REGISTERED,
    Verdict.FORBIDDEN: Outcome.FORBIDDEN,
    Verdict.UNKNOWN_STATE: Outcome.UNKNOWN_STATE,
}


# --- Firestore -------------------------------------------------------------------------
def _get_all(runtime: Runtime, document_ids: Sequence[str]) -> dict[str, Any]:
    """Snapshots by document id, from one bounded batch get; 503 if Firestore is unavailable."""
    collection = runtime.client.collection(runtime.config.collection)
    references = [collection.document(document_id) for document_id in document_ids]
    try:
        snapshots = runtime.client.get_all(
            references,
            retry=callback_store.RPC_RETRY,
            timeout=callback_store.RPC_TIMEOUT_SECONDS,
        )
        return {snapshot.id: snapshot for snapshot in snapshots}
    except Exception as error:
        if callback_store.is_transient(error):
            message = "the callback store is unavailable, retry later"
            raise Reply(503, message, "unavailable") from error
        raise


def _record_fields(
    request: flask.Request,
    runtime: Runtime,
    pair: Pair,
    answer: form_answer.Answer,
    state: str,
    now: datetime,
) -> dict[str, Any]:
    """The link's record: state, the payload the wait returns, when, and hashed sources."""
    token = str((pair.link or {}).get("token"))
    answered_at = now.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    payload = {
        "value": answer.choice,
        "comment": answer.comment,
        "approver": pair.label,
        "answeredAt": answered_at,
    }
    return {
        "state": state,
        "value": answer.choice,
        "payload": _RECORD_JSON.encode(payload),
        "receivedAt": now,
        "answeredAt": now,
        "userAgentHash": source_hash(token, header(request, "User-Agent") or ""),
        "sourceHash": source_hash(token, _source_address(request, runtime)),
    }


def _writes(runtime: Runtime, ids: CallbackIds, pair: Pair, fields: dict[str, Any]) -> list[Any]:
    """The link's update at the version read (first: its result is the version), and the
    delete of its key document, as a single registration's read path deletes it."""
    collection = runtime.config.collection
    name = runtime.commits.document_name(collection, ids.document_id)
    writes = [firestore_commit.update(name, fields, pair.link_version)]
    key = (pair.link or {}).get(KEY_FIELD)
    if isinstance(key, str) and key:
        writes.append(firestore_commit.delete(runtime.commits.document_name(collection, key)))
    return writes


def source_hash(token: str, text: str) -> str:
    """HMAC-SHA256 of ``text`` keyed by the link's token, first HASH_HEX_CHARS hex characters."""
    digest = hmac.new(token.encode("utf-8"), text.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:HASH_HEX_CHARS]


def _source_address(request: flask.Request, runtime: Runtime) -> str:
    """The caller's address: on Cloud Run the first X-Forwarded-For hop, else the peer's."""
    forwarded = header(request, "X-Forwarded-For") if runtime.config.on_cloud_run else None
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.remote_addr or ""
