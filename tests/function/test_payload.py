"""What the receiver stores: value, payload JSON, headers, identifiers."""

from __future__ import annotations

import base64
import json
import re

import pytest


def _stored(callbacks, doc_id: str = "run-1_approve") -> tuple[dict, dict]:
    document = callbacks.document(doc_id).get().to_dict()
    return document, json.loads(document["payload"])


def test_get_with_value_behaves_like_the_seed(client, register, callbacks, callback_url):
    token = register()
    assert client.get(callback_url(token=token, value="42")).status_code == 200

    document, payload = _stored(callbacks)
    assert document["responded"] is True
    assert document["value"] == "42"
    assert payload["method"] == "GET"
    assert payload["value"] == "42"
    assert payload["body"] is None
    assert payload["contentType"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", payload["receivedAt"])


def test_value_is_null_when_absent(client, register, callbacks, callback_url):
    token = register()
    assert client.get(callback_url(token=token)).status_code == 200
    document, payload = _stored(callbacks)
    assert document["value"] is None
    assert payload["value"] is None


def test_post_json_body_is_parsed(client, register, callbacks, callback_url):
    token = register()
    body = {"approved": True, "by": "Zo\u00eb", "items": [1, 2.5, None]}
    assert client.post(callback_url(token=token), json=body).status_code == 200

    _, payload = _stored(callbacks)
    assert payload["body"] == body
    assert payload["contentType"] == "application/json"


def test_vendor_json_types_are_parsed(client, register, callbacks, callback_url):
    token = register()
    response = client.post(
        callback_url(token=token), data='{"a": 1}', content_type="application/vnd.api+json"
    )
    assert response.status_code == 200
    assert _stored(callbacks)[1]["body"] == {"a": 1}


def test_form_post_is_a_map(client, register, callbacks, callback_url):
    token = register()
    form = {"decision": "approve", "note": "looks good & ok", "tag": ["a", "b"]}
    assert client.post(callback_url(token=token), data=form).status_code == 200

    _, payload = _stored(callbacks)
    assert payload["contentType"] == "application/x-www-form-urlencoded"
    assert payload["body"] == form


def test_text_body_is_text(client, register, callbacks, callback_url):
    token = register()
    response = client.put(
        callback_url(token=token), data="job 7 done \u2713", content_type="text/plain"
    )
    assert response.status_code == 200
    _, payload = _stored(callbacks)
    assert payload["method"] == "PUT"
    assert payload["contentType"] == "text/plain"
    assert payload["body"] == "job 7 done \u2713"


def test_text_body_honours_its_charset(client, register, callbacks, callback_url):
    token = register()
    response = client.post(
        callback_url(token=token),
        data="caf\u00e9".encode("latin-1"),
        content_type="text/plain; charset=iso-8859-1",
    )
    assert response.status_code == 200
    assert _stored(callbacks)[1]["body"] == "caf\u00e9"


@pytest.mark.parametrize(
    "content_type, body",
    [
        # Decoders that produce lone surrogates, which are not text.
        ("text/plain; charset=utf-7", b"a+2AA-b"),
        ("text/plain; charset=unicode_escape", b"a\\ud800b"),
        ("application/x-www-form-urlencoded; charset=utf-7", b"x=+2AA-"),
        # Bytes that are not valid text in the declared charset.
        ("text/plain; charset=idna", b"caf\xc3\xa9"),
        ("text/plain; charset=punycode", b"a\xffb"),
        ("text/plain; charset=undefined", b"ok"),
        ("text/plain", b"caf\xe9"),
        ("application/x-www-form-urlencoded", b"x=%FF"),
    ],
)
def test_a_body_that_is_not_valid_text_is_kept_as_base64(
    client, register, callbacks, callback_url, content_type, body
):
    token = register()
    response = client.post(callback_url(token=token), data=body, content_type=content_type)
    assert response.status_code == 200
    payload = _stored(callbacks)[1]
    assert payload["bodyEncoding"] == "base64"
    assert base64.b64decode(payload["body"]) == body


@pytest.mark.parametrize(
    "content_type, body, stored",
    [
        # A charset Python does not know, or no text encoding: read as UTF-8.
        ("text/plain; charset=base64", b"aGk=", "aGk="),
        ("text/plain; charset=x-made-up", b"caf\xc3\xa9", "caf\u00e9"),
    ],
)
def test_an_unknown_charset_is_read_as_utf8(
    client, register, callbacks, callback_url, content_type, body, stored
):
    token = register()
    response = client.post(callback_url(token=token), data=body, content_type=content_type)
    assert response.status_code == 200
    assert _stored(callbacks)[1]["body"] == stored
    assert _stored(callbacks)[1]["bodyEncoding"] == "text"


@pytest.mark.parametrize(
    "body",
    [
        '{"x": "\\ud800"}',
        '{"\\udfff": 1}',
        '[["ok", "\\udc00"]]',
        '"\\ud83d"',
        # Raw bytes of a surrogate: Python's json decodes bytes with "surrogatepass".
        b'{"x": "\xed\xa0\x80"}',
    ],
)
def test_json_body_with_a_lone_surrogate_is_400(client, register, callbacks, callback_url, body):
    token = register()
    response = client.post(callback_url(token=token), data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "the body is not valid JSON"}
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_json_body_with_a_surrogate_pair_is_stored(client, register, callbacks, callback_url):
    token = register()
    response = client.post(
        callback_url(token=token), data='{"x": "\\ud83d\\ude00"}', content_type="application/json"
    )
    assert response.status_code == 200
    assert _stored(callbacks)[1]["body"] == {"x": "\U0001f600"}


def test_only_allow_listed_headers_are_kept(client, register, callbacks, callback_url):
    token = register()
    headers = {
        "Authorization": "Bearer top-secret",
        "Cookie": "session=top-secret",
        "X-Api-Key": "top-secret",
        "Proxy-Authorization": "Basic top-secret",
        "X-Forwarded-For": "203.0.113.9",
        "User-Agent": "batch-runner/1.0",
        "X-Request-Id": "req-123",
        "Accept": "application/json",
    }
    response = client.post(callback_url(token=token), json={"x": 1}, headers=headers)
    assert response.status_code == 200

    document, payload = _stored(callbacks)
    assert payload["headers"] == {
        "accept": "application/json",
        "content-type": "application/json",
        "user-agent": "batch-runner/1.0",
        "x-request-id": "req-123",
    }
    assert "top-secret" not in document["payload"]


def test_token_is_never_stored_in_the_payload(client, register, callbacks, callback_url):
    token = register()
    url = callback_url(token=token, value="v", extra="1")
    assert client.get(url, headers={"Referer": f"https://example.com{url}"}).status_code == 200

    document, payload = _stored(callbacks)
    assert payload["query"] == {"runID": "run-1", "step": "approve", "value": "v", "extra": "1"}
    assert token not in document["payload"]


def test_repeated_query_parameters_become_lists(client, register, callbacks, callback_url):
    token = register()
    assert client.get(callback_url(token=token, tag=["a", "b"])).status_code == 200
    assert _stored(callbacks)[1]["query"]["tag"] == ["a", "b"]


@pytest.mark.parametrize(
    "raw, decoded",
    [
        ("h%C3%A9llo%20w%C3%B6rld", "h\u00e9llo w\u00f6rld"),
        ("%E2%9C%93", "\u2713"),
        ("%F0%9F%8E%89", "\U0001f389"),
        ("a%26b%3Dc%2Fd%3F", "a&b=c/d?"),
        ("a+b", "a b"),
        ("100%25", "100%"),
        ("", ""),
    ],
)
def test_unicode_and_percent_encoded_values_are_decoded(client, register, callbacks, raw, decoded):
    token = register()
    response = client.get(f"/?runID=run-1&step=approve&token={token}&value={raw}")
    assert response.status_code == 200

    document, payload = _stored(callbacks)
    assert document["value"] == decoded
    assert payload["value"] == decoded


def test_ids_at_the_length_limit_are_accepted(client, callbacks, register, callback_url):
    run_id, step = "r" * 128, "s" * 128
    token = register(run_id, step)
    assert client.get(callback_url(run_id, step, token=token)).status_code == 200
    assert callbacks.document(f"{run_id}_{step}").get().get("state") == "RECEIVED"


@pytest.mark.parametrize("run_id, step", [("r" * 129, "s"), ("r", "s" * 129)])
def test_ids_one_past_the_length_limit_are_400(make_client, callbacks, callback_url, run_id, step):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    assert client.get(callback_url(run_id, step)).status_code == 400
    assert list(callbacks.stream()) == []


@pytest.mark.parametrize(
    "run_id, step",
    [
        ("..", "approve"),
        (".", "approve"),
        ("run-1", ".."),
        ("run-1", "."),
        ("run-1/..", "approve"),
        ("run-1", "../../other_doc"),
        ("a/b", "approve"),
        ("run-1", "approve/x"),
        ("/", "approve"),
        ("__x__", "approve"),
        ("run-1", "%2E%2E"),
        ("run-1", "appro\u00e9"),
    ],
)
def test_path_traversal_and_reserved_ids_are_400(
    make_client, callbacks, callback_url, run_id, step
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    assert client.get(callback_url(run_id, step)).status_code == 400
    assert list(callbacks.stream()) == []


def test_underscores_in_step_cannot_form_a_reserved_document_id(
    make_client, callbacks, callback_url
):
    # Firestore reserves ids matching __.*__; ours always start with the runID,
    # which has no "_", so a step like __x__ is harmless and stored verbatim.
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    assert client.get(callback_url("r", "__x__")).status_code == 200
    assert [d.id for d in callbacks.stream()] == ["r___x__"]


def test_the_fingerprint_of_a_request_never_changes(make_client, callbacks, callback_url):
    """A caller's retry is recognised by it, also after the receiver is redeployed.

    Computed by the receiver as it was when the fingerprint was introduced:
    SHA-256 of the JSON (sorted keys, not ASCII-escaped) of the method,
    query, Content-Type and value, a NUL byte, and the body as sent.
    """
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    url = callback_url(token=None, value="ja ✓", tag=["b", "a"])

    response = client.post(url, data=b'{"n": 1}', content_type="application/json; charset=utf-8")

    assert response.status_code == 200
    assert callbacks.document("run-1_approve").get().get("fingerprint") == (
        "sha256:1a3d4a849cc065f1c53158366b5446b08a7df23c6016dde63245a8609372a2bd"
    )


@pytest.mark.parametrize(
    "name",
    [
        "Content-Type",
        "content-type",
        "Content-Length",
        "Content-Encoding",
        "Origin",
        "User-Agent",
        "x-cloud-trace-context",
        "traceparent",
        "X-Absent",
    ],
)
def test_a_header_is_read_as_werkzeug_reads_it(name):
    """callback_request.header reads the WSGI environ itself, for speed: same answers."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from infra.function_modules import function_module

    environ = EnvironBuilder(
        method="POST",
        data=b'{"n": 1}',
        content_type="application/json; charset=utf-8",
        headers={
            "Content-Encoding": "identity",
            "Origin": "https://app.example.com",
            "User-Agent": "batch-runner/1.0",
            "X-Cloud-Trace-Context": "4bf92f3577b34da6a3ce929d0e0e4736/1;o=1",
        },
    ).get_environ()
    request = Request(environ)

    assert function_module("callback_request").header(request, name) == request.headers.get(name)
