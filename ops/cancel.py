"""python -m ops cancel: end a wait on purpose (the workflow gets an error, a late callback 410).

The registration's callback document ``{runID}_{step}`` becomes a CANCELLED
tombstone (``cancelledAt``, ``cancelReason``; everything else stays until
Firestore's TTL, as for EXPIRED), written with a precondition on the version
read: if the receiver stores a callback or the workflow takes one in
between, the write is refused and the decision is made again on a new read.
So a callback the workflow already took is never cancelled, and one that
arrived but was not taken (RECEIVED) is cancelled and never delivered.

With push delivery the waiting execution is then told at once: a cancel
event ``{"event": "cancel", "runID", "step"}`` is POSTed to the execution's
Workflows callback endpoint (the registration's ``forwardUrl``). The event
proves nothing (anyone who may send to the endpoint could post one): the
wait only reads Firestore on it, and ends because the document says
CANCELLED. If the POST fails, the wait still sees CANCELLED on its next
read, at the end of its push slice. docs/protocol.md, "Cancelling a wait".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from google.api_core import exceptions as google_errors
from google.api_core import retry as retries
from google.auth import exceptions as auth_errors
from google.cloud import firestore

from ops.errors import OpsError

CANCELLED = "CANCELLED"
CANCELLABLE = ("WAITING", "RECEIVED")
# An approval group (getApprovalURLs) its wait already decided.
DECIDED_STATES = ("APPROVED", "REJECTED")
CANCELLED_AT_FIELD = "cancelledAt"
CANCEL_REASON_FIELD = "cancelReason"
# Rounds of read-decide-write while the document keeps changing under us.
ATTEMPTS = 5

# Where a deployed stack's forwardUrl points: the Workflow Executions API's
# sendHttpCallback, which needs workflows.callbacks.send and the
# cloud-platform scope
# (https://cloud.google.com/workflows/docs/reference/executions/rest/v1/projects.locations.workflows.executions.callbacks/sendHttpCallback).
GOOGLE_CALLBACKS_ORIGIN = "https://workflowexecutions.googleapis.com"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
POST_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Cancellation:
    """What ``cancel`` found and did.

    ``outcome``: ``cancelled`` (written now), ``already_cancelled``, or a
    refusal: ``consumed``, ``expired``, ``decided`` (an approval), ``not_registered``,
    ``unknown_state``.
    """

    outcome: str
    # The state found (lower case), before a write.
    state: str | None = None
    cancelled_at: datetime | None = None
    reason: str | None = None
    received_at: datetime | None = None
    # The execution's callback endpoint (push), "" for poll.
    forward_url: str = ""

    @property
    def succeeded(self) -> bool:
        return self.outcome in ("cancelled", "already_cancelled")


def cancel(
    collection: firestore.CollectionReference,
    run_id: str,
    step: str,
    reason: str,
    *,
    timeout: float = 30.0,
) -> Cancellation:
    """Mark ``{run_id}_{step}`` CANCELLED if it is still open; idempotent; never reads the token.

    ``timeout`` bounds each call, its retries included (the client library's
    default would retry an unreachable emulator for 300 s).
    """
    retry = retries.Retry(initial=0.2, maximum=2.0, multiplier=2.0, timeout=timeout)
    document = collection.document(f"{run_id}_{step}")
    for _ in range(ATTEMPTS):
        snapshot = document.get(retry=retry, timeout=timeout)
        found = _decided(snapshot)
        if found is not None:
            return found
        fields = snapshot.to_dict() or {}
        try:
            written = document.update(
                {
                    "state": CANCELLED,
                    # Firestore's clock, not this machine's: the same clock
                    # as every other time in the document.
                    CANCELLED_AT_FIELD: firestore.SERVER_TIMESTAMP,
                    CANCEL_REASON_FIELD: reason,
                },
                option=firestore.Client.write_option(last_update_time=snapshot.update_time),
                retry=retry,
                timeout=timeout,
            )
        except (google_errors.FailedPrecondition, google_errors.NotFound):
            continue  # changed (a callback stored or taken) or removed since the read
        return Cancellation(
            "cancelled",
            state=str(fields.get("state")).lower(),
            # A server timestamp is the write's commit time, its update time.
            cancelled_at=written.update_time,
            reason=reason,
            received_at=fields.get("receivedAt"),
            forward_url=_forward_url(fields),
        )
    raise OpsError(
        f"{run_id}_{step} changed under each of {ATTEMPTS} attempts to cancel it",
        "run the same command again: callbacks are arriving for it right now",
    )


def _decided(snapshot: firestore.DocumentSnapshot) -> Cancellation | None:
    """The answer when the document as read decides it without a write, else None."""
    if not snapshot.exists:
        return Cancellation("not_registered")
    fields = snapshot.to_dict() or {}
    state = fields.get("state")
    shown = str(state).lower()
    if state in CANCELLABLE:
        return None
    if state == CANCELLED:
        return Cancellation(
            "already_cancelled",
            state=shown,
            cancelled_at=fields.get(CANCELLED_AT_FIELD),
            reason=fields.get(CANCEL_REASON_FIELD),
            forward_url=_forward_url(fields),
        )
    if state == "CONSUMED":
        return Cancellation("consumed", state=shown, received_at=fields.get("receivedAt"))
    if state == "EXPIRED":
        return Cancellation("expired", state=shown)
    if state in DECIDED_STATES:
        return Cancellation("decided", state=shown)
    return Cancellation("unknown_state", state=shown)


def _forward_url(fields: dict[str, Any]) -> str:
    value = fields.get("forwardUrl")
    return value if isinstance(value, str) else ""


def cancel_event(run_id: str, step: str) -> dict[str, str]:
    """What the wait gets on its endpoint: an unproven hint to read Firestore now."""
    return {"event": "cancel", "runID": run_id, "step": step}


def endpoint_problem(url: str, local: bool) -> str | None:
    """Why the operator's request must not go to ``url``, or None.

    The URL comes from Firestore, so it is checked before credentials go
    with it: Google's callback endpoint for a deployed stack (the user's
    OAuth token), loopback for ``--local`` (the local stand-in's fixed token).
    """
    parts = urlsplit(url)
    if local:
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
            return f"not the local callback API on loopback: {url}"
        return None
    if not url.startswith(GOOGLE_CALLBACKS_ORIGIN + "/v1/projects/") or parts.query:
        return f"not a Workflows callback endpoint ({GOOGLE_CALLBACKS_ORIGIN}/v1/projects/...)"
    if "/executions/" not in parts.path or "/callbacks/" not in parts.path:
        return "not a Workflows callback endpoint (no /executions/.../callbacks/...)"
    return None


def send_cancel_event(url: str, event: dict[str, str], local: bool) -> str | None:
    """POST the cancel event to the execution's callback endpoint: None if it was taken,
    else why not (one line, with what it means)."""
    problem = endpoint_problem(url, local)
    if problem is not None:
        return f"the registration's endpoint was not used: {problem}"
    try:
        session = _local_session() if local else _google_session()
    except OpsError as error:
        return f"{error.what} ({error.fix})"
    try:
        response = session.post(
            url,
            data=json.dumps(event),
            headers={"Content-Type": "application/json"},
            timeout=POST_TIMEOUT_SECONDS,
        )
    except requests.RequestException as error:
        return f"the callback endpoint did not answer: {type(error).__name__}"
    except auth_errors.GoogleAuthError as error:
        return (
            f"your Google credentials could not be used ({type(error).__name__}): "
            "run gcloud auth application-default login"
        )
    finally:
        session.close()
    if response.ok:
        return None
    return _refusal(response.status_code)


def _refusal(status: int) -> str:
    if status == 404:
        return (
            "the callback endpoint is gone (404): the execution has finished, or is no "
            "longer waiting on this endpoint"
        )
    if status in (401, 403):
        return (
            f"your credentials may not send to the execution's callback endpoint ({status}): "
            "that needs workflows.callbacks.send (roles/workflows.invoker has it)"
        )
    return f"the callback endpoint answered {status}"


def _google_session() -> requests.Session:
    # Imported here: --local needs no Google credentials.
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except auth_errors.DefaultCredentialsError:
        raise OpsError(
            "no Google credentials to send the cancel event with",
            "gcloud auth application-default login",
        ) from None
    return AuthorizedSession(credentials)


def _local_session() -> requests.Session:
    # The local stand-in of the callback endpoints (local/callback_api.py)
    # takes a fixed bearer token instead of Google credentials; it is only
    # ever sent to loopback (endpoint_problem).
    from local.callback_api import LOCAL_FORWARD_TOKEN

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {LOCAL_FORWARD_TOKEN}"
    return session
