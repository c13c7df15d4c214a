"""The side-by-side comparison: ours against the seed, a fresh database per round, best of N.

The full ingest run (bench.ingest.run) measures every scenario once, on one
emulator whose store grows as the run goes on (the npm emulator's creates are
O(n) in the documents it holds, so whoever runs later pays more). This one
compares the designs under equal conditions, for the ratios issue #12 sets
as targets:

- every round starts a fresh emulator (an empty database), and runs the three
  scenarios in a rotated order, so no scenario is always first or last;
- each scenario's figures are its best round: the most callbacks/s, the
  lowest p99 and the lowest server CPU per callback, each taken separately
  (noise on a shared 2-core machine only ever makes a round worse).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.ingest.run import SCENARIOS, IngestConfig, ScenarioResult, run_scenario
from bench.ingest.server import DEPLOYED_CONCURRENCY, ServerSettings
from bench.procstat import pid_listening_on
from local.environment import environment
from local.firestore_emulator import ENV_HOST, FirestoreEmulator

# Each ratio of ours to the seed must stay within its target (issue #12).
THROUGHPUT_AT_LEAST = 1.0
P99_AT_MOST = 1.2
CPU_AT_MOST = 1.3


@dataclass(frozen=True)
class SideBySideConfig:
    callbacks: int = 2000
    clients: int = 20
    rounds: int = 3
    server: ServerSettings = field(
        default_factory=lambda: ServerSettings(threads=DEPLOYED_CONCURRENCY)
    )


@dataclass
class Best:
    """One scenario's best figures over the rounds."""

    key: str
    label: str
    throughput: float
    p99_ms: float
    server_cpu_ms: float | None
    server_errors: int
    ok: bool


def run_side_by_side(
    config: SideBySideConfig, log: Callable[[str], None] = print
) -> tuple[list[Best], list[list[ScenarioResult]]]:
    """Every round's results, and each scenario's best figures."""
    ingest = IngestConfig(
        callbacks=config.callbacks, clients=config.clients, servers=(config.server,)
    )
    rounds: list[list[ScenarioResult]] = []
    for number in range(config.rounds):
        order = SCENARIOS[number % len(SCENARIOS) :] + SCENARIOS[: number % len(SCENARIOS)]
        log(f"side by side, round {number + 1} of {config.rounds} (fresh emulator)")
        # Always a new emulator, even if FIRESTORE_EMULATOR_HOST names one.
        with FirestoreEmulator() as fresh, environment({ENV_HOST: fresh.host}):
            pid = pid_listening_on(int(fresh.host.rsplit(":", 1)[1]))
            results = [
                run_scenario(s, config.server, ingest, fresh.host, pid, f"sbs{number}", log)
                for s in order
            ]
        rounds.append(results)
    return [_best(scenario.key, rounds) for scenario in SCENARIOS], rounds


def _best(key: str, rounds: Sequence[Sequence[ScenarioResult]]) -> Best:
    mine = [r for results in rounds for r in results if r.scenario.key == key]
    cpu = [r.server_cpu_seconds / r.phase.sent * 1000 for r in mine if r.server_cpu_seconds]
    return Best(
        key=key,
        label=mine[0].scenario.label,
        throughput=max(r.phase.throughput for r in mine),
        p99_ms=min(r.latency_ms(99) for r in mine),
        server_cpu_ms=min(cpu) if cpu else None,
        server_errors=sum(r.server_errors for r in mine),
        ok=all(r.ok for r in mine),
    )


def targets_met(best: Sequence[Best]) -> dict[str, dict[str, bool]]:
    """For each of our scenarios: which of the three ratio targets it meets."""
    seed = next(b for b in best if b.key == "seed")
    met: dict[str, dict[str, bool]] = {}
    for b in best:
        if b.key == "seed":
            continue
        cpu_ok = (
            b.server_cpu_ms is not None
            and seed.server_cpu_ms is not None
            and b.server_cpu_ms <= CPU_AT_MOST * seed.server_cpu_ms
        )
        met[b.key] = {
            "throughput": b.throughput >= THROUGHPUT_AT_LEAST * seed.throughput,
            "p99": b.p99_ms <= P99_AT_MOST * seed.p99_ms,
            "cpu": cpu_ok,
        }
    return met


def side_by_side_section(config: SideBySideConfig, best: Sequence[Best]) -> str:
    seed = next(b for b in best if b.key == "seed")
    met = targets_met(best)

    def ratio(value: float | None, base: float | None, ok: bool | None) -> str:
        if value is None or not base:
            return "n/a"
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        return f"{value / base:.2f}{mark}"

    lines = [
        "### Side by side: ours against the seed (targets of issue #12)",
        "",
        f"{config.callbacks} callbacks per scenario from {config.clients} clients on "
        f"{config.server.workers} worker x {config.server.threads} threads; "
        f"{config.rounds} rounds, each on a fresh emulator (an empty database) with the "
        "scenarios in a rotated order; each figure is the scenario's best round. "
        f"Targets: throughput at least {THROUGHPUT_AT_LEAST:.1f}x the seed's, p99 at most "
        f"{P99_AT_MOST:.1f}x, server CPU per callback at most {CPU_AT_MOST:.1f}x.",
        "",
        "| scenario | callbacks/s | vs seed | p99 ms | vs seed | server CPU ms/cb | vs seed "
        "| 5xx (all rounds) | read back |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b in best:
        checks = met.get(b.key, {})
        cpu = f"{b.server_cpu_ms:.2f}" if b.server_cpu_ms is not None else "n/a"
        lines.append(
            f"| {b.label} | {b.throughput:.0f} "
            f"| {ratio(b.throughput, seed.throughput, checks.get('throughput'))} "
            f"| {b.p99_ms:.1f} | {ratio(b.p99_ms, seed.p99_ms, checks.get('p99'))} "
            f"| {cpu} | {ratio(b.server_cpu_ms, seed.server_cpu_ms, checks.get('cpu'))} "
            f"| {b.server_errors} | {'ok' if b.ok else 'FAIL'} |"
        )
    return "\n".join(lines)
