"""Concurrent callbacks for one id: exactly one wins, nothing is lost."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

CONTENDERS = 16


def _hold_first_call_until_all_arrive(owner, name: str, monkeypatch) -> None:
    """Make each request's first ``owner.name`` call wait until every contender made one.

    Requests run in the pool's threads; the test's own calls (registering)
    in the main thread pass straight through.
    """
    barrier = threading.Barrier(CONTENDERS, timeout=10)
    seen = threading.local()
    real = getattr(owner, name)

    def together(*args, **kwargs):
        racing = threading.current_thread() is not threading.main_thread()
        if racing and not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, together)


@pytest.fixture
def all_commit_together(make_client, monkeypatch):
    """Send every request's first Commit at once.

    The one-Commit path decides nothing before it writes, so this is its
    race: without preconditions every Commit would store its callback;
    with them Firestore applies one and fails the others, whose reads then
    see RECEIVED.
    """
    make_client()
    _hold_first_call_until_all_arrive(FirestoreClient, "commit", monkeypatch)


@pytest.fixture
def all_read_first(make_client, monkeypatch):
    """Hold every request after its read until all have read (the read-decide-write path).

    That is the interleaving in which a read-check-write without a
    precondition loses updates; with the precondition on the version read,
    Firestore fails all writes but the first and the re-reads see RECEIVED.
    """
    # An instance loads the function's modules; the test may make its own later.
    make_client()
    _hold_first_call_until_all_arrive(sys.modules["callback_store"], "decide", monkeypatch)


def _race(client, url: str, bodies: list[dict]) -> list[int]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = pool.map(lambda body: client.post(url, json=body), bodies)
        return [response.status_code for response in responses]


def test_of_concurrent_different_callbacks_exactly_one_wins(
    client, register, callbacks, callback_url, all_commit_together
):
    token = register()
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(token=token), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    winner = bodies[statuses.index(200)]
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == winner


def test_on_a_legacy_registration_exactly_one_wins_too(
    client, register, callbacks, callback_url, all_read_first
):
    token = register(legacy=True)
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(token=token, legacy=True), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    winner = bodies[statuses.index(200)]
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == winner


def outcomes(captured: str) -> list[str]:
    """The outcome of every request, from the receiver's structured log lines."""
    return sorted(json.loads(line)["outcome"] for line in captured.splitlines() if line)


def test_concurrent_retries_of_one_callback_all_succeed_once(
    client, register, callbacks, callback_url, all_commit_together, capsys
):
    token = register()
    url = callback_url(token=token)
    capsys.readouterr()

    statuses = _race(client, url, [{"same": True}] * CONTENDERS)

    assert statuses == [200] * CONTENDERS
    # Once: one request stored it, the others found it stored. Without the
    # preconditions, every Commit would have written.
    assert outcomes(capsys.readouterr().out) == ["duplicate"] * (CONTENDERS - 1) + ["stored"]
    stored = callbacks.document("run-1_approve").get()
    assert json.loads(stored.get("payload"))["body"] == {"same": True}

    # Later retries write nothing: the document keeps its version.
    assert _race(client, url, [{"same": True}] * CONTENDERS) == [200] * CONTENDERS
    assert callbacks.document("run-1_approve").get().update_time == stored.update_time


def test_concurrent_unregistered_callbacks_create_once(
    make_client, callbacks, callback_url, all_commit_together
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == bodies[statuses.index(200)]
