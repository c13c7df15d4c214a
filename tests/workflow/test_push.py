"""Push delivery end to end: the receiver forwards to the execution's callback endpoint.

The subworkflows run in workflows-emulator with events.* served by the local
callback API stand-in; the receiver (functions-framework over HTTP) forwards
there with the local token. Every fault test asserts that the callback is
neither lost nor handed to the workflow twice.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.callback_api import LOCAL_FORWARD_TOKEN
from local.registration import key_document_id
from local.workflow_runner import run_workflow
from tests.workflow.push_helpers import run_awaiting

ROUND_TRIP = {
    "main": {
        "params": ["input"],
        "steps": [
            {"url": {"call": "getCallbackURL", "args": {"step": "s"}, "result": "url"}},
            {"wait": {"call": "waitForResponse", "args": {"step": "s"}, "result": "answer"}},
            {"done": {"return": "${answer}"}},
        ],
    }
}


def forwards_to(api, execution_id: str) -> list[int]:
    """The statuses the callback API answered for POSTs to this execution's endpoints."""
    return [
        status
        for method, path, status in api.requests
        if method == "POST" and f"/executions/{execution_id}/" in path
    ]


def run_with_callback(settings, send, workflow=ROUND_TRIP, **kwargs):
    """ROUND_TRIP; ``send(url)`` runs in a thread once the wait has begun awaiting.

    So the callback comes during the wait, after waitForResponse's first read:
    it reaches the workflow by push, or, if the forward fails, from Firestore
    once the slice ends.
    """
    return run_awaiting(settings, send, workflow, **kwargs)


def test_the_wait_resumes_when_the_receiver_forwards_the_callback(
    push_settings, callback_api, callbacks
):
    body = {"approved": True, "by": "r\u00e9mi"}
    statuses: list[int] = []

    def send(url: str) -> None:
        statuses.append(requests.post(url, json=body, timeout=10).status_code)

    run = run_with_callback(push_settings, send)

    assert run.error is None, run.error
    assert statuses == [200]
    assert run.result["body"] == body
    assert (run.result["runID"], run.result["step"]) == (run.execution_id, "s")
    assert run.result["bodyEncoding"] == "json"
    # One Firestore read (before the await), then push: no polling at all.
    assert run.connector_calls == {"commit": 1, "get": 1, "patch": 1}
    assert run.callback_events == {
        "create_callback_endpoint": 1,
        "await_callback": 1,
        "forwarded": 1,
    }
    assert forwards_to(callback_api, run.execution_id) == [200]
    assert state_of(callbacks, f"{run.execution_id}_s") == "CONSUMED"


def state_of(callbacks, document_id: str) -> str:
    """The callback document's state; a consumed one keeps no payload."""
    document = callbacks.document(document_id).get().to_dict()
    assert document is not None, f"{document_id} is gone"
    if document["state"] == "CONSUMED":
        assert "payload" not in document
    return document["state"]


def receiver_entries(receiver, execution_id: str) -> list[dict]:
    return [entry for entry in receiver.log_entries() if entry.get("runID") == execution_id]


def test_a_url_from_get_callback_url_is_stored_and_forwarded_with_one_firestore_call(
    push_settings, receiver, callbacks
):
    """The workflow computes the key and reg as the receiver expects (registration_layout.py).

    Were they different, the one Commit would fail and the receiver would
    read: still stored, but with 3 Firestore calls.
    """
    urls: list[str] = []

    def send(url: str) -> None:
        urls.append(url)
        assert requests.post(url, json={"n": 1}, timeout=10).status_code == 200

    run = run_with_callback(push_settings, send)

    assert run.error is None, run.error
    [url] = urls
    capability = parse_qs(urlsplit(url).query)
    assert set(capability) == {"runID", "step", "token", "reg", "cb"}
    [endpoint] = capability["cb"]
    assert endpoint.startswith(push_settings.callbacks.origin + "/v1/projects/")
    assert endpoint.endswith(
        f"/executions/{run.execution_id}/callbacks/" + endpoint.rsplit("/", 1)[1]
    )
    [entry] = receiver_entries(receiver, run.execution_id)
    assert (entry["outcome"], entry["firestoreCalls"], entry["forward"]) == (
        "stored",
        1,
        "delivered",
    )
    # The Commit consumed the key document with the registration.
    [token] = capability["token"]
    key = key_document_id(f"{run.execution_id}_s", token, endpoint)
    assert not callbacks.document(key).get().exists


