"""Approval links: one registration per approver, each answer judged against its group.

The approvals are written as getApprovalURLs writes them
(tests/function/approval_builder.py); what the receiver does with an
answer follows the issue 21 contract's decision table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

from local.registration import rfc3339
from tests.function.approval_builder import consume, create_approval, end_group, start_wait
from tests.function.conftest import COLLECTION
from tests.function.test_forward import REGION, TOKEN, Endpoint, proof_of

LABELS = ["alice@example.com", "bob@example.com", "carol@example.com"]
APPROVERS = 16


@pytest.fixture
def approval(firestore_client):
    return create_approval(firestore_client, COLLECTION, LABELS)


def link(callbacks, approval, index: int) -> dict:
    return callbacks.document(approval.link_id(index)).get().to_dict()


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def answer_lines(entries: list[dict]) -> list[dict]:
    return [entry for entry in entries if entry.get("event") == "approval_answer"]


def hmac16(token: str, text: str) -> str:
    return hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()[:16]


# --- one answer ------------------------------------------------------------------------
def test_an_answer_is_recorded_on_its_own_link_only(client, callbacks, approval, capsys):
    group_before = callbacks.document(approval.group_id).get()
    capsys.readouterr()

    response = client.post(
        approval.url(1),
        json={"value": "approve", "comment": "Ship it \u2713"},
        headers={"User-Agent": "Mail/1.0"},
    )

    assert response.status_code == 200
    assert response.get_json() == {
        "status": "received",
        "runID": "run-1",
        "step": "approve",
        "approver": 1,
    }
    stored = link(callbacks, approval, 1)
    assert stored["state"] == "RECEIVED"
    record = json.loads(stored["payload"])
    assert list(record) == ["value", "comment", "approver", "answeredAt"]
    assert (record["value"], record["comment"], record["approver"]) == (
        "approve",
        "Ship it \u2713",
        "bob@example.com",
    )
    answered_at = stored["answeredAt"]
    assert record["answeredAt"] == answered_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    token = approval.tokens[1]
    # Hashes keyed by the link's token, never the raw values.
    assert stored["userAgentHash"] == hmac16(token, "Mail/1.0")
    assert stored["sourceHash"] == hmac16(token, "127.0.0.1")
    assert "127.0.0.1" not in json.dumps(stored, default=str)
    assert "Mail/1.0" not in json.dumps(stored, default=str)
    # Its key document went with the answer, as a single registration's does.
    assert not callbacks.document(stored["key"]).get().exists
    # Nothing else changed: the group and the other links.
    assert callbacks.document(approval.group_id).get().update_time == group_before.update_time
    assert (
        link(callbacks, approval, 0)["state"] == link(callbacks, approval, 2)["state"] == "WAITING"
    )
    entries = lines(capsys)
    [audit] = answer_lines(entries)
    assert audit == {
        "severity": "INFO",
        "message": "approval answer stored (200)",
        "event": "approval_answer",
        "runID": "run-1",
        "step": "approve",
        "approver": "bob@example.com",
        "approverIndex": 1,
        "choice": "approve",
        "counted": True,
        "status": 200,
    }
    # Neither the token nor the comment is ever logged.
    for entry in entries:
        assert token not in json.dumps(entry) and "Ship it" not in json.dumps(entry)
    [request_line] = [entry for entry in entries if "outcome" in entry]
    assert (request_line["approverIndex"], request_line["firestoreCalls"]) == (1, 2)


def test_on_cloud_run_the_source_is_the_first_forwarded_hop(
    make_client, callbacks, approval, firestore_client
):
    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    # Each instance reads its environment on its first request.
    on_cloud_run = make_client(K_SERVICE="callbacks")
    assert on_cloud_run.get(approval.url(0, value="approve"), headers=forwarded).status_code == 200
    local = make_client(K_SERVICE="")
    assert local.get(approval.url(1, value="approve"), headers=forwarded).status_code == 200

    assert link(callbacks, approval, 0)["sourceHash"] == hmac16(approval.tokens[0], "203.0.113.7")
    # Elsewhere anyone can send the header: the peer's address counts.
    assert link(callbacks, approval, 1)["sourceHash"] == hmac16(approval.tokens[1], "127.0.0.1")


@pytest.mark.parametrize(
    "send",
    [
        {"query": {"value": "reject", "comment": "no"}},
        {"json": {"value": "reject", "comment": "no"}},
        {"data": {"value": "reject", "comment": "no"}},
    ],
    ids=["query", "json", "form"],
)
def test_a_machine_answers_as_it_would_a_form(client, callbacks, approval, send):
    response = client.post(approval.url(0, **send.pop("query", {})), **send)

    assert response.status_code == 200
    record = json.loads(link(callbacks, approval, 0)["payload"])
    assert (record["value"], record["comment"]) == ("reject", "no")


# --- the decision table ----------------------------------------------------------------
def test_the_same_approver_twice_same_choice_is_200_and_writes_nothing(
    client, callbacks, approval, capsys
):
    assert client.get(approval.url(0, value="approve")).status_code == 200
    first = callbacks.document(approval.link_id(0)).get()
    capsys.readouterr()

    again = client.post(approval.url(0), json={"value": "approve", "comment": "again"})

    assert again.status_code == 200
    body = again.get_json()
    assert (body["status"], body["approver"], body["counted"]) == ("already_answered", 0, True)
    assert body["answeredAt"] is not None
    assert callbacks.document(approval.link_id(0)).get().update_time == first.update_time
    assert answer_lines(lines(capsys)) == []  # nothing recorded, nothing audited


def test_the_same_approver_with_another_choice_is_409(client, callbacks, approval):
    assert client.get(approval.url(0, value="approve")).status_code == 200

    other = client.get(approval.url(0, value="reject"))

    assert other.status_code == 409
    assert other.get_json() == {"error": "this approver already answered with another choice"}
    assert json.loads(link(callbacks, approval, 0)["payload"])["value"] == "approve"


def test_an_answer_taken_by_the_wait_is_still_already_answered(
    client, callbacks, approval, firestore_client
):
    assert client.get(approval.url(2, value="reject")).status_code == 200
    consume(firestore_client, COLLECTION, approval, 2)

    assert client.get(approval.url(2, value="reject")).get_json()["status"] == "already_answered"
    assert client.get(approval.url(2, value="approve")).status_code == 409


@pytest.mark.parametrize(
    ("state", "decision"), [("APPROVED", "approved"), ("REJECTED", "rejected")]
)
def test_an_answer_to_a_decided_group_is_recorded_late_refused_and_not_forwarded(
    make_client, callbacks, firestore_client, endpoint, capsys, state, decision
):
    approval = create_approval(firestore_client, COLLECTION, LABELS, forward_url=endpoint.url())
    client = pushing(make_client, endpoint)
    end_group(firestore_client, COLLECTION, approval, state)
    group_before = callbacks.document(approval.group_id).get()
    capsys.readouterr()

    response = client.post(approval.url(1), json={"value": "approve"})

    assert response.status_code == 409
    body = response.get_json()
    assert (body["status"], body["decision"]) == ("decided", decision)
    assert "recorded but did not count" in body["error"]
    late = link(callbacks, approval, 1)
    assert late["state"] == "LATE"
    assert json.loads(late["payload"])["approver"] == "bob@example.com"
    assert endpoint.seen == []
    [audit] = answer_lines(lines(capsys))
    assert (audit["counted"], audit["status"], audit["choice"]) == (False, 409, "approve")
    # Nothing reopens the group.
    assert callbacks.document(approval.group_id).get().update_time == group_before.update_time
    # A LATE answer is answered: the same choice again is 200, another 409.
    again = client.post(approval.url(1), json={"value": "approve"}).get_json()
    assert (again["status"], again["counted"]) == ("already_answered", False)
    assert client.post(approval.url(1), json={"value": "reject"}).status_code == 409


@pytest.mark.parametrize(
    ("state", "field"), [("EXPIRED", "expiredAt"), ("CANCELLED", "cancelledAt")]
)
def test_an_answer_to_an_expired_or_cancelled_group_is_410(
    client, callbacks, approval, firestore_client, state, field
):
    when = end_group(firestore_client, COLLECTION, approval, state)

    response = client.get(approval.url(0, value="approve"))

    assert response.status_code == 410
    body = response.get_json()
    assert set(body) == {"error", field}
    assert datetime.fromisoformat(body[field].replace("Z", "+00:00")) == when
    assert link(callbacks, approval, 0)["state"] == "WAITING"


def test_an_answer_past_the_deadline_is_410_while_the_group_still_waits(
    client, callbacks, approval, firestore_client
):
    deadline = datetime.now(UTC) - timedelta(milliseconds=10)
    start_wait(firestore_client, COLLECTION, approval, deadline, quorum=2)

    response = client.get(approval.url(0, value="approve"))

    assert response.status_code == 410
    body = response.get_json()
    assert datetime.fromisoformat(body["expiredAt"].replace("Z", "+00:00")) == deadline
    assert link(callbacks, approval, 0)["state"] == "WAITING"
    # Before the deadline the same answer is taken.
    start_wait(firestore_client, COLLECTION, approval, deadline + timedelta(hours=1), quorum=2)
    assert client.get(approval.url(0, value="approve")).status_code == 200


def test_a_forged_token_or_another_approvers_token_is_403(client, callbacks, approval):
    forged = client.get(approval.url(0, token="f" * 64, value="approve"))
    borrowed = client.get(approval.url(0, token=approval.tokens[1], value="approve"))
    # Straight to the group, with a link's token: the group's is never handed out.
    group = client.get(f"/?runID=run-1&step=approve&token={approval.tokens[0]}&value=approve")

    for response in (forged, borrowed, group):
        assert response.status_code == 403
        assert response.get_json() == {"error": "token missing or wrong for this callback"}
    assert [link(callbacks, approval, i)["state"] for i in range(3)] == ["WAITING"] * 3


@pytest.mark.parametrize("approver", ["x", "123", "", "-1", "1.0", " 1"])
def test_a_malformed_approver_is_400(client, approval, approver):
    response = client.get(approval.url(0, approver=approver, value="approve"))

    assert response.status_code == 400
    assert response.get_json() == {"error": "approver is malformed (expected [0-9]{1,2})"}


def test_an_approver_the_group_does_not_have_is_404(client, approval):
    response = client.get(approval.url(0, approver=7, value="approve"))

    assert response.status_code == 404


def test_a_link_takes_only_its_forms_choices(client, callbacks, approval):
    everything = client.get(approval.url(0, value="APPROVE_EVERYTHING"))
    long_comment = client.post(approval.url(0), json={"value": "approve", "comment": "x" * 2_001})

    assert everything.status_code == long_comment.status_code == 422
    assert everything.get_json() == {
        "error": "the choice is not one this form offers",
        "allowed": ["approve", "reject"],
    }
    assert long_comment.get_json()["error"] == "the comment is longer than 2000 characters"
    assert link(callbacks, approval, 0)["state"] == "WAITING"


def test_a_links_status_is_its_own(client, approval, firestore_client):
    assert client.get(approval.url(0, value="approve")).status_code == 200
    end_group(firestore_client, COLLECTION, approval, "APPROVED")
    assert client.get(approval.url(2, value="approve")).status_code == 409

    assert client.get(approval.url(0, view="status")).get_json()["state"] == "received"
    assert client.get(approval.url(1, view="status")).get_json()["state"] == "waiting"
    assert client.get(approval.url(2, view="status")).get_json()["state"] == "late"


def test_a_links_status_also_says_where_the_request_stands(client, approval, firestore_client):
    def status(index: int = 1) -> dict:
        response = client.get(approval.url(index, view="status"))
        assert response.status_code == 200
        return response.get_json()

    before = status()
    assert (before["state"], before["request"], before["deadline"]) == ("waiting", "waiting", None)

    deadline = datetime.now(UTC) + timedelta(hours=1)
    start_wait(firestore_client, COLLECTION, approval, deadline, quorum=2)
    running = status()
    assert running["request"] == "waiting"
    assert datetime.fromisoformat(running["deadline"].replace("Z", "+00:00")) == deadline

    # Past the deadline, before the wait writes EXPIRED: as good as expired.
    start_wait(firestore_client, COLLECTION, approval, datetime.now(UTC), quorum=2)
    assert (status()["state"], status()["request"]) == ("waiting", "expired")

    for group_state, word in [("APPROVED", "approved"), ("CANCELLED", "cancelled")]:
        end_group(firestore_client, COLLECTION, approval, group_state)
        assert (status()["state"], status()["request"]) == ("waiting", word)
    # A wrong token still learns nothing.
    assert client.get(approval.url(1, token="f" * 64, view="status")).status_code == 403


# --- concurrency -----------------------------------------------------------------------
def _hold_each_threads_first(owner, name: str, parties: int, monkeypatch) -> None:
    """Make each pool thread's first ``owner.name`` call wait until ``parties`` made one."""
    barrier = threading.Barrier(parties, timeout=10)
    seen = threading.local()
    real = getattr(owner, name)

    def together(*args, **kwargs):
        racing = threading.current_thread() is not threading.main_thread()
        if racing and not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, together)


