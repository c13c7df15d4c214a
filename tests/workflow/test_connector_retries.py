"""The Firestore connector calls that are not GETs retry 429, 5xx, connection errors, timeouts.

Workflows' default policy for a non-GET connector call retries only 429, 503
and connection failures; callbacks.yaml gives the registration's commit and its tombstone
writes an explicit retry with the callbacksRetryableError predicate. Faults are
injected in the local Firestore bridge; time is virtual, so the backoff
sleeps (1, 2, 4, 8, 16 s) are recorded, not waited. The tombstone writes
(patch) replaced the deletes of earlier versions; a patch applied before its
error is refused on its retry (400: its precondition names the replaced
version), and the wait recognises its own tombstone (consumedBy).
"""

from __future__ import annotations

import pytest

from local.workflow_runner import run_workflow

ROUND_TRIP = {
    "main": {
        "steps": [
            {"url": {"call": "getCallbackURL", "args": {"step": "s"}, "result": "url"}},
            {"wait": {"call": "waitForResponse", "args": {"step": "s"}, "result": "answer"}},
            {"done": {"return": "${answer}"}},
        ]
    }
}
BACKOFF = [1, 2, 4, 8, 16]


def round_trip_with_callback(settings, bridge, clock):
    """A round trip whose callback is posted as soon as the URL exists."""
    import requests

    def send(url: str) -> None:
        assert requests.post(url, json={"ok": True}, timeout=10).status_code == 200

    return run_workflow(
        ROUND_TRIP, settings=settings, bridge=bridge, clock=clock, on_callback_url=send
    )


