"""Bodies as real webhook senders post them: each stored exactly, or refused with a reason.

Never a 200 for a body that was changed on the way: bytes that are not text
are kept as base64, compressed bodies are decoded, and what cannot be stored
faithfully gets a 4xx that says why.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest

LIMIT = 4096


def stored_payload(callbacks) -> dict:
    return json.loads(callbacks.document("run-1_approve").get().get("payload"))


@pytest.fixture
def small_client(make_client):
    return make_client(CALLBACKS_MAX_BODY_BYTES=str(LIMIT))


def test_github_style_json_is_parsed(client, register, callbacks, callback_url):
    event = {"action": "completed", "check_run": {"id": 4, "conclusion": "success"}}
    response = client.post(
        callback_url(token=register()),
        data=json.dumps(event),
        headers={"Content-Type": "application/json", "X-GitHub-Event": "check_run"},
    )

    assert response.status_code == 200
    payload = stored_payload(callbacks)
    assert (payload["bodyEncoding"], payload["body"]) == ("json", event)


def test_twilio_style_form_is_a_map(client, register, callbacks, callback_url):
    form = "MessageSid=SM1&From=%2B15551234567&Body=Yes+%E2%9C%93"
    response = client.post(
        callback_url(token=register()),
        data=form,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    payload = stored_payload(callbacks)
    assert payload["bodyEncoding"] == "form"
    assert payload["body"] == {"MessageSid": "SM1", "From": "+15551234567", "Body": "Yes \u2713"}


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("text/plain", "job 7 done \u2713"),
        ("application/xml", '<?xml version="1.0"?><job id="7">done</job>'),
        ("application/atom+xml", "<feed/>"),
        ("text/csv; charset=iso-8859-1", "caf\u00e9;1"),
    ],
)
def test_text_types_are_text(client, register, callbacks, callback_url, content_type, text):
    charset = "iso-8859-1" if "iso-8859-1" in content_type else "utf-8"
    response = client.post(
        callback_url(token=register()), data=text.encode(charset), content_type=content_type
    )

    assert response.status_code == 200
    payload = stored_payload(callbacks)
    assert (payload["bodyEncoding"], payload["body"]) == ("text", text)


def test_every_byte_of_an_octet_stream_is_kept(client, register, callbacks, callback_url):
    every_byte = bytes(range(256))
    response = client.post(
        callback_url(token=register()), data=every_byte, content_type="application/octet-stream"
    )

    assert response.status_code == 200
    payload = stored_payload(callbacks)
    assert payload["bodyEncoding"] == "base64"
    assert base64.b64decode(payload["body"]) == every_byte


def test_a_body_without_content_type_is_text_if_it_is_text_and_base64_if_not(
    client, register, callbacks, callback_url
):
    token = register()
    assert client.post(callback_url(token=token), data="plain words").status_code == 200
    assert stored_payload(callbacks)["body"] == "plain words"

    other = register(step="binary")
    url = callback_url(step="binary", token=other)
    assert client.post(url, data=b"\x89PNG\r\n\x1a\n\x00").status_code == 200
    payload = json.loads(callbacks.document("run-1_binary").get().get("payload"))
    assert payload["bodyEncoding"] == "base64"
    assert base64.b64decode(payload["body"]) == b"\x89PNG\r\n\x1a\n\x00"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate, as some send
    ],
)
def test_compressed_json_is_decoded(client, register, callbacks, callback_url, encoding, compress):
    body = {"approved": True, "by": "r\u00e9mi"}
    response = client.post(
        callback_url(token=register()),
        data=compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )

    assert response.status_code == 200, response.get_json()
    assert stored_payload(callbacks)["body"] == body


def test_a_retry_with_other_compression_is_the_same_callback(
    client, register, callbacks, callback_url
):
    url = callback_url(token=register())
    raw = json.dumps({"approved": True}).encode()
    plain = client.post(url, data=raw, content_type="application/json")
    zipped = client.post(
        url,
        data=gzip.compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert (plain.status_code, zipped.status_code) == (200, 200)


def test_a_decompression_bomb_is_413_and_stores_nothing(
    small_client, register, callbacks, callback_url
):
    bomb = gzip.compress(b"0" * (100 * LIMIT))
    assert len(bomb) < LIMIT
    response = small_client.post(
        callback_url(token=register()),
        data=bomb,
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 413
    assert response.get_json() == {"error": f"the body is larger than {LIMIT} bytes once decoded"}
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_an_unsupported_content_encoding_is_415_naming_it(
    client, register, callbacks, callback_url
):
    response = client.post(
        callback_url(token=register()),
        data=b"\x1b\x00\x00",
        headers={"Content-Type": "application/json", "Content-Encoding": "br"},
    )

    assert response.status_code == 415
    assert response.get_json() == {
        "error": "Content-Encoding br is not supported (use gzip, deflate or none)"
    }
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_a_body_that_does_not_match_its_content_encoding_is_400(client, register, callback_url):
    response = client.post(
        callback_url(token=register()),
        data=b"not gzip at all",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 400
    assert "Content-Encoding" in response.get_json()["error"]


def test_json_in_latin1_is_decoded_by_its_charset(client, register, callbacks, callback_url):
    response = client.post(
        callback_url(token=register()),
        data='{"by": "Ren\u00e9e"}'.encode("latin-1"),
        content_type="application/json; charset=latin-1",
    )

    assert response.status_code == 200, response.get_json()
    assert stored_payload(callbacks)["body"] == {"by": "Ren\u00e9e"}


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        (
            "application/json; charset=x-made-up",
            b'{"a": 1}',
            "the JSON body's charset x-made-up is not a text encoding we know",
        ),
        (
            "application/json; charset=utf-7",
            b'{"a": "+2AA-"}',
            "the body is not valid JSON",
        ),
        (
            "application/json; charset=ascii",
            b'{"a": "\xe9"}',
            "the JSON body is not valid ascii text",
        ),
    ],
)
def test_json_that_cannot_be_read_in_its_charset_is_400_saying_why(
    client, register, callbacks, callback_url, content_type, body, error
):
    response = client.post(callback_url(token=register()), data=body, content_type=content_type)

    assert response.status_code == 400
    assert response.get_json() == {"error": error}
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


MULTIPART = (
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="comment"\r\n\r\n'
    b"looks good \xe2\x9c\x93\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="report"; filename="report.bin"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n" + bytes(range(256)) + b"\r\n--XyZ\r\n"
    b'Content-Disposition: form-data; name="raw"\r\n\r\n'
    b"\xff\xfe\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="tag"\r\n\r\n'
    b"a\r\n"
    b"--XyZ\r\n"
    b'Content-Disposition: form-data; name="tag"\r\n\r\n'
    b"b\r\n"
    b"--XyZ--\r\n"
)


def test_multipart_becomes_fields_and_files_without_losing_a_byte(
    client, register, callbacks, callback_url
):
    response = client.post(
        callback_url(token=register()),
        data=MULTIPART,
        content_type="multipart/form-data; boundary=XyZ",
    )

    assert response.status_code == 200, response.get_json()
    payload = stored_payload(callbacks)
    assert payload["bodyEncoding"] == "multipart"
    body = payload["body"]
    assert body["comment"] == "looks good \u2713"
    assert body["tag"] == ["a", "b"]
    report = body["report"]
    assert (report["filename"], report["contentType"], report["encoding"]) == (
        "report.bin",
        "application/octet-stream",
        "base64",
    )
    assert base64.b64decode(report["data"]) == bytes(range(256))
    # A field whose bytes are not text is kept the same way.
    assert body["raw"]["filename"] is None
    assert base64.b64decode(body["raw"]["data"]) == b"\xff\xfe"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", MULTIPART),  # no boundary
        ("multipart/form-data; boundary=XyZ", MULTIPART[: len(MULTIPART) // 2]),  # cut short
    ],
)
def test_a_malformed_multipart_body_is_400(
    client, register, callbacks, callback_url, content_type, body
):
    response = client.post(callback_url(token=register()), data=body, content_type=content_type)

    assert response.status_code == 400
    assert "multipart" in response.get_json()["error"]
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_a_multipart_body_over_the_limit_is_413(small_client, register, callback_url):
    big = MULTIPART.replace(bytes(range(256)), bytes(range(256)) * 20)
    response = small_client.post(
        callback_url(token=register()), data=big, content_type="multipart/form-data; boundary=XyZ"
    )

    assert response.status_code == 413
