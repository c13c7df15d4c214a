"""What a wait is billed, counted on the real YAML (issue 20's targets).

Workflows bills every executed step: internal ones (assign, switch, call,
return, connector calls) and external ones (each events.await_callback,
however long it waits); https://cloud.google.com/workflows/pricing. The
runner counts every step it runs (retry attempts included), so these tests
pin the counts of the paths that matter, main's three steps included:

- push, the callback within one slice: at most 12 internal steps and 1 external;
- every further slice: at most 3 steps, 1 of them external (so at most 90
  for a 24 h wait);
- poll: no more than before issue 20 (bench/RESULTS.md, shipped schedule);
- the resume delay after the caller's 200 stays within 1 s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
import requests

from infra.workflow_env import WaitSettings
from local.workflow_runner import RunResult, run_workflow
from tests.workflow.push_helpers import round_trip_with_url

# The smallest workflow that waits for one callback, as bench/wait/driver.yaml
# but passing getCallbackURL's URL on, as the docs tell users to.
DRIVER = round_trip_with_url("b")
DAY = 86_400
# Before issue 20 (bench/RESULTS.md, shipped schedule 2 s x2 up to 60 s):
# steps of a poll round trip by the callback's arrival time; and now, 6
# fewer (registering 4 steps, not 9; waiting: one assign for settings and
# derived values, the tombstone instead of the delete).
POLL_STEPS_BEFORE = {0: 20, 5: 28, 3600: 276}
POLL_STEPS_NOW = {0: 14, 5: 22, 3600: 270}


def internal(run: RunResult) -> int:
    return run.steps - run.callback_events["await_callback"]


def run_with_arrival(settings, clock, arrival: float, workflow=DRIVER) -> RunResult:
    """``workflow``; the caller answers ``arrival`` virtual seconds after registering."""

    def send(url: str) -> None:
        assert requests.post(url, json={"at": arrival}, timeout=10).status_code == 200

    def on_url(url: str) -> None:
        if arrival == 0:
            send(url)  # already there when the wait begins
        else:
            clock.at(arrival, lambda: send(url))

    run = run_workflow(workflow, settings=settings, clock=clock, on_callback_url=on_url)
    assert run.error is None, run.error
    assert run.result["body"] == {"at": arrival}
    return run


@pytest.fixture
def shipped_push(push_settings):
    """Push with the shipped slice (1 h) and room for a 24 h wait."""
    wait = WaitSettings(timeout_seconds=2 * DAY, ttl_seconds=7 * DAY, delivery="push")
    return dataclasses.replace(push_settings, wait=wait)


@pytest.mark.parametrize("arrival", [0, 5, 3_599])
def test_push_within_one_slice_costs_12_internal_steps_and_one_await(
    shipped_push, fake_clock, arrival
):
    run = run_with_arrival(shipped_push, fake_clock, arrival)

    assert internal(run) == 12
    assert run.callback_events["await_callback"] == 1
    assert run.connector_calls == {"commit": 1, "patch": 1}


def test_every_further_slice_costs_three_steps_one_of_them_external(shipped_push, fake_clock):
    one_slice = run_with_arrival(shipped_push, fake_clock, 5)
    day = run_with_arrival(shipped_push, type(fake_clock)(), DAY)

    further = day.callback_events["await_callback"] - one_slice.callback_events["await_callback"]
    assert further == 23  # slices ended at 1 h, 2 h ... 23 h
    assert day.steps - one_slice.steps == 3 * further
    assert internal(day) - internal(one_slice) == 2 * further
    assert day.steps <= 90
    assert day.connector_calls == {"commit": 1, "get": 23, "patch": 1}


@pytest.mark.parametrize("arrival", sorted(POLL_STEPS_BEFORE))
def test_poll_costs_no_more_than_before(settings, fake_clock, arrival):
    poll = dataclasses.replace(settings, wait=WaitSettings(delivery="poll"))

    run = run_with_arrival(poll, fake_clock, arrival)

    assert run.steps <= POLL_STEPS_BEFORE[arrival]
    assert run.steps == POLL_STEPS_NOW[arrival]
    assert run.callback_events == {}


def test_the_workflow_resumes_within_a_second_of_the_callers_200(push_settings):
    settings = dataclasses.replace(
        push_settings, wait=dataclasses.replace(push_settings.wait, push_slice_seconds=30)
    )
    api = settings.callbacks
    awaiting = threading.Event()
    answered: list[float] = []
    original = api.await_callback

    def await_callback(*args: Any, **kwargs: Any) -> dict:
        awaiting.set()
        return original(*args, **kwargs)

    def on_url(url: str) -> None:
        def answer() -> None:
            assert awaiting.wait(10)
            time.sleep(0.2)  # well inside the await
            response = requests.post(url, json={"now": True}, timeout=10)
            if response.status_code == 200:
                answered.append(time.perf_counter())

        threading.Thread(target=answer, daemon=True).start()

    api.await_callback = await_callback
    try:
        run = run_workflow(DRIVER, settings=settings, on_callback_url=on_url)
        returned = time.perf_counter()
    finally:
        del api.await_callback

    assert run.error is None, run.error
    assert run.callback_events["forwarded"] == 1
    assert len(answered) == 1
    assert returned - answered[0] < 1.0
