"""The receiver served by functions-framework (gunicorn), as deployed, over real HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local.receiver import ReceiverServer

LIMIT = 4096


@pytest.fixture
def served(receiver_env, tmp_path):
    log_path = tmp_path / "receiver.log"
    env = {**receiver_env, "CALLBACKS_MAX_BODY_BYTES": str(LIMIT)}
    with ReceiverServer(env, log_path=log_path) as server:
        yield server


def _params(token: str, **extra: str) -> dict[str, str]:
    return {"runID": "run-1", "step": "approve", "token": token, **extra}


def test_served_get_and_post(served, register, callbacks):
    token = register()
    got = requests.get(served.url, params=_params(token, value="\u2713 ok"), timeout=10)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/json"
    assert got.json() == {"status": "received", "runID": "run-1", "step": "approve"}
    assert callbacks.document("run-1_approve").get().get("value") == "\u2713 ok"

    other = register(step="second")
    posted = requests.post(
        served.url,
        params={"runID": "run-1", "step": "second", "token": other},
        json={"approved": True},
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert posted.status_code == 200
    payload = json.loads(callbacks.document("run-1_second").get().get("payload"))
    assert payload["body"] == {"approved": True}
    assert "authorization" not in payload["headers"]

    entries = [json.loads(line) for line in served.log_path.read_text().splitlines()[-2:]]
    assert [(e["runID"], e["step"], e["status"]) for e in entries] == [
        ("run-1", "approve", 200),
        ("run-1", "second", 200),
    ]
    assert token not in served.log_path.read_text()


def test_served_chunked_body_over_the_limit_is_413(served, register, callbacks):
    token = register()

    def chunks():
        for _ in range(4):
            yield b"x" * LIMIT

    response = requests.post(
        served.url,
        params=_params(token),
        data=chunks(),  # a generator: sent with Transfer-Encoding: chunked
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 413
    assert "error" in response.json()
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_served_race_has_exactly_one_winner(served, register, callbacks):
    token = register()
    bodies = [{"contender": n} for n in range(8)]

    def send(body: dict) -> int:
        return requests.post(served.url, params=_params(token), json=body, timeout=20).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))

    assert sorted(statuses) == [200] + [409] * (len(bodies) - 1)
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == bodies[statuses.index(200)]