def test_the_registration_records_the_endpoint_and_the_forward_carries_the_poll_shape(
    push_settings, callback_api, callbacks
):
    seen: dict = {}

    def send(url: str) -> None:
        registration = callbacks.document(f"{parse_qs(urlsplit(url).query)['runID'][0]}_s")
        seen["forwardUrl"] = registration.get().get("forwardUrl")
        requests.get(url + "&value=ok", timeout=10)

    run = run_with_callback(push_settings, send)

    assert run.error is None, run.error
    assert seen["forwardUrl"].startswith(
        f"{callback_api.origin}/v1/projects/{callback_api.project}/locations/"
        f"{callback_api.region}/workflows/"
    )
    assert f"/executions/{run.execution_id}/callbacks/" in seen["forwardUrl"]
    # The same keys whichever way it came.
    assert set(run.result) == {
        "method", "query", "headers", "contentType", "bodyEncoding", "body", "value",
        "receivedAt", "runID", "step",
    }  # fmt: skip
    assert run.result["value"] == "ok"


def test_a_callback_before_the_wait_is_delivered_once(push_settings, callback_api, callbacks):
    # Stored and forwarded before waitForResponse starts: its first read finds
    # it in Firestore; the buffered forward is never awaited, so never twice.
    workflow = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "s"}, "result": "url"}},
                {"send": {"call": "http.post", "args": {"url": "${url}", "body": {"n": 1}}}},
                {"wait": {"call": "waitForResponse", "args": {"step": "s"}, "result": "a"}},
                {"done": {"return": "${a}"}},
            ]
        }
    }

    run = run_workflow(workflow, settings=push_settings)

    assert run.error is None, run.error
    assert run.result["body"] == {"n": 1}
    assert forwards_to(callback_api, run.execution_id) == [200]
    assert run.callback_events["await_callback"] == 0
    assert state_of(callbacks, f"{run.execution_id}_s") == "CONSUMED"


def test_buffered_payloads_wait_for_their_await(callback_api):
    endpoint = callback_api.create_endpoint("buffer-exec")
    headers = {"Authorization": f"Bearer {LOCAL_FORWARD_TOKEN}"}
    first = requests.post(endpoint["url"], json={"n": 1}, headers=headers, timeout=10)
    second = requests.post(endpoint["url"], json={"n": 2}, headers=headers, timeout=10)

    class NoTime:
        def now(self) -> float:
            return 0.0

        def sleep(self, seconds: float) -> None:
            raise AssertionError("nothing should wait: the payloads are buffered")

        def wait_until(self, ready, seconds: float) -> bool:
            return ready()

    assert (first.status_code, second.status_code) == (200, 200)
    taken = [callback_api.await_callback(endpoint, 5, NoTime()) for _ in range(2)]
    assert [event["http_request"]["body"] for event in taken] == [{"n": 1}, {"n": 2}]


def test_the_callback_api_checks_method_token_and_execution(callback_api):
    endpoint = callback_api.create_endpoint("checks-exec")
    url = endpoint["url"]
    good = {"Authorization": f"Bearer {LOCAL_FORWARD_TOKEN}"}

    assert requests.post(url, json={}, timeout=10).status_code == 401
    assert (
        requests.post(url, json={}, headers={"Authorization": "Bearer x"}, timeout=10).status_code
        == 403
    )
    assert requests.put(url, json={}, headers=good, timeout=10).status_code == 405
    assert requests.post(url + "x", json={}, headers=good, timeout=10).status_code == 404
    callback_api.end_execution("checks-exec")
    assert requests.post(url, json={}, headers=good, timeout=10).status_code == 404


def test_a_failed_forward_is_recovered_from_firestore_within_a_slice(
    push_settings, callback_api, callbacks
):
    callback_api.fail_next(500, times=3)  # every attempt of the receiver's forward
    statuses: list[int] = []

    def send(url: str) -> None:
        statuses.append(requests.post(url, json={"ok": True}, timeout=30).status_code)

    run = run_with_callback(push_settings, send)

    assert run.error is None, run.error
    assert statuses == [200]  # stored: the caller's answer does not depend on the forward
    assert run.result["body"] == {"ok": True}
    assert run.callback_events["forwarded"] == 0
    assert run.callback_events["slice_ended"] >= 1
    assert forwards_to(callback_api, run.execution_id) == [500, 500, 500]
    assert state_of(callbacks, f"{run.execution_id}_s") == "CONSUMED"


