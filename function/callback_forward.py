"""Push delivery: forward a stored callback to the waiting execution's own callback endpoint.

The caller needs no Google credentials: the receiver stores the callback
first (every guarantee of the poll protocol holds) and then POSTs it to the
native Workflows callback endpoint that ``getCallbackURL`` recorded with the
registration, under the receiver's own identity. The event carries the
payload string as stored and a proof that only the holder of the
registration's token could compute over it (``forward_event``): anyone else
who may send to the endpoint cannot pass a callback off as the receiver's.
Rules (docs/protocol.md, "Push delivery"):

- the target comes from the registration, never from the request, and must
  be this project's and region's Workflow Executions callback URL;
- a bounded number of attempts; a 404 (the execution has finished) is not an
  error;
- whatever happens, the caller already has its 200: a failed forward is
  recovered by the waiting workflow from Firestore at the end of its slice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from google.auth import exceptions as auth_exceptions

GOOGLE_ORIGIN = "https://workflowexecutions.googleapis.com"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ATTEMPTS = 3
BACKOFF_SECONDS = (0.2, 0.6)
# Connect and read timeouts of one attempt: three attempts stay within ~10 s
# of the caller's request.
ATTEMPT_TIMEOUT = (2.0, 3.0)
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

# The callback endpoint's shape, from the Workflow Executions API reference
# (sendHttpCallback,
# https://cloud.google.com/workflows/docs/reference/executions/rest/v1/projects.locations.workflows.executions.callbacks/sendHttpCallback):
#   https://workflowexecutions.googleapis.com/v1/{workflow=projects/*/locations/*/workflows/*}
#       /executions/{executionId}/callbacks/{callbackId}
# and the `url` events.create_callback_endpoint returns has it too
# (https://cloud.google.com/workflows/docs/creating-callback-endpoints).
# The reference promises no alphabet for the workflow, execution and callback
# ids, and a refused forward costs the waiting workflow a whole slice (1 h by
# default): each id may be any path segment that stays one segment of this
# path. Scheme, host, project and region are compared exactly.
ID_SEGMENTS = ("workflows", "executions", "callbacks")
# What would let an id leave its segment (or, on a server that decodes the
# path before routing, its path): a separator, a query, a fragment.
SEGMENT_BREAKERS = frozenset("/\\?#")
DOT_SEGMENTS = frozenset({".", ".."})
# Decoding stops here; an id still percent-encoded after this many passes is refused.
MAX_DECODINGS = 4


def proof(token: str, version: str, payload_json: str) -> str:
    """Standard base64 (padded) of HMAC-SHA256 keyed by the token over version + "\n" + payload.

    The workflow computes the same with hash.compute_hmac(text.encode(token),
    text.encode(version + "\n" + payload), "SHA256") and base64.encode: over
    the exact forwarded strings, so no JSON canonicalisation is involved.
    """
    message = f"{version}\n{payload_json}".encode()
    digest = hmac.new(token.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def forward_event(
    run_id: str, step: str, payload_json: str, version: str, token: str
) -> dict[str, str]:
    """The forward's body (the contract between the receiver and waitForResponse).

    ``payload_json`` is, byte for byte, the document's ``payload`` field, and
    ``version`` the document's update time once it held it (the RECEIVED
    version, as protobuf's Timestamp.ToJsonString prints it), which the
    workflow's tombstone write takes as its precondition.
    """
    return {
        "payload": payload_json,
        "runID": run_id,
        "step": step,
        "version": version,
        "proof": proof(token, version, payload_json),
    }


class ForwardConfigError(ValueError):
    """The forwarding settings are inconsistent (a 500, logged, on every request)."""


@dataclass(frozen=True)
class ForwardResult:
    """What became of one forward, for the request's log line."""

    outcome: str  # delivered, execution_finished, failed, refused
    status: int | None = None
    attempts: int = 0
    detail: str | None = None

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"forward": self.outcome, "forwardAttempts": self.attempts}
        if self.status is not None:
            fields["forwardStatus"] = self.status
        if self.detail:
            fields["forwardDetail"] = self.detail
        return fields


