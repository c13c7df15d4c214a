"""python -m ops cancel: the CANCELLED tombstone, its rules, and the cancel event for push.

The Firestore side runs against the emulator; the push side against the
local stand-in of Workflows' callback endpoints (local/callback_api.py),
and, for a deployed stack, against a recorded HTTP session (no Google Cloud
here). tests/workflow/test_cancel.py has what the waiting workflow does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from local.callback_api import CallbackApi
from ops import cancel

TOKEN = "secret-token-never-printed"


def registration(state: str = "WAITING", **extra: object) -> dict[str, object]:
    created = datetime.now(UTC) - timedelta(minutes=5)
    return {
        "state": state,
        "token": TOKEN,
        "createdAt": created,
        "expireAt": created + timedelta(days=7),
        "forwardUrl": "",
        "form": "",
        **extra,
    }


@pytest.fixture
def callbacks(firestore_client: firestore.Client) -> firestore.CollectionReference:
    return firestore_client.collection("workflow_callbacks")


def stored(callbacks, document_id: str = "run-a_approve") -> dict[str, Any]:
    return callbacks.document(document_id).get().to_dict()


def test_a_waiting_registration_becomes_a_cancelled_tombstone(callbacks) -> None:
    callbacks.document("run-a_approve").set(registration())
    before = callbacks.document("run-a_approve").get()

    done = cancel.cancel(callbacks, "run-a", "approve", "wrong build")

    after = stored(callbacks)
    assert (done.outcome, done.state, done.reason) == ("cancelled", "waiting", "wrong build")
    assert after["state"] == "CANCELLED"
    assert after["cancelReason"] == "wrong build"
    # Firestore's time (a server timestamp), the write's own commit time.
    assert after["cancelledAt"] == done.cancelled_at
    assert before.update_time < after["cancelledAt"] <= datetime.now(UTC) + timedelta(seconds=5)
    # Everything else stays until the TTL: the receiver still checks the token.
    kept = {k: v for k, v in after.items() if k not in ("state", "cancelledAt", "cancelReason")}
    assert kept == {k: v for k, v in before.to_dict().items() if k != "state"}


def test_a_received_callback_not_yet_taken_is_cancelled_too(callbacks) -> None:
    received_at = datetime.now(UTC) - timedelta(minutes=1)
    callbacks.document("run-a_approve").set(
        registration("RECEIVED", receivedAt=received_at, payload='{"a": 1}')
    )

    done = cancel.cancel(callbacks, "run-a", "approve", "too late")

    assert (done.outcome, done.state) == ("cancelled", "received")
    assert done.received_at == received_at
    assert stored(callbacks)["state"] == "CANCELLED"


def test_cancelling_twice_is_idempotent_and_writes_nothing_the_second_time(callbacks) -> None:
    callbacks.document("run-a_approve").set(registration())
    first = cancel.cancel(callbacks, "run-a", "approve", "first reason")
    version = callbacks.document("run-a_approve").get().update_time

    again = cancel.cancel(callbacks, "run-a", "approve", "second reason")

    assert again.outcome == "already_cancelled" and again.succeeded
    # The first cancel's time and reason stand.
    assert (again.cancelled_at, again.reason) == (first.cancelled_at, "first reason")
    assert callbacks.document("run-a_approve").get().update_time == version


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("CONSUMED", "consumed"),
        ("EXPIRED", "expired"),
        ("APPROVED", "decided"),  # an approval group its wait decided
        ("REJECTED", "decided"),
        ("LATER-PROTOCOL", "unknown_state"),
    ],
)
def test_what_the_wait_already_ended_is_refused_and_left_alone(callbacks, state, outcome) -> None:
    callbacks.document("run-a_approve").set(registration(state))
    version = callbacks.document("run-a_approve").get().update_time

    done = cancel.cancel(callbacks, "run-a", "approve", "no")

    assert done.outcome == outcome and not done.succeeded
    assert callbacks.document("run-a_approve").get().update_time == version
    assert stored(callbacks)["state"] == state


def test_an_unknown_registration_is_refused(callbacks) -> None:
    done = cancel.cancel(callbacks, "run-x", "nothing", "no")
    assert done.outcome == "not_registered" and not done.succeeded
    assert not callbacks.document("run-x_nothing").get().exists


class RacingCollection:
    """The collection, where ``during_first_read`` runs right after the first read of a document:
    the workflow takes the callback between cancel's read and its write."""

    def __init__(self, collection, during_first_read) -> None:
        self._collection = collection
        self._during_first_read = during_first_read

    def document(self, document_id: str):
        real = self._collection.document(document_id)
        race = self

        class Reference:
            def get(self, **kwargs):
                snapshot = real.get(**kwargs)
                action, race._during_first_read = race._during_first_read, None
                if action is not None:
                    action(real)
                return snapshot

            def update(self, *args, **kwargs):
                return real.update(*args, **kwargs)

        return Reference()


