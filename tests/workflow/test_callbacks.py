"""The callback subworkflows, run in workflows-emulator against the emulator and the receiver."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from infra.workflow_env import WaitSettings
from local.firestore_rest_bridge import FirestoreRestBridge
from local.registration import key_document_id
from local.workflow_runner import RunSettings, run_workflow

# getCallbackURL then waitForResponse for input.step, with the settings from the
# environment (RunSettings.wait); the URL is returned too.
ROUND_TRIP = {
    "main": {
        "params": ["input"],
        "steps": [
            {
                "register": {
                    "call": "getCallbackURL",
                    "args": {"step": "${input.step}"},
                    "result": "url",
                }
            },
            {
                "wait": {
                    "call": "waitForResponse",
                    "args": {"step": "${input.step}"},
                    "result": "answer",
                }
            },
            {"done": {"return": {"url": "${url}", "answer": "${answer}"}}},
        ],
    }
}


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def with_token(url: str, token: str) -> str:
    return url.replace("token=" + query(url)["token"], "token=" + token)


def assert_consumed(callbacks, document_id: str) -> dict[str, Any]:
    """The callback document is a CONSUMED tombstone: the payload gone, the record kept."""
    tombstone = callbacks.document(document_id).get().to_dict()
    assert tombstone is not None, f"{document_id} was deleted, not marked consumed"
    assert tombstone["state"] == "CONSUMED"
    assert "payload" not in tombstone
    # When the workflow took it, on the workflow's clock (virtual in some tests).
    assert isinstance(tombstone["consumedAt"], datetime)
    assert tombstone["consumedBy"]  # the waitForResponse call that took it
    return tombstone


def test_callback_sent_before_the_wait_arrives_intact(settings, callbacks):
    body = {"approved": True, "by": "alice", "nested": {"n": None, "list": [1, 2.5, "x"]}}
    sent: list[int] = []

    def send(url: str) -> None:  # runs as soon as getCallbackURL returns
        sent.append(requests.post(url, json=body, timeout=10).status_code)

    run = run_workflow(ROUND_TRIP, {"step": "approval"}, settings=settings, on_callback_url=send)

    assert run.error is None
    assert sent == [200]
    answer = run.result["answer"]
    assert answer["body"] == body
    assert answer["method"] == "POST"
    assert (answer["runID"], answer["step"]) == (run.execution_id, "approval")
    # Found on the first poll: no sleep, one read, and the tombstone written.
    assert run.connector_calls == {"commit": 1, "get": 1, "patch": 1}
    tombstone = assert_consumed(callbacks, f"{run.execution_id}_approval")
    # What the tombstone keeps: the registration and the fingerprint of what came.
    assert tombstone["token"] == query(run.result["url"])["token"]
    assert tombstone["fingerprint"].startswith("sha256:")
    assert {"createdAt", "expireAt", "key", "forwardUrl", "form"} <= tombstone.keys()


def test_callback_sent_during_the_wait_with_get_and_value(settings, callbacks, trigger_clock):
    urls: list[str] = []
    statuses: list[int] = []

    def send() -> None:
        response = requests.get(urls[0] + "&value=approve%20it&extra=1", timeout=10)
        statuses.append(response.status_code)

    clock = trigger_clock(send)
    run = run_workflow(
        ROUND_TRIP, {"step": "s-1"}, settings=settings, clock=clock, on_callback_url=urls.append
    )

    assert run.error is None
    assert statuses == [200]
    assert clock.sleeps >= 1  # it really was waiting
    answer = run.result["answer"]
    assert answer["method"] == "GET"
    assert answer["value"] == "approve it"
    assert answer["query"]["extra"] == "1"
    assert "token" not in answer["query"]
    assert run.connector_calls["get"] >= 2
    assert assert_consumed(callbacks, f"{run.execution_id}_s-1")["value"] == "approve it"


def test_no_callback_times_out_with_a_timeout_error_naming_it(settings, fake_clock):
    slow = RunSettings(**{**settings.__dict__, "wait": WaitSettings(1, 2, 4, 20, 3600)})

    run = run_workflow(ROUND_TRIP, {"step": "never"}, settings=slow, clock=fake_clock)

    assert run.result is None
    assert "TimeoutError" in run.error["tags"]
    assert run.execution_id in run.error["message"]
    assert "never" in run.error["message"]
    # Backs off from the first interval to the cap, and stops exactly at the
    # timeout: polls at 0, 1, 3, 7, 11, 15, 19 and 20 s.
    assert fake_clock.sleeps == [1, 2, 4, 4, 4, 4, 1]
    assert run.connector_calls["get"] == 8


def test_a_timeout_leaves_an_expired_tombstone_a_late_caller_is_told_about(
    settings, fake_clock, callbacks
):
    urls: list[str] = []
    slow = RunSettings(**{**settings.__dict__, "wait": WaitSettings(1, 2, 4, 10, 3600)})

    run = run_workflow(
        ROUND_TRIP, {"step": "gone"}, settings=slow, clock=fake_clock, on_callback_url=urls.append
    )

    assert "TimeoutError" in run.error["tags"]
    assert run.connector_calls["patch"] == 1
    document = callbacks.document(f"{run.execution_id}_gone")
    expired = document.get().to_dict()
    assert expired["state"] == "EXPIRED"
    assert expired["expiredAt"] >= expired["createdAt"]
    assert expired["token"] == query(urls[0])["token"]  # the rest of the record stays
    # A late caller learns that the workflow stopped waiting (410), and
    # nothing is stored for it: the tombstone is unchanged.
    late = requests.post(urls[0], json={"late": True}, timeout=10)
    assert late.status_code == 410, late.text
    assert document.get().to_dict() == expired


def test_a_timeout_without_a_registration_deletes_nothing(settings, fake_clock):
    wait = {"call": "waitForResponse", "args": {"step": "x", "timeoutSeconds": 5}}
    run = run_workflow({"main": {"steps": [{"w": wait}]}}, settings=settings, clock=fake_clock)

    assert "TimeoutError" in run.error["tags"]
    assert "patch" not in run.connector_calls


class CallbackBeforeExpiry(FirestoreRestBridge):
    """Delivers a callback right before the workflow's first write: after its last poll."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.url = ""
        self.statuses: list[int] = []

    def call(self, call_name: str, args: dict[str, Any]) -> Any:
        if call_name.endswith(".patch") and not self.statuses:
            response = requests.post(self.url, json={"just": "in time"}, timeout=10)
            self.statuses.append(response.status_code)
        return super().call(call_name, args)


