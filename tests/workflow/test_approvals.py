"""getApprovalURLs and waitForApprovals on the local stack, under a virtual clock.

An approval is a group document and one link per approver (its own
registration and token); the wait takes each answer by marking its link
CONSUMED under the RECEIVED version, and decides in the order it takes them
(the contract: /tmp/prompts/approvals_contract.md, docs/protocol.md).

Approvers answer through the real receiver (function/approval_links.py,
functions-framework on loopback): a POST of ``{value, comment}`` to the link's
machine URL (its page URL without ``&view=page``) stores the record on the
link and forwards it, with its proof, to the links' endpoint. Forgeries are
posted straight to the endpoint, as anyone allowed to send callbacks could.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from local.registration import key_document_id, rfc3339
from local.workflow_runner import RunResult, run_workflow
from tests.workflow.push_helpers import capability, post_to_endpoint, proof

THREE = ["ana@example.com", "bo@example.com", "cy@example.com"]
APPROVE, REJECT = "approve", "reject"


def approval(
    approvers: Any = THREE,
    *,
    step: str = "a",
    form: Any = None,
    pass_links: bool = True,
    registration: dict[str, Any] | None = None,
    **wait_args: Any,
) -> dict[str, Any]:
    """main: getApprovalURLs, then waitForApprovals (given its map), returning the decision."""
    register = {"step": step, "approvers": approvers, **(registration or {})}
    if form is not None:
        register["form"] = form
    wait = {"step": step, **wait_args}
    if pass_links:
        wait["approvals"] = "${links}"
    return {
        "main": {
            "steps": [
                {"links": {"call": "getApprovalURLs", "args": register, "result": "links"}},
                {"wait": {"call": "waitForApprovals", "args": wait, "result": "decided"}},
                {"done": {"return": "${decided}"}},
            ]
        }
    }


@dataclasses.dataclass
class Stored:
    """One answer as the receiver stores it: the record (payload) and the RECEIVED version."""

    url: str
    payload: str
    version: str

    @property
    def record(self) -> dict[str, Any]:
        return json.loads(self.payload)

    def event(self, **changes: Any) -> dict[str, Any]:
        """The receiver's forward of this answer (the contract), with ``changes``."""
        query = capability(self.url)
        event = {
            "payload": self.payload,
            "runID": query["runID"],
            "step": query["step"],
            "approver": int(query["approver"]),
            "version": self.version,
            "proof": proof(query["token"], self.version, self.payload),
        }
        return {**event, **changes}


class Approvers:
    """The people behind the links of one run, answering through the receiver."""

    def __init__(self, callbacks, callback_api) -> None:
        self.callbacks = callbacks
        self.callback_api = callback_api
        self.links: list[dict[str, str]] = []
        self.ready = threading.Event()

    def got(self, approvals: dict[str, Any]) -> None:
        self.links = approvals["links"]
        self.ready.set()

    def document(self, index: int):
        query = capability(self.links[index]["url"])
        return self.callbacks.document(f"{query['runID']}_{query['step']}.approver.{index}")

    def group(self):
        query = capability(self.links[0]["url"])
        return self.callbacks.document(f"{query['runID']}_{query['step']}")

    def post(self, index: int, value: str, comment: str = "") -> requests.Response:
        """An answer on the link's machine URL (JSON), as a person's tool would send it."""
        url = self.links[index]["url"].removesuffix("&view=page")
        return requests.post(url, json={"value": value, "comment": comment}, timeout=30)

    def answer(self, index: int, value: str, comment: str = "") -> None:
        """Stored on the link and (push) forwarded by the receiver."""
        response = self.post(index, value, comment)
        assert response.status_code == 200, response.text

    def answer_unforwarded(self, index: int, value: str, comment: str = "") -> Stored:
        """Stored, its forward failing (every attempt): the wait learns of it only by a read."""
        self.callback_api.fail_next(500, times=3)
        self.answer(index, value, comment)
        stored = self.document(index).get()
        assert stored.get("state") == "RECEIVED"
        return Stored(self.links[index]["url"], stored.get("payload"), rfc3339(stored.update_time))

    def state(self, index: int) -> str:
        return self.document(index).get().get("state")


