"""Store a callback in Firestore: one transaction decides and writes.

The decision (`decide`) is a pure function of the stored document; the
transaction around it makes read-check-write atomic, so of two concurrent
callbacks for one id exactly one is stored (Firestore aborts the other's
commit and the client library reruns it, which then sees RECEIVED).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions, gapic_v1
from google.api_core import retry as retries
from google.cloud import firestore

from callback_request import Callback

WAITING = "WAITING"
RECEIVED = "RECEIVED"
# Where getCallbackURL records the execution's native callback endpoint.
FORWARD_URL_FIELD = "forwardUrl"
# Where getCallbackURL records the page's form (JSON text; "" for none).
FORM_FIELD = "form"
# The id of the record a page answer leaves beside its callback: "." cannot
# occur in a step, so it never names a callback document.
ANSWER_SUFFIX = ".answer"

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
# Rollback is best effort (an abandoned transaction expires by itself), so it
# must not add another full retry budget to a failing request.
ROLLBACK_TIMEOUT_SECONDS = 1.0
BOUNDED_RPCS: dict[str, tuple[retries.Retry | None, float]] = {
    "begin_transaction": (RPC_RETRY, RPC_TIMEOUT_SECONDS),
    "batch_get_documents": (RPC_RETRY, RPC_TIMEOUT_SECONDS),
    "run_query": (RPC_RETRY, RPC_TIMEOUT_SECONDS),
    # Never retried here: a commit whose answer was lost may have been
    # applied, and resending a transaction's commit then meets a finished
    # transaction (INVALID_ARGUMENT, a 500). Its timeout becomes a 503; the
    # caller's retry then finds the stored callback and gets 200.
    "commit": (None, RPC_TIMEOUT_SECONDS),
    "rollback": (None, ROLLBACK_TIMEOUT_SECONDS),
}
# Attempts of the whole transaction when it loses a race (ABORTED).
TRANSACTION_ATTEMPTS = 5

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


# What Firestore says (INVALID_ARGUMENT) when a transaction ended under us:
# the emulator's words, and Firestore's.
TRANSACTION_GONE_MESSAGES = (
    "transaction is not active",
    "transaction has expired or is no longer valid",
)


class Outcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    FORBIDDEN = "forbidden"
    NOT_REGISTERED = "not_registered"
    # Already received, with another payload.
    CONFLICT = "conflict"
    # The document is in a state this receiver does not know (neither WAITING
    # nor RECEIVED): written by something else, or by a newer protocol.
    UNKNOWN_STATE = "unknown_state"
    # An answer from the page for people that is not one of its choices.
    INVALID_CHOICE = "invalid_choice"


class _BoundedFirestoreApi:
    """The generated Firestore API client, with our retry and timeout as defaults.

    Transactions call begin/commit/rollback without retry or timeout
    arguments, so the only place to bound them is the API object they use.
    """

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if name not in BOUNDED_RPCS:
            return attribute
        retry, timeout = BOUNDED_RPCS[name]
        return _with_defaults(attribute, retry, timeout)


def _with_defaults(rpc: Callable[..., Any], retry: Any, timeout: float) -> Callable[..., Any]:
    @functools.wraps(rpc)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("retry", gapic_v1.method.DEFAULT) is gapic_v1.method.DEFAULT:
            kwargs["retry"] = retry
        if kwargs.get("timeout", gapic_v1.method.DEFAULT) is gapic_v1.method.DEFAULT:
            kwargs["timeout"] = timeout
        return rpc(*args, **kwargs)

    return bounded


class BoundedClient(firestore.Client):
    """A Firestore client whose every call gives up within a few seconds."""

    _bounded_api: _BoundedFirestoreApi | None = None

    @property
    def _firestore_api(self) -> Any:
        if self._bounded_api is None:
            self._bounded_api = _BoundedFirestoreApi(super()._firestore_api)
        return self._bounded_api


def is_transient(error: BaseException) -> bool:
    """Whether Firestore being unavailable or contended caused this error (a 503).

    Judged by the primary error only (``primary_error``): a bug whose
    rollback then timed out is the bug, a 500, not a 503 that callers would
    retry forever.
    """
    primary = primary_error(error)
    if isinstance(primary, TRANSIENT_ERRORS) or _transaction_gone(primary):
        return True
    # The client library's "failed after N attempts": every attempt lost a race.
    return isinstance(primary, ValueError) and isinstance(primary.__cause__, exceptions.Aborted)


def primary_error(error: BaseException) -> BaseException:
    """The error that made the request fail, not one raised while handling it.

    When the function inside a transaction fails, the client library rolls
    back; if the rollback fails too, that error is raised with the first as
    its ``__context__``. Explicit wrapping (``raise X from Y``) is kept: X says
    what failed.
    """
    seen = {id(error)}
    while (
        error.__cause__ is None
        and not error.__suppress_context__
        and error.__context__ is not None
        and id(error.__context__) not in seen
    ):
        error = error.__context__
        seen.add(id(error))
    return error


def _transaction_gone(error: BaseException) -> bool:
    """INVALID_ARGUMENT because our transaction ended under us.

    Firestore answers so when a transaction expired or was already finished
    (say, a commit whose first answer was lost under load). Whether that
    commit was applied is unknown, so the caller must retry (503): its retry
    finds the stored callback and gets 200, or stores it. Seen in the full
    ingest benchmark at 1 in 5,000 callbacks. Only the known messages count:
    any other INVALID_ARGUMENT is a bug (500).
    """
    message = str(error).lower()
    return isinstance(error, exceptions.InvalidArgument) and any(
        known in message for known in TRANSACTION_GONE_MESSAGES
    )


def decide(
    stored: Mapping[str, Any] | None, callback: Callback, allow_unregistered: bool
) -> Outcome:
    """What to do with `callback` given the stored document (None if absent).

    A document with a token is a registration: only its token may answer it.
    A document without a token was stored by an unregistered callback.
    """
    if stored is None:
        return Outcome.STORED if allow_unregistered else Outcome.NOT_REGISTERED
    expected = stored.get("token")
    if isinstance(expected, str) and expected:
        if callback.token is None or not hmac.compare_digest(
            expected.encode("utf-8"), callback.token.encode("utf-8")
        ):
            return Outcome.FORBIDDEN
    elif not allow_unregistered:
        # Answer as if nothing were there: without a registration there is
        # nothing this caller may learn about the document.
        return Outcome.NOT_REGISTERED
    state = stored.get("state")
    if state == RECEIVED:
        same = stored.get("fingerprint") == callback.fingerprint
        return Outcome.DUPLICATE if same else Outcome.CONFLICT
    if state == WAITING:
        return Outcome.STORED
    return Outcome.UNKNOWN_STATE


def token_hash(token: str | None) -> str:
    """What an answer record keeps of the token: enough to check it, not to use it."""
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
    # The registration's native callback endpoint (getCallbackURL, push
    # delivery); None for polling registrations and unregistered callbacks.
    forward_url: str | None = None
    # The registration as read (page answers show what was answered).
    stored: Mapping[str, Any] | None = None


def record(
    client: firestore.Client,
    collection: str,
    callback: Callback,
    payload_json: str,
    now: datetime,
    allow_unregistered: bool,
    ttl: timedelta,
    page_choices: Callable[[Mapping[str, Any]], tuple[str, ...] | None] | None = None,
) -> Recorded:
    """Decide and write in one transaction; raises on Firestore errors.

    ``page_choices`` marks an answer from the page for people: given the
    stored registration it returns the values the page offers (None: it has
    no page), and the callback's value must be one of them. A stored page
    answer also leaves a small record beside the callback (ANSWER_SUFFIX),
    so the page can say "already answered" after the workflow has consumed it.
    """
    reference = client.collection(collection).document(callback.ids.document_id)
    answer = client.collection(collection).document(callback.ids.document_id + ANSWER_SUFFIX)

    @firestore.transactional
    def decide_and_write(transaction: firestore.Transaction) -> Recorded:
        snapshot = reference.get(transaction=transaction)
        stored = snapshot.to_dict() if snapshot.exists else None
        outcome = decide(stored, callback, allow_unregistered)
        if page_choices is not None and outcome in (Outcome.STORED, Outcome.DUPLICATE):
            choices = page_choices(stored or {})
            if choices is None:
                outcome = Outcome.NOT_REGISTERED
            elif callback.value not in choices:
                outcome = Outcome.INVALID_CHOICE
        if outcome is Outcome.STORED and page_choices is not None:
            transaction.set(
                answer,
                {
                    "value": callback.value,
                    FORM_FIELD: (stored or {}).get(FORM_FIELD),
                    "answeredAt": now,
                    "tokenHash": token_hash(callback.token),
                    "expireAt": (stored or {}).get("expireAt") or now + ttl,
                },
            )
        if outcome is Outcome.STORED:
            fields = received_fields(callback, payload_json, now)
            if stored is None:
                fields |= {"createdAt": now, "expireAt": now + ttl}
                transaction.create(reference, fields)
            else:
                transaction.update(reference, fields)
        forward_url = (stored or {}).get(FORWARD_URL_FIELD)
        return Recorded(
            outcome,
            forward_url if isinstance(forward_url, str) and forward_url else None,
            stored,
        )

    return decide_and_write(client.transaction(max_attempts=TRANSACTION_ATTEMPTS))