def test_a_callback_stored_between_the_last_poll_and_the_removal_is_returned(
    settings, fake_clock, firestore_emulator_host, callbacks
):
    slow = RunSettings(**{**settings.__dict__, "wait": WaitSettings(1, 2, 4, 10, 3600)})
    with CallbackBeforeExpiry(firestore_emulator_host) as bridge:

        def remember(url: str) -> None:
            bridge.url = url

        run = run_workflow(
            ROUND_TRIP,
            {"step": "late"},
            settings=slow,
            clock=fake_clock,
            bridge=bridge,
            on_callback_url=remember,
        )

    assert bridge.statuses == [200]
    assert run.error is None
    assert run.result["answer"]["body"] == {"just": "in time"}
    # The conditional EXPIRED write was refused, one more read found the
    # callback, and consuming it wrote the CONSUMED tombstone: a last-moment
    # callback is consumed, not lost.
    assert run.connector_calls["patch"] == 2
    assert_consumed(callbacks, f"{run.execution_id}_late")


def test_a_removal_refused_for_another_reason_is_raised(settings, fake_clock, bridge, callbacks):
    slow = RunSettings(**{**settings.__dict__, "wait": WaitSettings(1, 2, 4, 5, 3600)})
    bridge.fail_next("patch", status=400, grpc_status="INVALID_ARGUMENT")

    run = run_workflow(ROUND_TRIP, {"step": "odd"}, settings=slow, clock=fake_clock, bridge=bridge)

    # The last poll found the registration unchanged: the 400 was not a
    # changed document, so it is not mistaken for one.
    assert run.error["code"] == 400
    assert run.error["body"]["error"]["status"] == "INVALID_ARGUMENT"
    assert callbacks.document(f"{run.execution_id}_odd").get().to_dict()["state"] == "WAITING"


