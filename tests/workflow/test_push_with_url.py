"""waitForResponse given the URL getCallbackURL returned: push without a first read.

With ``callbackUrl`` the wait takes the token and the endpoint (``cb``) from
the URL and awaits at once. A forwarded event is taken as the callback only
with the receiver's proof (HMAC-SHA256 keyed by the registration's token over
the stored version, a newline and the payload string), which the tombstone
write checks as its precondition. Anyone allowed to send to the endpoint can
post to it, so these tests post events themselves, forged and correctly
MAC'd, straight to the local callback API, and check that an unproven one
is never taken as it is: the wait reads Firestore instead and logs it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC
from typing import Any

import pytest
import requests

from local.workflow_runner import RunResult, run_workflow
from tests.workflow.push_helpers import (
    capability,
    post_to_endpoint,
    proof,
    run_awaiting,
)


def warnings_of(run: RunResult) -> list[Any]:
    """The warnings about forwarded events (not the timeout line)."""
    return [
        payload
        for severity, payload in run.logs
        if severity == "WARNING"
        and isinstance(payload, dict)
        and "not taken" in str(payload.get("message"))
    ]


def test_a_wait_given_its_url_awaits_at_once_and_takes_the_proven_forward(push_settings, callbacks):
    body = {"approved": True, "by": "r\u00e9mi"}
    statuses: list[int] = []

    def send(url: str) -> None:
        statuses.append(requests.post(url, json=body, timeout=10).status_code)

    run = run_awaiting(push_settings, send)

    assert run.error is None, run.error
    assert statuses == [200]
    assert run.result["body"] == body
    assert (run.result["runID"], run.result["step"]) == (run.execution_id, "s")
    # No Firestore read at all: the token and endpoint came from the URL, and
    # the forward's proof was checked by the tombstone write itself.
    assert run.connector_calls == {"commit": 1, "patch": 1}
    assert run.callback_events == {
        "create_callback_endpoint": 1,
        "await_callback": 1,
        "forwarded": 1,
    }
    assert warnings_of(run) == []
    tombstone = callbacks.document(f"{run.execution_id}_s").get().to_dict()
    assert tombstone["state"] == "CONSUMED"
    assert "payload" not in tombstone
    assert tombstone["consumedAt"] >= tombstone["receivedAt"]
    assert tombstone["token"] == capability(run.callback_urls[0])["token"]
    assert tombstone["fingerprint"].startswith("sha256:")


def test_a_callback_forwarded_before_the_wait_is_taken_from_the_endpoint(push_settings):
    # The native endpoint buffers a forward that arrives before the await:
    # no read is needed to find a callback that came early.
    workflow = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "s"}, "result": "url"}},
                {"send": {"call": "http.post", "args": {"url": "${url}", "body": {"n": 1}}}},
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {"step": "s", "callbackUrl": "${url}"},
                        "result": "a",
                    }
                },
                {"done": {"return": "${a}"}},
            ]
        }
    }

    run = run_workflow(workflow, settings=push_settings)

    assert run.error is None, run.error
    assert run.result["body"] == {"n": 1}
    assert run.connector_calls == {"commit": 1, "patch": 1}
    assert run.callback_events["forwarded"] == 1


def forged_events(token: str, version: str) -> dict[str, tuple[Any, str]]:
    """Events someone other than the receiver could post: (body, content type)."""
    forged = json.dumps({"body": {"forged": True}, "value": "approve"})
    honest = json.dumps({"body": {"honest": True}})
    shape = {"runID": "r", "step": "s", "version": version, "payload": forged}
    as_json = "application/json"
    return {
        "wrong-proof": ({**shape, "proof": base64.b64encode(b"x").decode()}, as_json),
        "another-key": ({**shape, "proof": proof("not-the-token", version, forged)}, as_json),
        "mac-of-another-payload": ({**shape, "proof": proof(token, version, honest)}, as_json),
        "no-proof": (shape, as_json),
        "the-old-shape": ({"body": {"forged": True}, "value": "approve"}, as_json),
        "not-a-map": (["approve"], as_json),
        "not-json": ("approve", "text/plain"),
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "wrong-proof",
        "another-key",
        "mac-of-another-payload",
        "no-proof",
        "the-old-shape",
        "not-a-map",
        "not-json",
    ],
)
def test_a_forged_event_is_never_taken_the_stored_callback_is(push_settings, callbacks, forgery):
    real = {"approved": False, "by": "the real caller"}
    statuses: list[int] = []

    def forge_then_answer(url: str) -> None:
        query = capability(url)
        forged, content_type = forged_events(query["token"], query["reg"])[forgery]
        statuses.append(post_to_endpoint(query["cb"], forged, content_type))
        statuses.append(requests.post(url, json=real, timeout=10).status_code)

    run = run_awaiting(push_settings, forge_then_answer)

    assert run.error is None, run.error
    assert statuses == [200, 200]  # the endpoint took the forgery; the receiver the callback
    assert run.result["body"] == real
    assert run.result.get("value") is None
    # The forgery came first; the real callback then by its own forward, or
    # from Firestore if it was stored by the time the forgery was refused.
    assert run.callback_events["forwarded"] in (1, 2)
    # The unproven event was logged and Firestore read instead.
    [warning] = warnings_of(run)
    assert "not taken" in warning["message"]
    assert (warning["runID"], warning["step"]) == (run.execution_id, "s")
    assert run.connector_calls["get"] >= 1
    tombstone = callbacks.document(f"{run.execution_id}_s").get().to_dict()
    assert tombstone["state"] == "CONSUMED"


def store_as_the_receiver_would(callbacks, document_id: str, payload: str) -> str:
    """Make the registration RECEIVED with ``payload``; its new version, as the forward names it."""
    written = callbacks.document(document_id).update(
        {"state": "RECEIVED", "payload": payload, "receivedAt": "2026-01-01T00:00:00.000000Z"}
    )
    stamp = written.update_time.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_an_event_with_a_correct_proof_is_taken_without_reading(push_settings, callbacks):
    # A correctly MAC'd event, made here as the receiver makes one: the
    # wait hands it over on the strength of the proof alone.
    payload = json.dumps({"method": "POST", "body": {"made": "here"}, "value": None})

    def store_and_forward(url: str) -> None:
        query = capability(url)
        version = store_as_the_receiver_would(callbacks, f"{query['runID']}_s", payload)
        event = {"payload": payload, "runID": query["runID"], "step": "s", "version": version,
                 "proof": proof(query["token"], version, payload)}  # fmt: skip
        assert post_to_endpoint(query["cb"], event) == 200

    run = run_awaiting(push_settings, store_and_forward)

    assert run.error is None, run.error
    assert run.result == {**json.loads(payload), "runID": run.execution_id, "step": "s"}
    assert run.connector_calls == {"commit": 1, "patch": 1}
    assert warnings_of(run) == []


def test_a_replayed_proven_event_is_not_handed_over_twice(push_settings, callbacks):
    # The first wait takes a proven event. The same event posted again (a
    # forward retried after a lost answer, or a replay) reaches a second
    # wait for the same step: the document is no longer that version, so
    # the write is refused, the read finds another call's tombstone, and
    # the second wait times out instead of returning the callback again.
    payload = json.dumps({"method": "POST", "body": {"once": True}, "value": None})
    sent: list[dict[str, Any]] = []
    workflow = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "s"}, "result": "url"}},
                {
                    "first": {
                        "call": "waitForResponse",
                        "args": {"step": "s", "callbackUrl": "${url}"},
                        "result": "a",
                    }
                },
                {
                    "again": {
                        "call": "waitForResponse",
                        "args": {"step": "s", "callbackUrl": "${url}", "timeoutSeconds": 3},
                        "result": "b",
                    }
                },
                {"done": {"return": ["${a}", "${b}"]}},
            ]
        }
    }

    def store_and_forward_twice(url: str) -> None:
        query = capability(url)
        version = store_as_the_receiver_would(callbacks, f"{query['runID']}_s", payload)
        event = {"payload": payload, "runID": query["runID"], "step": "s", "version": version,
                 "proof": proof(query["token"], version, payload)}  # fmt: skip
        sent.append(event)
        assert post_to_endpoint(query["cb"], event) == 200
        assert post_to_endpoint(query["cb"], event) == 200  # buffered for the next await

    run = run_awaiting(push_settings, store_and_forward_twice, workflow=workflow)

    assert len(sent) == 1
    assert run.error is not None and run.error["tags"] == ["TimeoutError"]
    assert callbacks.document(f"{run.execution_id}_s").get().to_dict()["state"] == "CONSUMED"
    assert len(warnings_of(run)) == 1  # the replay, refused and logged


def test_a_url_without_an_endpoint_is_waited_for_by_reading_firestore(push_settings):
    # A poll registration's URL (no cb) given to a push wait: nothing to
    # await, so it reads and polls as without a URL.
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
                        "args": {"step": "p", "callbackUrl": "${url}"},
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
    assert run.connector_calls == {"commit": 1, "get": 1, "patch": 1}


@pytest.mark.parametrize(
    ("callback_url", "message"),
    [
        (7, "callbackUrl must be the URL getCallbackURL returned (a string)"),
        (
            "https://cb.example/?runID=other-run&step=s&token=" + "0" * 64,
            "callbackUrl is not a URL getCallbackURL returned for runID=",
        ),
        (
            "https://cb.example/?runID=RUN&step=s2&token=" + "0" * 64,
            "callbackUrl is not a URL getCallbackURL returned for runID=",
        ),
    ],
)
def test_a_callback_url_of_another_wait_is_a_value_error(push_settings, callback_url, message):
    wait = {"call": "waitForResponse", "args": {"step": "s", "callbackUrl": callback_url}}
    run = run_workflow(
        {"main": {"steps": [{"w": wait}]}},
        settings=push_settings,
        execution_id="RUN",
    )

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.connector_calls == {}


def test_the_example_and_the_verify_workflow_pass_their_urls(repo_root):
    import yaml

    def waits(path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("call") == "waitForResponse":
                    found.append(node["args"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(yaml.safe_load((repo_root / path).read_text()))
        return found

    for path in ("workflow/example.yaml", "workflow/verify.yaml"):
        assert waits(path) and all("callbackUrl" in args for args in waits(path)), path


def test_push_with_url_still_recovers_a_failed_forward_within_a_slice(
    push_settings, callback_api, callbacks
):
    callback_api.fail_next(500, times=3)  # every attempt of the receiver's forward

    def send(url: str) -> None:
        assert requests.post(url, json={"ok": True}, timeout=30).status_code == 200

    settings = dataclasses.replace(push_settings)
    run = run_awaiting(settings, send)

    assert run.error is None, run.error
    assert run.result["body"] == {"ok": True}
    assert run.callback_events["forwarded"] == 0
    assert run.callback_events["slice_ended"] >= 1
    assert callbacks.document(f"{run.execution_id}_s").get().to_dict()["state"] == "CONSUMED"