def test_sixteen_approvers_answering_at_once_are_each_stored_once_with_their_own_record(
    make_client, callbacks, firestore_client, monkeypatch, capsys
):
    labels = [f"approver-{n}@example.com" for n in range(APPROVERS)]
    approval = create_approval(firestore_client, COLLECTION, labels)
    client = make_client()
    # Every answer's Commit goes at once.
    _hold_each_threads_first(FirestoreClient, "commit", APPROVERS, monkeypatch)
    choices = ["approve" if n % 3 else "reject" for n in range(APPROVERS)]
    capsys.readouterr()

    def answer(n: int) -> int:
        url = approval.url(n)
        headers = {"User-Agent": f"agent-{n}"}
        return client.post(url, json={"value": choices[n]}, headers=headers).status_code

    with ThreadPoolExecutor(APPROVERS) as pool:
        statuses = list(pool.map(answer, range(APPROVERS)))

    assert statuses == [200] * APPROVERS
    for n in range(APPROVERS):
        stored = link(callbacks, approval, n)
        record = json.loads(stored["payload"])
        assert stored["state"] == "RECEIVED"
        assert (record["approver"], record["value"]) == (labels[n], choices[n])
        assert stored["userAgentHash"] == hmac16(approval.tokens[n], f"agent-{n}")
    audits = answer_lines(lines(capsys))
    assert sorted(a["approverIndex"] for a in audits) == list(range(APPROVERS))