def test_per_call_settings_override_the_environment(settings, fake_clock):
    workflow = {
        "main": {
            "steps": [
                {"register": {"call": "getCallbackURL", "args": {"step": "x"}}},
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {
                            "step": "x",
                            "pollInitialSeconds": 3,
                            "pollMultiplier": 3,
                            "pollMaxSeconds": 10,
                            "timeoutSeconds": 30,
                        },
                    }
                },
            ]
        }
    }
    run = run_workflow(workflow, settings=settings, clock=fake_clock)

    assert "TimeoutError" in run.error["tags"]
    assert fake_clock.sleeps == [3, 9, 10, 8]


def test_a_retried_get_callback_url_returns_the_same_url(settings, callbacks):
    workflow = {
        "main": {
            "steps": [
                {"first": {"call": "getCallbackURL", "args": {"step": "retry"}, "result": "a"}},
                {"again": {"call": "getCallbackURL", "args": {"step": "retry"}, "result": "b"}},
                {"done": {"return": ["${a}", "${b}"]}},
            ]
        }
    }
    run = run_workflow(workflow, settings=settings)

    first, second = run.result
    assert first == second
    assert len(query(first)["token"]) == 64
    # The callback document's creation time; no endpoint with poll delivery.
    assert query(first)["reg"].endswith("Z") and "cb" not in query(first)
    assert run.connector_calls == {"commit": 2, "get": 1}
    snapshot = callbacks.document(f"{run.execution_id}_retry").get()
    document = snapshot.to_dict()
    assert document["state"] == "WAITING"
    assert document["token"] == query(first)["token"]
    assert document["expireAt"] > document["createdAt"]
    assert snapshot.create_time == datetime.fromisoformat(query(first)["reg"])
    key = callbacks.document(document["key"]).get()
    assert key.exists and key.to_dict() == {"expireAt": document["expireAt"]}
    assert document["key"] == key_document_id(f"{run.execution_id}_retry", document["token"], "")


def test_a_callback_to_a_url_from_get_callback_url_costs_one_firestore_call(settings, receiver):
    statuses: list[int] = []

    def send(url: str) -> None:
        statuses.append(requests.post(url, json={"n": 1}, timeout=10).status_code)

    run = run_workflow(ROUND_TRIP, {"step": "one"}, settings=settings, on_callback_url=send)

    assert run.error is None and statuses == [200]
    [entry] = [e for e in receiver.log_entries() if e.get("runID") == run.execution_id]
    assert (entry["outcome"], entry["firestoreCalls"]) == ("stored", 1)


def test_a_forged_token_is_refused_and_the_workflow_keeps_waiting(settings, trigger_clock):
    urls: list[str] = []
    statuses: list[int] = []

    def forge_then_answer() -> None:
        forged = with_token(urls[0], "0" * 64)
        statuses.append(requests.post(forged, json={"approved": True}, timeout=10).status_code)
        tokenless = urls[0].split("&token=")[0]
        statuses.append(requests.post(tokenless, json={"approved": True}, timeout=10).status_code)
        statuses.append(requests.post(urls[0], json={"approved": False}, timeout=10).status_code)

    clock = trigger_clock(forge_then_answer)
    run = run_workflow(
        ROUND_TRIP, {"step": "gate"}, settings=settings, clock=clock, on_callback_url=urls.append
    )

    assert statuses == [403, 403, 200]
    assert run.result["answer"]["body"] == {"approved": False}


