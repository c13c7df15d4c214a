"""Bodies over CALLBACKS_MAX_BODY_BYTES are refused without being read whole."""

from __future__ import annotations

import io

import pytest

LIMIT = 1024


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes that remembers how much was read."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.remaining)
        buffer[:count] = b"x" * count
        self.remaining -= count
        self.read_bytes += count
        return count


@pytest.fixture
def limited_client(make_client):
    return make_client(CALLBACKS_MAX_BODY_BYTES=str(LIMIT))


def _chunked_post(client, url: str, stream: CountingStream):
    # Transfer-Encoding: chunked means no Content-Length; the server (like
    # gunicorn) marks the stream as terminated so it may be read to its end.
    return client.post(
        url,
        headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )


def test_body_at_the_limit_is_accepted(limited_client, register, callbacks, callback_url):
    token = register()
    response = limited_client.post(
        callback_url(token=token), data="x" * LIMIT, content_type="text/plain"
    )
    assert response.status_code == 200
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"


def test_declared_content_length_over_the_limit_is_413_unread(
    limited_client, register, callbacks, callback_url
):
    token = register()
    stream = CountingStream(LIMIT + 1)
    response = limited_client.post(
        callback_url(token=token),
        headers={"Content-Type": "text/plain", "Content-Length": str(LIMIT + 1)},
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(LIMIT + 1)},
    )

    assert response.status_code == 413
    assert "error" in response.get_json()
    assert stream.read_bytes == 0
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_chunked_body_over_the_limit_is_413_after_limit_plus_one_bytes(
    limited_client, register, callbacks, callback_url
):
    token = register()
    stream = CountingStream(100 * LIMIT)

    response = _chunked_post(limited_client, callback_url(token=token), stream)

    assert response.status_code == 413
    assert "error" in response.get_json()
    # Neither the function nor functions-framework (which drains bodies after
    # non-streamed responses) read past the limit.
    assert stream.read_bytes == LIMIT + 1
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_chunked_body_within_the_limit_is_stored(limited_client, register, callbacks, callback_url):
    token = register()
    response = _chunked_post(limited_client, callback_url(token=token), CountingStream(LIMIT))
    assert response.status_code == 200
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"


def test_default_limit_is_64_kib(client, register, callback_url):
    token = register()
    too_big = client.post(callback_url(token=token), data=b"x" * (65_536 + 1))
    assert too_big.status_code == 413
    assert too_big.get_json() == {"error": "the body is larger than 65536 bytes"}
    assert client.post(callback_url(token=token), data=b"x" * 65_536).status_code == 200


def test_largest_body_the_pulumi_program_allows_is_stored(
    make_client, register, callbacks, callback_url
):
    # infra/args.py caps maxBodyBytes at 131072; such a body must fit the payload cap.
    client = make_client(CALLBACKS_MAX_BODY_BYTES="131072")
    token = register()
    response = client.post(callback_url(token=token), data=b"x" * 131_072)
    assert response.status_code == 200
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"


def test_payload_a_workflow_cannot_hold_is_413_and_not_stored(
    make_client, register, callbacks, callback_url
):
    # Within the body limit, but JSON escaping doubles every quote: the
    # payload would be over 150,000 bytes, more than a waiting workflow holds.
    client = make_client(CALLBACKS_MAX_BODY_BYTES="131072")
    token = register()
    response = client.post(callback_url(token=token), data='"' * 80_000, content_type="text/plain")
    assert response.status_code == 413
    assert "too large for a workflow to hold" in response.get_json()["error"]
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


# Every answer sent before the body is read closes the connection without
# reading it: an unauthenticated caller must not hold an instance reading a
# body nobody will use. 100 x LIMIT stands for a body of any size.
@pytest.mark.parametrize(
    ("method", "query", "status"),
    [
        ("POST", "runID=bad_id&step=approve&token=t", 400),
        ("POST", "step=approve&token=t", 400),
        ("DELETE", "runID=run-1&step=approve&token=t", 405),
    ],
)
def test_an_early_answer_reads_none_of_the_body(limited_client, method, query, status):
    stream = CountingStream(100 * LIMIT)

    response = limited_client.open(
        "/?" + query,
        method=method,
        headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )

    assert response.status_code == status
    assert "error" in response.get_json()
    assert response.headers["Connection"] == "close"
    assert stream.read_bytes == 0
