"""One Firestore call per callback, and the reads only failure paths may make.

Each request's log line counts its Firestore RPCs (``firestoreCalls``). The
happy path is one Commit whose preconditions decide (docs/protocol.md, "One
Commit"); these tests pin the count per outcome, and what each precondition
protects.
"""

from __future__ import annotations

import json

import pytest
from google.protobuf import timestamp_pb2

from infra.function_modules import function_module


def last_entry(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def post(client, url: str, body: dict, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    response = client.post(url, json=body)
    return response.status_code, last_entry(capsys)


@pytest.mark.parametrize(
    ("second", "status", "outcome"),
    [
        ({"n": 1}, 200, "duplicate"),  # the same payload again
        ({"n": 2}, 409, "conflict"),  # another payload
    ],
)
def test_the_first_callback_costs_one_call_and_a_second_two(
    client, register, callback_url, capsys, second, status, outcome
):
    url = callback_url(token=register())

    assert post(client, url, {"n": 1}, capsys)[0] == 200
    code, entry = post(client, url, second, capsys)

    assert code == status
    # The Commit fails (the key is gone), and one read tells which case it is.
    assert (entry["outcome"], entry["firestoreCalls"]) == (outcome, 2)


def test_the_first_callback_is_one_commit(client, register, callback_url, capsys):
    code, entry = post(client, callback_url(token=register()), {"n": 1}, capsys)

    assert code == 200
    assert (entry["outcome"], entry["firestoreCalls"]) == ("stored", 1)


def test_an_unregistered_callback_is_one_commit(make_client, callback_url, capsys):
    client = make_client(CALLBACKS_ALLOW_UNREGISTERED="true")

    code, entry = post(client, callback_url(), {"n": 1}, capsys)

    assert code == 200
    assert (entry["outcome"], entry["firestoreCalls"]) == ("stored", 1)


def test_a_wrong_token_fails_the_commit_and_one_read_says_403(
    client, register, callback_url, callbacks, capsys
):
    token = register()
    wrong = callback_url(token=token)
    wrong = wrong.replace(token, "f" * len(token))

    code, entry = post(client, wrong, {"n": 1}, capsys)

    assert code == 403
    assert (entry["outcome"], entry["firestoreCalls"]) == ("forbidden", 2)
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"


def test_a_url_without_reg_is_read_then_committed(client, register, callback_url, capsys):
    """A hand-built URL, or one from before the key layout: still stored, with two calls."""
    token = register()

    code, entry = post(client, callback_url(token=token, reg=None), {"n": 1}, capsys)

    assert code == 200
    assert (entry["outcome"], entry["firestoreCalls"]) == ("stored", 2)


def test_a_malformed_reg_is_not_an_error_but_the_read_path(client, register, callback_url, capsys):
    token = register()

    code, entry = post(client, callback_url(token=token, reg="yesterday"), {"n": 1}, capsys)

    assert code == 200
    assert (entry["outcome"], entry["firestoreCalls"]) == ("stored", 2)


@pytest.mark.parametrize(
    "reg",
    [
        "2026-12-02T10:11:12.345Z",  # as the workflow's commit answer writes it
        "2026-12-02T10:11:12.345678Z",
        "2026-12-02T10:11:12.123456789Z",
        "2026-12-02T10:11:12Z",
        "1969-07-20T20:17:40.5Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2026-12-02T11:11:12.345+01:00",  # not Firestore's form: the library's parser
        "2026-02-30T00:00:00Z",  # no such day
        "2026-12-02T10:11:60Z",
        "2026-12-02T10:11:12.Z",
        "2026-12-02T10:11:12.1234567890Z",
        "2026-12-02 10:11:12Z",
        "yesterday",
    ],
)
def test_reg_is_read_as_the_protobuf_library_reads_it(reg):
    """The Commit's precondition needs the exact time: the same as Timestamp.FromJsonString."""
    expected: timestamp_pb2.Timestamp | None = timestamp_pb2.Timestamp()
    try:
        expected.FromJsonString(reg)
    except ValueError:
        expected = None

    assert function_module("registration_layout").parse_registered_at(reg) == expected


def test_the_commit_consumes_the_key_and_keeps_the_registration_fields(
    client, register, callback_url, callbacks, registrations
):
    token = register()
    registration = callbacks.document("run-1_approve").get().to_dict()

    assert client.post(callback_url(token=token), json={"n": 1}).status_code == 200

    stored = callbacks.document("run-1_approve").get().to_dict()
    assert not callbacks.document(registration["key"]).get().exists
    for kept in ("token", "createdAt", "expireAt", "forwardUrl", "form", "key"):
        assert stored[kept] == registration[kept], kept
    assert stored["state"] == "RECEIVED"
    # The capability is not the caller's message.
    assert set(json.loads(stored["payload"])["query"]) == {"runID", "step"}


def test_an_old_url_cannot_answer_a_later_registration_of_the_same_step(
    client, register, callback_url, callbacks, registrations, capsys
):
    """The key document of a registration that timed out outlives it (until its TTL).

    A wait that times out leaves only the callback document behind it (a
    tombstone) and the key. If the callback document is then gone and the
    execution registers the same step again, the old URL still names an
    existing key document; the Commit's second precondition (the callback
    document is the version created at ``reg``) refuses it.
    """
    old_token = register()
    old_url = callback_url(token=old_token)
    callbacks.document("run-1_approve").delete()  # timed out, then gone
    new_token = register()

    code, entry = post(client, old_url, {"late": True}, capsys)

    assert code == 403
    assert entry["outcome"] == "forbidden"
    assert callbacks.document("run-1_approve").get().get("state") == "WAITING"
    assert client.post(callback_url(token=new_token), json={"n": 1}).status_code == 200


def test_a_callback_for_a_registration_whose_document_is_gone_is_404(
    client, register, callback_url, callbacks, capsys
):
    # The TTL removed the EXPIRED tombstone (or a workflow before tombstones
    # deleted the document when it timed out); the key document stays.
    url = callback_url(token=register())
    callbacks.document("run-1_approve").delete()

    code, entry = post(client, url, {"late": True}, capsys)

    assert code == 404
    assert entry["outcome"] == "not_registered"
    assert not callbacks.document("run-1_approve").get().exists
