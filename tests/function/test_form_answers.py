"""A registration with a form takes only its choices and a comment, on every path.

The machine URL (the page URL without view=page) is no way around the
page: whatever the method or content type, anything but one of the form's
choices and a comment within the limit gets 422 with the allowed values,
and nothing is stored. Registrations without a form keep full freedom.
"""

from __future__ import annotations

import json

import pytest

FORM = {
    "title": "Deploy 1.4?",
    "choices": [
        {"value": "approve", "label": "Approve"},
        {"value": "reject", "label": "Reject", "reject": True},
    ],
    "allowComment": True,
}
ALLOWED = ["approve", "reject"]


@pytest.fixture
def form_token(register) -> str:
    """A registration with FORM, made as getCallbackURL makes it (key document and reg)."""
    return register(form_json=json.dumps(FORM))


def stored(callbacks) -> dict:
    return callbacks.document("run-1_approve").get().to_dict()


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def assert_refused_422(response, callbacks, error: str) -> None:
    assert response.status_code == 422
    assert response.get_json() == {"error": error, "allowed": ALLOWED}
    assert stored(callbacks)["state"] == "WAITING"


def test_get_with_a_value_the_form_does_not_offer_is_422_and_nothing_is_stored(
    client, callbacks, callback_url, form_token, capsys
):
    capsys.readouterr()

    response = client.get(callback_url(token=form_token, value="APPROVE_EVERYTHING"))

    assert_refused_422(response, callbacks, "the choice is not one this form offers")
    # The blind Commit cannot name a form's key document: it failed, and the
    # read found the form (1 failed Commit + 1 read, nothing written).
    [entry] = log_lines(capsys)
    assert (entry["outcome"], entry["firestoreCalls"]) == ("invalid_choice", 2)
    # The page still offers the form: nothing was answered.
    page = client.get(callback_url(token=form_token, view="page"))
    assert page.status_code == 200 and "Already answered" not in page.get_data(as_text=True)


def test_an_oversized_comment_on_the_machine_path_is_422(
    client, callbacks, callback_url, form_token
):
    url = callback_url(token=form_token)

    in_query = client.get(callback_url(token=form_token, value="approve", comment="x" * 2_001))
    in_json = client.post(url, json={"value": "approve", "comment": "x" * 2_001})

    for response in (in_query, in_json):
        assert_refused_422(response, callbacks, "the comment is longer than 2000 characters")
    assert client.post(url, json={"value": "approve", "comment": "x" * 2_000}).status_code == 200


@pytest.mark.parametrize(
    ("send", "error"),
    [
        (
            {"json": {"value": "approve", "extra": "APPROVE_EVERYTHING"}},
            "the body holds more than an answer",
        ),
        ({"json": ["approve"]}, "the body is not a map of fields"),
        ({"json": {"value": 1}}, "the choice is not one text value"),
        ({"json": {"comment": "fine"}}, "there is no choice"),
        ({"data": "approve", "content_type": "text/plain"}, "a text body is no answer"),
        ({"data": b"\x00\x01", "content_type": "application/octet-stream"}, "a base64 body"),
        (
            {"json": {"value": "reject"}, "query": {"value": "approve"}},
            "the choice is given more than once, with different values",
        ),
        ({"query": {"value": ["approve", "reject"]}}, "the choice is not one text value"),
        ({}, "there is no choice"),
    ],
    ids=[
        "extra field",
        "json list",
        "not text",
        "comment only",
        "text body",
        "binary body",
        "query and body disagree",
        "value twice",
        "nothing",
    ],
)
def test_anything_but_a_choice_and_a_comment_is_422_whatever_the_content_type(
    client, callbacks, callback_url, form_token, send, error
):
    url = callback_url(token=form_token, **send.pop("query", {}))

    response = client.post(url, **send)

    assert response.status_code == 422
    assert response.get_json()["error"].startswith(error)
    assert response.get_json()["allowed"] == ALLOWED
    assert stored(callbacks)["state"] == "WAITING"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_every_method_is_held_to_the_form(client, callbacks, callback_url, form_token, method):
    response = client.open(
        callback_url(token=form_token), method=method, json={"value": "ship-it-anyway"}
    )

    assert_refused_422(response, callbacks, "the choice is not one this form offers")


def test_a_form_without_comments_takes_none(client, register, callbacks, callback_url):
    token = register(form_json=json.dumps({**FORM, "allowComment": False}))

    response = client.get(callback_url(token=token, value="approve", comment="but..."))

    assert_refused_422(response, callbacks, "this form takes no comment")


@pytest.mark.parametrize(
    "send",
    [
        {"query": {"value": "reject", "comment": "Not on a Friday"}},
        {"json": {"value": "reject", "comment": "Not on a Friday"}},
        {"data": {"value": "reject", "comment": "Not on a Friday"}},
        {"data": {"choice": "reject", "comment": "Not on a Friday"}},
    ],
    ids=["query", "json", "form value", "form choice"],
)
def test_a_machine_answer_is_stored_as_the_page_stores_one(
    client, register, callbacks, callback_url, form_token, send
):
    # The page's answer, on another step, for comparison.
    page_token = register(step="page", form_json=json.dumps(FORM))
    page = client.post(
        callback_url(step="page", token=page_token, view="page"),
        data={"choice": "reject", "comment": "Not on a Friday"},
    )
    assert page.status_code == 200

    response = client.post(callback_url(token=form_token, **send.pop("query", {})), **send)

    assert response.status_code == 200
    machine = stored(callbacks)
    by_page = callbacks.document("run-1_page").get().to_dict()
    assert machine["value"] == by_page["value"] == "reject"
    machine_payload = json.loads(machine["payload"])
    page_payload = json.loads(by_page["payload"])
    # The same shape, and the answer in the same place, whichever path.
    assert set(machine_payload) == set(page_payload)
    for payload in (machine_payload, page_payload):
        assert (payload["value"], payload["comment"]) == ("reject", "Not on a Friday")


def test_a_choice_without_a_comment_stores_an_empty_comment(
    client, callbacks, callback_url, form_token
):
    response = client.get(callback_url(token=form_token, value="approve"))

    assert response.status_code == 200
    payload = json.loads(stored(callbacks)["payload"])
    assert (payload["value"], payload["comment"]) == ("approve", "")


def test_a_registration_without_a_form_keeps_full_freedom_and_its_one_commit(
    client, register, callbacks, callback_url, capsys
):
    token = register()
    capsys.readouterr()

    response = client.post(
        callback_url(token=token, value="APPROVE_EVERYTHING"),
        data="anything at all",
        content_type="text/plain",
    )

    assert response.status_code == 200
    [entry] = log_lines(capsys)
    assert entry["firestoreCalls"] == 1
    document = stored(callbacks)
    assert document["value"] == "APPROVE_EVERYTHING"
    assert "comment" not in json.loads(document["payload"])


def test_an_invalid_answer_after_a_valid_one_is_still_422(
    client, callbacks, callback_url, form_token
):
    assert client.get(callback_url(token=form_token, value="approve")).status_code == 200

    response = client.get(callback_url(token=form_token, value="APPROVE_EVERYTHING"))

    assert response.status_code == 422
    assert stored(callbacks)["value"] == "approve"


def test_a_wrong_token_learns_nothing_about_the_form(client, callbacks, callback_url, form_token):
    response = client.get(callback_url(token="wrong", value="APPROVE_EVERYTHING"))

    assert response.status_code == 403
    assert "allowed" not in response.get_json()