def test_racing_answers_on_one_link_store_one(
    make_client, callbacks, approval, monkeypatch, capsys
):
    client = make_client()
    # Every request reads before any writes: the precondition must decide.
    _hold_each_threads_first(sys.modules["approval_links"], "decide", APPROVERS, monkeypatch)
    choices = ["approve" if n % 2 else "reject" for n in range(APPROVERS)]
    capsys.readouterr()

    with ThreadPoolExecutor(APPROVERS) as pool:
        statuses = list(
            pool.map(lambda c: client.post(approval.url(0), json={"value": c}).status_code, choices)
        )

    winner = json.loads(link(callbacks, approval, 0)["payload"])["value"]
    assert sorted(statuses) == sorted([200 if choice == winner else 409 for choice in choices])
    entries = lines(capsys)
    assert len(answer_lines(entries)) == 1
    outcomes = sorted(entry["outcome"] for entry in entries if "outcome" in entry)
    assert outcomes.count("stored") == 1
    assert outcomes.count("already_answered") == choices.count(winner) - 1


# --- push ------------------------------------------------------------------------------
@pytest.fixture
def endpoint():
    stub = Endpoint()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


def pushing(make_client, endpoint):
    return make_client(
        CALLBACKS_REGION=REGION,
        CALLBACKS_FORWARD_ORIGIN=endpoint.origin,
        CALLBACKS_FORWARD_LOCAL_TOKEN=TOKEN,
    )


