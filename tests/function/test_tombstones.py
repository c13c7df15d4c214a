"""Answers on tombstones: what the receiver says once the workflow took the callback or gave up.

waitForResponse leaves the callback document as a tombstone until its TTL
(CONSUMED: it took the callback; EXPIRED: it stopped waiting), written here
directly as the contract says (conftest's ``tombstone``). Each test checks
the answer and that the document is exactly as it was: nothing lost,
nothing stored twice, nothing forwarded again.
"""

from __future__ import annotations

import json

import pytest

from local.registration import rfc3339

FORM = {
    "title": "Deploy 1.4",
    "choices": [{"value": "approve", "label": "Approve"}, {"value": "reject", "label": "Reject"}],
}


def last_log(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def snapshot_of(callbacks, document_id: str = "run-1_approve"):
    return callbacks.document(document_id).get()


def assert_unchanged(before, after) -> None:
    assert after.update_time == before.update_time
    assert after.to_dict() == before.to_dict()


# --- CONSUMED: the workflow has the callback ---------------------------------------------
def test_a_senders_retry_after_consumption_is_200_already_delivered_and_changes_nothing(
    client, register, callback_url, callbacks, tombstone, capsys
):
    token = register()
    url = callback_url(token=token, value="yes")
    assert client.post(url, json={"a": 1}).status_code == 200
    consumed_at = tombstone("CONSUMED")
    before = snapshot_of(callbacks)
    capsys.readouterr()

    retry = client.post(url, json={"a": 1}, headers={"User-Agent": "retrier/2"})

    assert retry.status_code == 200
    assert retry.get_json() == {
        "status": "already_delivered",
        "runID": "run-1",
        "step": "approve",
        "receivedAt": rfc3339(before.get("receivedAt")),
        "consumedAt": rfc3339(before.get("consumedAt")),
    }
    assert before.get("consumedAt") == consumed_at
    assert_unchanged(before, snapshot_of(callbacks))
    entry = last_log(capsys)
    # The blind Commit fails (the key is gone), one read decides.
    assert (entry["outcome"], entry["severity"], entry["firestoreCalls"]) == (
        "already_delivered",
        "INFO",
        2,
    )


def test_a_different_payload_after_consumption_is_409_and_changes_nothing(
    client, register, callback_url, callbacks, tombstone
):
    token = register()
    assert client.post(callback_url(token=token), json={"a": 1}).status_code == 200
    tombstone("CONSUMED")
    before = snapshot_of(callbacks)

    other = client.post(callback_url(token=token), json={"a": 2})

    assert other.status_code == 409
    assert other.get_json() == {
        "error": "this callback was already received with a different payload"
    }
    assert_unchanged(before, snapshot_of(callbacks))


@pytest.mark.parametrize("state", ["CONSUMED", "EXPIRED"])
def test_a_wrong_token_on_a_tombstone_is_403_as_for_any_registration(
    client, register, callback_url, callbacks, tombstone, state
):
    token = register()
    if state == "CONSUMED":
        assert client.post(callback_url(token=token), json={"a": 1}).status_code == 200
    tombstone(state)
    before = snapshot_of(callbacks)

    forged = client.post(callback_url(token=token).replace(token, "f" * 64), json={"a": 1})
    missing = client.post(callback_url(), json={"a": 1})

    for response in (forged, missing):
        assert response.status_code == 403
        # No state, no time: the same body as before any callback.
        assert response.get_json() == {"error": "token missing or wrong for this callback"}
    assert_unchanged(before, snapshot_of(callbacks))


def test_after_the_ttl_the_tombstone_is_gone_and_the_answer_is_404(
    client, register, callback_url, callbacks, tombstone
):
    token = register()
    url = callback_url(token=token)
    assert client.post(url, json={"a": 1}).status_code == 200
    tombstone("CONSUMED")
    callbacks.document("run-1_approve").delete()  # Firestore's TTL

    response = client.post(url, json={"a": 1})

    assert response.status_code == 404
    assert response.get_json() == {"error": "no callback is registered for this runID and step"}
    assert not snapshot_of(callbacks).exists


def test_an_unregistered_callback_retried_after_consumption_is_not_stored_again(
    make_client, callback_url, callbacks, tombstone
):
    # Without the tombstone the retry became a new token-less callback, which
    # a later wait for the same step would have returned as if it were new.
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")
    assert client.post(callback_url(), json={"a": 1}).status_code == 200
    tombstone("CONSUMED")
    before = snapshot_of(callbacks)

    retry = client.post(callback_url(), json={"a": 1})
    other = client.post(callback_url(), json={"a": 2})

    assert (retry.status_code, retry.get_json()["status"]) == (200, "already_delivered")
    assert other.status_code == 409
    assert_unchanged(before, snapshot_of(callbacks))


# --- EXPIRED: the workflow stopped waiting -----------------------------------------------
@pytest.mark.parametrize(
    ("reg", "calls"),
    [("kept", 2), (None, 1)],  # a failed Commit and a read; a read
    ids=["one-commit-url", "url-without-reg"],
)
def test_a_callback_after_a_timeout_is_410_saying_when_and_changes_nothing(
    client, register, callback_url, callbacks, tombstone, capsys, reg, calls
):
    token = register()
    url = callback_url(token=token) if reg else callback_url(token=token, reg=None)
    tombstone("EXPIRED")
    before = snapshot_of(callbacks)
    key = before.get("key")
    capsys.readouterr()

    late = client.post(url, json={"approved": True})

    assert late.status_code == 410
    assert late.get_json() == {
        "error": "the workflow stopped waiting for this callback",
        "expiredAt": rfc3339(before.get("expiredAt")),
    }
    assert_unchanged(before, snapshot_of(callbacks))
    # The key document stays for its TTL: it stored nothing.
    assert callbacks.document(key).get().exists
    entry = last_log(capsys)
    assert (entry["outcome"], entry["severity"], entry["firestoreCalls"]) == (
        "expired",
        "WARNING",
        calls,
    )


# --- the page --------------------------------------------------------------------------
def page_url(token: str) -> str:
    return f"/?runID=run-1&step=approve&token={token}&view=page"


def choose(client, token: str, choice: str):
    return client.post(
        page_url(token),
        data={"choice": choice, "comment": ""},
        content_type="application/x-www-form-urlencoded",
    )


def test_a_second_different_choice_after_consumption_is_409_with_the_answered_page(
    client, register, callbacks, tombstone
):
    token = register(form_json=json.dumps(FORM))
    assert choose(client, token, "reject").status_code == 200
    tombstone("CONSUMED")
    before = snapshot_of(callbacks)

    second = choose(client, token, "approve")

    assert second.status_code == 409
    html = second.get_data(as_text=True)
    assert second.headers["Content-Type"] == "text/html; charset=utf-8"
    when = before.get("receivedAt").strftime("%Y-%m-%d %H:%M UTC")
    assert f"Already answered: Reject ({when})." in html
    # The very page a reload shows.
    shown = client.get(page_url(token))
    assert shown.status_code == 200
    assert f"Already answered: Reject ({when})." in shown.get_data(as_text=True)
    assert_unchanged(before, snapshot_of(callbacks))


def test_the_same_choice_again_after_consumption_is_a_thank_you_and_changes_nothing(
    client, register, callbacks, tombstone
):
    token = register(form_json=json.dumps(FORM))
    assert choose(client, token, "reject").status_code == 200
    tombstone("CONSUMED")
    before = snapshot_of(callbacks)

    again = choose(client, token, "reject")

    assert again.status_code == 200
    assert "Your answer was recorded: Reject." in again.get_data(as_text=True)
    assert_unchanged(before, snapshot_of(callbacks))


def test_the_page_after_a_timeout_is_410_saying_when_the_workflow_stopped_waiting(
    client, register, callbacks, tombstone
):
    token = register(form_json=json.dumps(FORM))
    tombstone("EXPIRED")
    before = snapshot_of(callbacks)
    when = before.get("expiredAt").strftime("%Y-%m-%d %H:%M UTC")

    shown = client.get(page_url(token))
    posted = choose(client, token, "approve")

    for response in (shown, posted):
        assert response.status_code == 410
        html = response.get_data(as_text=True)
        assert f"The workflow stopped waiting for an answer at {when}." in html
        assert "<form" not in html
        assert response.headers["Cache-Control"] == "no-store"
    assert_unchanged(before, snapshot_of(callbacks))


@pytest.mark.parametrize("state", ["CONSUMED", "EXPIRED"])
def test_the_page_of_a_tombstone_with_a_wrong_token_is_the_unknown_link_page(
    client, register, callbacks, tombstone, state
):
    token = register(form_json=json.dumps(FORM))
    if state == "CONSUMED":
        assert choose(client, token, "reject").status_code == 200
    tombstone(state)
    before = snapshot_of(callbacks)

    shown = client.get(page_url("f" * 64))
    posted = choose(client, "f" * 64, "approve")

    for response in (shown, posted):
        assert response.status_code == 404
        assert "This link has expired or is unknown." in response.get_data(as_text=True)
    assert_unchanged(before, snapshot_of(callbacks))