def test_two_steps_of_one_run_do_not_interfere(settings, callbacks):
    workflow = {
        "main": {
            "steps": [
                {"a": {"call": "getCallbackURL", "args": {"step": "a"}, "result": "urlA"}},
                {"b": {"call": "getCallbackURL", "args": {"step": "b"}, "result": "urlB"}},
                {"waitB": {"call": "waitForResponse", "args": {"step": "b"}, "result": "answerB"}},
                {"waitA": {"call": "waitForResponse", "args": {"step": "a"}, "result": "answerA"}},
                {"done": {"return": {"a": "${answerA}", "b": "${answerB}"}}},
            ]
        }
    }
    urls: list[str] = []
    statuses: list[int] = []

    def send(url: str) -> None:
        urls.append(url)
        if len(urls) == 2:  # both registered: cross the tokens, then answer each
            url_a, url_b = urls
            statuses.append(
                requests.post(
                    with_token(url_b, query(url_a)["token"]), json={}, timeout=10
                ).status_code
            )
            for each in urls:
                step = query(each)["step"]
                statuses.append(requests.post(each, json={"for": step}, timeout=10).status_code)

    run = run_workflow(workflow, settings=settings, on_callback_url=send)

    assert statuses == [403, 200, 200]
    assert run.result["a"]["body"] == {"for": "a"}
    assert run.result["b"]["body"] == {"for": "b"}
    assert (run.result["a"]["step"], run.result["b"]["step"]) == ("a", "b")
    for step in "ab":
        assert assert_consumed(callbacks, f"{run.execution_id}_{step}")["value"] is None


def test_an_early_unregistered_callback_is_kept_and_returned(settings, callbacks):
    # What the receiver stores when CALLBACKS_ALLOW_UNREGISTERED lets a
    # callback in before getCallbackURL ran: RECEIVED, no token.
    run_id = "early-run-1"
    payload = '{"method": "GET", "query": {}, "body": null, "value": "yes"}'
    callbacks.document(f"{run_id}_early").set(
        {"state": "RECEIVED", "responded": True, "value": "yes", "payload": payload}
    )
    workflow = {
        "main": {
            "steps": [
                {
                    "url": {
                        "call": "getCallbackURL",
                        "args": {"step": "early", "runID": run_id},
                        "result": "url",
                    }
                },
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {"step": "early", "runID": run_id},
                        "result": "answer",
                    }
                },
                {"done": {"return": {"url": "${url}", "answer": "${answer}"}}},
            ]
        }
    }
    run = run_workflow(workflow, settings=settings)

    assert run.error is None
    assert run.result["url"] == f"{settings.base_url}?runID={run_id}&step=early"
    assert run.result["answer"]["value"] == "yes"
    assert run.result["answer"]["body"] is None
    assert assert_consumed(callbacks, f"{run_id}_early")["value"] == "yes"


def test_a_payload_that_cannot_be_decoded_fails_the_wait_but_stays_stored(settings, callbacks):
    run_id = "undecodable-run-1"
    stored = {"state": "RECEIVED", "responded": True, "value": None, "payload": "{not json"}
    callbacks.document(f"{run_id}_bad").set(stored)
    workflow = {
        "main": {
            "steps": [
                {"wait": {"call": "waitForResponse", "args": {"step": "bad", "runID": run_id}}}
            ]
        }
    }

    run = run_workflow(workflow, settings=settings)

    assert run.error is not None
    assert "patch" not in run.connector_calls
    # Still there for a retry of the step (or a person) to read.
    assert callbacks.document(f"{run_id}_bad").get().to_dict() == stored


def test_firestore_errors_other_than_404_are_raised(settings, bridge, fake_clock):
    bridge.fail_next("get", status=503, grpc_status="UNAVAILABLE")
    unavailable = run_workflow(ROUND_TRIP, {"step": "x"}, settings=settings, bridge=bridge)

    bridge.fail_next("get", status=403, grpc_status="PERMISSION_DENIED")
    forbidden = run_workflow(ROUND_TRIP, {"step": "x"}, settings=settings, bridge=bridge)

    bridge.fail_next("commit", status=403, grpc_status="PERMISSION_DENIED")
    create_failed = run_workflow(ROUND_TRIP, {"step": "x"}, settings=settings, bridge=bridge)

    assert unavailable.error["code"] == 503
    assert unavailable.error["body"]["error"]["status"] == "UNAVAILABLE"
    assert forbidden.error["code"] == 403
    assert create_failed.error["code"] == 403
    # Not retried: only 429, 5xx, connection errors and timeouts are (test_connector_retries).
    assert create_failed.connector_calls == {"commit": 1}


# getCallbackURL for step "r", returning the URL.
REGISTER = {
    "main": {
        "steps": [
            {"url": {"call": "getCallbackURL", "args": {"step": "r"}, "result": "url"}},
            {"done": {"return": "${url}"}},
        ]
    }
}


