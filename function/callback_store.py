"""Store a callback in Firestore: one blind Commit decides and writes.

The happy path is one RPC, like the seed's single ``set``, and keeps every
check (docs/protocol.md, "One Commit"): the Commit's preconditions make the
decision (registration_layout.py explains the layout). Only when a precondition
fails (a retry, a conflict, a wrong token, an answer to a form, whose key
document the blind Commit cannot name) or the URL lacks what the blind
Commit needs (a registration from before the key layout, a page answer)
does the receiver read the callback document, decide (``decide``), check
the answer against the registration's form (a ``Judge``) and write with a
precondition on the version it read: optimistic concurrency, without a
transaction. Of two concurrent callbacks for one id exactly one is stored,
because the other's precondition then fails and its re-read sees RECEIVED.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions
from google.api_core import retry as retries
from google.cloud import firestore

import firestore_commit
from callback_request import Callback
from firestore_commit import CommitClient
from registration_layout import (
    CANCELLED,
    CONSUMED,
    EXPIRED,
    FORWARD_URL_FIELD,
    KEY_FIELD,
    RECEIVED,
    WAITING,
    key_document_id,
    parse_registered_at,
    rfc3339,
)

# Firestore calls are bounded so that a database we cannot reach turns into a
# 503 within seconds, instead of the client library's defaults (each call
# retried for up to 60 s, reads for 300 s) holding the caller's connection.
RPC_TIMEOUT_SECONDS = 2.0
RPC_RETRY = retries.Retry(
    initial=0.1,
    maximum=1.0,
    multiplier=2.0,
    timeout=4.0,
    predicate=retries.if_exception_type(
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.ResourceExhausted,
        exceptions.ServiceUnavailable,
    ),
)
# Rounds of read-decide-write when the document keeps changing under us.
ATTEMPTS = 5

# Errors that mean "Firestore is unreachable or overloaded right now": the
# caller should retry later (503), as opposed to a bug or misconfiguration.
TRANSIENT_ERRORS = (
    exceptions.RetryError,
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.ResourceExhausted,
    exceptions.Aborted,
)
# What a Commit raises when one of its preconditions fails: a document that
# must exist does not (NOT_FOUND), one that must not exists (ALREADY_EXISTS),
# or one changed since the version named (FAILED_PRECONDITION).
PRECONDITION_FAILED = (
    exceptions.NotFound,
    exceptions.AlreadyExists,
    exceptions.FailedPrecondition,
)


class ContentionError(exceptions.Aborted):
    """The document changed under every attempt (a 503: the caller retries)."""


class Outcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    FORBIDDEN = "forbidden"
    NOT_REGISTERED = "not_registered"
    # Already received, with another payload.
    CONFLICT = "conflict"
    # The same callback again after the workflow took it (a CONSUMED tombstone).
    ALREADY_DELIVERED = "already_delivered"
    # The workflow stopped waiting (an EXPIRED tombstone): 410 Gone.
    EXPIRED = "expired"
    # An operator cancelled the wait (python -m ops cancel: a CANCELLED
    # tombstone): 410 Gone too.
    CANCELLED = "cancelled"
    # The document is in a state this receiver does not know: written by
    # something else, or by a newer protocol.
    UNKNOWN_STATE = "unknown_state"
    # An answer to a registration with a form that the form does not take
    # (not one of its choices, or a comment over the limit): 422.
    INVALID_CHOICE = "invalid_choice"


def is_transient(error: BaseException) -> bool:
    """Whether Firestore being unavailable or contended caused this error (a 503)."""
    return isinstance(error, TRANSIENT_ERRORS)


def refusal(
    stored: Mapping[str, Any] | None, token: str | None, allow_unregistered: bool
) -> Outcome | None:
    """Why this caller may learn nothing about the stored document (None if absent), or None.

    A document with a token is a registration: only its token may answer it,
    or read its status, whatever its state (tombstones keep the token). A
    document without a token was stored by an unregistered callback.
    """
    if stored is None:
        return None if allow_unregistered else Outcome.NOT_REGISTERED
    expected = stored.get("token")
    if isinstance(expected, str) and expected:
        return None if token_matches(expected, token) else Outcome.FORBIDDEN
    if not allow_unregistered:
        # Answer as if nothing were there: without a registration there is
        # nothing this caller may learn about the document.
        return Outcome.NOT_REGISTERED
    return None


def decide(
    stored: Mapping[str, Any] | None, callback: Callback, allow_unregistered: bool
) -> Outcome:
    """What to do with `callback` given the stored document (None if absent)."""
    refused = refusal(stored, callback.token, allow_unregistered)
    if refused is not None:
        return refused
    if stored is None:
        return Outcome.STORED
    state = stored.get("state")
    same = stored.get("fingerprint") == callback.fingerprint
    if state == WAITING:
        return Outcome.STORED
    if state == RECEIVED:
        return Outcome.DUPLICATE if same else Outcome.CONFLICT
    if state == CONSUMED:
        # The tombstone keeps the fingerprint: a sender's retry is safe.
        return Outcome.ALREADY_DELIVERED if same else Outcome.CONFLICT
    if state == EXPIRED:
        return Outcome.EXPIRED
    if state == CANCELLED:
        return Outcome.CANCELLED
    return Outcome.UNKNOWN_STATE


def token_hash(token: str | None) -> str:
    """What an answer record kept of the token: enough to check it, not to use it."""
    return "sha256:" + hashlib.sha256((token or "").encode("utf-8")).hexdigest()


def token_matches(expected: Any, token: str | None) -> bool:
    """Constant-time comparison of a stored token (or token hash) with the request's."""
    return (
        isinstance(expected, str)
        and bool(expected)
        and token is not None
        and hmac.compare_digest(expected.encode("utf-8"), token.encode("utf-8"))
    )


