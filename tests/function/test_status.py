"""``GET <callback URL>&view=status``: the state and its times, for the holder of the token.

It reads once and never writes: the document (and its update time) is the
same after any number of status reads, and a status request is never
taken as the callback. A bad token or an unknown id gets exactly the answer
a callback would.
"""

from __future__ import annotations

import json

import pytest

from local.registration import rfc3339

NULL_TIMES = {"receivedAt": None, "consumedAt": None, "expiredAt": None, "cancelledAt": None}


def status_url(callback_url, *ids: str, **params) -> str:
    return callback_url(*ids, view="status", **params)


def read_status(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def documents(callbacks) -> dict[str, tuple]:
    """Every document in the collection: id -> (update time, fields)."""
    return {doc.id: (doc.update_time, doc.to_dict()) for doc in callbacks.stream()}


def times_of(callbacks, *names: str) -> dict[str, str]:
    stored = callbacks.document("run-1_approve").get().to_dict()
    return {name: rfc3339(stored[name]) for name in names}


def test_before_registration_it_is_404_as_for_a_callback(client, callback_url):
    status = client.get(status_url(callback_url, token="f" * 64))
    callback = client.get(callback_url(token="f" * 64))

    assert status.status_code == 404
    assert status.get_json() == callback.get_json()


def test_the_status_follows_a_wait_from_waiting_to_consumed(
    client, register, callback_url, callbacks, tombstone
):
    token = register()
    url = status_url(callback_url, token=token)

    waiting = read_status(client, url)
    assert waiting == {
        "state": "waiting",
        **times_of(callbacks, "createdAt", "expireAt"),
        **NULL_TIMES,
    }

    assert client.post(callback_url(token=token), json={"ok": True}).status_code == 200
    received = read_status(client, url)
    assert received == {
        **waiting,
        "state": "received",
        **times_of(callbacks, "receivedAt"),
    }

    tombstone("CONSUMED")
    consumed = read_status(client, url)
    assert consumed == {**received, "state": "consumed", **times_of(callbacks, "consumedAt")}


def test_the_status_after_a_timeout_says_expired_and_when(
    client, register, callback_url, callbacks, tombstone
):
    token = register()
    tombstone("EXPIRED")

    status = read_status(client, status_url(callback_url, token=token))

    assert status == {
        "state": "expired",
        **times_of(callbacks, "createdAt", "expireAt", "expiredAt"),
        "receivedAt": None,
        "consumedAt": None,
        "cancelledAt": None,
    }


@pytest.mark.parametrize("state", ["WAITING", "RECEIVED", "CONSUMED", "EXPIRED"])
def test_a_wrong_or_missing_token_is_403_with_a_callbacks_body_in_every_state(
    client, register, callback_url, callbacks, tombstone, state
):
    token = register()
    if state in ("RECEIVED", "CONSUMED"):
        assert client.post(callback_url(token=token), json={"ok": True}).status_code == 200
    if state in ("CONSUMED", "EXPIRED"):
        tombstone(state)
    before = documents(callbacks)
    forbidden_callback = {"error": "token missing or wrong for this callback"}

    for url in (status_url(callback_url, token="f" * 64), status_url(callback_url)):
        response = client.get(url)
        assert response.status_code == 403
        assert response.get_json() == forbidden_callback  # no state, no time
    assert documents(callbacks) == before


def test_an_unknown_id_is_404_with_a_callbacks_body(client, register, callback_url):
    token = register()

    status = client.get(status_url(callback_url, "run-2", token=token))
    callback = client.post(callback_url("run-2", token=token), json={})

    assert (status.status_code, callback.status_code) == (404, 404)
    assert status.get_json() == callback.get_json()


def test_reading_the_status_never_writes(client, register, callback_url, callbacks, capsys):
    token = register()
    before = documents(callbacks)
    capsys.readouterr()

    for _ in range(3):
        assert read_status(client, status_url(callback_url, token=token))["state"] == "waiting"

    # The callback document and its key document: same fields, same versions.
    assert documents(callbacks) == before
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["outcome"], e["status"], e["firestoreCalls"]) for e in entries] == [
        ("status", 200, 1)
    ] * 3
    # And the callback it did not take is still welcome, with its one Commit.
    assert client.post(callback_url(token=token), json={"ok": True}).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "HEAD", "DELETE"])
def test_a_status_url_is_never_taken_as_the_callback(
    client, register, callback_url, callbacks, method
):
    token = register()
    before = documents(callbacks)

    response = client.open(
        status_url(callback_url, token=token, value="approve"), method=method, json={"ok": True}
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert documents(callbacks) == before


def test_a_get_with_a_value_on_the_status_url_stores_nothing(
    client, register, callback_url, callbacks
):
    # The seed-compatible GET ?value= answers; with view=status it only reads.
    token = register()
    before = documents(callbacks)

    status = read_status(client, status_url(callback_url, token=token, value="approve"))

    assert status["state"] == "waiting"
    assert documents(callbacks) == before


def test_a_state_the_receiver_does_not_know_is_409_as_for_a_callback(client, callbacks, capsys):
    callbacks.document("run-1_approve").set({"state": "PAUSED", "token": "t0ken"})

    response = client.get("/?runID=run-1&step=approve&token=t0ken&view=status")

    assert response.status_code == 409
    assert response.get_json() == {
        "error": "this callback is in a state the receiver does not accept"
    }


def test_an_unregistered_callback_has_a_status_only_where_it_is_allowed(
    make_client, callback_url, callbacks
):
    allowing = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    assert allowing.get(callback_url(value="early")).status_code == 200

    assert read_status(allowing, status_url(callback_url))["state"] == "received"
    refusing = make_client(CALLBACKS_ALLOW_UNREGISTERED="false")
    assert refusing.get(status_url(callback_url)).status_code == 404