def test_a_registration_that_vanished_once_is_made_again(settings, bridge, callbacks):
    # 409 on create, then 404 on the read: deleted in between (TTL, or a
    # waitForResponse of an earlier attempt). The second create succeeds.
    bridge.fail_next("commit", status=409, grpc_status="ALREADY_EXISTS")
    bridge.fail_next("get", status=404, grpc_status="NOT_FOUND")

    run = run_workflow(REGISTER, settings=settings, bridge=bridge)

    assert run.error is None
    assert run.connector_calls == {"commit": 2, "get": 1}
    stored = callbacks.document(f"{run.execution_id}_r").get().to_dict()
    assert stored["token"] == query(run.result)["token"]


def test_a_registration_that_keeps_vanishing_raises_a_conflict_error(settings, bridge):
    bridge.fail_next("commit", status=409, grpc_status="ALREADY_EXISTS", times=3)
    bridge.fail_next("get", status=404, grpc_status="NOT_FOUND", times=3)

    run = run_workflow(REGISTER, settings=settings, bridge=bridge)

    assert run.error["tags"] == ["ConflictError"]
    assert (run.error["runID"], run.error["step"]) == (run.execution_id, "r")
    assert "keeps disappearing" in run.error["message"]
    assert run.connector_calls == {"commit": 3, "get": 3}


def test_invalid_ids_raise_a_value_error(settings):
    bad_step = run_workflow(ROUND_TRIP, {"step": "a/b"}, settings=settings)
    workflow: dict[str, Any] = {
        "main": {
            "steps": [{"u": {"call": "getCallbackURL", "args": {"step": "s", "runID": "a_b"}}}]
        }
    }
    bad_run = run_workflow(workflow, settings=settings)

    assert bad_step.error["tags"] == ["ValueError"]
    assert "a/b" in bad_step.error["message"]
    assert bad_run.error["tags"] == ["ValueError"]
    assert "runID" in bad_run.error["message"]
    assert bad_step.connector_calls == {}


class Approver(http.server.BaseHTTPRequestHandler):
    """A webhook: records what it is sent, then answers through the callback URL.

    A machine answers the link without the page (view=page), sending each of
    ``answers`` in turn (keyword arguments of requests.post) and recording
    the statuses.
    """

    received: ClassVar[list[dict[str, Any]]] = []
    answers: ClassVar[list[dict[str, Any]]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        message = json.loads(self.rfile.read(length))
        self.received.append(message)
        self.send_response(204)
        self.end_headers()
        machine_url = message["callbackUrl"].replace("&view=page", "")
        for answer in self.answers:
            answer = dict(answer)
            url = machine_url + answer.pop("suffix", "")
            self.statuses.append(requests.post(url, timeout=10, **answer).status_code)

    def log_message(self, *_args: Any) -> None:
        pass


def run_example_answered_by(settings, repo_root, answers: list[dict[str, Any]]):
    Approver.received.clear()
    Approver.statuses.clear()
    Approver.answers = answers
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Approver) as hook:
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        notify_url = f"http://127.0.0.1:{hook.server_address[1]}/approvals"
        run = run_workflow(
            repo_root / "workflow" / "example.yaml",
            {"subject": "Ship it", "notifyUrl": notify_url},
            settings=settings,
        )
        hook.shutdown()
    return run


def test_the_example_sends_the_link_to_notify_url_and_logs_no_secret(settings, repo_root):
    answer = {"value": "approve", "comment": "by hook"}
    run = run_example_answered_by(settings, repo_root, [{"json": answer}])

    assert run.error is None
    assert Approver.statuses == [200]
    assert run.result["decision"] == "approved"
    assert run.result["callback"]["value"] == "approve"
    assert run.result["callback"]["body"] == answer
    assert Approver.received == [{"subject": "Ship it", "callbackUrl": run.callback_urls[0]}]
    assert run.logs == []  # the URL (and its token) went to the webhook only


