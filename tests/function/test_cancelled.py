"""Answers on a CANCELLED registration: an operator ended the wait (python -m ops cancel).

As for EXPIRED, every callback that holds the token gets 410 Gone with the
time (``cancelledAt``), the page a 410 page, the status says "cancelled";
nothing is written. The reason the operator gave is for the workflow and
the operators (Firestore), never in an HTTP answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from local.registration import rfc3339

REASON = "wrong build: operator-only detail"
FORM = {
    "title": "Deploy 1.4",
    "choices": [{"value": "approve", "label": "Approve"}, {"value": "reject", "label": "Reject"}],
}


@pytest.fixture
def cancelled(firestore_client, callbacks):
    """cancelled(document_id): the tombstone python -m ops cancel writes, at the version read."""

    def write(document_id: str = "run-1_approve"):
        document = callbacks.document(document_id)
        version = document.get().update_time
        document.update(
            {"state": "CANCELLED", "cancelledAt": datetime.now(UTC), "cancelReason": REASON},
            option=firestore_client.write_option(last_update_time=version),
        )
        return document.get()

    return write


def last_log(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def assert_unchanged(before, callbacks) -> None:
    after = callbacks.document("run-1_approve").get()
    assert after.update_time == before.update_time
    assert after.to_dict() == before.to_dict()


@pytest.mark.parametrize(
    ("reg", "calls"),
    [("kept", 2), (None, 1)],  # a failed Commit and a read; a read
    ids=["one-commit-url", "url-without-reg"],
)
def test_a_callback_after_a_cancel_is_410_saying_when_never_why(
    client, register, callback_url, callbacks, cancelled, capsys, reg, calls
):
    token = register()
    url = callback_url(token=token) if reg else callback_url(token=token, reg=None)
    before = cancelled()
    capsys.readouterr()

    late = client.post(url, json={"approved": True})

    assert late.status_code == 410
    assert late.get_json() == {
        "error": "the wait for this callback was cancelled",
        "cancelledAt": rfc3339(before.get("cancelledAt")),
    }
    assert REASON not in late.get_data(as_text=True)
    assert_unchanged(before, callbacks)
    # The key document stays for its TTL: nothing was stored.
    assert callbacks.document(before.get("key")).get().exists
    entry = last_log(capsys)
    assert (entry["outcome"], entry["severity"], entry["firestoreCalls"]) == (
        "cancelled",
        "WARNING",
        calls,
    )
    assert REASON not in json.dumps(entry)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
def test_every_method_that_answers_gets_410(
    client, register, callback_url, callbacks, cancelled, method
):
    token = register()
    before = cancelled()

    response = client.open(callback_url(token=token), method=method)

    assert response.status_code == 410
    assert "cancelledAt" in response.get_json()
    assert_unchanged(before, callbacks)


def test_a_received_callback_cancelled_before_it_was_taken_is_gone_for_its_sender_too(
    client, register, callback_url, callbacks, cancelled
):
    # Its sender's retry no longer gets "already received" (200): the
    # workflow will never take it.
    token = register()
    url = callback_url(token=token)
    assert client.post(url, json={"a": 1}).status_code == 200
    before = cancelled()

    retry = client.post(url, json={"a": 1})
    other = client.post(url, json={"a": 2})

    assert (retry.status_code, other.status_code) == (410, 410)
    assert_unchanged(before, callbacks)


def test_a_wrong_token_on_a_cancelled_registration_is_403_as_for_any(
    client, register, callback_url, callbacks, cancelled
):
    token = register()
    before = cancelled()

    forged = client.post(callback_url(token=token).replace(token, "f" * 64), json={"a": 1})

    assert forged.status_code == 403
    assert forged.get_json() == {"error": "token missing or wrong for this callback"}
    assert_unchanged(before, callbacks)


def test_the_status_says_cancelled_and_when(client, register, callback_url, callbacks, cancelled):
    token = register()
    before = cancelled()

    response = client.get(callback_url(token=token, view="status"))

    assert response.status_code == 200
    stored = before.to_dict()
    assert response.get_json() == {
        "state": "cancelled",
        "createdAt": rfc3339(stored["createdAt"]),
        "receivedAt": None,
        "consumedAt": None,
        "expiredAt": None,
        "cancelledAt": rfc3339(stored["cancelledAt"]),
        "expireAt": rfc3339(stored["expireAt"]),
    }
    assert REASON not in response.get_data(as_text=True)
    assert_unchanged(before, callbacks)


def page_url(token: str) -> str:
    return f"/?runID=run-1&step=approve&token={token}&view=page"


def test_the_page_after_a_cancel_is_410_saying_so(client, register, callbacks, cancelled, capsys):
    token = register(form_json=json.dumps(FORM))
    before = cancelled()
    when = before.get("cancelledAt").strftime("%Y-%m-%d %H:%M UTC")
    capsys.readouterr()

    shown = client.get(page_url(token))
    shown_outcome = last_log(capsys)["outcome"]
    posted = client.post(
        page_url(token),
        data={"choice": "approve", "comment": ""},
        content_type="application/x-www-form-urlencoded",
    )

    assert (shown_outcome, last_log(capsys)["outcome"]) == ("page_cancelled", "cancelled")
    for response in (shown, posted):
        assert response.status_code == 410
        html = response.get_data(as_text=True)
        assert f"This request was cancelled at {when}." in html
        assert "<form" not in html
        assert REASON not in html
    assert_unchanged(before, callbacks)