def run_approval(settings, workflow, clock, approvers: Approvers, schedule=()):
    """Run ``workflow``; ``schedule`` holds (virtual second, action(approvers)) pairs."""

    def on_approvals(approvals: dict[str, Any]) -> None:
        approvers.got(approvals)
        for at, action in schedule:
            clock.at(at, lambda action=action: action(approvers))

    return run_workflow(workflow, settings=settings, clock=clock, on_approvals=on_approvals)


def internal(run: RunResult) -> int:
    return run.steps - run.callback_events["await_callback"]


def decided_logs(run: RunResult) -> list[dict[str, Any]]:
    return [
        payload
        for _, payload in run.logs
        if isinstance(payload, dict) and payload.get("event") == "approval_decided"
    ]


@pytest.fixture
def people(callbacks, callback_api) -> Approvers:
    return Approvers(callbacks, callback_api)


@pytest.fixture
def push(push_settings):
    """Push with one-hour slices: within a test's minutes, a slice ends only at the deadline."""
    wait = dataclasses.replace(push_settings.wait, push_slice_seconds=3600, timeout_seconds=600)
    return dataclasses.replace(push_settings, wait=wait)


def test_two_of_three_approve_and_the_wait_returns_both_answers_in_taking_order(
    push, fake_clock, people
):
    schedule = [
        (5, lambda p: p.answer(2, APPROVE, "looks good")),
        (9, lambda p: p.answer(0, APPROVE)),
    ]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "approved"
    assert [a["approver"] for a in run.result["answers"]] == [THREE[2], THREE[0]]
    assert run.result["answers"][0]["comment"] == "looks good"
    assert set(run.result["answers"][0]) == {"value", "comment", "approver", "answeredAt"}
    assert (run.result["runID"], run.result["step"]) == (run.execution_id, "a")
    group = people.group().get().to_dict()
    assert group["state"] == "APPROVED"
    assert group["decidedAt"] and group["quorum"] == 2 and group["rejectQuorum"] == 1
    assert [people.state(i) for i in range(3)] == ["CONSUMED", "WAITING", "CONSUMED"]
    # The record stays with its link: the payload is not dropped.
    assert json.loads(people.document(2).get().get("payload"))["comment"] == "looks good"
    assert decided_logs(run) == [
        {"event": "approval_decided", "runID": run.execution_id, "step": "a",
         "decision": "approved", "approvals": 2, "rejects": 0}
    ]  # fmt: skip
    # Push with the links' URLs: no read at all.
    assert run.connector_calls == {"commit": 1, "patch": 4}
    assert run.callback_events["await_callback"] == 2


def test_one_reject_decides_rejected(push, fake_clock, people):
    schedule = [(5, lambda p: p.answer(1, REJECT, "not this week"))]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "rejected"
    assert [(a["approver"], a["value"], a["comment"]) for a in run.result["answers"]] == [
        (THREE[1], REJECT, "not this week")
    ]
    assert people.group().get().get("state") == "REJECTED"
    assert [people.state(i) for i in range(3)] == ["WAITING", "CONSUMED", "WAITING"]
    assert decided_logs(run)[0]["decision"] == "rejected"
    assert (decided_logs(run)[0]["approvals"], decided_logs(run)[0]["rejects"]) == (0, 1)


def test_raise_on_reject_raises_a_rejected_error_carrying_the_answers(push, fake_clock, people):
    schedule = [
        (5, lambda p: p.answer(0, APPROVE)),
        (7, lambda p: p.answer(2, REJECT, "no")),
    ]
    workflow = approval(quorum=2, raiseOnReject=True)

    run = run_approval(push, workflow, fake_clock, people, schedule)

    assert run.error["tags"] == ["RejectedError"]
    assert "rejected" in run.error["message"] and run.execution_id in run.error["message"]
    assert [(a["approver"], a["value"]) for a in run.error["answers"]] == [
        (THREE[0], APPROVE),
        (THREE[2], REJECT),
    ]
    assert (run.error["runID"], run.error["step"]) == (run.execution_id, "a")
    assert people.group().get().get("state") == "REJECTED"


