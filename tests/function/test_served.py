"""The receiver served by functions-framework (gunicorn), as deployed, over real HTTP."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

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


@pytest.mark.parametrize(
    ("method", "query", "status"),
    [
        ("POST", "runID=bad_id&step=approve&token=t", 400),
        ("DELETE", "runID=run-1&step=approve&token=t", 405),
        ("POST", "runID=run-1&step=approve&token=t", 413),
    ],
)
def test_served_early_answers_arrive_before_the_declared_body_is_sent(
    served, method, query, status
):
    # The request declares 50 MB but sends only 64 KiB: an answer can arrive
    # only if the server does not wait for (or read) the rest of the body.
    url = urlsplit(served.url)
    declared = 50 * 1024 * 1024
    with socket.create_connection((url.hostname, url.port), timeout=10) as connection:
        connection.sendall(
            f"{method} /?{query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        connection.sendall(b"x" * 65_536)
        # Read until the server ends the connection; the 10 s socket timeout
        # fails the test if it waits for the rest of the body instead.
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert "error" in json.loads(body)


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