def test_a_callback_taken_between_the_read_and_the_write_is_not_cancelled(callbacks) -> None:
    callbacks.document("run-a_approve").set(registration("RECEIVED", payload='{"a": 1}'))

    def workflow_takes_it(document) -> None:
        document.update({"state": "CONSUMED", "consumedAt": datetime.now(UTC)})

    done = cancel.cancel(
        RacingCollection(callbacks, workflow_takes_it), "run-a", "approve", "too late"
    )

    # The write named the version read, so it was refused; the re-read decided.
    assert done.outcome == "consumed"
    assert stored(callbacks)["state"] == "CONSUMED"


def test_a_callback_stored_between_the_read_and_the_write_is_cancelled_with_it(callbacks) -> None:
    callbacks.document("run-a_approve").set(registration())

    def receiver_stores_one(document) -> None:
        document.update({"state": "RECEIVED", "payload": '{"a": 1}'})

    done = cancel.cancel(
        RacingCollection(callbacks, receiver_stores_one), "run-a", "approve", "stop"
    )

    assert (done.outcome, done.state) == ("cancelled", "received")
    assert stored(callbacks)["state"] == "CANCELLED"


# --- the cancel event (push) -----------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "local", "problem"),
    [
        ("https://evil.example/v1/projects/p/locations/l/workflows/w/executions/e/callbacks/c",
         False, "not a Workflows callback endpoint"),
        ("http://workflowexecutions.googleapis.com/v1/projects/p/x", False, "not a Workflows"),
        ("https://workflowexecutions.googleapis.com/v1/projects/p/locations/l/workflows/w",
         False, "no /executions/"),
        ("https://workflowexecutions.googleapis.com/v1/projects/p/locations/l/workflows/w"
         "/executions/e/callbacks/c", True, "not the local callback API"),
        ("http://10.0.0.1:8080/v1/projects/p/executions/e/callbacks/c", True, "not the local"),
    ],
)  # fmt: skip
def test_no_credential_goes_anywhere_but_the_expected_endpoint(url, local, problem) -> None:
    assert problem in (cancel.endpoint_problem(url, local) or "")
    sent = cancel.send_cancel_event(url, cancel.cancel_event("r", "s"), local)
    assert sent is not None and problem in sent


GOOGLE_ENDPOINT = (
    "https://workflowexecutions.googleapis.com/v1/projects/p/locations/europe-west1"
    "/workflows/w/executions/e-1/callbacks/c-1"
)


class RecordedGoogle:
    """google.auth.default and the HTTP layer, recorded: no request leaves the machine."""

    def __init__(self, monkeypatch, status: int) -> None:
        from google.auth import credentials as auth_credentials

        class Credentials(auth_credentials.Credentials):
            def refresh(self, request) -> None:
                self.token = "user-access-token"
                self.expiry = None

        self.scopes: list[Any] = []
        self.sent: list[requests.PreparedRequest] = []
        self.status = status

        def default(scopes=None, **_kwargs):
            self.scopes.append(scopes)
            return Credentials(), "p"

        def send(_session, prepared, **_kwargs):
            self.sent.append(prepared)
            response = requests.Response()
            response.status_code = self.status
            response._content = b"{}"
            return response

        monkeypatch.setattr("google.auth.default", default)
        monkeypatch.setattr(requests.Session, "send", send)


def test_the_cancel_event_goes_to_google_with_the_users_credentials(monkeypatch) -> None:
    google = RecordedGoogle(monkeypatch, 200)

    problem = cancel.send_cancel_event(GOOGLE_ENDPOINT, cancel.cancel_event("e-1", "s"), False)

    assert problem is None
    assert google.scopes == [["https://www.googleapis.com/auth/cloud-platform"]]
    [sent] = google.sent
    assert (sent.method, sent.url) == ("POST", GOOGLE_ENDPOINT)
    assert sent.headers["Authorization"] == "Bearer user-access-token"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {"event": "cancel", "runID": "e-1", "step": "s"}


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (403, "workflows.callbacks.send"),
        (404, "the execution has finished"),
        (500, "answered 500"),
    ],
)
def test_a_refused_cancel_event_says_why(monkeypatch, status, says) -> None:
    RecordedGoogle(monkeypatch, status)
    problem = cancel.send_cancel_event(GOOGLE_ENDPOINT, cancel.cancel_event("e-1", "s"), False)
    assert problem is not None and says in problem


# --- the command, on the local emulator ------------------------------------------------
class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def endpoints(gcp_project: str):
    with CallbackApi(gcp_project, "europe-west1") as api:
        yield api