def test_a_stored_answer_is_forwarded_with_its_approver_and_a_proof_of_its_link(
    make_client, callbacks, firestore_client, endpoint
):
    approval = create_approval(firestore_client, COLLECTION, LABELS, forward_url=endpoint.url())
    client = pushing(make_client, endpoint)

    response = client.post(approval.url(2), json={"value": "approve", "comment": "ok"})

    assert response.status_code == 200
    [request] = endpoint.seen
    event = request["body"]
    assert set(event) == {"payload", "runID", "step", "approver", "version", "proof"}
    assert (event["runID"], event["step"], event["approver"]) == ("run-1", "approve", 2)
    snapshot = callbacks.document(approval.link_id(2)).get()
    assert event["payload"] == snapshot.get("payload")
    # The link's RECEIVED version, which the wait's CONSUMED patch takes as precondition.
    assert event["version"] == rfc3339(snapshot.update_time)
    # Proven by this link's token, and by no other.
    assert event["proof"] == proof_of(approval.tokens[2], event["version"], event["payload"])
    for other in (approval.tokens[0], approval.group_token):
        assert event["proof"] != proof_of(other, event["version"], event["payload"])
    # A second, identical answer is not forwarded again.
    assert client.post(approval.url(2), json={"value": "approve"}).status_code == 200
    assert len(endpoint.seen) == 1
