"""An approval round trip under the virtual clock: N = 3 approvers, quorum M = 2, push.

approval_driver.yaml (workflow/callbacks.yaml appended, unchanged) registers
three links and waits for two approvals. When getApprovalURLs hands out the
links, the harness schedules two answers on the clock, at T and T + 1 s (one
slice): each is POSTed to its link's machine URL at the real receiver, which
stores it and forwards it to the links' endpoint. Counted as bench.wait counts
a single wait: steps (internal and awaits), Firestore reads and writes. The
decision and both answers must come back, in the order given, or the case
reports a problem instead of a number.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.wait.clock import VirtualClock
from local.workflow_runner import RunSettings, run_workflow

APPROVAL_DRIVER = Path(__file__).resolve().parent / "approval_driver.yaml"
APPROVERS = ("ana@example.com", "bo@example.com", "cy@example.com")
QUORUM = 2
# Who answers, in order: the last approver at T, the first one second later.
ANSWERING = (2, 0)
# The connector calls that read (the rest write).
READS = ("get", "batchGet")


@dataclass(kw_only=True)
class ApprovalCase:
    """One approval: the first answer arrives at T (virtual seconds), the second at T + 1."""

    arrival: float
    approvers: int = len(APPROVERS)
    quorum: int = QUORUM
    steps: int = 0
    awaits: int = 0
    reads: int = 0
    writes: int = 0
    resume_at: float = math.nan
    real_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def internal_steps(self) -> int:
        return self.steps - self.awaits

    @property
    def delay(self) -> float:
        """From the answer that reached the quorum to the wait returning."""
        return self.resume_at - (self.arrival + len(ANSWERING) - 1)

    @property
    def ok(self) -> bool:
        return not self.problems


def _answer(url: str, value: str) -> int:
    # What an approver's tool sends: the choice on the link's machine URL.
    machine = url.removesuffix("&view=page")
    return requests.post(machine, json={"value": value}, timeout=30).status_code


def run_approval_case(arrival: float, settings: RunSettings, slice_s: float) -> ApprovalCase:
    """approval_driver.yaml with push delivery; answers POSTed at T and T + 1 (virtual)."""
    case = ApprovalCase(arrival=arrival)
    if arrival + len(ANSWERING) - 1 >= slice_s:
        case.problems.append(f"T={arrival:g} s: the answers would not fall within one slice")
        return case
    clock = VirtualClock()
    statuses: list[int] = []

    def on_approvals(approvals: dict[str, Any]) -> None:
        for offset, index in enumerate(ANSWERING):
            url = approvals["links"][index]["url"]
            clock.at(arrival + offset, lambda url=url: statuses.append(_answer(url, "approve")))

    workflow = yaml.safe_load(APPROVAL_DRIVER.read_text())
    argument = {"step": f"approve-{uuid.uuid4().hex[:8]}", "approvers": list(APPROVERS),
                "quorum": QUORUM}  # fmt: skip
    started = time.perf_counter()
    run = run_workflow(
        workflow, argument, settings=settings, clock=clock, on_approvals=on_approvals
    )
    case.real_seconds = time.perf_counter() - started
    case.steps = run.steps
    case.awaits = run.callback_events["await_callback"]
    calls = run.connector_calls
    case.reads = sum(n for method, n in calls.items() if method in READS)
    case.writes = sum(run.connector_calls.values()) - case.reads
    case.resume_at = clock.elapsed
    if not run.succeeded:
        case.problems.append(f"workflow failed: {run.error}")
        return case
    if statuses != [200] * len(ANSWERING):
        case.problems.append(f"answers were answered {statuses}, not 200")
    result = run.result if isinstance(run.result, dict) else {}
    answered = [answer.get("approver") for answer in result.get("answers", [])]
    if result.get("decision") != "approved" or answered != [APPROVERS[i] for i in ANSWERING]:
        case.problems.append(f"came back {result.get('decision')!r} with {answered}")
    if not math.isclose(case.delay, 0.0, abs_tol=1e-6):
        case.problems.append(f"resumed {case.delay:g} s after the quorum was reached")
    if case.reads:
        case.problems.append(f"{case.reads} reads within one slice: the forwards carry the answers")
    return case