def run_ops(repo_root: Path, *args: str, host: str, project: str, database: str):
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": host}
    where = ["--local", "--project", project, "--database", database]
    return subprocess.run(
        [sys.executable, "-m", "ops", *args, *where],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def ops_local(repo_root, firestore_emulator_host, gcp_project, firestore_database):
    def run(*args: str):
        done = run_ops(
            repo_root,
            *args,
            host=firestore_emulator_host,
            project=gcp_project,
            database=firestore_database,
        )
        assert TOKEN not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done

    return run


def test_the_command_cancels_a_poll_wait_once_and_says_so(callbacks, ops_local) -> None:
    callbacks.document("run-a_approve").set(registration())

    first = ops_local("cancel", "run-a", "approve", "--reason", "wrong  build\n")
    again = ops_local("cancel", "run-a", "approve")

    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("cancelled runID run-a step approve at ")
    assert lines[0].endswith("(reason: wrong build)")  # one line, whitespace folded
    assert "a callback sent now gets 410 Gone" in lines
    assert "the workflow (poll) ends its wait with CancelledError at its next read" in lines
    assert stored(callbacks)["cancelReason"] == "wrong build"
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("runID run-a step approve was already cancelled at ")
    assert "(reason: wrong build): nothing to do" in again.stdout


def test_the_command_refuses_a_consumed_registration_in_one_line(callbacks, ops_local) -> None:
    callbacks.document("run-a_approve").set(registration("CONSUMED"))

    done = ops_local("cancel", "run-a", "approve")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "cannot cancel runID run-a step approve: the workflow already took its callback "
        "(consumed): there is no wait to cancel"
    ]
    assert stored(callbacks)["state"] == "CONSUMED"


def test_the_command_refuses_an_expired_or_unknown_registration(callbacks, ops_local) -> None:
    callbacks.document("run-a_approve").set(registration("EXPIRED"))

    expired = ops_local("cancel", "run-a", "approve")
    unknown = ops_local("cancel", "run-z", "approve")

    assert expired.returncode == 1 and "the wait already ended (expired" in expired.stderr
    assert unknown.returncode == 1
    assert "cannot cancel runID run-z step approve: no registration in" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1


def test_the_command_says_a_received_callback_is_cancelled_too(callbacks, ops_local) -> None:
    callbacks.document("run-a_approve").set(registration("RECEIVED", payload="{}"))

    done = ops_local("cancel", "run-a", "approve")

    assert done.returncode == 0, done.stderr
    assert "note: a callback had arrived" in done.stdout
    assert "it is cancelled too and will not be delivered" in done.stdout


def test_an_empty_reason_is_refused(callbacks, ops_local) -> None:
    callbacks.document("run-a_approve").set(registration())
    done = ops_local("cancel", "run-a", "approve", "--reason", "  ")
    assert done.returncode == 2 and "must not be empty" in done.stderr
    assert stored(callbacks)["state"] == "WAITING"


def test_with_push_the_command_tells_the_waiting_execution(callbacks, ops_local, endpoints):
    endpoint = endpoints.create_endpoint("run-a")["url"]
    callbacks.document("run-a_approve").set(registration(forwardUrl=endpoint))

    done = ops_local("cancel", "run-a", "approve", "--reason", "stop it")

    assert done.returncode == 0, done.stderr
    assert "telling the waiting execution (push) ..." in done.stderr
    assert "the workflow (push) was told: its wait ends now with CancelledError" in done.stdout
    event = endpoints.await_callback({"url": endpoint}, 5, RealClock())
    assert event["http_request"]["body"] == {"event": "cancel", "runID": "run-a", "step": "approve"}
    # The reason is in Firestore, for the wait to read: the event proves nothing.
    assert "stop it" not in json.dumps(event)


def test_when_the_endpoint_is_gone_the_cancel_still_stands(callbacks, ops_local, endpoints):
    endpoint = endpoints.create_endpoint("run-a")["url"]
    endpoints.end_execution("run-a")
    callbacks.document("run-a_approve").set(registration(forwardUrl=endpoint))

    done = ops_local("cancel", "run-a", "approve")

    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert "the callback endpoint is gone (404)" in warning
    assert "at the end of its push slice" in warning
    assert stored(callbacks)["state"] == "CANCELLED"


def test_pending_leaves_cancelled_out_unless_asked_and_show_gives_the_reason(
    callbacks, ops_local
) -> None:
    callbacks.document("run-a_approve").set(registration())
    callbacks.document("run-b_build").set(registration())
    assert ops_local("cancel", "run-a", "approve", "--reason", "dup").returncode == 0

    listed = ops_local("pending", "--json")
    cancelled = ops_local("pending", "--json", "--state", "cancelled")
    shown = ops_local("show", "run-a", "approve")

    assert [row["runID"] for row in json.loads(listed.stdout)] == ["run-b"]
    assert [(r["runID"], r["state"]) for r in json.loads(cancelled.stdout)] == [
        ("run-a", "cancelled")
    ]
    detail = json.loads(shown.stdout)
    assert (detail["state"], detail["cancelReason"]) == ("cancelled", "dup")
    assert detail["cancelledAt"] is not None


def test_an_emulator_that_is_not_running_is_one_line_with_the_fix(repo_root, gcp_project) -> None:
    # FIRESTORE_EMULATOR_HOST names a port nothing listens on (python -m
    # local has stopped): one line, exit 2, within the local timeout.
    started = time.monotonic()
    done = run_ops(
        repo_root, "cancel", "run-a", "approve", host="127.0.0.1:9", project=gcp_project,
        database="nowhere",
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.startswith("error: Firestore did not answer (the emulator at 127.0.0.1:9")
    assert "fix: with --local, start python -m local" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