def test_a_forward_slower_than_its_timeout_is_recovered_too(push_settings, callback_api):
    callback_api.stall_next(4, times=3)  # past the receiver's 3 s read timeout, every attempt
    statuses: list[int] = []

    def send(url: str) -> None:
        statuses.append(requests.post(url, json={"slow": True}, timeout=60).status_code)

    run = run_with_callback(push_settings, send)

    assert run.error is None, run.error
    assert statuses == [200]
    assert run.result["body"] == {"slow": True}


@pytest.mark.parametrize(
    "redirect",
    [
        # Nobody listens there: the forward cannot connect (failed).
        lambda url, api: url.replace(api.origin, "http://127.0.0.1:9"),
        # Another host, another project, another region: refused, never sent.
        lambda url, api: url.replace(api.origin, "https://attacker.example"),
        lambda url, api: url.replace(f"/projects/{api.project}/", "/projects/someone-else/"),
        lambda url, api: url.replace(f"/locations/{api.region}/", "/locations/elsewhere1/"),
    ],
    ids=["unreachable", "other-host", "other-project", "other-region"],
)
def test_a_forward_target_that_fails_or_is_refused_is_recovered_within_a_slice(
    push_settings, callback_api, callbacks, redirect
):
    # The registration's endpoint is changed after the wait began awaiting
    # the real one: the receiver forwards (or refuses to) where it now points.
    statuses: list[int] = []

    def send(url: str) -> None:
        document = callbacks.document(f"{parse_qs(urlsplit(url).query)['runID'][0]}_s")
        document.update({"forwardUrl": redirect(document.get().get("forwardUrl"), callback_api)})
        statuses.append(requests.post(url, json={"n": 9}, timeout=30).status_code)

    run = run_with_callback(push_settings, send)

    assert statuses == [200]
    assert run.error is None, run.error
    assert run.result["body"] == {"n": 9}
    assert run.callback_events["forwarded"] == 0
    assert run.callback_events["slice_ended"] >= 1
    assert forwards_to(callback_api, run.execution_id) == []
    assert state_of(callbacks, f"{run.execution_id}_s") == "CONSUMED"


def test_a_callback_for_a_finished_execution_is_answered_200_and_not_forwarded_again(
    push_settings, callback_api, callbacks
):
    register_only = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "late"}, "result": "u"}},
                {"done": {"return": "${u}"}},
            ]
        }
    }
    run = run_workflow(register_only, settings=push_settings)
    assert run.error is None, run.error

    response = requests.post(run.result, json={"late": True}, timeout=10)

    assert response.status_code == 200  # stored; the forward met a finished execution
    assert forwards_to(callback_api, run.execution_id) == [404]
    stored = callbacks.document(f"{run.execution_id}_late").get().to_dict()
    assert json.loads(stored["payload"])["body"] == {"late": True}


def test_duplicates_and_racing_callbacks_reach_the_workflow_once(
    push_settings, callback_api, callbacks
):
    statuses: list[int] = []
    # The winner's forward waits a second, so all sixteen are decided while
    # the workflow has not consumed the callback yet; the winner's retry is
    # answered 200 whether it comes before or after (the tombstone keeps
    # the fingerprint).
    callback_api.stall_next(1)

    def send(url: str) -> None:
        bodies = [{"n": n} for n in range(16)]
        with ThreadPoolExecutor(16) as pool:
            statuses.extend(
                pool.map(lambda b: requests.post(url, json=b, timeout=30).status_code, bodies)
            )
        # A retry of the winner: nothing new is stored or forwarded.
        winner = bodies[statuses.index(200)]
        statuses.append(requests.post(url, json=winner, timeout=30).status_code)

    # A slice longer than the stall, so the forward (not Firestore) delivers.
    settings = dataclasses.replace(
        push_settings, wait=dataclasses.replace(push_settings.wait, push_slice_seconds=10)
    )
    run = run_with_callback(settings, send)

    assert run.error is None, run.error
    assert sorted(statuses[:16]) == [200] + [409] * 15
    assert statuses[16] == 200
    assert forwards_to(callback_api, run.execution_id) == [200]
    assert run.callback_events["forwarded"] == 1
    assert run.result["body"]["n"] in range(16)


