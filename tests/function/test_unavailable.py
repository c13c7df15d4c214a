"""Firestore going away mid-test: 503 with Retry-After, then recovery.

Uses its own emulator so stopping it does not disturb the session's.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from local.firestore_emulator import FirestoreEmulator


@pytest.fixture
def own_emulator():
    emulator = FirestoreEmulator().start()
    yield emulator
    emulator.stop()


def test_stopped_firestore_gives_503_then_recovers(make_client, own_emulator, callback_url, capsys):
    client = make_client(
        FIRESTORE_EMULATOR_HOST=own_emulator.host, CALLBACKS_ALLOW_UNREGISTERED="true"
    )
    assert client.get(callback_url(step="before")).status_code == 200

    own_emulator.stop()
    started = time.monotonic()
    response = client.post(callback_url(step="during"), json={"a": 1})
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "error" in response.get_json()
    assert elapsed < 8, "a dead database must be reported within seconds"
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (entry["status"], entry["severity"]) == (503, "ERROR")

    own_emulator.start()  # same port, empty database
    assert client.post(callback_url(step="during"), json={"a": 1}).status_code == 200


def test_a_commit_that_times_out_gives_503_and_the_retry_200(
    make_client, own_emulator, callback_url, gcp_project, firestore_database, monkeypatch
):
    """The database freezes while the commit is in flight, for longer than its timeout.

    The commit is applied once the database wakes, but its answer came too
    late. Resending the transaction's commit would meet a finished
    transaction (INVALID_ARGUMENT, a 500); the caller must get a retryable
    503, and its retry 200 without a second write.
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", own_emulator.host)
    client = make_client(FIRESTORE_EMULATOR_HOST=own_emulator.host)
    store = firestore.Client(project=gcp_project, database=firestore_database)
    document = store.collection("workflow_callbacks").document("run-1_approve")
    document.set({"state": "WAITING", "token": "t0ken"})

    emulator_pid = own_emulator._process.pid
    real_commit = FirestoreClient.commit
    frozen = []

    def commit_while_the_database_freezes(self, *args, **kwargs):
        if not frozen:
            frozen.append(True)
            os.kill(emulator_pid, signal.SIGSTOP)
            # Longer than the commit's 2 s timeout, shorter than its old retry budget.
            threading.Timer(2.6, os.kill, (emulator_pid, signal.SIGCONT)).start()
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(FirestoreClient, "commit", commit_while_the_database_freezes)
    url = callback_url(token="t0ken")

    first = client.post(url, json={"approved": True})
    assert first.status_code == 503, first.get_json()
    assert first.headers["Retry-After"]

    # The database wakes and applies the commit it had queued.
    deadline = time.monotonic() + 10
    while document.get().get("state") != "RECEIVED":
        assert time.monotonic() < deadline, "the queued commit was never applied"
        time.sleep(0.05)
    retry = client.post(url, json={"approved": True})
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["status"] == "received"


@pytest.mark.parametrize(
    "message",
    [
        "transaction is not active",  # the emulator's words
        "The referenced transaction has expired or is no longer valid.",  # Firestore's
    ],
)
def test_a_transaction_that_ended_under_us_gives_503(
    client, register, callback_url, monkeypatch, message
):
    """Whether the commit was applied is unknown: the caller must retry, not give up."""
    from google.api_core import exceptions
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    token = register()

    def commit_into_a_finished_transaction(self, *args, **kwargs):
        raise exceptions.InvalidArgument(message)

    monkeypatch.setattr(FirestoreClient, "commit", commit_into_a_finished_transaction)

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"]


def test_other_invalid_arguments_stay_errors(client, register, callback_url, monkeypatch):
    """A request Firestore finds malformed is our bug, not the database's weather."""
    from google.api_core import exceptions
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    token = register()

    def commit_rejected(self, *args, **kwargs):
        raise exceptions.InvalidArgument("field name is invalid")

    monkeypatch.setattr(FirestoreClient, "commit", commit_rejected)

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 500