class Forwarder:
    """Sends callbacks to Workflow Executions callback endpoints of one project and region.

    ``origin`` is Google's endpoint when deployed. Only for the local stack,
    ``local_token`` replaces Google credentials, and then ``origin`` must be
    on loopback: a fixed token never leaves the machine.
    """

    def __init__(
        self,
        project: str | None,
        region: str | None,
        origin: str = GOOGLE_ORIGIN,
        local_token: str | None = None,
        project_number: str | None = None,
    ) -> None:
        if local_token and urlsplit(origin).hostname not in LOOPBACK_HOSTS:
            raise ForwardConfigError(
                "CALLBACKS_FORWARD_LOCAL_TOKEN is for the local stack only: "
                f"CALLBACKS_FORWARD_ORIGIN must be on loopback, not {origin!r}"
            )
        if not local_token and origin != GOOGLE_ORIGIN:
            raise ForwardConfigError(
                f"CALLBACKS_FORWARD_ORIGIN {origin!r} needs CALLBACKS_FORWARD_LOCAL_TOKEN "
                "(only the local stack forwards anywhere but Google)"
            )
        self.project = project
        self.region = region
        self.origin = origin.rstrip("/")
        self._local_token = local_token
        self._projects = frozenset(p for p in (project, project_number) if p)
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    def target_problem(self, url: str) -> str | None:
        """Why ``url`` is not a callback endpoint this receiver may send to, or None."""
        if not self._projects or not self.region:
            return "push delivery is not configured (GOOGLE_CLOUD_PROJECT, CALLBACKS_REGION)"
        reason = self._shape_problem(url)
        if reason is not None:
            return (
                "not a Workflows callback endpoint of "
                f"projects/{self.project}/locations/{self.region} at {self.origin}: {reason}"
            )
        return None

    def _shape_problem(self, url: str) -> str | None:
        """What in ``url`` breaks the endpoint's shape (see ID_SEGMENTS), or None."""
        prefix = f"{self.origin}/v1/projects/"
        if not url.startswith(prefix):
            return "another scheme, host or API version"
        if "?" in url or "#" in url:
            return "a query or fragment"
        segments = url[len(prefix) :].split("/")
        if len(segments) != 9:
            return "not projects/P/locations/L/workflows/W/executions/E/callbacks/C"
        project, locations, region, *ids = segments
        if project not in self._projects:
            return "another project"
        if locations != "locations" or region != self.region:
            return "another region"
        if tuple(ids[0::2]) != ID_SEGMENTS:
            return "not projects/P/locations/L/workflows/W/executions/E/callbacks/C"
        for name, value in zip(ID_SEGMENTS, ids[1::2], strict=True):
            problem = id_segment_problem(value)
            if problem is not None:
                return f"the {name[:-1]} id is {problem}"
        return None

    def forward(self, url: str, event: Mapping[str, Any]) -> ForwardResult:
        """POST ``event`` as JSON to ``url``: checked, retried a bounded number of times."""
        problem = self.target_problem(url)
        if problem is not None:
            return ForwardResult("refused", detail=problem)
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        status: int | None = None
        detail: str | None = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._http().post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=ATTEMPT_TIMEOUT,
                    allow_redirects=False,
                )
                status, detail = response.status_code, None
            except requests.RequestException as error:
                status, detail = None, type(error).__name__
            except auth_exceptions.GoogleAuthError as error:  # no credentials, or no token
                return ForwardResult("failed", attempts=attempt, detail=type(error).__name__)
            if status is not None and 200 <= status < 300:
                return ForwardResult("delivered", status, attempt)
            if status == 404:
                return ForwardResult("execution_finished", status, attempt)
            if status is not None and status not in RETRIED_STATUSES:
                break
            if attempt < ATTEMPTS:
                time.sleep(BACKOFF_SECONDS[attempt - 1])
        return ForwardResult("failed", status, attempt, detail)

    def _http(self) -> requests.Session:
        """One session per instance: Google's keeps and refreshes its access token."""
        with self._session_lock:
            if self._session is None:
                self._session = self._new_session()
            return self._session

    def _new_session(self) -> requests.Session:
        if self._local_token:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self._local_token}"
            return session
        # Imported here: only a deployed receiver needs Google credentials.
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return AuthorizedSession(credentials)


def id_segment_problem(segment: str) -> str | None:
    """Why ``segment`` cannot be a workflow, execution or callback id in the path, or None.

    Refused: empty; a character that is not printable ASCII (a URL Google
    built is percent-encoded); once decoded (repeatedly, so ``%252F`` counts
    as ``/``), a separator, query or fragment character, a control
    character, or a dot segment (``.``, ``..``) that would climb the path.
    """
    if not segment:
        return "empty"
    if not all(_printable_ascii(char) for char in segment):
        return "not printable ASCII"
    decoded = _fully_decoded(segment)
    if decoded is None:
        return f"percent-encoded more than {MAX_DECODINGS} times"
    if SEGMENT_BREAKERS.intersection(decoded):
        return "more than one path segment (/, \\, ? or #, possibly percent-encoded)"
    if decoded in DOT_SEGMENTS:
        return "a dot segment"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in decoded):
        return "a percent-encoded control character"
    return None


def _printable_ascii(char: str) -> bool:
    return 0x21 <= ord(char) <= 0x7E


def _fully_decoded(segment: str) -> str | None:
    """``segment`` percent-decoded until nothing changes; None if that takes too many passes."""
    decoded = segment
    for _ in range(MAX_DECODINGS + 1):
        once = unquote(decoded)
        if once == decoded:
            return decoded
        decoded = once
    return None
