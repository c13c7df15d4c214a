"""What a waiting workflow sees when an operator cancels its wait (python -m ops cancel).

The subworkflows run in workflows-emulator; the cancel is ops' own code
(ops.cancel) against the same emulated Firestore, and its cancel event goes
to the local stand-in of the execution's callback endpoint, as the command
does with --local. The wait ends with CancelledError carrying the reason:
with push at once (the event makes it read Firestore), with poll at its
next read. A cancel event proves nothing, so a forged one only costs a read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from infra.function_contract import DEFAULT_COLLECTION
from local.callback_api import LOCAL_FORWARD_TOKEN
from local.workflow_runner import RunResult, run_workflow
from ops import cancel
from tests.workflow.push_helpers import capability, run_awaiting


def cancel_as_ops_does(callbacks, url: str, reason: str) -> cancel.Cancellation:
    """python -m ops cancel --local: the tombstone, then the cancel event (push)."""
    query = capability(url)
    done = cancel.cancel(callbacks, query["runID"], query["step"], reason)
    if done.outcome == "cancelled" and done.forward_url:
        event = cancel.cancel_event(query["runID"], query["step"])
        assert cancel.send_cancel_event(done.forward_url, event, local=True) is None
    return done


def not_taken_warnings(run: RunResult) -> list[Any]:
    return [
        payload
        for severity, payload in run.logs
        if severity == "WARNING" and "not taken" in str(payload)
    ]


def state_of(callbacks, run: RunResult) -> dict[str, Any]:
    return callbacks.document(f"{run.execution_id}_s").get().to_dict()


@pytest.fixture
def long_slices(push_settings):
    """Push with one slice of 20 s: within it, only an event can end the await."""
    wait = dataclasses.replace(push_settings.wait, push_slice_seconds=20, timeout_seconds=20)
    return dataclasses.replace(push_settings, wait=wait)


def assert_cancelled(run: RunResult, reason: str) -> None:
    assert run.error is not None, run.result
    assert run.error["tags"] == ["CancelledError"]
    assert run.error["message"] == (
        f"waitForResponse - cancelled: {reason} (runID={run.execution_id} step=s)"
    )
    assert (run.error["reason"], run.error["runID"], run.error["step"]) == (
        reason,
        run.execution_id,
        "s",
    )


def test_a_push_wait_cancelled_mid_slice_ends_at_once_with_the_reason(long_slices, callbacks):
    outcomes: list[cancel.Cancellation] = []
    started = time.monotonic()

    run = run_awaiting(
        long_slices, lambda url: outcomes.append(cancel_as_ops_does(callbacks, url, "wrong build"))
    )

    assert_cancelled(run, "wrong build")
    assert [done.outcome for done in outcomes] == ["cancelled"]
    # Well within the first slice (20 s): woken by the event, then one read.
    assert time.monotonic() - started < 10
    assert run.callback_events["forwarded"] == 1 and run.callback_events["slice_ended"] == 0
    assert run.connector_calls["get"] == 1
    assert not_taken_warnings(run) == []  # expected: no warning for a cancel event
    assert state_of(callbacks, run)["state"] == "CANCELLED"


def test_a_push_wait_whose_cancel_event_was_lost_ends_at_its_slices_read(push_settings, callbacks):
    # The POST failed (no permission, say): the tombstone alone ends the
    # wait when its slice ends (1 s here) and it reads Firestore.
    def cancel_without_event(url: str) -> None:
        query = capability(url)
        assert cancel.cancel(callbacks, query["runID"], "s", "no event").outcome == "cancelled"

    run = run_awaiting(push_settings, cancel_without_event)

    assert_cancelled(run, "no event")
    assert run.callback_events["forwarded"] == 0
    assert run.callback_events["slice_ended"] >= 1


def test_a_poll_wait_ends_at_its_next_read(settings, callbacks, trigger_clock):
    run_ids: list[str] = []

    def cancel_now() -> None:
        assert cancel.cancel(callbacks, run_ids[0], "p", "stop polling").outcome == "cancelled"

    workflow = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "p"}, "result": "url"}},
                {"wait": {"call": "waitForResponse", "args": {"step": "p"}, "result": "a"}},
                {"done": {"return": "${a}"}},
            ]
        }
    }
    clock = trigger_clock(cancel_now)  # at the wait's first sleep: after one read

    run = run_workflow(
        workflow, settings=settings, clock=clock, on_callback_url=lambda url: run_ids.append(
            capability(url)["runID"]
        ),
    )  # fmt: skip

    assert run.error is not None and run.error["tags"] == ["CancelledError"]
    assert run.error["reason"] == "stop polling"
    assert "waitForResponse - cancelled: stop polling (runID=" in run.error["message"]
    # One read found WAITING, slept once, the next read found CANCELLED.
    assert clock.sleeps == 1
    assert run.connector_calls["get"] == 2


def test_a_received_callback_cancelled_before_the_next_poll_is_never_handed_over(
    settings, callbacks, trigger_clock
):
    urls: list[str] = []

    def callback_then_cancel() -> None:
        assert requests.post(urls[0], json={"late": True}, timeout=10).status_code == 200
        done = cancel.cancel(callbacks, capability(urls[0])["runID"], "p", "superseded")
        assert (done.outcome, done.state) == ("cancelled", "received")

    workflow = {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": "p"}, "result": "url"}},
                {"wait": {"call": "waitForResponse", "args": {"step": "p"}, "result": "a"}},
                {"done": {"return": "${a}"}},
            ]
        }
    }

    run = run_workflow(
        workflow,
        settings=settings,
        clock=trigger_clock(callback_then_cancel),
        on_callback_url=urls.append,
    )

    assert run.error is not None and run.error["tags"] == ["CancelledError"]
    assert run.result is None
    stored = callbacks.document(f"{run.execution_id}_p").get().to_dict()
    assert stored["state"] == "CANCELLED"  # not CONSUMED: never taken


@pytest.mark.parametrize(
    "forged",
    [
        {"event": "cancel", "runID": "r", "step": "s"},
        {"event": "cancel", "version": "2026-01-01T00:00:00Z", "payload": "{}", "proof": "x"},
        {"event": {"kind": "cancel"}},
        {"event": ["cancel"]},
        {"event": 7},
    ],
    ids=["plain", "with-a-proof-shape", "event-a-map", "event-a-list", "event-a-number"],
)
def test_a_forged_cancel_event_does_not_end_the_wait(long_slices, callbacks, forged):
    real = {"approved": True}

    def forge_then_answer(url: str) -> None:
        query = capability(url)
        headers = {"Authorization": f"Bearer {LOCAL_FORWARD_TOKEN}"}
        forged_post = requests.post(query["cb"], json=forged, headers=headers, timeout=10)
        assert forged_post.status_code == 200
        # The wait read Firestore (WAITING) and awaits again; then the real one.
        time.sleep(0.5)
        assert requests.post(url, json=real, timeout=10).status_code == 200

    run = run_awaiting(long_slices, forge_then_answer)

    assert run.error is None, run.error
    assert run.result["body"] == real
    assert run.callback_events["slice_ended"] == 0
    assert state_of(callbacks, run)["state"] == "CONSUMED"
    if forged["event"] == "cancel":
        assert run.connector_calls["get"] == 1  # the one read the forged event cost
        assert not_taken_warnings(run) == []
    else:
        # Not a cancel event: an unproven event like any other, logged.
        assert len(not_taken_warnings(run)) == 1


def test_cancel_twice_is_idempotent_and_the_wait_ends_once(long_slices, callbacks):
    outcomes: list[str] = []

    def cancel_twice(url: str) -> None:
        outcomes.append(cancel_as_ops_does(callbacks, url, "first").outcome)
        outcomes.append(cancel_as_ops_does(callbacks, url, "second").outcome)

    run = run_awaiting(long_slices, cancel_twice)

    assert outcomes == ["cancelled", "already_cancelled"]
    assert_cancelled(run, "first")
    assert state_of(callbacks, run)["cancelReason"] == "first"


def test_a_callback_after_the_cancel_gets_410(long_slices, callbacks):
    urls: list[str] = []

    def cancel_it(url: str) -> None:
        urls.append(url)
        cancel_as_ops_does(callbacks, url, "too late")

    run = run_awaiting(long_slices, cancel_it)
    late = requests.post(urls[0], json={"late": True}, timeout=10)

    assert_cancelled(run, "too late")
    assert late.status_code == 410
    body = late.json()
    assert body["error"] == "the wait for this callback was cancelled"
    assert body["cancelledAt"] is not None and "too late" not in json.dumps(body)
    assert state_of(callbacks, run)["state"] == "CANCELLED"  # nothing stored


def test_cancel_of_a_consumed_registration_is_refused(push_settings, callbacks):
    urls: list[str] = []

    def answer(url: str) -> None:
        urls.append(url)
        assert requests.post(url, json={"ok": 1}, timeout=10).status_code == 200

    run = run_awaiting(push_settings, answer)
    before = callbacks.document(f"{run.execution_id}_s").get()

    done = cancel.cancel(callbacks, run.execution_id, "s", "too late")

    assert run.error is None and run.result["body"] == {"ok": 1}
    assert done.outcome == "consumed" and not done.succeeded
    after = callbacks.document(f"{run.execution_id}_s").get()
    assert (after.update_time, after.to_dict()["state"]) == (before.update_time, "CONSUMED")


def test_the_command_ends_a_running_push_wait(
    long_slices, callbacks, repo_root, firestore_emulator_host, gcp_project, callbacks_database
):
    # The CLI itself (python -m ops cancel --local), as an operator runs it.
    outputs: list[subprocess.CompletedProcess[str]] = []

    def run_command(url: str) -> None:
        query = capability(url)
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_emulator_host}
        outputs.append(
            subprocess.run(
                [sys.executable, "-m", "ops", "cancel", query["runID"], "s", "--reason",
                 "operator says no", "--local", "--project", gcp_project, "--database",
                 callbacks_database, "--collection", DEFAULT_COLLECTION],
                cwd=repo_root, capture_output=True, text=True, env=env, timeout=60,
            )
        )  # fmt: skip

    run = run_awaiting(long_slices, run_command)

    [done] = outputs
    assert done.returncode == 0, done.stderr
    assert "the workflow (push) was told: its wait ends now with CancelledError" in done.stdout
    assert_cancelled(run, "operator says no")
