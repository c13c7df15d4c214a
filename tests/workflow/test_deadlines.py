"""Deadlines that cannot race, and stand-ins as strict as Google's reference.

A push wait awaits in slices; near its deadline the remaining time can be
tiny, and Google documents no meaning for an events.await_callback timeout
of 0 or less, so the wait never asks for less than 1 s. The local stand-ins
refuse what the reference does not describe (local/callback_api.py,
local/workflow_runner.py), so a YAML that would pass one is caught here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from local.workflow_runner import run_workflow
from tests.workflow.push_helpers import round_trip_with_url

ROUND_TRIP_WITH_URL = round_trip_with_url("d")
ROUND_TRIP = {
    "main": {
        "steps": [
            {"url": {"call": "getCallbackURL", "args": {"step": "d"}, "result": "url"}},
            {"wait": {"call": "waitForResponse", "args": {"step": "d"}, "result": "answer"}},
        ]
    }
}


def with_wait(settings, **changes: Any):
    return dataclasses.replace(settings, wait=dataclasses.replace(settings.wait, **changes))


@pytest.mark.parametrize("workflow", [ROUND_TRIP_WITH_URL, ROUND_TRIP], ids=["url", "no-url"])
def test_a_slice_longer_than_the_time_left_ends_at_the_deadline(
    push_settings, fake_clock, callbacks, workflow
):
    settings = with_wait(push_settings, push_slice_seconds=3600, timeout_seconds=3)

    run = run_workflow(workflow, settings=settings, clock=fake_clock)

    assert run.error["tags"] == ["TimeoutError"]
    assert "timed out after 3" in run.error["message"]
    # About 3 s of virtual time, not the 3600 s slice.
    assert fake_clock.awaits == [3.0]
    assert 3 <= fake_clock.elapsed < 4
    assert callbacks.document(f"{run.execution_id}_d").get().to_dict()["state"] == "EXPIRED"
    # The line the stack's "waits timed out" metric counts (infra/monitoring.py).
    assert run.logs == [
        (
            "WARNING",
            {
                "event": "callback_wait_timed_out",
                "runID": run.execution_id,
                "step": "d",
                "timeoutSeconds": 3.0,
                "delivery": "push",
            },
        )
    ]


def test_no_await_asks_for_less_than_one_second(push_settings, fake_clock):
    # 2.5 s in 1 s slices: the third slice has 0.5 s left and still awaits 1 s.
    settings = with_wait(push_settings, push_slice_seconds=1, timeout_seconds=2.5)

    run = run_workflow(ROUND_TRIP_WITH_URL, settings=settings, clock=fake_clock)

    assert run.error["tags"] == ["TimeoutError"]
    assert fake_clock.awaits == [1.0, 1.0, 1.0]
    assert fake_clock.elapsed == pytest.approx(3.0)


@pytest.mark.parametrize("workflow", [ROUND_TRIP_WITH_URL, ROUND_TRIP], ids=["url", "no-url"])
def test_an_await_error_other_than_its_timeout_fails_the_wait_with_that_error(
    push_settings, callback_api, fake_clock, monkeypatch, workflow
):
    calls: list[float] = []

    def broken(callback: dict, timeout: Any, clock: Any) -> dict:
        calls.append(timeout)
        # A wait that swallowed the error would await again at once, without
        # end: let time run out instead, so that it ends in TimeoutError.
        fake_clock.time += 1_000
        raise ConnectionError("the callback endpoint is gone (injected)")

    monkeypatch.setattr(callback_api, "await_callback", broken)

    run = run_workflow(workflow, settings=push_settings, clock=fake_clock)

    assert run.error["tags"] == ["ConnectionError"]
    assert run.error["message"] == "the callback endpoint is gone (injected)"
    assert len(calls) == 1
    assert "patch" not in run.connector_calls  # nothing marked: the registration still waits


# --- the stand-ins: as strict as the reference ---------------------------------


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (-0.001, ValueError), (float("nan"), ValueError),
     ("5", TypeError), (True, TypeError), (None, TypeError)],
)  # fmt: skip
def test_the_await_stand_in_refuses_a_timeout_google_gives_no_meaning(
    callback_api, fake_clock, timeout, error
):
    endpoint = callback_api.create_endpoint("strict-exec")

    with pytest.raises(error):
        callback_api.await_callback(endpoint, timeout, fake_clock)
    assert fake_clock.awaits == []  # refused before waiting at all


def test_a_workflow_awaiting_zero_seconds_fails_with_a_value_error(push_settings, fake_clock):
    steps = [
        {"e": {"call": "events.create_callback_endpoint", "result": "cb"}},
        {"a": {"call": "events.await_callback", "args": {"callback": "${cb}", "timeout": 0}}},
    ]

    run = run_workflow({"main": {"steps": steps}}, settings=push_settings, clock=fake_clock)

    assert run.error["tags"] == ["ValueError"]
    assert "timeout must be greater than 0" in run.error["message"]


@pytest.mark.parametrize(
    ("seconds", "tag"),
    [(-1, "ValueError"), (31_536_001, "ValueError"), ("1", "TypeError"), (True, "TypeError")],
)
def test_sys_sleep_refuses_what_the_reference_does_not_describe(settings, fake_clock, seconds, tag):
    steps = [{"nap": {"call": "sys.sleep", "args": {"seconds": seconds}}}]

    run = run_workflow({"main": {"steps": steps}}, settings=settings, clock=fake_clock)

    assert run.error["tags"] == [tag]
    assert fake_clock.sleeps == []


@pytest.mark.parametrize("seconds", [0, 0.5, 31_536_000])
def test_sys_sleep_accepts_zero_to_a_year(settings, fake_clock, seconds):
    steps = [
        {"nap": {"call": "sys.sleep", "args": {"seconds": seconds}}},
        {"done": {"return": 1}},
    ]

    run = run_workflow({"main": {"steps": steps}}, settings=settings, clock=fake_clock)

    assert run.error is None, run.error
    assert fake_clock.sleeps == [seconds]
