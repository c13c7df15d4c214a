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
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from local.firestore_emulator import FirestoreEmulator


@pytest.fixture
def own_emulator():
    emulator = FirestoreEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def receiver_env(receiver_env, own_emulator):
    return {**receiver_env, "FIRESTORE_EMULATOR_HOST": own_emulator.host}


@pytest.fixture
def firestore_client(own_emulator, gcp_project, firestore_database, monkeypatch):
    """register() and callbacks on this test's own emulator."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", own_emulator.host)
    client = firestore.Client(
        project=gcp_project, database=firestore_database, credentials=AnonymousCredentials()
    )
    yield client
    client.close()


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


def test_a_commit_whose_answer_is_lost_is_recognised_as_stored(
    make_client, own_emulator, callback_url, register, callbacks, monkeypatch, capsys
):
    """The database freezes while the commit is in flight, for longer than its timeout.

    The commit is applied once the database wakes, but its answer came too
    late. The receiver does not resend it: it reads, finds the callback
    stored with this request's fingerprint, and answers 200 (outcome
    duplicate: it cannot know whether its own commit or an earlier attempt
    of the caller stored it). The caller's retry gets 200 too, and nothing
    is written twice.
    """
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    client = make_client()
    token = register()
    emulator_pid = own_emulator._process.pid
    real_commit = FirestoreClient.commit
    frozen = []

    def commit_while_the_database_freezes(self, *args, **kwargs):
        if not frozen:
            frozen.append(True)
            os.kill(emulator_pid, signal.SIGSTOP)
            # Longer than the commit's 2 s timeout, shorter than the read's retries.
            threading.Timer(2.6, os.kill, (emulator_pid, signal.SIGCONT)).start()
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(FirestoreClient, "commit", commit_while_the_database_freezes)
    url = callback_url(token=token)
    capsys.readouterr()

    first = client.post(url, json={"approved": True})

    assert first.status_code == 200, first.get_json()
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert entry["outcome"] == "duplicate"
    stored = callbacks.document("run-1_approve").get()
    assert stored.get("state") == "RECEIVED"
    assert json.loads(stored.get("payload"))["body"] == {"approved": True}

    retry = client.post(url, json={"approved": True})
    assert retry.status_code == 200, retry.get_json()
    assert callbacks.document("run-1_approve").get().update_time == stored.update_time


def test_a_database_that_stays_frozen_gives_503(
    make_client, own_emulator, callback_url, register, callbacks, monkeypatch
):
    """Frozen for longer than the commit and the read's retries: a retryable 503, in seconds."""
    client = make_client()
    token = register()
    emulator_pid = own_emulator._process.pid
    os.kill(emulator_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = client.post(callback_url(token=token), json={"approved": True})
        elapsed = time.monotonic() - started
    finally:
        os.kill(emulator_pid, signal.SIGCONT)

    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"]
    assert elapsed < 10, "a frozen database must be reported within seconds"
    # Whether the frozen commit was applied when the database woke is the
    # caller's retry to find out: 200 either way, stored once.
    assert client.post(callback_url(token=token), json={"approved": True}).status_code == 200
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"
