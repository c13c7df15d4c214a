"""The Firestore connector calls that are not GETs retry 429, 5xx, connection errors, timeouts.

Workflows' default policy for a non-GET connector call retries only 429, 503
and connection failures; callbacks.yaml gives the registration's commit and both deletes
an explicit retry with the callbacksRetryableError predicate. Faults are
injected in the local Firestore bridge; time is virtual, so the backoff
sleeps (1, 2, 4, 8, 16 s) are recorded, not waited.
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
    assert run.connector_calls == {"commit": 2, "get": 2, "delete": 1}
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
def test_deleting_the_consumed_callback_is_retried(settings, bridge, fake_clock, callbacks, status):
    bridge.fail_next("delete", status=status, grpc_status="INTERNAL", times=2)

    run = round_trip_with_callback(settings, bridge, fake_clock)

    assert run.error is None, run.error
    assert run.connector_calls["delete"] == 3
    assert not callbacks.document(f"{run.execution_id}_s").get().exists


def test_removing_a_timed_out_registration_is_retried(settings, bridge, fake_clock, callbacks):
    bridge.fail_next("delete", status=500, grpc_status="INTERNAL")
    workflow = {"main": {"steps": [
        {"url": {"call": "getCallbackURL", "args": {"step": "t"}}},
        {"wait": {"call": "waitForResponse", "args": {"step": "t", "timeoutSeconds": 5}}},
    ]}}  # fmt: skip

    run = run_workflow(workflow, settings=settings, bridge=bridge, clock=fake_clock)

    assert run.error["tags"] == ["TimeoutError"]
    assert run.connector_calls["delete"] == 2
    assert not callbacks.document(f"{run.execution_id}_t").get().exists
