"""The Markdown of bench.ingest: one part per mode, in the order the runs are given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.ingest.harness import IngestRun, ScenarioResult
from bench.ingest.profile import PARTS, REST, PathProfile

# Each ratio of ours to the seed must stay within its target (issue #12).
THROUGHPUT_AT_LEAST = 1.0
P99_AT_MOST = 1.2
CPU_AT_MOST = 1.3


def ingest_report(runs: Sequence[IngestRun]) -> str:
    parts = {"scenarios": _scenarios, "profile": _profile, "side-by-side": _side_by_side}
    return "\n\n".join(parts[run.config.mode](run) for run in runs)


# --- scenarios ---------------------------------------------------------------------
def _scenarios(run: IngestRun) -> str:
    config, results = run.config, run.results
    shapes = ", ".join(f"{s.workers} worker x {s.threads} threads" for s in config.servers)
    wall = sum(r.phase.wall_seconds for r in results)
    causes = [
        f"- {r.scenario.label} ({r.server.workers} x {r.server.threads}): {n} x `{cause}`"
        for r in results
        for cause, n in r.error_causes.items()
    ]
    return "\n".join(
        [
            "## bench.ingest: callbacks under load",
            "",
            f"{config.callbacks} callbacks per scenario from {config.clients} concurrent "
            f"keep-alive clients (closed loop), plus {config.clients} untimed warm-up "
            f"callbacks; `python -m functions_framework` (gunicorn gthread; server = "
            f"WORKERS x THREADS: {shapes}) on 127.0.0.1 against the npm Firestore "
            f'emulator. Timed phases took {wall:.0f} s in all. "vs seed" is the '
            "throughput ratio to the seed-equivalent on the same server shape.",
            "",
            scenarios_table(results),
            "",
            "CPU columns are CPU seconds per callback over the timed phase: server = "
            "gunicorn arbiter + worker, emulator = the Node process, client = the load "
            "generator. Read back = every document of the scenario's collection compared "
            "with what was sent (warm-up included).",
            *(["", "5xx answers, as the function logged them:", "", *causes] if causes else []),
        ]
    )


def scenarios_table(results: Sequence[ScenarioResult]) -> str:
    lines = [
        "| scenario | server | callbacks/s | vs seed | p50 ms | p95 ms | p99 ms | statuses "
        "| server CPU ms/cb | emulator CPU ms/cb | client CPU ms/cb | read back |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        # The baseline is the seed on the same server shape.
        seed = next((x for x in results if x.scenario.key == "seed" and x.server == r.server), None)
        ratio = (
            f"{r.phase.throughput / seed.phase.throughput:.2f}"
            if seed is not None and seed.phase.throughput > 0
            else "n/a"
        )
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.phase.statuses.items()))
        if r.phase.reconnects:  # resent on a fresh connection after the server closed one
            statuses += f" ({r.phase.reconnects} resent after a closed keep-alive)"
        verdict = "ok" if r.verification.ok else "FAIL"
        lines.append(
            f"| {r.scenario.label} | {r.server.workers} x {r.server.threads} "
            f"| {r.phase.throughput:.0f} | {ratio} "
            f"| {r.latency_ms(50):.1f} | {r.latency_ms(95):.1f} | {r.latency_ms(99):.1f} "
            f"| {statuses} | {_per_callback_ms(r.server_cpu_seconds, r.phase.sent)} "
            f"| {_per_callback_ms(r.emulator_cpu_seconds, r.phase.sent)} "
            f"| {_per_callback_ms(r.phase.client_cpu_seconds, r.phase.sent)} "
            f"| {verdict}: {r.verification.summary()} |"
        )
    return "\n".join(lines)


def _per_callback_ms(cpu_seconds: float | None, sent: int) -> str:
    if cpu_seconds is None or sent == 0:
        return "n/a"
    return f"{cpu_seconds / sent * 1000:.2f}"


# --- profile -----------------------------------------------------------------------
def _profile(run: IngestRun) -> str:
    return "\n".join(
        [
            "### Where a callback's time goes",
            "",
            f"Each receiver in-process (functions-framework's Flask app and test client, no "
            f"gunicorn), {run.config.callbacks} callbacks one at a time against the same "
            "emulator. Wall and CPU from a plain pass; the split (cProfile cumulative time of "
            "each part, as a share of the request, scaled to the plain pass's wall time) "
            "from a second pass.",
            "",
            profile_table(run.profiles),
        ]
    )


def profile_table(profiles: Sequence[PathProfile]) -> str:
    """Rows: costs; columns: scenarios."""
    header = "| per callback, one at a time | " + " | ".join(p.label for p in profiles) + " |"
    lines = [header, "|---|" + "---:|" * len(profiles)]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    row("wall ms", [f"{p.wall_ms:.2f}" for p in profiles])
    row("CPU ms, receiver (Python process, all threads)", [f"{p.cpu_ms:.2f}" for p in profiles])
    row(
        "CPU ms, emulator (Node)",
        [f"{p.emulator_cpu_ms:.2f}" if p.emulator_cpu_ms is not None else "n/a" for p in profiles],
    )
    row("Firestore RPCs", [f"{sum(p.rpcs_per_callback.values()):.1f}" for p in profiles])
    for part in [part for part, _suffix, _names in PARTS] + [REST]:
        if any(part in p.parts_ms for p in profiles):
            row(
                f"… {part} (wall ms)",
                [f"{p.parts_ms[part]:.2f}" if part in p.parts_ms else "-" for p in profiles],
            )
    row(
        "statuses",
        [", ".join(f"{s}: {n}" for s, n in sorted(p.statuses.items())) for p in profiles],
    )
    return "\n".join(lines)


# --- side by side ------------------------------------------------------------------
@dataclass
class Best:
    """One scenario's best figures over the rounds, each taken separately.

    Noise on a shared 2-core machine only ever makes a round worse.
    """

    key: str
    label: str
    throughput: float
    p99_ms: float
    server_cpu_ms: float | None
    server_errors: int
    ok: bool


def best_of(results: Sequence[ScenarioResult], key: str) -> Best:
    mine = [r for r in results if r.scenario.key == key]
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


def _side_by_side(run: IngestRun) -> str:
    config = run.config
    (server,) = config.servers
    best = [best_of(run.results, s.key) for s in config.chosen]
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
        f"{server.workers} worker x {server.threads} threads; "
        f"{config.rounds} rounds, each on a fresh emulator (an empty database) with the "
        "scenarios in a rotated order"
        + (
            f" and each scenario's callbacks sent in {config.slices} slices, the scenarios "
            "taking turns (so a slower spell of the machine falls on all of them)"
            if config.slices > 1
            else ""
        )
        + "; each figure is the scenario's best round. "
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