def test_a_reject_that_makes_the_quorum_impossible_rejects_before_the_reject_quorum(
    push, fake_clock, people
):
    # All three must approve (the default quorum); rejects decide only at two,
    # but after one reject three approvals can no longer come.
    schedule = [(5, lambda p: p.answer(0, APPROVE)), (6, lambda p: p.answer(1, REJECT))]

    run = run_approval(push, approval(rejectQuorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "rejected"
    assert [a["value"] for a in run.result["answers"]] == [APPROVE, REJECT]
    assert people.group().get().get("quorum") == 3
    assert people.state(2) == "WAITING"


def test_a_reject_within_the_reject_quorum_does_not_decide(push, fake_clock, people):
    # Quorum 2 of 3, rejects decide at 2: one reject leaves two approvals possible.
    schedule = [
        (5, lambda p: p.answer(0, REJECT)),
        (6, lambda p: p.answer(1, APPROVE)),
        (7, lambda p: p.answer(2, APPROVE)),
    ]

    run = run_approval(push, approval(quorum=2, rejectQuorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "approved"
    assert [a["value"] for a in run.result["answers"]] == [REJECT, APPROVE, APPROVE]


def test_a_timeout_with_one_approval_raises_a_timeout_error_carrying_it(push, fake_clock, people):
    schedule = [(5, lambda p: p.answer(1, APPROVE, "fine by me"))]

    run = run_approval(push, approval(quorum=2, timeoutSeconds=60), fake_clock, people, schedule)

    assert run.error["tags"] == ["TimeoutError"]
    assert "timed out after 60" in run.error["message"]
    assert [(a["approver"], a["comment"]) for a in run.error["answers"]] == [
        (THREE[1], "fine by me")
    ]
    assert (run.error["runID"], run.error["step"]) == (run.execution_id, "a")
    group = people.group().get().to_dict()
    assert group["state"] == "EXPIRED" and group["expiredAt"]
    assert 60 <= fake_clock.elapsed < 62
    [line] = [p for s, p in run.logs if isinstance(p, dict) and p.get("event", "").endswith("out")]
    assert line == {"event": "callback_wait_timed_out", "runID": run.execution_id, "step": "a",
                    "timeoutSeconds": 60, "delivery": "push"}  # fmt: skip
    assert decided_logs(run) == []


def test_answers_stored_but_not_taken_before_the_decision_stay_recorded(
    settings, fake_clock, people
):
    # Poll delivery: all three are stored before one read; the wait takes two,
    # decides, and leaves the third RECEIVED, its record intact.
    def all_three(p: Approvers) -> None:
        for index in range(3):
            p.answer(index, APPROVE, f"answer {index}")

    workflow = approval(quorum=2, delivery="poll", registration={"delivery": "poll"})

    run = run_approval(settings, workflow, fake_clock, people, [(0.01, all_three)])

    assert run.error is None, run.error
    assert run.result["decision"] == "approved"
    assert len(run.result["answers"]) == 2
    states = [people.state(i) for i in range(3)]
    assert sorted(states) == ["CONSUMED", "CONSUMED", "RECEIVED"]
    untaken = people.document(states.index("RECEIVED")).get().to_dict()
    assert json.loads(untaken["payload"])["comment"] == f"answer {states.index('RECEIVED')}"
    taken = {a["comment"] for a in run.result["answers"]}
    assert taken == {f"answer {i}" for i, s in enumerate(states) if s == "CONSUMED"}
    # Nothing reopens it: a later answer leaves the group decided.
    assert people.group().get().get("state") == "APPROVED"
    assert run.callback_events == {}


def test_an_answer_forwarded_after_the_decision_is_not_taken(push, fake_clock, people):
    # Three forwards at once; the quorum is reached at the second, the third
    # is never awaited: its link stays RECEIVED.
    def all_three(p: Approvers) -> None:
        for index in range(3):
            p.answer(index, APPROVE)

    run = run_approval(push, approval(quorum=2), fake_clock, people, [(5, all_three)])

    assert run.error is None, run.error
    assert [a["approver"] for a in run.result["answers"]] == THREE[:2]
    assert [people.state(i) for i in range(3)] == ["CONSUMED", "CONSUMED", "RECEIVED"]
    assert run.callback_events["await_callback"] == 2
    assert people.group().get().get("state") == "APPROVED"


def test_an_answer_after_the_decision_is_recorded_refused_and_reopens_nothing(
    push, fake_clock, people
):
    schedule = [(5, lambda p: p.answer(0, APPROVE)), (6, lambda p: p.answer(1, APPROVE))]
    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)
    assert run.error is None, run.error

    late = people.post(2, REJECT, "too late?")

    assert late.status_code == 409
    assert (late.json()["status"], late.json()["decision"]) == ("decided", "approved")
    assert people.state(2) == "LATE"
    assert json.loads(people.document(2).get().get("payload"))["comment"] == "too late?"
    assert people.group().get().get("state") == "APPROVED"
    assert [people.state(i) for i in range(2)] == ["CONSUMED", "CONSUMED"]


def not_taken_warnings(run: RunResult) -> list[Any]:
    return [
        payload
        for severity, payload in run.logs
        if severity == "WARNING" and "not taken" in str(payload)
    ]


FORGERIES = [
    "bad-proof",
    "another-links-proof",
    "replayed-as-another-approver",
    "no-proof",
    "not-json",
    "a-stored-answers-version-with-another-payload",
    "a-waiting-version-without-the-token",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_event_is_never_counted(push, fake_clock, people, forgery):
    # Link 1 holds a real approval (stored, its forward failed); the
    # forgeries claim approver 0's approval with it, or take link 1 with
    # another payload, or spoil link 0 at its WAITING version (the URL's reg,
    # which whoever saw the URL knows). Then approver 2 really approves.
    def forge(p: Approvers) -> None:
        real = p.answer_unforwarded(1, APPROVE)
        token_1 = capability(real.url)["token"]
        rejecting = json.dumps({**real.record, "value": REJECT})
        waiting = capability(p.links[0]["url"])["reg"]
        events = {
            "bad-proof": real.event(approver=0, proof=base64.b64encode(b"x").decode()),
            # Approver 1 (who holds token 1) MACs its own answer as approver 0's.
            "another-links-proof": real.event(approver=0),
            "replayed-as-another-approver": real.event(
                approver=0, proof=proof(token_1, real.version, real.payload)
            ),
            "no-proof": {k: v for k, v in real.event(approver=0).items() if k != "proof"},
            "not-json": "approve",
            "a-stored-answers-version-with-another-payload": real.event(
                payload=rejecting, proof=proof("not-the-token", real.version, rejecting)
            ),
            "a-waiting-version-without-the-token": real.event(
                approver=0, version=waiting, proof=proof("not-the-token", waiting, real.payload)
            ),
        }
        endpoint = capability(real.url)["cb"]
        assert post_to_endpoint(endpoint, events[forgery]) == 200

    schedule = [(5, forge), (8, lambda p: p.answer(2, APPROVE))]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    # Approver 0 never answered: its link was never taken. The read after the
    # forgery found link 1's stored answer and took it: a real answer.
    assert people.state(0) == "WAITING"
    assert sorted(a["approver"] for a in run.result["answers"]) == [THREE[1], THREE[2]]
    assert [a["approver"] for a in run.result["answers"]] == [THREE[1], THREE[2]]
    assert len(not_taken_warnings(run)) == 1
    assert run.connector_calls["batchGet"] == 1


def test_a_link_holder_posting_its_waiting_version_spends_its_link_but_is_not_counted(
    push, fake_clock, people
):
    # Whoever holds a link's token and may post to the endpoint can MAC any
    # payload over the link's WAITING version (the URL's reg): the link is
    # taken, but it holds no answer, so nothing is counted.
    def forge(p: Approvers) -> None:
        query = capability(p.links[0]["url"])
        payload = json.dumps({"value": APPROVE, "comment": "", "approver": THREE[0]})
        event = Stored(p.links[0]["url"], payload, query["reg"]).event()
        assert post_to_endpoint(query["cb"], event) == 200

    schedule = [(5, forge), (6, lambda p: p.answer(1, APPROVE)), (7, lambda p: p.answer(2, REJECT))]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "rejected"  # one approval, and no more possible
    assert [a["approver"] for a in run.result["answers"]] == [THREE[1], THREE[2]]
    assert people.state(0) == "CONSUMED"


def test_poll_delivery_finds_the_stored_answers(settings, fake_clock, people):
    schedule = [(3, lambda p: p.answer(2, APPROVE)), (20, lambda p: p.answer(0, APPROVE))]
    workflow = approval(quorum=2, registration={"delivery": "poll"}, delivery="poll")

    run = run_approval(settings, workflow, fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.result["decision"] == "approved"
    assert [a["approver"] for a in run.result["answers"]] == [THREE[2], THREE[0]]
    assert run.callback_events == {}
    assert "cb" not in capability(people.links[0]["url"])
    assert run.connector_calls["batchGet"] >= 2
    assert 20 <= fake_clock.elapsed < 21


def test_without_the_links_the_wait_reads_their_tokens_first(push, fake_clock, people):
    schedule = [(5, lambda p: p.answer(1, APPROVE)), (6, lambda p: p.answer(0, APPROVE))]

    run = run_approval(push, approval(quorum=2, pass_links=False), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert [a["approver"] for a in run.result["answers"]] == [THREE[1], THREE[0]]
    # The group once (its approvers), the links once (their tokens).
    assert run.connector_calls == {"commit": 1, "get": 1, "batchGet": 1, "patch": 4}
    assert not_taken_warnings(run) == []


def registering(step: str = "r", approvers: Any = THREE, **args: Any) -> dict[str, Any]:
    call = {"call": "getApprovalURLs", "args": {"step": step, "approvers": approvers, **args}}
    return {"main": {"steps": [{"register": {**call, "result": "links"}},
                               {"done": {"return": "${links}"}}]}}  # fmt: skip


def assert_links_match_the_registration(callbacks, approvals: dict[str, Any]) -> None:
    """Each URL names its link and carries its token, its WAITING version and the endpoint."""
    group = callbacks.document(f"{approvals['runID']}_{approvals['step']}").get()
    assert group.get("kind") == "approval" and group.get("state") == "WAITING"
    assert group.get("approvers") == [link["approver"] for link in approvals["links"]]
    for index, link in enumerate(approvals["links"]):
        query = capability(link["url"])
        document_id = f"{approvals['runID']}_{approvals['step']}.approver.{index}"
        stored = callbacks.document(document_id).get()
        assert query["approver"] == str(index) and query["view"] == "page"
        assert (query["runID"], query["step"]) == (approvals["runID"], approvals["step"])
        assert query["token"] == stored.get("token") != group.get("token")
        assert query["reg"] == rfc3339(stored.update_time)
        assert query.get("cb", "") == stored.get("forwardUrl") == group.get("forwardUrl")
        assert stored.get("approver") == link["approver"] and stored.get("approverIndex") == index
        assert stored.get("group") == f"{approvals['runID']}_{approvals['step']}"
        assert stored.get("key") == key_document_id(
            document_id, query["token"], query.get("cb", "")
        )
        assert callbacks.document(stored.get("key")).get().exists


def test_the_links_are_one_registration_each_written_in_one_commit(push, callbacks):
    run = run_workflow(registering(), settings=push)

    assert run.error is None, run.error
    assert [link["approver"] for link in run.result["links"]] == THREE
    assert len({capability(link["url"])["token"] for link in run.result["links"]}) == 3
    assert_links_match_the_registration(callbacks, run.result)
    assert run.connector_calls == {"commit": 1}
    assert run.approvals == [run.result]


def test_a_retried_get_approval_urls_returns_the_same_links(push, bridge, callbacks):
    # The Commit is applied but its answer lost; the retry gets 409 and
    # reads the links back.
    bridge.fail_next("commit", 503, after_applying=True)

    run = run_workflow(registering(), settings=push, bridge=bridge)

    assert run.error is None, run.error
    assert run.connector_calls == {"commit": 2, "batchGet": 1}
    assert_links_match_the_registration(callbacks, run.result)


def test_registering_the_same_approval_twice_gives_the_same_links(push, callbacks):
    twice = {
        "main": {
            "steps": [
                {"first": {"call": "getApprovalURLs", "args": {"step": "r", "approvers": THREE},
                           "result": "a"}},
                {"again": {"call": "getApprovalURLs", "args": {"step": "r", "approvers": THREE},
                           "result": "b"}},
                {"done": {"return": ["${a}", "${b}"]}},
            ]
        }
    }  # fmt: skip

    run = run_workflow(twice, settings=push)

    assert run.error is None, run.error
    first, again = run.result
    assert first == again
    assert_links_match_the_registration(callbacks, again)


@pytest.mark.parametrize(
    "others",
    [["dee@example.com"], [*THREE[:2], "dee@example.com"]],
    ids=["fewer", "one-label-differs"],
)
def test_other_approvers_for_a_waiting_approval_are_a_conflict(push, others):
    workflow = {
        "main": {
            "steps": [
                {"first": {"call": "getApprovalURLs", "args": {"step": "r", "approvers": THREE}}},
                {"other": {"call": "getApprovalURLs",
                           "args": {"step": "r", "approvers": others}}},
            ]
        }
    }  # fmt: skip

    run = run_workflow(workflow, settings=push)

    assert run.error["tags"] == ["ConflictError"]
    assert "already waits for other approvers" in run.error["message"]


def test_a_step_registered_as_a_single_callback_is_a_conflict(push):
    workflow = {
        "main": {
            "steps": [
                {"single": {"call": "getCallbackURL", "args": {"step": "r"}}},
                {"both": {"call": "getApprovalURLs", "args": {"step": "r", "approvers": THREE}}},
            ]
        }
    }  # fmt: skip

    run = run_workflow(workflow, settings=push)

    assert run.error["tags"] == ["ConflictError"]
    assert "registered as a single callback" in run.error["message"]


def test_an_ended_approval_is_registered_anew(settings, fake_clock, people, callbacks):
    # Two executions with one runID (poll: an endpoint belongs to its execution).
    workflow = approval(quorum=2, delivery="poll", runID="shared-run",
                        registration={"runID": "shared-run", "delivery": "poll"})  # fmt: skip
    schedule = [(1, lambda p: (p.answer(0, APPROVE), p.answer(1, APPROVE)))]
    first = run_approval(settings, workflow, fake_clock, people, schedule)
    assert first.error is None, first.error
    old_tokens = [capability(link["url"])["token"] for link in people.links]

    again = run_workflow(registering("a", runID="shared-run", delivery="poll"), settings=settings)

    assert again.error is None, again.error
    new_tokens = [capability(link["url"])["token"] for link in again.result["links"]]
    assert not set(new_tokens) & set(old_tokens)
    assert_links_match_the_registration(callbacks, again.result)
    assert again.connector_calls == {"commit": 2, "batchGet": 1}
    assert [people.state(i) for i in range(3)] == ["WAITING"] * 3


SIXTEEN = [f"approver-{n:02d}@example.com" for n in range(16)]


def test_sixteen_approvers_racing_with_quorum_eight_count_exactly_eight(push, fake_clock, people):
    def everyone(p: Approvers) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda index: p.answer(index, APPROVE), range(16)))

    run = run_approval(push, approval(SIXTEEN, quorum=8), fake_clock, people, [(5, everyone)])

    assert run.error is None, run.error
    assert run.result["decision"] == "approved"
    answers = run.result["answers"]
    assert len(answers) == 8 and len({a["approver"] for a in answers}) == 8
    states = [people.state(i) for i in range(16)]
    assert states.count("CONSUMED") == 8 and states.count("RECEIVED") == 8
    consumed = {SIXTEEN[i] for i, state in enumerate(states) if state == "CONSUMED"}
    assert {a["approver"] for a in answers} == consumed
    # None lost from the record: every link keeps its answer.
    assert all(json.loads(people.document(i).get().get("payload")) for i in range(16))
    assert decided_logs(run)[0]["approvals"] == 8


def test_sixteen_approvers_racing_in_real_time_count_exactly_eight(push_settings, people):
    # The real clock and 1 s slices: the answers land while the wait takes
    # others, and some forwards fail (12 failed attempts: those answers are
    # found by the read at the end of a slice), so takes of forwards and of
    # reads interleave.
    done = threading.Event()

    def race() -> None:
        people.callback_api.fail_next(500, times=12)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda index: people.answer(index, APPROVE), range(16)))
        done.set()

    def on_approvals(approvals: dict[str, Any]) -> None:
        people.got(approvals)
        threading.Thread(target=race, daemon=True).start()

    run = run_workflow(
        approval(SIXTEEN, quorum=8), settings=push_settings, on_approvals=on_approvals
    )

    assert done.wait(30)
    assert run.error is None, run.error
    answers = run.result["answers"]
    assert len(answers) == 8 and len({a["approver"] for a in answers}) == 8
    states = [people.state(i) for i in range(16)]
    assert states.count("CONSUMED") == 8 and states.count("RECEIVED") == 8
    assert {a["approver"] for a in answers} == {
        SIXTEEN[i] for i, state in enumerate(states) if state == "CONSUMED"
    }
    assert all(json.loads(people.document(i).get().get("payload")) for i in range(16))


def test_a_take_whose_answer_was_lost_is_counted_once(push, fake_clock, people, bridge):
    # The take's write is applied but its answer lost: its retry is refused
    # (the version changed), the read finds the link consumed by this call.
    def lose_the_next_answer(p: Approvers) -> None:
        bridge.fail_next("patch", 503, after_applying=True)

    schedule = [(4, lose_the_next_answer), (5, lambda p: p.answer(1, APPROVE)),
                (9, lambda p: p.answer(2, APPROVE))]  # fmt: skip

    def on_approvals(approvals: dict[str, Any]) -> None:
        people.got(approvals)
        for at, action in schedule:
            fake_clock.at(at, lambda action=action: action(people))

    run = run_workflow(
        approval(quorum=2), settings=push, clock=fake_clock, bridge=bridge,
        on_approvals=on_approvals,
    )  # fmt: skip

    assert run.error is None, run.error
    assert [a["approver"] for a in run.result["answers"]] == [THREE[1], THREE[2]]
    assert run.connector_calls["batchGet"] == 1


def test_a_cancelled_approval_raises_a_cancelled_error(push, fake_clock, people):
    def cancel(p: Approvers) -> None:
        p.group().update({"state": "CANCELLED", "cancelReason": "release called off"})
        query = capability(p.links[0]["url"])
        event = {"event": "cancel", "runID": query["runID"], "step": query["step"]}
        assert post_to_endpoint(query["cb"], event) == 200

    schedule = [(5, lambda p: p.answer(0, APPROVE)), (6, cancel)]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error["tags"] == ["CancelledError"]
    assert run.error["reason"] == "release called off"
    assert "cancelled: release called off" in run.error["message"]
    assert [a["approver"] for a in run.error["answers"]] == [THREE[0]]
    assert not_taken_warnings(run) == []
    assert fake_clock.elapsed < 7


def test_an_approval_round_trip_within_one_slice_costs_less_than_three_single_waits(
    push, fake_clock, people
):
    # A single push wait: 12 internal steps and 1 await, main's included
    # (test_step_budget.py). N = 3, M = 2: at most three of them.
    schedule = [(5, lambda p: p.answer(2, APPROVE)), (9, lambda p: p.answer(0, APPROVE))]

    run = run_approval(push, approval(quorum=2), fake_clock, people, schedule)

    assert run.error is None, run.error
    assert run.steps <= 3 * (12 + 1)
    assert (internal(run), run.callback_events["await_callback"]) == (24, 2)


def calling(subworkflow: str, **args: Any) -> dict[str, Any]:
    return {"main": {"steps": [{"call": {"call": subworkflow, "args": args, "result": "r"}}]}}


FORM = {"title": "Ship?", "choices": [{"value": "yes", "label": "Yes"}]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"approvers": "ana@example.com"}, "approvers must be a list of 1 to 50 labels"),
        ({"approvers": []}, "approvers must hold 1 to 50 labels, got 0"),
        ({"approvers": [f"p{n}" for n in range(51)]}, "approvers must hold 1 to 50 labels, got 51"),
        ({"approvers": ["ana", 7]}, "approvers[1] must be a string (a label"),
        ({"approvers": ["ana", ""]}, "approvers[1] must be 1 to 200 characters long, got 0"),
        ({"approvers": ["x" * 201]}, "approvers[0] must be 1 to 200 characters long, got 201"),
        ({"approvers": ["ana", "bo", "ana"]}, "approvers[2] repeats approvers[0] 'ana'"),
        ({"form": "Ship?"}, "form must be a map"),
        ({"form": {"title": "T"}}, "form.choices must be a list"),
        ({"form": {"choices": []}}, "form.choices must hold at least one choice that approves"),
        (
            {"form": {"choices": [{"label": "No value"}]}},
            "form.choices[0] must be a map with a value",
        ),
        (
            {"form": {"choices": [{"value": "ok", "reject": "yes"}]}},
            "form.choices[0].reject must be",
        ),
        (
            {"form": {"choices": [{"value": "ok"}, {"value": "ok", "reject": True}]}},
            "form.choices[1] repeats the value 'ok'",
        ),
        (
            {"form": {"choices": [{"value": "no", "reject": True}]}},
            "no choice that approves",
        ),
        ({"step": "a b"}, "step must match"),
        ({"ttlSeconds": 0}, "ttlSeconds must be greater than 0"),
        ({"delivery": "fax"}, "delivery must be push or poll"),
    ],
)
def test_get_approval_urls_refuses_bad_arguments_before_writing(push, args, message):
    run = run_workflow(calling("getApprovalURLs", **{"step": "v", "approvers": THREE, **args}),
                       settings=push)  # fmt: skip

    assert run.error["tags"] == ["ValueError"], run.error
    assert message in run.error["message"]
    assert run.error["message"].startswith("getApprovalURLs - ")
    assert run.connector_calls == {}


