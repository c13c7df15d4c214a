"""What `verify` needs of a deployment, and what both kinds share.

A deployment starts the verification workflow, tells how an execution is
doing, reads the registration the execution made, and reads the receiver's
log lines. ops/cloud.py implements it on Google Cloud, ops/local_target.py
on `python -m local`'s stack; ops/verify.py drives either, so the suite
tests the same procedure a user runs against a real stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from google.cloud import firestore

from local.registration import Registration, rfc3339

# Execution states, as Workflows names them (executions_v1.Execution.State).
ACTIVE = "ACTIVE"
QUEUED = "QUEUED"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
# Where getCallbackURL records what verify needs to rebuild the URL.
TOKEN_FIELD = "token"
FORWARD_URL_FIELD = "forwardUrl"
FORM_FIELD = "form"
PAGE_VIEW = "view=page"


@dataclass(frozen=True)
class ExecutionStatus:
    """One execution as last seen. ``ended_at`` is a Unix time, None while active."""

    state: str
    result: Any = None
    error: str | None = None
    ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in (ACTIVE, QUEUED)


class Deployment(Protocol):
    """A stack `verify` can run against."""

    description: str
    function_url: str
    # "push", "poll" or "unknown": how the stack's waits learn of callbacks.
    delivery: str

    def start(self, argument: dict[str, Any]) -> str:
        """Start the verification workflow; return its execution id (the runID)."""

    def status(self, run_id: str) -> ExecutionStatus: ...

    def registration_url(self, run_id: str, step: str) -> str | None:
        """The callback URL the execution registered for ``step``, or None (not yet)."""

    def receiver_log(self, run_id: str) -> list[dict[str, Any]]:
        """The receiver's structured log lines about ``run_id``, newest last."""

    def stop(self, run_id: str) -> None:
        """End a run that verify gave up on, so it does not linger."""


class RegistrationReader:
    """Rebuilds a callback URL from the registration in Firestore.

    The registration holds the token, the endpoint (``cb``) and its WAITING
    version (``reg``): everything getCallbackURL put into the URL it returned.
    Reading it is instant and needs only the Firestore read the deployer
    has, where the URL in the execution's log line would need Cloud Logging
    to have ingested it first (seconds to minutes) and a log filter per
    workflow.
    """

    def __init__(self, client: firestore.Client, collection: str, function_url: str) -> None:
        self._documents = client.collection(collection)
        self._function_url = function_url

    def url(self, run_id: str, step: str) -> str | None:
        return self.registered(run_id, step)[0]

    def registered(self, run_id: str, step: str) -> tuple[str | None, str | None]:
        """The callback URL and the registration's state (WAITING, RECEIVED, CONSUMED...)."""
        snapshot = self._documents.document(f"{run_id}_{step}").get()
        if not snapshot.exists:
            return None, None
        fields = snapshot.to_dict() or {}
        state = fields.get("state")
        return self._url(run_id, step, snapshot, fields), state if isinstance(state, str) else None

    def _url(
        self,
        run_id: str,
        step: str,
        snapshot: firestore.DocumentSnapshot,
        fields: dict[str, Any],
    ) -> str | None:
        token = fields.get(TOKEN_FIELD)
        if not isinstance(token, str):
            return None
        registration = Registration(
            document_id=snapshot.id, token=token, forward_url=fields.get(FORWARD_URL_FIELD) or ""
        )
        # reg is the WAITING version, as getCallbackURL's reuse of a
        # registration computes it: the update time while WAITING (a
        # registration written over a tombstone was created long before);
        # once answered no version lets a blind Commit through, and the
        # receiver reads instead.
        waiting = fields.get("state") == "WAITING"
        version = snapshot.update_time if waiting else snapshot.create_time
        query = {"runID": run_id, "step": step, **registration.query(rfc3339(version))}
        url = f"{self._function_url}?{urlencode(query)}"
        return f"{url}&{PAGE_VIEW}" if fields.get(FORM_FIELD) else url