def received_fields(callback: Callback, payload_json: str, now: datetime) -> dict[str, Any]:
    """The fields a stored callback sets (registration fields are kept)."""
    return {
        "state": RECEIVED,
        "receivedAt": now,
        "responded": True,
        "value": callback.value,
        "payload": payload_json,
        "fingerprint": callback.fingerprint,
    }


@dataclass(frozen=True)
class Recorded:
    """What ``record`` decided, and where to push the callback (push delivery)."""

    outcome: Outcome
    # The execution's callback endpoint to forward to, set only when this
    # request must forward: it stored the callback (or may have: see
    # ``record``). None for polling registrations and unregistered callbacks.
    forward_url: str | None = None
    # The callback document as read, when it was read (page answers show
    # what was answered); None on the one-Commit path.
    stored: Mapping[str, Any] | None = None
    # Firestore RPCs this request made: 1 on the happy path.
    firestore_calls: int = 0
    # With forward_url: the payload string the document holds and the
    # document's update time once it held it (the RECEIVED version, RFC 3339),
    # which the forward proves (callback_forward.forward_event).
    payload_json: str | None = None
    version: str | None = None


# Given the registration as read ({} if none): the fields to store for this
# callback (received_fields), None to store it as it came, or the Outcome
# that refuses it (INVALID_CHOICE, or NOT_REGISTERED for a page answer to a
# registration without a page). callback_intake.judge makes them.
Judge = Callable[[Mapping[str, Any]], dict[str, Any] | Outcome | None]
# The outcomes of a registration still answerable, or answered: the judge
# refuses what it would never take (422 before 409); a gone one is 410 first.
_JUDGED = (Outcome.STORED, Outcome.DUPLICATE, Outcome.ALREADY_DELIVERED, Outcome.CONFLICT)


@dataclass
class _Storing:
    """One ``record`` call: what it stores, and what it has done so far."""

    # Reads go through the high-level client, writes through ``commits``.
    client: firestore.Client
    commits: CommitClient
    collection: str
    callback: Callback
    # The fields a stored callback sets (received_fields).
    received: dict[str, Any]
    now: datetime
    ttl: timedelta
    allow_unregistered: bool
    calls: int = 0
    # A Commit failed without an answer (a timeout, say): it may have been
    # applied, so a stored callback with our fingerprint may be ours.
    ambiguous: bool = False

    def first_receipt(self) -> dict[str, Any]:
        """An unregistered callback's document: it expires like a registration."""
        return {**self.received, "createdAt": self.now, "expireAt": self.now + self.ttl}

    def name(self, document_id: str) -> str:
        """A document of the collection, as a write names it."""
        return self.commits.document_name(self.collection, document_id)

    def commit(self, writes: list[Any]) -> list[Any] | None:
        """Send ``writes`` in one Commit, once: their write results if applied; None if a
        precondition failed or no answer came.

        Never resent: the caller reads to find out what happened.
        """
        self.calls += 1
        try:
            return self.commits.commit(writes, RPC_TIMEOUT_SECONDS)
        except PRECONDITION_FAILED:
            return None
        except TRANSIENT_ERRORS:
            self.ambiguous = True
            return None


