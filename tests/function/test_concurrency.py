"""Concurrent callbacks for one id: exactly one wins, nothing is lost."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

CONTENDERS = 8


@pytest.fixture
def all_read_first(monkeypatch):
    """Hold every request after its transactional read until all have read.

    That is the interleaving in which a read-check-write without a
    transaction loses updates; with one, Firestore aborts all commits but the
    first and the reruns see RECEIVED.
    """
    barrier = threading.Barrier(CONTENDERS, timeout=10)
    seen = threading.local()
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


def test_concurrent_retries_of_one_callback_all_succeed_once(
    client, register, callbacks, callback_url, all_read_first
):
    token = register()

    statuses = _race(client, callback_url(token=token), [{"same": True}] * CONTENDERS)

    assert statuses == [200] * CONTENDERS
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == {"same": True}


def test_concurrent_unregistered_callbacks_create_once(
    make_client, callbacks, callback_url, all_read_first
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    bodies = [{"contender": n} for n in range(CONTENDERS)]

    statuses = _race(client, callback_url(), bodies)

    assert sorted(statuses) == [200] + [409] * (CONTENDERS - 1)
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == bodies[statuses.index(200)]
