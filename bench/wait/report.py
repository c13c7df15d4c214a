"""Markdown tables for bench.wait results."""

from __future__ import annotations

from collections.abc import Sequence

from bench.wait.run import SEED, SHIPPED, WaitCase, WaitConfig
from bench.wait.schedule import Schedule


def _t(seconds: float) -> str:
    if seconds == 0:
        return "0 (already there)"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _s(seconds: float) -> str:
    return f"{round(seconds, 1):g} s"


def _same(a: Schedule, b: Schedule) -> bool:
    return (a.initial, a.multiplier, a.cap) == (b.initial, b.multiplier, b.cap)


def _cases_of(cases: Sequence[WaitCase], schedule: Schedule) -> dict[float, WaitCase]:
    return {c.arrival: c for c in cases if _same(c.schedule, schedule)}


def side_by_side(cases: Sequence[WaitCase]) -> str:
    seed, ours = _cases_of(cases, SEED), _cases_of(cases, SHIPPED)
    floor = ours.get(0.0)
    push_steps = str(floor.steps) if floor else "n/a"
    push_reads = str(floor.reads) if floor else "n/a"
    lines = [
        "| callback arrives at T | steps: seed | steps: ours | steps: push ideal "
        "| reads: seed | reads: ours | reads: push ideal "
        "| resume delay at T (worst near T): seed | ours | push ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arrival in sorted(a for a in ours if a > 0):
        s, o = seed.get(arrival), ours[arrival]

        def delay(c: WaitCase | None) -> str:
            return f"{_s(c.delay)} ({_s(c.interval_at_arrival)})" if c else "n/a"

        lines.append(
            f"| {_t(arrival)} | {s.steps if s else 'n/a'} | {o.steps} | {push_steps} "
            f"| {s.reads if s else 'n/a'} | {o.reads} | {push_reads} "
            f"| {delay(s)} | {delay(o)} | 0 s |"
        )
    return "\n".join(lines)


def candidates(cases: Sequence[WaitCase]) -> str:
    schedules: list[Schedule] = []
    for c in cases:
        if not any(_same(c.schedule, s) for s in schedules):
            schedules.append(c.schedule)
    arrivals = sorted({c.arrival for c in cases if c.arrival > 0})
    head = " | ".join(_t(a) for a in arrivals)
    lines = [
        f"| schedule (first interval x multiplier up to cap) | {head} |",
        "|---|" + "---:|" * len(arrivals),
    ]
    for schedule in schedules:
        by_arrival = _cases_of(cases, schedule)
        cells = []
        for a in arrivals:
            c = by_arrival.get(a)
            cells.append(f"{c.steps} / {_s(c.delay)} ({_s(c.interval_at_arrival)})" if c else "n/a")
        lines.append(f"| {schedule.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems(cases: Sequence[WaitCase]) -> list[str]:
    return [
        f"- {c.schedule.label}, T={_t(c.arrival)}: {'; '.join(c.problems)}"
        for c in cases
        if not c.ok
    ]


def wait_section(config: WaitConfig, cases: Sequence[WaitCase]) -> str:
    real = sum(c.real_seconds for c in cases)
    bad = problems(cases)
    return "\n".join(
        [
            "## bench.wait: what a wait costs",
            "",
            "The real workflow/callbacks.yaml (unchanged, appended to bench/wait/driver.yaml: "
            "register, wait, return) in local/workflow_runner.py under a virtual clock; the "
            "callback is POSTed to the real receiver (functions-framework on loopback) when "
            f"virtual time passes T. Timeout {_s(config.timeout_s)} (above every T). "
            f"{len(cases)} executions took {real:.0f} s of real time.",
            "",
            "Steps = every workflow step executed (main's three included); reads = Firestore "
            "connector `get` calls. Resume delay at T = virtual time from arrival to "
            "waitForResponse returning; in brackets the poll interval the callback fell "
            "into, which is the worst delay for a callback arriving just after a read near "
            "T (a round T can sit exactly on a read of a fixed schedule and show 0). Push "
            "ideal = what a push design would cost: the steps our subworkflows take when "
            "the callback is already there at the first read (T = 0), whatever T is, and "
            "no delay.",
            "",
            "### Ours (shipped defaults) vs the seed's fixed 30 s polling vs push",
            "",
            side_by_side(cases),
            "",
            "### Candidate schedules: steps / resume delay at T (worst near T)",
            "",
            candidates(cases),
            *(["", "### Problems", "", *bad] if bad else []),
        ]
    )
