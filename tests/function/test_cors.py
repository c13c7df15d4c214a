"""Browser callers: CORS for the origins the stack allows, and for no other."""

from __future__ import annotations

import pytest

from tests.function.test_limits import CountingStream

ALLOWED = "http://127.0.0.1:8123"


@pytest.fixture
def cors_client(make_client):
    return make_client(CALLBACKS_ALLOWED_ORIGINS=f"{ALLOWED}, https://app.example.com")


def test_an_allowed_origin_gets_its_preflight_answered(cors_client, callback_url):
    response = cors_client.options(
        callback_url(token="t"),
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert response.headers["Vary"] == "Origin"


def test_a_status_urls_preflight_offers_only_reading(cors_client, callback_url):
    response = cors_client.options(
        callback_url(token="t", view="status"),
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Methods"] == "GET"


def test_a_preflight_declaring_a_body_is_answered_unread_and_closed(cors_client, callback_url):
    # A browser's preflight has no body: one that declares a gigabyte is not
    # read, and the connection is closed so the server does not read it either.
    stream = CountingStream(1_000_000_000)
    response = cors_client.options(
        callback_url(token="t"),
        headers={"Origin": ALLOWED},
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": "1000000000"},
    )
    plain = cors_client.options(callback_url(token="t"), headers={"Origin": ALLOWED})

    assert response.status_code == plain.status_code == 204
    assert response.headers["Connection"] == "close"
    assert stream.read_bytes == 0
    assert "Connection" not in plain.headers


def test_an_allowed_origins_callback_is_answered_with_the_header(
    cors_client, register, callbacks, callback_url
):
    response = cors_client.post(
        callback_url(token=register()), json={"ok": True}, headers={"Origin": ALLOWED}
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9999", "https://evil.example", "null"])
def test_other_origins_get_nothing_new(cors_client, register, callback_url, origin):
    preflight = cors_client.options(callback_url(token="t"), headers={"Origin": origin})
    post = cors_client.post(
        callback_url(token=register()), json={"ok": True}, headers={"Origin": origin}
    )

    assert preflight.status_code == 405
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Origin" not in post.headers


def test_by_default_no_origin_is_allowed(client, callback_url):
    response = client.options(callback_url(token="t"), headers={"Origin": ALLOWED})

    assert response.status_code == 405
    assert "Access-Control-Allow-Origin" not in response.headers