def record(
    client: firestore.Client,
    commits: CommitClient,
    collection: str,
    callback: Callback,
    payload_json: str,
    now: datetime,
    allow_unregistered: bool,
    ttl: timedelta,
    judge: Judge | None = None,
    blind: bool = True,
) -> Recorded:
    """Decide and write, in one Commit when the URL allows; raises on Firestore errors.

    ``judge`` checks the callback against the registration as read (its
    form's choices); the blind Commit, which reads nothing, can only store
    at a registration without a form (its key document's name says so:
    registration_layout.FORM_KEY_INFIX). ``blind=False`` reads first: a
    page answer, which needs the form anyway. (After the workflow took the
    callback, the page's "already answered" comes from the CONSUMED
    tombstone: no answer record is written any more, docs/protocol.md,
    "The page for people".)
    """
    storing = _Storing(
        client,
        commits,
        collection,
        callback,
        received_fields(callback, payload_json, now),
        now,
        ttl,
        allow_unregistered,
    )
    if blind:
        writes = _blind_commit(storing)
        results = None if writes is None else storing.commit(writes)
        if results is not None:
            forward_url = (callback.forward_param if callback.token else None) or None
            # The callback document's update is the blind Commit's last write.
            version = rfc3339(results[-1].update_time) if forward_url else None
            return Recorded(Outcome.STORED, forward_url, None, storing.calls, payload_json, version)
    return _read_decide_write(storing, judge)


def _blind_commit(storing: _Storing) -> list[Any] | None:
    """The one Commit that stores the callback if it may, or None if the URL cannot tell.

    Registered: delete the key document (must exist: it proves the token and
    the endpoint, and that nothing was stored since) and update the callback
    document if it is the version created at ``reg`` (this registration, not
    a later one of the same step). Unregistered: create the document.
    """
    callback = storing.callback
    document_id = callback.ids.document_id
    if callback.token:
        registered_at = parse_registered_at(callback.registered_at)
        if registered_at is None:
            return None
        key = key_document_id(document_id, callback.token, callback.forward_param or "")
        return [
            firestore_commit.delete(storing.name(key), must_exist=True),
            firestore_commit.update(storing.name(document_id), storing.received, registered_at),
        ]
    if storing.allow_unregistered:
        return [firestore_commit.create(storing.name(document_id), storing.first_receipt())]
    return None


def _read_decide_write(storing: _Storing, judge: Judge | None) -> Recorded:
    """Read the callback document, decide, and write if it is still the version read."""
    callback = storing.callback
    document = storing.client.collection(storing.collection).document(callback.ids.document_id)
    name = storing.name(document.id)
    for _ in range(ATTEMPTS):
        storing.calls += 1
        snapshot = document.get(retry=RPC_RETRY, timeout=RPC_TIMEOUT_SECONDS)
        stored = snapshot.to_dict() if snapshot.exists else None
        outcome = decide(stored, callback, storing.allow_unregistered)
        received = storing.received
        if judge is not None and outcome in _JUDGED:
            verdict = judge(stored or {})
            if isinstance(verdict, Outcome):
                outcome = verdict
            elif verdict is not None:
                received = verdict
        forward_url = _endpoint_of(stored)
        if outcome is Outcome.DUPLICATE and storing.ambiguous:
            # Our own Commit may have stored it without our hearing back:
            # forward it (a second forward of one callback is never read),
            # as stored and at the version read: the proof covers those.
            payload = (stored or {}).get("payload")
            stored_payload = payload if isinstance(payload, str) else None
            version = rfc3339(snapshot.update_time) if forward_url else None
            return Recorded(outcome, forward_url, stored, storing.calls, stored_payload, version)
        if outcome is not Outcome.STORED:
            return Recorded(outcome, None, stored, storing.calls)
        # The callback document's write comes first: its result is the version.
        if stored is None:
            writes = [firestore_commit.create(name, storing.first_receipt())]
        else:
            writes = [firestore_commit.update(name, received, snapshot.update_time)]
            key = stored.get(KEY_FIELD)
            if isinstance(key, str) and key:
                writes.append(firestore_commit.delete(storing.name(key)))
        results = storing.commit(writes)
        if results is not None:
            version = rfc3339(results[0].update_time) if forward_url else None
            payload_json = received["payload"]
            return Recorded(
                Outcome.STORED, forward_url, stored, storing.calls, payload_json, version
            )
    raise ContentionError(f"{document.id} changed under each of {ATTEMPTS} attempts to store it")


def read(reference: firestore.DocumentReference) -> firestore.DocumentSnapshot:
    """One bounded read (the page's GET)."""
    return reference.get(retry=RPC_RETRY, timeout=RPC_TIMEOUT_SECONDS)


def _endpoint_of(stored: Mapping[str, Any] | None) -> str | None:
    forward_url = (stored or {}).get(FORWARD_URL_FIELD)
    return forward_url if isinstance(forward_url, str) and forward_url else None
