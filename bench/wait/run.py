"""Run the real callback subworkflows under a virtual clock and count what a wait costs.

For each poll schedule and each arrival time T, one execution of driver.yaml (with
workflow/callbacks.yaml appended, unchanged) runs in local/workflow_runner.py with
a VirtualClock. When getCallbackURL hands out the URL, the harness schedules the
callback on the clock; the clock's sleep that crosses T posts it to the real
receiver (functions-framework over HTTP on loopback). Counted per execution:

- steps executed (the runner counts every step it runs; Workflows bills per step),
- Firestore connector calls (reads = ``get``; writes = the registration's commit, delete),
- resume delay: virtual time from the callback's arrival to waitForResponse
  returning, and the poll interval the callback fell into (the worst delay of a
  callback arriving near T: just after a read, it waits that whole interval).

Each execution is checked against the schedule model (bench.wait.schedule), and the
callback's payload must come back intact: a harness that measured something else
fails instead of printing a plausible number.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.wait.approvals import ApprovalCase, run_approval_case
from bench.wait.clock import VirtualClock
from bench.wait.schedule import Expected, Schedule, expected
from infra.workflow_env import WaitSettings
from local.stack import local_stack
from local.workflow_runner import RunResult, RunSettings, run_workflow

DRIVER = Path(__file__).resolve().parent / "driver.yaml"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0
ARRIVALS = (5.0, MINUTE, 10 * MINUTE, HOUR, DAY)

_SHIPPED = WaitSettings()
SEED = Schedule(30, 1, 30, "seed: fixed 30 s")
SHIPPED = Schedule(
    _SHIPPED.poll_initial_seconds,
    _SHIPPED.poll_multiplier,
    _SHIPPED.poll_max_seconds,
    "shipped defaults",
)
# Other (first interval, multiplier, cap) triples to weigh against each other.
CANDIDATES = (
    Schedule(1, 2, 30),
    Schedule(1, 2, 60),
    Schedule(2, 2, 60),
    Schedule(2, 2, 120),
    Schedule(2, 2, 300),
    Schedule(5, 2, 300),
    Schedule(1, 1.5, 60),
    Schedule(2, 3, 60),
)


@dataclass(frozen=True)
class WaitConfig:
    arrivals: tuple[float, ...] = ARRIVALS
    schedules: tuple[Schedule, ...] = (SEED, SHIPPED, *CANDIDATES)
    # Longer than the longest arrival, so a late callback measures polling, not the
    # timeout (WaitSettings' shipped timeout is exactly 24 h).
    timeout_s: float = 2 * DAY
    # Push delivery's slice: the longest await before one more Firestore read.
    push_slice_s: int = _SHIPPED.push_slice_seconds


@dataclass(kw_only=True)
class Execution:
    """One execution of driver.yaml: the callback arrives at T (virtual seconds)."""

    arrival: float
    steps: int = 0
    reads: int = 0
    writes: int = 0
    resume_at: float = math.nan
    delivery_status: int | None = None
    real_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def delay(self) -> float:
        return self.resume_at - self.arrival

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(kw_only=True)
class PushCase(Execution):
    """With push delivery: the receiver forwards the callback to the execution."""

    awaits: int = 0
    forwarded: int = 0

    @property
    def external_steps(self) -> int:
        """Billed as external steps: each events.await_callback, however long it waits."""
        return self.awaits


@dataclass(kw_only=True)
class WaitCase(Execution):
    """With polling on ``schedule``, checked against the schedule model."""

    schedule: Schedule
    expected: Expected
    interval_at_arrival: float = 0.0


def _dedupe(schedules: tuple[Schedule, ...]) -> list[Schedule]:
    """Drop a candidate equal to an earlier schedule (say, the shipped defaults)."""
    kept: dict[tuple[float, float, float], Schedule] = {}
    for s in schedules:
        kept.setdefault((s.initial, s.multiplier, s.cap), s)
    return list(kept.values())


def _deliver(url: str, value: str, body: dict[str, Any]) -> int:
    # What the external system does with the URL: call it with its answer.
    response = requests.post(url, params={"value": value}, json=body, timeout=30)
    return response.status_code


def _waiting(base: RunSettings, config: WaitConfig, **wait: Any) -> RunSettings:
    """``base`` waiting up to ``config.timeout_s`` (its TTL no shorter), as ``wait`` says."""
    timeout = int(config.timeout_s)
    ttl = max(_SHIPPED.ttl_seconds, timeout)
    return dataclasses.replace(
        base, wait=WaitSettings(timeout_seconds=timeout, ttl_seconds=ttl, **wait)
    )


def _execute(
    case: Execution, settings: RunSettings, workflow: dict[str, Any]
) -> tuple[RunResult, VirtualClock]:
    """Run the workflow on a virtual clock, POST the callback at T, check it came back intact."""
    clock = VirtualClock()
    value = f"answer at {case.arrival:g} s ü&x=1"
    body = {"approved": True, "arrival": case.arrival}

    def on_url(url: str) -> None:
        def send() -> None:
            case.delivery_status = _deliver(url, value, body)

        if case.arrival <= 0:
            send()  # already there when waitForResponse first reads
        else:
            clock.at(case.arrival, send)

    started = time.perf_counter()
    run = run_workflow(
        workflow, {"step": f"bench-{uuid.uuid4().hex[:8]}"}, settings=settings, clock=clock,
        on_callback_url=on_url,
    )  # fmt: skip
    case.real_seconds = time.perf_counter() - started
    case.steps = run.steps
    case.reads = run.connector_calls.get("get", 0)
    case.writes = sum(n for method, n in run.connector_calls.items() if method != "get")
    case.resume_at = clock.elapsed
    if not run.succeeded:
        case.problems.append(f"workflow failed: {run.error}")
        return run, clock
    if case.delivery_status != 200:
        case.problems.append(f"callback answered {case.delivery_status}, not 200")
    result = run.result if isinstance(run.result, dict) else {}
    if result.get("value") != value or result.get("body") != body:
        case.problems.append(f"payload came back changed: {result!r}")
    return run, clock


def run_case(
    schedule: Schedule,
    arrival: float,
    config: WaitConfig,
    base: RunSettings,
    workflow: dict[str, Any],
) -> WaitCase:
    exp = expected(schedule, arrival, config.timeout_s)
    case = WaitCase(schedule=schedule, arrival=arrival, expected=exp)
    settings = _waiting(
        base,
        config,
        delivery="poll",
        poll_initial_seconds=schedule.initial,
        poll_multiplier=schedule.multiplier,
        poll_max_seconds=schedule.cap,
    )
    run, clock = _execute(case, settings, workflow)
    if clock.fired:
        case.interval_at_arrival = clock.fired[0][1]
    if not run.succeeded:
        return case
    problems = case.problems
    if case.reads != exp.reads:
        problems.append(f"{case.reads} reads, the schedule says {exp.reads}")
    if not math.isclose(case.resume_at, exp.resume_at, abs_tol=1e-6):
        problems.append(f"resumed at {case.resume_at:g} s, the schedule says {exp.resume_at:g} s")
    # The delay can never exceed the interval the callback fell into (nor the cap).
    if case.delay < -1e-6 or case.delay > max(case.interval_at_arrival, 0.0) + 1e-6:
        problems.append(f"delay {case.delay:g} s outside [0, {case.interval_at_arrival:g}] s")
    if arrival > 0 and not math.isclose(
        case.interval_at_arrival, exp.interval_at_arrival, abs_tol=1e-6
    ):
        problems.append(
            f"arrived during a {case.interval_at_arrival:g} s sleep, "
            f"the schedule says {exp.interval_at_arrival:g} s"
        )
    return case


def run_push_case(
    arrival: float, config: WaitConfig, base: RunSettings, workflow: dict[str, Any]
) -> PushCase:
    """driver.yaml with push delivery; the callback is POSTed when virtual time passes T."""
    case = PushCase(arrival=arrival)
    settings = _waiting(base, config, delivery="push", push_slice_seconds=config.push_slice_s)
    run, _clock = _execute(case, settings, workflow)
    case.awaits = run.callback_events["await_callback"]
    case.forwarded = run.callback_events["forwarded"]
    if not run.succeeded:
        return case
    # Resumed the moment it arrived. Push reads Firestore only when a slice
    # ends without a callback (the endpoint buffers one forwarded earlier), so
    # one read per slice that ended before T and none within the first.
    if not math.isclose(case.delay, 0.0, abs_tol=1e-6):
        case.problems.append(f"resumed {case.delay:g} s after the callback arrived")
    expected_reads = max(0, math.ceil(arrival / config.push_slice_s) - 1)
    if case.reads != expected_reads:
        case.problems.append(
            f"{case.reads} reads, {expected_reads} expected (slices of {config.push_slice_s} s)"
        )
    if arrival > 0 and case.forwarded != 1:
        case.problems.append("the callback did not come by push")
    return case


def run_real_time_push(base: RunSettings, workflow: dict[str, Any], after_s: float = 2.0) -> float:
    """Real seconds from the caller's 200 to the workflow returning, on the real clock."""
    answered: list[float] = []

    def on_url(url: str) -> None:
        def send() -> None:
            time.sleep(after_s)
            if _deliver(url, "real time", {"real": True}) == 200:
                answered.append(time.perf_counter())

        threading.Thread(target=send, daemon=True).start()

    settings = dataclasses.replace(base, wait=dataclasses.replace(base.wait, delivery="push"))
    run = run_workflow(workflow, {"step": "realtime"}, settings=settings, on_callback_url=on_url)
    returned = time.perf_counter()
    if not run.succeeded or not answered or run.callback_events["forwarded"] != 1:
        raise RuntimeError(f"the real-time push run failed: {run.error or run.callback_events}")
    return returned - answered[0]


