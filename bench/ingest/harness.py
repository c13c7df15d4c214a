"""The ingest harness: three modes over the same scenarios, servers, callbacks and read-back.

- scenarios: every scenario under load on every server shape, once, all on the
  run's one emulator, whose store grows as the run goes on;
- side-by-side: ours against the seed under equal conditions (issue #12's
  targets): rounds, each on a fresh emulator, the scenarios in a rotated order
  so none is always first; the report takes each scenario's best round;
- profile: each receiver in this process, one callback at a time (bench.ingest.profile).

The scenarios, (a) registered, (b) unregistered and (c) the seed-equivalent, get
the same requests, each writes to its own collection, and under load each is read
back and verified after its phase. bench/README.md says what each measures.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from bench.ingest.callbacks import Callback, make_callbacks, register
from bench.ingest.loadgen import TRANSPORT_ERROR, UNSENT, PhaseResult, run_phase
from bench.ingest.profile import WARM_UP, PathProfile, profile_path
from bench.ingest.server import ServerSettings, serve_function
from bench.ingest.verify import DocCheck, Verification, check_ours, check_seed, verify_collection
from bench.procstat import tree_cpu_seconds
from bench.stack import emulator
from bench.stats import percentile

MODES = ("scenarios", "side-by-side", "profile")
REPO = Path(__file__).resolve().parents[2]
FUNCTION_SOURCE = REPO / "function" / "main.py"
SEED_SOURCE = Path(__file__).resolve().parent / "seed_function" / "main.py"
PROJECT = "bench-callbacks"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    source: Path
    env: dict[str, str]
    with_tokens: bool
    check: DocCheck


SCENARIOS = (
    # The seed runs first so the emulator's in-memory store is smallest for the
    # baseline, which can only flatter the baseline (making our ratio conservative).
    Scenario(
        "seed", "(c) seed-equivalent: one unconditional set", SEED_SOURCE, {}, False, check_seed
    ),
    Scenario("registered", "(a) ours, registered + token", FUNCTION_SOURCE, {}, True, check_ours),
    Scenario(
        "unregistered",
        "(b) ours, unregistered allowed",
        FUNCTION_SOURCE,
        {"CALLBACKS_ALLOW_UNREGISTERED": "true"},
        False,
        check_ours,
    ),
)


@dataclass(frozen=True)
class IngestConfig:
    mode: str = "scenarios"
    callbacks: int = 5000  # per scenario (per round); profile: per pass
    clients: int = 50
    # Each server shape runs every scenario; the first is the headline table:
    # the deployed shape, one worker with a thread per concurrent request.
    servers: tuple[ServerSettings, ...] = (ServerSettings(), ServerSettings(threads=1))
    rounds: int = 1
    # Each scenario's timed callbacks go in this many slices, the scenarios
    # taking turns slice by slice (all their servers up at once), so a spell
    # of a slower machine falls on every scenario alike instead of on
    # whichever ran then.
    slices: int = 1
    phase_deadline_s: float = 900.0
    scenarios: tuple[str, ...] = tuple(s.key for s in SCENARIOS)

    @property
    def chosen(self) -> list[Scenario]:
        return [s for s in SCENARIOS if s.key in self.scenarios]


# Each mode's defaults, which `make bench` runs.
DEFAULTS = {
    "scenarios": IngestConfig(),
    "side-by-side": IngestConfig(
        "side-by-side",
        callbacks=2000,
        clients=20,
        servers=(ServerSettings(),),
        rounds=3,
        slices=5,
    ),
    # In this process, one callback at a time: no clients, no server shape.
    "profile": IngestConfig("profile", callbacks=500, clients=1, servers=()),
}


@dataclass
class ScenarioResult:
    """One scenario under load on one server shape."""

    scenario: Scenario
    server: ServerSettings
    phase: PhaseResult
    warmup: PhaseResult
    server_cpu_seconds: float | None
    emulator_cpu_seconds: float | None
    verification: Verification
    # The function's own account of its 5xx answers: error message -> count.
    error_causes: dict[str, int]

    @property
    def server_errors(self) -> int:
        """5xx answers, transport errors and unsent callbacks: all fail the run."""
        statuses = self.phase.statuses + self.warmup.statuses
        return sum(
            n for s, n in statuses.items() if s.startswith("5") or s in (TRANSPORT_ERROR, UNSENT)
        )

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.verification.ok

    def latency_ms(self, pct: float) -> float:
        return percentile(self.phase.latencies, pct) * 1000


@dataclass
class IngestRun:
    """What one mode measured: rounds of results under load, or profiles."""

    config: IngestConfig
    rounds: list[list[ScenarioResult]] = field(default_factory=list)
    profiles: list[PathProfile] = field(default_factory=list)

    @property
    def results(self) -> list[ScenarioResult]:
        return [r for results in self.rounds for r in results]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results) and all(p.ok for p in self.profiles)


def run_ingest(config: IngestConfig, log: Callable[[str], None] = print) -> IngestRun:
    """Run ``config.mode``; the caller decides pass/fail from ``.ok``.

    On the emulator FIRESTORE_EMULATOR_HOST names (else a new one), except
    side-by-side, which starts a fresh one per round.
    """
    run, tag = IngestRun(config), uuid.uuid4().hex[:8]
    if config.mode == "profile":
        with emulator() as (host, pid):
            run.profiles = [_profile(s, config, host, pid, tag, log) for s in config.chosen]
        return run
    fresh = config.mode == "side-by-side"
    for number in range(config.rounds):
        shift = number % len(config.chosen)
        order = config.chosen[shift:] + config.chosen[:shift]
        if fresh:
            log(f"side by side, round {number + 1} of {config.rounds} (fresh emulator)")
        with emulator(fresh=fresh) as (host, pid):
            # Every phase's callbacks (the registrations, for scenarios with
            # tokens) are written before the first phase is timed, so no phase
            # is timed right after thousands of setup writes of its own, which
            # the seed, with nothing to register, never has.
            phases = [
                _prepare(s, server, config, f"{tag}-r{number}")
                for server in config.servers
                for s in order
            ]
            run.rounds.append(_under_load(phases, config, host, pid, log))
    return run


@dataclass(frozen=True)
class PreparedPhase:
    """One scenario on one server shape, its callbacks written where they need to be."""

    scenario: Scenario
    shape: ServerSettings
    collection: str
    warmup: list[Callback]
    timed: list[Callback]


def _prepare(
    scenario: Scenario, shape: ServerSettings, config: IngestConfig, tag: str
) -> PreparedPhase:
    collection = f"bench-{tag}-{scenario.key}-t{shape.threads}"
    db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    # One warm-up callback per client opens every connection and the function's
    # Firestore channel before timing; they are verified like the timed ones.
    warmup = _callbacks(scenario, db, collection, f"{scenario.key}-warm", config.clients)
    timed = _callbacks(scenario, db, collection, scenario.key, config.callbacks)
    db.close()
    return PreparedPhase(scenario, shape, collection, warmup, timed)


def _under_load(
    phases: Sequence[PreparedPhase],
    config: IngestConfig,
    emulator_host: str,
    emulator_pid: int | None,
    log: Callable[[str], None],
) -> list[ScenarioResult]:
    """Every phase's server up at once, warmed, then its timed callbacks in
    ``config.slices`` slices, the phases taking turns; then each read back."""
    with ExitStack() as servers:
        running = []
        for phase in phases:
            env = _env(phase.scenario, emulator_host, phase.collection)
            server = servers.enter_context(serve_function(phase.scenario.source, env, phase.shape))
            warm = run_phase(server.port, phase.warmup, config.clients, deadline_s=60.0)
            running.append((phase, server, warm))
        slices: list[list[PhaseResult]] = [[] for _ in phases]
        cpu = [[0.0, 0.0] for _ in phases]  # server, emulator CPU seconds
        seen = [[True, True] for _ in phases]  # whether each could be read
        for number in range(config.slices):
            for index, (phase, server, _warm) in enumerate(running):
                if number == 0:
                    log(
                        f"{phase.scenario.label}, {phase.shape.workers} worker x "
                        f"{phase.shape.threads} threads: {config.callbacks} callbacks from "
                        f"{config.clients} clients"
                        + (f", in {config.slices} slices taking turns" if config.slices > 1 else "")
                    )
                part = phase.timed[number :: config.slices]
                before = [tree_cpu_seconds(pid) for pid in (server.pid, emulator_pid)]
                slices[index].append(
                    run_phase(server.port, part, config.clients, config.phase_deadline_s)
                )
                after = [tree_cpu_seconds(pid) for pid in (server.pid, emulator_pid)]
                for which, (b, a) in enumerate(zip(before, after, strict=True)):
                    if b is None or a is None:
                        seen[index][which] = False
                    else:
                        cpu[index][which] += a - b
        finished = [
            (phase, warm, PhaseResult.combined(slices[index]), error_causes(server.log_entries()))
            for index, (phase, server, warm) in enumerate(running)
        ]
    results = []
    for index, (phase, warm, timed, causes) in enumerate(finished):
        db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
        check = phase.scenario.check
        verification = verify_collection(db, phase.collection, phase.warmup + phase.timed, check)
        db.close()
        server_cpu, emulator_cpu = (
            cpu[index][which] if seen[index][which] else None for which in (0, 1)
        )
        result = ScenarioResult(
            phase.scenario, phase.shape, timed, warm, server_cpu, emulator_cpu, verification, causes
        )
        log(
            f"  {phase.scenario.label}: {timed.throughput:.0f} callbacks/s, "
            f"p50 {result.latency_ms(50):.1f} ms, statuses {dict(timed.statuses)}; "
            f"{verification.summary()}"
        )
        results.append(result)
    return results


def _profile(
    scenario: Scenario,
    config: IngestConfig,
    emulator_host: str,
    emulator_pid: int | None,
    tag: str,
    log: Callable[[str], None],
) -> PathProfile:
    collection = f"bench-{tag}-profile-{scenario.key}"
    db = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    # A warm-up, then a plain pass and a profiled pass on callbacks of their own.
    callbacks = _callbacks(scenario, db, collection, scenario.key, WARM_UP + 2 * config.callbacks)
    db.close()
    log(f"profiling {scenario.label}: {config.callbacks} callbacks, one at a time")
    env = _env(scenario, emulator_host, collection)
    return profile_path(scenario.key, scenario.label, scenario.source, env, callbacks, emulator_pid)


def _callbacks(
    scenario: Scenario, db: firestore.Client, collection: str, name: str, count: int
) -> list[Callback]:
    """What the scenario sends; registered first where it wants tokens."""
    callbacks = make_callbacks(name, count, scenario.with_tokens)
    return register(db, collection, callbacks) if scenario.with_tokens else callbacks


def _env(scenario: Scenario, emulator_host: str, collection: str) -> dict[str, str]:
    return {
        "FIRESTORE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "CALLBACKS_COLLECTION": collection,
        **scenario.env,
    }


def error_causes(log_entries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Count the ``error`` (else the message) of every 5xx line the function logged."""
    return dict(
        Counter(
            str(entry.get("error") or entry.get("message") or "unknown")
            for entry in log_entries
            if int(entry.get("status", 0)) >= 500
        )
    )
