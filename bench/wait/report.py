"""Markdown tables for bench.wait results."""

from __future__ import annotations

from collections.abc import Sequence

from bench.wait.approvals import ApprovalCase
from bench.wait.run import SEED, SHIPPED, PushCase, WaitCase, WaitConfig, WaitResults
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


def side_by_side(cases: Sequence[WaitCase], pushes: Sequence[PushCase]) -> str:
    seed, ours = _cases_of(cases, SEED), _cases_of(cases, SHIPPED)
    push = {p.arrival: p for p in pushes}
    lines = [
        "| callback arrives at T | steps: seed | steps: poll | steps: push "
        "| reads: seed | reads: poll | reads: push "
        "| resume delay at T (worst near T): seed | poll | push |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arrival in sorted(a for a in ours if a > 0):
        s, o, p = seed.get(arrival), ours[arrival], push.get(arrival)

        def delay(c: WaitCase | None) -> str:
            return f"{_s(c.delay)} ({_s(c.interval_at_arrival)})" if c else "n/a"

        lines.append(
            f"| {_t(arrival)} | {s.steps if s else 'n/a'} | {o.steps} | {p.steps if p else 'n/a'} "
            f"| {s.reads if s else 'n/a'} | {o.reads} | {p.reads if p else 'n/a'} "
            f"| {delay(s)} | {delay(o)} | {_s(p.delay) if p else 'n/a'} |"
        )
    return "\n".join(lines)


def push_table(pushes: Sequence[PushCase]) -> str:
    lines = [
        "| callback arrives at T | steps (all) | internal steps | external steps "
        "(awaits) | Firestore calls: reads / writes | resume delay |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in sorted(pushes, key=lambda p: p.arrival):
        lines.append(
            f"| {_t(p.arrival)} | {p.steps} | {p.steps - p.external_steps} | "
            f"{p.external_steps} | {p.reads} / {p.writes} | {_s(p.delay)} |"
        )
    return "\n".join(lines)


def approval_table(approvals: Sequence[ApprovalCase], pushes: Sequence[PushCase]) -> str:
    """An approval round trip beside the single push wait at the same T (and three of them)."""
    single = {p.arrival: p for p in pushes}
    lines = [
        "| first answer at T (second at T + 1 s) | steps (all) | internal steps "
        "| external steps (awaits) | Firestore calls: reads / writes "
        "| one single push wait at T | three single push waits |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for a in sorted(approvals, key=lambda a: a.arrival):
        one = single.get(a.arrival)
        lines.append(
            f"| {_t(a.arrival)} | {a.steps} | {a.internal_steps} | {a.awaits} "
            f"| {a.reads} / {a.writes} | {one.steps if one else 'n/a'} "
            f"| {3 * one.steps if one else 'n/a'} |"
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
            case = by_arrival.get(a)
            cells.append(
                f"{case.steps} / {_s(case.delay)} ({_s(case.interval_at_arrival)})"
                if case
                else "n/a"
            )
        lines.append(f"| {schedule.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems(
    cases: Sequence[WaitCase],
    pushes: Sequence[PushCase] = (),
    approvals: Sequence[ApprovalCase] = (),
) -> list[str]:
    return (
        [
            f"- {c.schedule.label}, T={_t(c.arrival)}: {'; '.join(c.problems)}"
            for c in cases
            if not c.ok
        ]
        + [f"- push, T={_t(p.arrival)}: {'; '.join(p.problems)}" for p in pushes if not p.ok]
        + [f"- approval, T={_t(a.arrival)}: {'; '.join(a.problems)}" for a in approvals if not a.ok]
    )


def wait_section(config: WaitConfig, results: WaitResults) -> str:
    cases, pushes, approvals = results.polls, results.pushes, results.approvals
    real = sum(c.real_seconds for c in [*cases, *pushes, *approvals])
    bad = problems(cases, pushes, approvals)
    return "\n".join(
        [
            "## bench.wait: what a wait costs",
            "",
            "The real workflow/callbacks.yaml (unchanged, appended to bench/wait/driver.yaml: "
            "register, wait, return) in local/workflow_runner.py under a virtual clock; the "
            "callback is POSTed to the real receiver (functions-framework on loopback) when "
            f"virtual time passes T. Timeout {_s(config.timeout_s)} (above every T). "
            f"{len(cases) + len(pushes) + len(approvals)} executions took {real:.0f} s of real "
            "time.",
            "",
            "Steps = every workflow step executed (main's three included); reads = Firestore "
            "connector `get` calls. Resume delay at T = virtual time from arrival to "
            "waitForResponse returning; in brackets the poll interval the callback fell "
            "into, which is the worst delay for a callback arriving just after a read near "
            "T (a round T can sit exactly on a read of a fixed schedule and show 0). Push "
            "= the shipped default: the receiver forwards the callback to the execution's "
            "callback endpoint (the local stand-in, local/callback_api.py), which "
            f"events.await_callback waits on in slices of {_s(config.push_slice_s)}; "
            "poll = the shipped poll schedule.",
            "",
            "### Push (default) vs poll (shipped schedule) vs the seed's fixed 30 s polling",
            "",
            side_by_side(cases, pushes),
            "",
            "### Push: what a wait is billed",
            "",
            "Internal steps are every step but the awaits; each `events.await_callback` is "
            "one external step however long it waits. Firestore calls are connector calls "
            "(each also one of the internal steps).",
            "",
            push_table(pushes),
            "",
            "In real time on the local stack (real clock, callback 2 s after registration): "
            f"the workflow returned {results.real_time_push_delay_s * 1000:.0f} ms after the "
            "caller's 200.",
            "",
            *(
                [
                    "### Approvals: 3 approvers, quorum 2, push, within one slice",
                    "",
                    "bench/wait/approval_driver.yaml: getApprovalURLs, waitForApprovals (given the "
                    "links), return; the last approver answers at T and the first one 1 s later, "
                    "each POSTed to its link at the real receiver, which stores and forwards it. "
                    "Beside it, the single push wait at the same T (main's three steps included "
                    "in both): the approval must cost no more than three of them.",
                    "",
                    approval_table(approvals, pushes),
                    "",
                ]
                if approvals
                else []
            ),
            "### Candidate schedules: steps / resume delay at T (worst near T)",
            "",
            candidates(cases),
            *(["", "### Problems", "", *bad] if bad else []),
        ]
    )