def test_a_machine_answer_to_a_form_must_be_one_of_its_choices(settings, repo_root, callbacks):
    """getCallbackURL with a form names its key document .formkey.: the receiver's
    blind Commit cannot store there, so every machine answer is checked (422)."""
    refused = [
        {"suffix": "&value=APPROVE_EVERYTHING"},
        {"json": {"approved": True, "by": "hook"}},
        {"json": {"value": "approve", "comment": "x" * 2001}},
        {"data": {"value": "approve", "note": "not a field of the form"}},
    ]
    run = run_example_answered_by(
        settings, repo_root, [*refused, {"suffix": "&value=reject&comment=not+today"}]
    )

    assert run.error is None
    assert Approver.statuses == [422, 422, 422, 422, 200]
    assert run.result["decision"] == "rejected"
    assert run.result["callback"]["value"] == "reject"
    # Sent in the query: the answer is the payload's value and comment.
    assert run.result["callback"]["comment"] == "not today"
    document_id = f"{run.execution_id}_approval"
    stored = callbacks.document(document_id).get().to_dict()
    url = query(run.callback_urls[0])
    assert stored["key"] == key_document_id(
        document_id, url["token"], url.get("cb", ""), with_form=True
    )
    assert ".formkey." in stored["key"]


def test_the_example_waits_as_long_as_the_stack_says_unless_told(settings, repo_root):
    example = repo_root / "workflow" / "example.yaml"
    stack = RunSettings(**{**settings.__dict__, "wait": WaitSettings(1, 2, 4, 10, 3600)})

    class BoundedClock:
        """Virtual time that gives up far past any timeout this test expects."""

        def __init__(self) -> None:
            self.time = 0.0

        def now(self) -> float:
            return self.time

        def sleep(self, seconds: float) -> None:
            self.time += seconds
            if self.time > 1000:
                raise RuntimeError("still waiting after 1000 s")

    from_stack = run_workflow(example, settings=stack, clock=BoundedClock())
    told = run_workflow(example, {"timeoutSeconds": 20}, settings=stack, clock=BoundedClock())

    assert "TimeoutError" in from_stack.error["tags"]
    assert "timed out after 10" in from_stack.error["message"]
    assert "TimeoutError" in told.error["tags"]
    assert "timed out after 20" in told.error["message"]


def machine(url: str) -> str:
    """The example hands out its page for people; machines use the URL without view=page."""
    assert url.endswith("&view=page")
    return url.removesuffix("&view=page")


def test_the_example_workflow_approves_and_rejects(settings, repo_root):
    def answer_with(body: dict[str, Any]) -> Any:
        return lambda url: requests.post(machine(url), json=body, timeout=10).raise_for_status()

    example = repo_root / "workflow" / "example.yaml"
    approved = run_workflow(
        example,
        {"subject": "S"},
        settings=settings,
        on_callback_url=answer_with({"value": "approve", "comment": "ship it"}),
    )
    rejected = run_workflow(
        example, {}, settings=settings, on_callback_url=answer_with({"value": "reject"})
    )
    by_value = run_workflow(
        example,
        settings=settings,
        on_callback_url=lambda url: requests.get(machine(url) + "&value=approve", timeout=10),
    )
    on_the_page = run_workflow(
        example,
        settings=settings,
        on_callback_url=lambda url: requests.post(url, data={"choice": "reject"}, timeout=10),
    )

    assert approved.result["decision"] == "approved"
    assert approved.result["subject"] == "S"
    assert approved.result["callback"]["body"] == {"value": "approve", "comment": "ship it"}
    assert approved.logs[0][0] == "NOTICE"
    assert rejected.result["decision"] == "rejected"
    assert by_value.result["decision"] == "approved"
    # No argument at all: the example reads a null input with map.get.
    assert by_value.result["subject"] == "Deploy release to production"
    assert on_the_page.result["decision"] == "rejected"
    assert on_the_page.result["callback"]["value"] == "reject"


