"""One test per row of the receiver's status table (docs/protocol.md)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest


def test_registered_callback_is_stored(callback_url, client, register, callbacks):
    token = register()
    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 200
    assert response.get_json() == {"status": "received", "runID": "run-1", "step": "approve"}
    stored = callbacks.document("run-1_approve").get().to_dict()
    assert stored["state"] == "RECEIVED"
    assert stored["responded"] is True
    assert stored["token"] == token  # the registration's fields are kept
    assert {"createdAt", "expireAt", "receivedAt"} <= stored.keys()
    assert stored["fingerprint"].startswith("sha256:")
    assert json.loads(stored["payload"])["body"] == {"approved": True}


def test_retry_with_the_same_payload_is_200_and_changes_nothing(
    callback_url, client, register, callbacks
):
    token = register()
    url = callback_url(token=token, value="yes")
    assert client.post(url, json={"a": 1}).status_code == 200
    before = callbacks.document("run-1_approve").get()

    # A retry may carry other headers (trace ids, a new user agent).
    retry = client.post(url, json={"a": 1}, headers={"User-Agent": "retrier/2"})

    assert retry.status_code == 200
    assert retry.get_json() == {"status": "received", "runID": "run-1", "step": "approve"}
    after = callbacks.document("run-1_approve").get()
    assert after.update_time == before.update_time
    assert after.to_dict() == before.to_dict()


def test_retry_once_the_document_is_gone_is_404(callback_url, client, register, callbacks):
    token = register()
    url = callback_url(token=token)
    assert client.post(url, json={"a": 1}).status_code == 200
    # Firestore's TTL removed the tombstone, or a waitForResponse from before
    # tombstones deleted the document on receipt (test_tombstones.py has the rest).
    callbacks.document("run-1_approve").delete()

    retry = client.post(url, json={"a": 1})

    # docs/protocol.md: with no document, consumed cannot be told from never registered.
    assert retry.status_code == 404
    assert retry.get_json() == {"error": "no callback is registered for this runID and step"}
    assert not callbacks.document("run-1_approve").get().exists


def test_retry_once_the_document_is_gone_with_unregistered_allowed_is_a_new_tokenless_callback(
    callback_url, make_client, register, callbacks
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true", CALLBACKS_TTL_SECONDS="3600")
    token = register()
    url = callback_url(token=token)
    assert client.post(url, json={"a": 1}).status_code == 200
    callbacks.document("run-1_approve").delete()  # the TTL, or a workflow before tombstones

    assert client.post(url, json={"a": 1}).status_code == 200

    stored = callbacks.document("run-1_approve").get().to_dict()
    assert stored["state"] == "RECEIVED"
    assert "token" not in stored  # so a later getCallbackURL for this step would find it
    assert stored["expireAt"] - stored["createdAt"] == timedelta(seconds=3600)


@pytest.mark.parametrize(
    "run_id, step",
    [
        (None, "approve"),
        ("run-1", None),
        ("", "approve"),
        ("run-1", ""),
        ("run_1", "approve"),  # "_" would make {runID}_{step} ambiguous
        ("run 1", "approve"),
        ("run-1", "appr ove"),
        ("run-1\n", "approve"),
    ],
)
def test_missing_or_malformed_ids_are_400(callback_url, client, callbacks, run_id, step):
    response = client.get(callback_url(run_id, step))

    assert response.status_code == 400
    assert "error" in response.get_json()
    assert list(callbacks.stream()) == []


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong", "TOKEN-IN-OTHER-CASE", "t\u00f6ken"],
    ids=["missing", "empty", "wrong", "other-case", "non-ascii"],
)
def test_missing_or_wrong_token_is_403_and_stores_nothing(
    callback_url, client, register, callbacks, token
):
    real = register()
    if token == "TOKEN-IN-OTHER-CASE":
        token = real.upper()
    before = callbacks.document("run-1_approve").get()

    response = client.get(callback_url(token=token))

    assert response.status_code == 403
    assert response.get_json() == {"error": "token missing or wrong for this callback"}
    after = callbacks.document("run-1_approve").get()
    assert after.update_time == before.update_time
    assert after.get("state") == "WAITING"


def test_wrong_token_is_403_even_after_receipt(callback_url, client, register):
    token = register()
    assert client.get(callback_url(token=token)).status_code == 200
    assert client.get(callback_url(token="wrong")).status_code == 403


def test_unregistered_callback_is_404_by_default(callback_url, client, callbacks):
    response = client.get(callback_url(token="anything", value="x"))

    assert response.status_code == 404
    assert "error" in response.get_json()
    assert not callbacks.document("run-1_approve").get().exists


def test_unregistered_callback_is_stored_with_expiry_when_allowed(
    callback_url, make_client, callbacks
):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true", CALLBACKS_TTL_SECONDS="3600")
    before = datetime.now(UTC)

    response = client.get(callback_url(value="early"))

    assert response.status_code == 200
    stored = callbacks.document("run-1_approve").get().to_dict()
    assert stored["state"] == "RECEIVED"
    assert "token" not in stored
    assert stored["value"] == "early"
    assert stored["createdAt"] >= before - timedelta(seconds=1)
    assert stored["expireAt"] - stored["createdAt"] == timedelta(seconds=3600)
    # An unregistered callback is not an open door for a different payload.
    assert client.get(callback_url(value="late")).status_code == 409


def test_unregistered_document_is_404_when_no_longer_allowed(callback_url, make_client, callbacks):
    callbacks.document("run-1_approve").set({"state": "RECEIVED", "fingerprint": "x"})
    assert make_client().get(callback_url()).status_code == 404


def test_a_document_in_a_state_the_receiver_does_not_know_is_409_and_kept(
    callback_url, client, callbacks, capsys
):
    # Not "already received with a different payload": nothing was received.
    # (CANCELLED is known since issue 22: test_cancelled.py.) A state from a
    # newer protocol, or written by something else:
    callbacks.document("run-1_approve").set({"state": "ARCHIVED", "token": "t0ken"})
    capsys.readouterr()

    response = client.post(callback_url(token="t0ken"), json={"approved": True})

    assert response.status_code == 409
    assert response.get_json() == {
        "error": "this callback is in a state the receiver does not accept"
    }
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["outcome"] == "unknown_state"
    assert callbacks.document("run-1_approve").get().to_dict() == {
        "state": "ARCHIVED",
        "token": "t0ken",
    }


@pytest.mark.parametrize("method", ["DELETE", "OPTIONS", "HEAD", "TRACE"])
def test_other_methods_are_405_with_allow(callback_url, client, register, callbacks, method):
    token = register()
    response = client.open(callback_url(token=token), method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST, PUT, PATCH"
    if method != "HEAD":
        assert "error" in response.get_json()
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH"])
def test_every_allowed_method_is_stored(callback_url, client, register, callbacks, method):
    token = register()
    assert client.open(callback_url(token=token), method=method).status_code == 200
    assert json.loads(callbacks.document("run-1_approve").get().get("payload"))["method"] == method


def test_different_payload_after_receipt_is_409_and_keeps_the_first(
    callback_url, client, register, callbacks
):
    token = register()
    assert client.post(callback_url(token=token), json={"approved": True}).status_code == 200

    response = client.post(callback_url(token=token), json={"approved": False})

    assert response.status_code == 409
    assert "error" in response.get_json()
    payload = json.loads(callbacks.document("run-1_approve").get().get("payload"))
    assert payload["body"] == {"approved": True}


def test_invalid_json_body_is_400(callback_url, client, register, callbacks):
    token = register()
    response = client.post(
        callback_url(token=token), data="{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


@pytest.mark.parametrize(
    "body",
    [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": [-Infinity]}',
        '{"big": 1e999}',
        '{"small": -1e999}',
    ],
)
def test_json_body_with_non_finite_numbers_is_400(callback_url, client, register, callbacks, body):
    # Python's json reads these; JSON and Workflows' json.decode do not.
    token = register()
    response = client.post(callback_url(token=token), data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "the body is not valid JSON"}
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_unexpected_error_is_a_json_500_without_details(callback_url, make_client, capsys):
    client = make_client(CALLBACKS_MAX_BODY_BYTES="lots")

    response = client.get(callback_url(token="secret-token-value"))

    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}
    assert "Traceback" not in response.get_data(as_text=True)
    out = capsys.readouterr().out
    entry = json.loads(out.strip().splitlines()[-1])
    assert entry["severity"] == "ERROR"
    assert "CALLBACKS_MAX_BODY_BYTES" in entry["error"]


def test_token_in_an_unexpected_error_is_redacted_from_the_log(
    callback_url, client, register, capsys, monkeypatch
):
    token = register()

    def fail_with_the_token(client, commits, collection, callback, *args, **kwargs):
        # An error whose text carries the token, as a library error quoting
        # the request or the document might.
        raise ValueError(f"cannot store callback with token {callback.token}")

    # main.py calls callback_store.record through the module loaded with it.
    monkeypatch.setattr(sys.modules["callback_store"], "record", fail_with_the_token)
    capsys.readouterr()

    response = client.get(callback_url(token=token))

    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}
    out = capsys.readouterr().out
    assert token not in out
    [entry] = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entry["severity"] == "ERROR"
    assert entry["error"] == "ValueError: cannot store callback with token [redacted]"
    assert "cannot store callback with token [redacted]" in entry["stack_trace"]
