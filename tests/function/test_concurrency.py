"""Concurrent callbacks for one id: exactly one wins, nothing is lost."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

CONTENDERS = 8


@pytest.fixture
def all_read_first(make_client, monkeypatch):
    """Hold every request after its transactional read until all have read.

    That is the interleaving in which a read-check-write without a
    transaction loses updates; with one, Firestore aborts all commits but the
    first and the reruns see RECEIVED.
    """
    barrier = threading.Barrier(CONTENDERS, timeout=10)
    seen = threading.local()
    # An instance loads the function's modules; the test may make its own later.
    make_client()
    store = sys.modules["callback_store"]
    decide = store.decide

    def decide_after_everyone_read(*args, **kwargs):
        outcome = decide(*args, **kwargs)
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return outcome

    monkeypatch.setattr(store, "decide", decide_after_everyone_read)


def _race(client, url: str, bodies: list[dict]) -> list[int]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = pool.map(lambda body: client.post(url, json=body), bodies)
        return [response.status_code for response in responses]


def test_of_concurrent_different_callbacks_exactly_one_wins(
    client, register, callbacks, callback_url, all_read_first
):
    token = register()
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(token=token), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    winner = bodies[statuses.index(200)]
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == winner


def outcomes(captured: str) -> list[str]:
    """The outcome of every request, from the receiver's structured log lines."""
    return sorted(json.loads(line)["outcome"] for line in captured.splitlines() if line)


def test_concurrent_retries_of_one_callback_all_succeed_once(
    client, register, callbacks, callback_url, all_read_first, capsys
):
    token = register()
    url = callback_url(token=token)
    capsys.readouterr()

    statuses = _race(client, url, [{"same": True}] * CONTENDERS)

    assert statuses == [200] * CONTENDERS
    # Once: one request stored it, the others found it stored. Without the
    # transaction, all of them read WAITING and all of them write.
    assert outcomes(capsys.readouterr().out) == ["duplicate"] * (CONTENDERS - 1) + ["stored"]
    stored = callbacks.document("run-1_approve").get()
    assert json.loads(stored.get("payload"))["body"] == {"same": True}

    # Later retries write nothing: the document keeps its version.
    assert _race(client, url, [{"same": True}] * CONTENDERS) == [200] * CONTENDERS
    assert callbacks.document("run-1_approve").get().update_time == stored.update_time


def test_concurrent_unregistered_callbacks_create_once(
    make_client, callbacks, callback_url, all_read_first
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == bodies[statuses.index(200)]
