"""bench.wait at a tiny size: the harness still runs and its invariants hold.

Asserts invariants only (the workflow resumed with the payload intact, counts agree
with the poll schedule, the resume delay stays within the interval the callback fell
into), never timings: speed belongs to `make bench`.
"""

from __future__ import annotations

import pytest

from bench.wait.clock import VirtualClock
from bench.wait.run import SEED, SHIPPED, WaitConfig, run_wait
from bench.wait.schedule import Schedule, expected


@pytest.fixture(scope="module")
def results(firestore_emulator_host: str):
    config = WaitConfig(
        arrivals=(5.0, 60.0, 7200.0), schedules=(SEED, SHIPPED), timeout_s=10_800, push_slice_s=3600
    )
    return run_wait(config, log=lambda _m: None)


@pytest.fixture(scope="module")
def cases(results) -> list:
    return [c for c in results.polls if c.arrival < 3600]


def test_push_resumes_at_once_at_every_t_and_costs_few_steps(results) -> None:
    by_arrival = {p.arrival: p for p in results.pushes}
    assert set(by_arrival) == {0.0, 5.0, 60.0, 7200.0}
    for push in results.pushes:
        assert push.ok, (push.arrival, push.problems)
        assert push.delay == 0
    # Within one slice: no read, one await (the URL names the endpoint and
    # the proof is checked by the tombstone's write); two hours: one read
    # for the slice that ended. Issue 20's targets: at most 12 internal
    # steps within a slice, at most 3 (1 await) per further slice.
    assert (by_arrival[60.0].reads, by_arrival[60.0].awaits) == (0, 1)
    assert (by_arrival[7200.0].reads, by_arrival[7200.0].awaits) == (1, 2)
    assert by_arrival[60.0].steps - by_arrival[60.0].awaits <= 12
    assert by_arrival[7200.0].steps - by_arrival[60.0].steps <= 3
    poll_2h = next(c for c in results.polls if c.schedule == SHIPPED and c.arrival == 7200.0)
    assert by_arrival[7200.0].steps < poll_2h.steps
    assert 0 <= results.real_time_push_delay_s < 1


def test_an_approval_within_one_slice_costs_less_than_three_single_push_waits(results) -> None:
    # Three approvers, quorum two, both answers within the first slice.
    single = {p.arrival: p for p in results.pushes}
    assert [a.arrival for a in results.approvals] == [5.0, 60.0]
    for approval in results.approvals:
        assert approval.ok, (approval.arrival, approval.problems)
        assert approval.steps <= 3 * single[approval.arrival].steps
        assert (approval.internal_steps, approval.awaits, approval.reads) == (24, 2, 0)


def test_each_wait_resumes_with_the_payload_and_agrees_with_the_schedule(cases) -> None:
    # T = 0 (the push-ideal floor) plus the two arrivals, for both schedules.
    assert [(c.schedule.label, c.arrival) for c in cases] == [
        (s.label, t) for s in (SEED, SHIPPED) for t in (0.0, 5.0, 60.0)
    ]
    for c in cases:
        assert c.ok, (c.schedule.label, c.arrival, c.problems)
        assert c.delivery_status == 200
        assert c.reads == c.expected.reads
        assert 0 <= c.delay <= c.interval_at_arrival


def test_waiting_longer_costs_steps_and_the_floor_costs_least(cases) -> None:
    for schedule in (SEED, SHIPPED):
        mine = sorted((c for c in cases if c.schedule == schedule), key=lambda c: c.arrival)
        floor, *later = mine
        assert floor.reads == 1 and floor.delay == 0
        assert all(c.steps > floor.steps for c in later)
        # Every extra read is one turn of the same poll loop: a fixed number of steps.
        per_read = {(c.steps - floor.steps) / (c.reads - floor.reads) for c in later}
        assert len(per_read) == 1
    # The seed's first read after registration is 30 s later: a 5 s callback waits 25 s.
    seed_5 = next(c for c in cases if c.schedule == SEED and c.arrival == 5.0)
    assert seed_5.delay == 25


def test_the_virtual_clock_runs_actions_inside_the_sleep_that_crosses_them() -> None:
    clock = VirtualClock(start=1000.0)
    seen: list[float] = []
    clock.at(5, lambda: seen.append(clock.now()))
    clock.at(3, lambda: seen.append(clock.now()))
    clock.sleep(2)
    assert seen == [] and clock.now() == 1002.0
    clock.sleep(10)
    assert seen == [1003.0, 1005.0]  # in order, each at its own time
    assert clock.now() == 1012.0 and clock.elapsed == 12.0
    assert clock.fired == [(3.0, 10), (5.0, 10)]
    with pytest.raises(ValueError):
        clock.sleep(-1)


def test_the_schedule_model() -> None:
    seed = Schedule(30, 1, 30)
    assert expected(seed, 86_400, 2 * 86_400).reads == 2_881
    ours = Schedule(2, 2, 60)
    assert ours.poll_times(70, 1000) == [0, 2, 6, 14, 30, 62, 122]
    e = expected(ours, 70, 1000)
    assert (e.reads, e.resume_at, e.delay, e.interval_at_arrival) == (7, 122, 52, 60)
    # The deadline caps the last sleep.
    assert Schedule(10, 1, 10).poll_times(100, 25) == [0, 10, 20, 25]


def test_the_virtual_clock_waits_until_ready_or_the_end_of_the_window() -> None:
    clock = VirtualClock(start=0.0)
    arrived: list[int] = []
    clock.at(30, lambda: arrived.append(1))

    assert not clock.wait_until(lambda: bool(arrived), 10)
    assert clock.now() == 10.0  # the whole window passed
    assert clock.wait_until(lambda: bool(arrived), 3600)
    assert clock.now() == 30.0  # stopped the moment it was ready
