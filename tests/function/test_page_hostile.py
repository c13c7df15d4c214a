"""The page path refuses every hostile body the machine path refuses, the same way.

Each input the machine-path tests send (test_bodies.py, test_limits.py,
test_served.py) goes to ``view=page`` too: it must get a 4xx page, log no
ERROR (an ERROR is an alert: nobody may raise one on demand) and never make
the receiver read past the body limit.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from local.receiver import ReceiverServer
from tests.function.test_limits import CountingStream

LIMIT = 4096
FORM = {"title": "Deploy?", "choices": [{"value": "approve"}, {"value": "reject"}]}
FORM_TYPE = "application/x-www-form-urlencoded"


def _log_entries(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


@pytest.fixture
def small_client(make_client):
    return make_client(CALLBACKS_MAX_BODY_BYTES=str(LIMIT))


@pytest.fixture
def page_url(register, callback_url) -> Callable[[], str]:
    """A registered page's URL, token and all, as getCallbackURL hands it out."""

    def url() -> str:
        return callback_url(token=register(form_json=json.dumps(FORM)), view="page")

    return url


# (name, Content-Encoding, body, status): everything that cannot be stored as sent.
HOSTILE_BODIES = [
    ("unsupported encoding", "br", b"\x1b\x00\x00", 415),
    ("not gzip at all", "gzip", b"not gzip at all", 400),
    ("gzip cut short", "gzip", gzip.compress(b"choice=approve")[:-6], 400),
    ("not deflate", "deflate", b"\xff\xfe\xfd", 400),
    ("gzip bomb", "gzip", gzip.compress(b"0" * (100 * LIMIT)), 413),
    ("deflate bomb", "deflate", zlib.compress(b"0" * (100 * LIMIT)), 413),
    ("invalid UTF-8", None, b"choice=approve&comment=\xff\xfe", 400),
    ("invalid UTF-8, percent-encoded", None, b"choice=approve&comment=%FF%FE", 400),
    ("a lone surrogate, percent-encoded", None, b"choice=approve&comment=%ED%A0%80", 400),
]


@pytest.mark.parametrize(
    ("encoding", "body", "status"),
    [case[1:] for case in HOSTILE_BODIES],
    ids=[case[0] for case in HOSTILE_BODIES],
)
def test_a_hostile_body_is_a_4xx_page_and_no_error(
    small_client, page_url, callbacks, capsys, encoding, body, status
):
    url = page_url()
    capsys.readouterr()
    headers = {"Content-Type": FORM_TYPE} | ({"Content-Encoding": encoding} if encoding else {})

    response = small_client.post(url, data=body, headers=headers)

    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    [entry] = _log_entries(capsys)
    assert (entry["status"], entry["severity"]) == (status, "WARNING")
    assert "stack_trace" not in entry
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_the_issues_reproduction_needs_no_token(small_client, capsys):
    # curl -X POST "$RECV/?runID=anything&step=x&view=page" -H 'Content-Encoding: br' --data a
    response = small_client.post(
        "/?runID=anything&step=x&view=page",
        data=b"a",
        headers={"Content-Type": FORM_TYPE, "Content-Encoding": "br"},
    )

    assert response.status_code == 415
    assert [e["severity"] for e in _log_entries(capsys)] == ["WARNING"]


@pytest.mark.parametrize("method", ["POST", "GET", "HEAD"])
def test_a_declared_body_over_the_limit_is_413_unread(small_client, page_url, method):
    url = page_url()
    stream = CountingStream(1_000_000_000)

    response = small_client.open(
        url,
        method=method,
        headers={"Content-Type": FORM_TYPE, "Content-Length": "1000000000"},
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": "1000000000"},
    )

    assert response.status_code == 413
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Connection"] == "close"
    # Neither the page nor functions-framework (which drains the body after a
    # non-streamed answer) read a byte of it.
    assert stream.read_bytes == 0


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_chunked_body_over_the_limit_is_413_after_limit_plus_one_bytes(
    small_client, page_url, method
):
    url = page_url()
    stream = CountingStream(100 * LIMIT)

    response = small_client.open(
        url,
        method=method,
        headers={"Transfer-Encoding": "chunked", "Content-Type": FORM_TYPE},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert response.headers["Connection"] == "close"
    assert stream.read_bytes == LIMIT + 1


# --- over a real socket, served by gunicorn as deployed -------------------------------
@pytest.fixture
def served(receiver_env, tmp_path):
    env = {**receiver_env, "CALLBACKS_MAX_BODY_BYTES": str(LIMIT)}
    with ReceiverServer(env, log_path=tmp_path / "receiver.log") as server:
        yield server


def _answer_before_the_body_ends(served: ReceiverServer, head: str, sent: bytes) -> bytes:
    """Send a request head and part of its body, then read until the server closes.

    The body is never finished: an answer can arrive only if the server does
    not wait for (or read) the rest. The socket's timeout fails the test if
    it does.
    """
    url = urlsplit(served.url)
    with socket.create_connection((url.hostname, url.port), timeout=3) as connection:
        connection.sendall(head.encode() + sent)
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    return answer


def _assert_logged_without_error(served: ReceiverServer, status: int) -> None:
    # The first entries are the start-up probe's (a 400 without runID).
    entries = served.log_entries()
    assert entries[-1]["status"] == status
    assert [e for e in entries if e["severity"] == "ERROR"] == []
    assert b"Traceback" not in served.log_path.read_bytes()


def _page_query(served, register) -> str:
    token = register(form_json=json.dumps(FORM))
    return f"/?runID=run-1&step=approve&token={token}&view=page"


@pytest.mark.parametrize("sent", [0, 65_536], ids=["nothing sent", "64 KiB sent"])
@pytest.mark.parametrize("method", ["POST", "GET", "HEAD"])
def test_served_a_declared_gigabyte_is_413_at_once(served, register, callbacks, method, sent):
    query = _page_query(served, register)
    started = time.monotonic()

    answer = _answer_before_the_body_ends(
        served,
        f"{method} {query} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        "Content-Length: 1000000000\r\n\r\n",
        b"x" * sent,
    )

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"text/html" in head
    assert body.startswith(b"<!doctype html>") if method != "HEAD" else body == b""
    # Closed at once: not after reading the body, nor after a keep-alive timeout.
    assert time.monotonic() - started < 1
    _assert_logged_without_error(served, 413)
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_served_an_endless_chunked_body_is_413_after_the_limit(served, register, callbacks):
    query = _page_query(served, register)
    chunk = b"choice=approve&comment=" + b"x" * (2 * LIMIT)

    answer = _answer_before_the_body_ends(
        served,
        f"POST {query} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n",  # and no last chunk, ever
    )

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    _assert_logged_without_error(served, 413)
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_served_a_bad_encoding_is_a_4xx_and_no_error(served, register):
    query = _page_query(served, register)

    answer = _answer_before_the_body_ends(
        served,
        f"POST {query} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        "Content-Encoding: br\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
        b"a",
    )

    assert answer.startswith(b"HTTP/1.1 415 "), answer[:200]
    _assert_logged_without_error(served, 415)