def fake_approvals(run_id: str = "RUN", step: str = "v", n: int = 3) -> dict[str, Any]:
    url = f"https://cb.example/?runID={run_id}&step={step}&approver=0&token={'0' * 64}&reg=x"
    links = [{"approver": f"p{i}", "url": url} for i in range(n)]
    return {"runID": run_id, "step": step, "links": links}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"quorum": 0}, "quorum must be a whole number from 1 to the number of approvers"),
        ({"quorum": "2"}, "quorum must be a whole number"),
        ({"quorum": 4}, "quorum 4 is more than the 3 approvers"),
        ({"rejectQuorum": 0}, "rejectQuorum must be a whole number of at least 1"),
        ({"rejectQuorum": 1.5}, "rejectQuorum must be a whole number"),
        ({"raiseOnReject": "yes"}, "raiseOnReject must be true or false"),
        ({"approvals": "links"}, "approvals must be the map getApprovalURLs returned"),
        ({"approvals": fake_approvals(step="other")}, "approvals is not the map getApprovalURLs"),
        ({"approvals": fake_approvals(run_id="other")}, "approvals is not the map getApprovalURLs"),
        ({"approvals": {**fake_approvals(), "links": []}}, "approvals.links must hold 1 to 50"),
        ({"timeoutSeconds": 0}, "timeoutSeconds must be greater than 0"),
        ({"delivery": "fax"}, "delivery must be push or poll"),
    ],
)
def test_wait_for_approvals_refuses_bad_arguments_before_reading(push, args, message):
    wait = calling("waitForApprovals", **{"step": "v", "approvals": fake_approvals(), **args})

    run = run_workflow(wait, settings=push, execution_id="RUN")

    assert run.error["tags"] == ["ValueError"], run.error
    assert message in run.error["message"]
    assert run.connector_calls == {}


def test_waiting_for_an_unregistered_approval_is_a_value_error(push):
    run = run_workflow(calling("waitForApprovals", step="nothing"), settings=push)

    assert run.error["tags"] == ["ValueError"]
    assert "no approval is registered" in run.error["message"]


def test_waiting_for_approvals_on_a_single_callback_is_a_value_error(push):
    workflow = {
        "main": {
            "steps": [
                {"single": {"call": "getCallbackURL", "args": {"step": "s"}}},
                {"wait": {"call": "waitForApprovals", "args": {"step": "s"}}},
            ]
        }
    }

    run = run_workflow(workflow, settings=push)

    assert run.error["tags"] == ["ValueError"]
    assert "is not an approval" in run.error["message"]