@contextmanager
def _stack() -> Iterator[RunSettings]:
    # A collection of its own per harness run: the emulator may be shared.
    collection = f"bench-wait-{uuid.uuid4().hex[:8]}"
    with local_stack(collection=collection) as stack:
        yield stack.settings


@dataclass
class WaitResults:
    polls: list[WaitCase]
    pushes: list[PushCase]
    # Real seconds from a caller's 200 to the workflow returning, on the real clock.
    real_time_push_delay_s: float
    # An approval (3 approvers, quorum 2, push) per arrival within one slice.
    approvals: list[ApprovalCase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        cases = [*self.polls, *self.pushes, *self.approvals]
        return all(c.ok for c in cases)


def run_wait(config: WaitConfig, log: Callable[[str], None] = print) -> WaitResults:
    """Every schedule at every arrival time and at T = 0, polling and push."""
    # workflows-emulator logs every caught error with the whole context at
    # ERROR, and each push slice that ends is one; the harness checks and
    # reports what matters itself.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        return _run_wait(config, log)
    finally:
        root.setLevel(level)


def _run_wait(config: WaitConfig, log: Callable[[str], None]) -> WaitResults:
    workflow = yaml.safe_load(DRIVER.read_text())
    # T = 0 too (the callback is there before the first read): the fewest steps
    # the subworkflows can take.
    arrivals = (0.0, *config.arrivals)
    cases = []
    pushes = []
    with _stack() as base:
        for arrival in arrivals:
            push = run_push_case(arrival, config, base, workflow)
            pushes.append(push)
            log(
                f"push ({config.push_slice_s} s slices), T={arrival:g} s: {push.steps} steps, "
                f"{push.reads} reads, {push.awaits} awaits, delay {push.delay:g} s "
                f"({push.real_seconds:.1f} s real)"
                + ("" if push.ok else f" PROBLEMS: {push.problems}")
            )
        approvals = []
        approving = _waiting(base, config, delivery="push", push_slice_seconds=config.push_slice_s)
        for arrival in (a for a in config.arrivals if a + 1 < config.push_slice_s):
            approval = run_approval_case(arrival, approving, config.push_slice_s)
            approvals.append(approval)
            log(
                f"approval (3 approvers, quorum 2, push), answers at T={arrival:g} s and "
                f"T+1: {approval.steps} steps ({approval.internal_steps} internal, "
                f"{approval.awaits} awaits), {approval.reads} reads, {approval.writes} writes "
                f"({approval.real_seconds:.1f} s real)"
                + ("" if approval.ok else f" PROBLEMS: {approval.problems}")
            )
        real_time = run_real_time_push(base, workflow)
        log(f"push in real time: resumed {real_time:.3f} s after the caller's 200")
        for schedule in _dedupe(config.schedules):
            for arrival in arrivals:
                case = run_case(schedule, arrival, config, base, workflow)
                cases.append(case)
                log(
                    f"{schedule.label}, T={arrival:g} s: {case.steps} steps, {case.reads} reads, "
                    f"delay {case.delay:g} s ({case.real_seconds:.1f} s real)"
                    + ("" if case.ok else f" PROBLEMS: {case.problems}")
                )
    return WaitResults(cases, pushes, real_time, approvals)