def test_a_wait_that_times_out_raises_and_a_late_caller_gets_410(
    push_settings, callback_api, callbacks
):
    settings = dataclasses.replace(
        push_settings, wait=dataclasses.replace(push_settings.wait, timeout_seconds=2)
    )
    urls: list[str] = []
    run = run_workflow(ROUND_TRIP, settings=settings, on_callback_url=urls.append)

    assert run.error["tags"] == ["TimeoutError"]
    assert run.callback_events["slice_ended"] >= 1
    assert state_of(callbacks, f"{run.execution_id}_s") == "EXPIRED"
    assert requests.post(urls[0], json={"late": True}, timeout=10).status_code == 410
    assert state_of(callbacks, f"{run.execution_id}_s") == "EXPIRED"  # nothing stored
    assert forwards_to(callback_api, run.execution_id) == []


def test_poll_is_still_there_per_call(push_settings, callback_api):
    workflow = {
        "main": {
            "steps": [
                {
                    "url": {
                        "call": "getCallbackURL",
                        "args": {"step": "p", "delivery": "poll"},
                        "result": "url",
                    }
                },
                {"send": {"call": "http.post", "args": {"url": "${url}", "body": {"p": 1}}}},
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {"step": "p", "delivery": "poll"},
                        "result": "a",
                    }
                },
                {"done": {"return": "${a}"}},
            ]
        }
    }

    run = run_workflow(workflow, settings=push_settings)

    assert run.error is None, run.error
    assert run.result["body"] == {"p": 1}
    assert run.callback_events == {}
    assert forwards_to(callback_api, run.execution_id) == []


def test_an_unknown_delivery_is_a_value_error(push_settings):
    workflow = {
        "main": {
            "steps": [{"u": {"call": "getCallbackURL", "args": {"step": "s", "delivery": "fax"}}}]
        }
    }

    run = run_workflow(workflow, settings=push_settings)

    assert run.error["tags"] == ["ValueError"]
    assert "delivery must be push or poll" in run.error["message"]


def test_a_person_answers_on_the_page_and_the_workflow_gets_the_choice_and_comment(
    push_settings, callback_api, callbacks
):
    form = {
        "title": "Deploy 1.4?",
        "choices": [{"value": "approve", "label": "Approve"}, {"value": "reject", "label": "No"}],
        "allowComment": True,
    }
    workflow = {
        "main": {
            "steps": [
                {
                    "page": {
                        "call": "getCallbackURL",
                        "args": {"step": "s", "form": form},
                        "result": "url",
                    }
                },
                {"wait": {"call": "waitForResponse", "args": {"step": "s"}, "result": "a"}},
                {"done": {"return": {"url": "${url}", "answer": "${a}"}}},
            ]
        }
    }
    shown: list[str] = []

    def person(url: str) -> None:
        shown.append(requests.get(url, timeout=10).text)  # a scanner would stop here
        requests.post(url, data={"choice": "approve", "comment": "ship it"}, timeout=10)

    run = run_with_callback(push_settings, person, workflow=workflow)

    assert run.error is None, run.error
    assert run.result["url"].endswith("&view=page")
    assert "Deploy 1.4?" in shown[0] and 'value="reject"' in shown[0]
    answer = run.result["answer"]
    assert answer["value"] == "approve"
    assert answer["body"] == {"choice": "approve", "comment": "ship it"}
    assert run.callback_events["forwarded"] == 1
    revisit = requests.get(run.result["url"], timeout=10)
    assert "Already answered: Approve" in revisit.text


def test_the_same_step_again_without_form_gives_the_machine_url(push_settings):
    form = {"title": "T", "choices": [{"value": "ok", "label": "OK"}]}
    workflow = {
        "main": {
            "steps": [
                {
                    "p": {
                        "call": "getCallbackURL",
                        "args": {"step": "m", "form": form},
                        "result": "p",
                    }
                },
                {"m": {"call": "getCallbackURL", "args": {"step": "m"}, "result": "u"}},
                {"done": {"return": {"page": "${p}", "machine": "${u}"}}},
            ]
        }
    }

    run = run_workflow(workflow, settings=push_settings)

    assert run.error is None, run.error
    assert run.result["page"] == run.result["machine"] + "&view=page"