@pytest.mark.parametrize(
    ("status", "grpc_status"),
    [(500, "INTERNAL"), (502, "UNAVAILABLE"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"),
     (429, "RESOURCE_EXHAUSTED")],
)  # fmt: skip
def test_create_document_is_retried_after_a_transient_error(
    settings, bridge, fake_clock, status, grpc_status
):
    bridge.fail_next("commit", status=status, grpc_status=grpc_status, times=2)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.result["body"] == {"ok": True}
    assert run.connector_calls["commit"] == 3
    assert fake_clock.sleeps[:2] == BACKOFF[:2]


@pytest.mark.parametrize("error", [ConnectionError, TimeoutError])
def test_create_document_is_retried_after_no_answer(settings, bridge, fake_clock, error):
    bridge.drop_next("commit", error=error)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.connector_calls["commit"] == 2


def test_a_create_applied_before_its_500_reuses_its_registration(
    settings, bridge, fake_clock, callbacks
):
    # The create reached Firestore but its answer was a 500: the retry gets
    # 409, and the registration it made (with its token) is the one used.
    bridge.fail_next("commit", status=500, grpc_status="INTERNAL", after_applying=True)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.connector_calls == {"commit": 2, "get": 2, "patch": 1}
    assert run.result["body"] == {"ok": True}


def test_retries_are_bounded_and_the_last_error_is_raised(settings, bridge, fake_clock):
    bridge.fail_next("commit", status=500, grpc_status="INTERNAL", times=6)

    run = run_workflow(ROUND_TRIP, settings=settings, bridge=bridge, clock=fake_clock)

    assert run.error["code"] == 500
    assert run.connector_calls == {"commit": 6}
    assert fake_clock.sleeps == BACKOFF


@pytest.mark.parametrize(
    ("status", "grpc_status"), [(400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED")]
)
def test_client_errors_are_not_retried(settings, bridge, fake_clock, status, grpc_status):
    bridge.fail_next("commit", status=status, grpc_status=grpc_status)

    run = run_workflow(ROUND_TRIP, settings=settings, bridge=bridge, clock=fake_clock)

    assert run.error["code"] == status
    assert run.connector_calls == {"commit": 1}
    assert fake_clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_marking_the_callback_consumed_is_retried(settings, bridge, fake_clock, callbacks, status):
    bridge.fail_next("patch", status=status, grpc_status="INTERNAL", times=2)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.connector_calls["patch"] == 3
    assert callbacks.document(f"{run.execution_id}_s").get().to_dict()["state"] == "CONSUMED"


def test_a_consumed_mark_applied_before_its_500_hands_the_callback_over_once(
    settings, bridge, fake_clock, callbacks
):
    # The CONSUMED tombstone was written but its answer was a 500: the retry
    # is refused (the document is no longer the version read), the read that
    # follows finds this call's own tombstone, and the callback it decoded is
    # handed over rather than lost (or waited for until the timeout).
    bridge.fail_next("patch", status=500, grpc_status="INTERNAL", after_applying=True)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.result["body"] == {"ok": True}
    assert run.connector_calls == {"commit": 1, "get": 2, "patch": 2}
    assert callbacks.document(f"{run.execution_id}_s").get().to_dict()["state"] == "CONSUMED"


def test_a_consumed_tombstone_of_an_earlier_wait_is_not_handed_over_again(
    settings, fake_clock, callbacks
):
    # At most once: a second wait for a step already consumed finds the
    # tombstone (not its own) and times out instead of returning it again.
    workflow = {"main": {"steps": [
        {"url": {"call": "getCallbackURL", "args": {"step": "once"}, "result": "u"}},
        {"first": {"call": "waitForResponse", "args": {"step": "once"}, "result": "a"}},
        {"again": {"call": "waitForResponse", "args": {"step": "once", "timeoutSeconds": 3}}},
    ]}}  # fmt: skip
    import requests

    run = run_workflow(
        workflow, settings=settings, clock=fake_clock,
        on_callback_url=lambda url: requests.post(url, json={"n": 1}, timeout=10),
    )  # fmt: skip

    assert run.error["tags"] == ["TimeoutError"]
    assert "step=once" in run.error["message"]
    # Neither wait's timeout turned the CONSUMED tombstone into EXPIRED.
    assert callbacks.document(f"{run.execution_id}_once").get().to_dict()["state"] == "CONSUMED"


def test_marking_a_timed_out_registration_expired_is_retried(
    settings, bridge, fake_clock, callbacks
):
    bridge.fail_next("patch", status=500, grpc_status="INTERNAL")
    workflow = {"main": {"steps": [
        {"url": {"call": "getCallbackURL", "args": {"step": "t"}}},
        {"wait": {"call": "waitForResponse", "args": {"step": "t", "timeoutSeconds": 5}}},
    ]}}  # fmt: skip

    run = run_workflow(workflow, settings=settings, bridge=bridge, clock=fake_clock)

    assert run.error["tags"] == ["TimeoutError"]
    assert run.connector_calls["patch"] == 2
    assert callbacks.document(f"{run.execution_id}_t").get().to_dict()["state"] == "EXPIRED"


def test_an_expired_mark_applied_before_its_500_still_times_out(
    settings, bridge, fake_clock, callbacks
):
    bridge.fail_next("patch", status=500, grpc_status="INTERNAL", after_applying=True)
    workflow = {"main": {"steps": [
        {"url": {"call": "getCallbackURL", "args": {"step": "t"}}},
        {"wait": {"call": "waitForResponse", "args": {"step": "t", "timeoutSeconds": 5}}},
    ]}}  # fmt: skip

    run = run_workflow(workflow, settings=settings, bridge=bridge, clock=fake_clock)

    # The retry is refused (400), the read finds EXPIRED: nothing to consume.
    assert run.error["tags"] == ["TimeoutError"]
    assert run.connector_calls["patch"] == 2
    assert callbacks.document(f"{run.execution_id}_t").get().to_dict()["state"] == "EXPIRED"


def test_each_retry_attempt_is_counted_as_a_step(settings, bridge, fake_clock):
    # Workflows bills every retry attempt as a step (its pricing page); the
    # emulator runs the attempts outside its step loop, so the runner adds
    # them, and the predicate's call, to the count.
    baseline = round_trip_with_callback(settings, bridge, fake_clock)
    bridge.fail_next("commit", status=503, grpc_status="UNAVAILABLE", times=2)

    retried = round_trip_with_callback(settings, bridge, fake_clock)

    assert retried.error is None, retried.error
    assert retried.steps_by_name["register"] == baseline.steps_by_name["register"] + 2
    assert retried.steps_by_name["callbacksRetryableError"] == 2
    # Two more attempts, two predicate calls, and the predicate's own two
    # steps (classify, decide) each time.
    assert retried.steps - baseline.steps == 2 + 2 + 2 * 2