def test_binary_and_multipart_bodies_reach_the_workflow_byte_for_byte(settings):
    # From the sender's bytes to what waitForResponse returns, and the
    # workflow's own base64.decode of it.
    every_byte = bytes(range(256))
    multipart = (
        b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nok \xe2\x9c\x93\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + every_byte + b"\r\n--B--\r\n"
    )
    workflow = {
        "main": {
            "steps": [
                {"urlA": {"call": "getCallbackURL", "args": {"step": "a"}, "result": "a"}},
                {"urlB": {"call": "getCallbackURL", "args": {"step": "b"}, "result": "b"}},
                {"waitA": {"call": "waitForResponse", "args": {"step": "a"}, "result": "ra"}},
                {"waitB": {"call": "waitForResponse", "args": {"step": "b"}, "result": "rb"}},
                {
                    "done": {
                        "return": {
                            "binary": "${ra}",
                            "multipart": "${rb}",
                            "decodedLength": "${len(base64.decode(ra.body))}",
                        }
                    }
                },
            ]
        }
    }
    sent: list[int] = []

    def send(url: str) -> None:
        if "step=a" in url:
            headers = {"Content-Type": "application/octet-stream"}
            sent.append(
                requests.post(url, data=every_byte, headers=headers, timeout=10).status_code
            )
        else:
            headers = {"Content-Type": "multipart/form-data; boundary=B"}
            sent.append(requests.post(url, data=multipart, headers=headers, timeout=10).status_code)

    run = run_workflow(workflow, settings=settings, on_callback_url=send)

    assert run.error is None, run.error
    assert sent == [200, 200]
    binary, parts = run.result["binary"], run.result["multipart"]
    assert binary["bodyEncoding"] == "base64"
    assert base64.b64decode(binary["body"]) == every_byte
    assert run.result["decodedLength"] == 256
    assert parts["bodyEncoding"] == "multipart"
    assert parts["body"]["note"] == "ok \u2713"
    assert base64.b64decode(parts["body"]["file"]["data"]) == every_byte


# The same step waited for twice in one run: register, wait, register, wait.
TWICE = {
    "main": {
        "steps": [
            {"first": {"call": "getCallbackURL", "args": {"step": "r"}, "result": "u1"}},
            {
                "wait1": {
                    "try": {
                        "call": "waitForResponse",
                        "args": {"step": "r", "timeoutSeconds": "${input.timeout}"},
                        "result": "a1",
                    },
                    "except": {"as": "e", "steps": [{"gaveUp": {"assign": [{"a1": "${e.tags}"}]}}]},
                }
            },
            {"again": {"call": "getCallbackURL", "args": {"step": "r"}, "result": "u2"}},
            {"wait2": {"call": "waitForResponse", "args": {"step": "r"}, "result": "a2"}},
            {"done": {"return": {"urls": ["${u1}", "${u2}"], "answers": ["${a1}", "${a2}"]}}},
        ],
        "params": ["input"],
    }
}


@pytest.mark.parametrize("first_wait", ["consumed", "expired"])
def test_a_step_registered_again_after_its_wait_gets_a_new_registration(
    settings, fake_clock, callbacks, first_wait
):
    # The first wait ended (its callback consumed, or it timed out): its URL
    # is spent (already delivered, or 410). Registering the step again makes
    # a new registration over the tombstone, with a new token, and a
    # callback on the new URL resumes the second wait.
    urls: list[str] = []
    statuses: list[int] = []

    def answer(url: str) -> None:
        urls.append(url)
        if len(urls) == 2 or first_wait == "consumed":
            body = {"answer": len(urls)}
            statuses.append(requests.post(url, json=body, timeout=10).status_code)

    timeout = 30 if first_wait == "consumed" else 3
    run = run_workflow(
        TWICE, {"timeout": timeout}, settings=settings, clock=fake_clock, on_callback_url=answer
    )

    assert run.error is None, run.error
    first, second = run.result["urls"]
    assert query(first)["token"] != query(second)["token"]
    assert query(first)["reg"] != query(second)["reg"]
    if first_wait == "consumed":
        assert run.result["answers"][0]["body"] == {"answer": 1}
    else:
        assert run.result["answers"][0] == ["TimeoutError"]
    assert run.result["answers"][1]["body"] == {"answer": 2}
    assert statuses[-1] == 200
    # The new URL stored its callback with the receiver's one Commit (reg is
    # the new registration's version, though the document was created earlier).
    tombstone = assert_consumed(callbacks, f"{run.execution_id}_r")
    assert tombstone["token"] == query(second)["token"]
    assert "expiredAt" not in tombstone  # the new registration replaced the old tombstone
    # The spent URL does not reach the new registration.
    assert requests.post(first, json={"late": True}, timeout=10).status_code == 403
