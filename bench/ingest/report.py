"""Markdown tables for bench.ingest results."""

from __future__ import annotations

from collections.abc import Sequence

from bench.ingest.profile import PathProfile, profile_table
from bench.ingest.run import IngestConfig, ScenarioResult


def _per_callback_ms(cpu_seconds: float | None, sent: int) -> str:
    if cpu_seconds is None or sent == 0:
        return "n/a"
    return f"{cpu_seconds / sent * 1000:.2f}"


def _statuses(result: ScenarioResult) -> str:
    text = ", ".join(f"{k}: {v}" for k, v in sorted(result.phase.statuses.items()))
    # Resent on a fresh connection after the server closed an idle keep-alive one.
    if result.phase.reconnects:
        text += f" ({result.phase.reconnects} resent after a closed keep-alive)"
    return text


def ingest_table(results: Sequence[ScenarioResult]) -> str:
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
        verdict = "ok" if r.verification.ok else "FAIL"
        lines.append(
            f"| {r.scenario.label} | {r.server.workers} x {r.server.threads} "
            f"| {r.phase.throughput:.0f} | {ratio} "
            f"| {r.latency_ms(50):.1f} | {r.latency_ms(95):.1f} | {r.latency_ms(99):.1f} "
            f"| {_statuses(r)} | {_per_callback_ms(r.server_cpu_seconds, r.phase.sent)} "
            f"| {_per_callback_ms(r.emulator_cpu_seconds, r.phase.sent)} "
            f"| {_per_callback_ms(r.phase.client_cpu_seconds, r.phase.sent)} "
            f"| {verdict}: {r.verification.summary()} |"
        )
    return "\n".join(lines)


def ingest_section(
    config: IngestConfig,
    results: Sequence[ScenarioResult],
    profiles: Sequence[PathProfile] = (),
) -> str:
    shapes = ", ".join(f"{s.workers} worker x {s.threads} threads" for s in config.servers)
    wall = sum(r.phase.wall_seconds for r in results)
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
            ingest_table(results),
            "",
            "CPU columns are CPU seconds per callback over the timed phase: server = "
            "gunicorn arbiter + worker, emulator = the Node process, client = the load "
            "generator. Read back = every document of the scenario's collection compared "
            "with what was sent (warm-up included).",
            *_causes(results),
            *(_profile_part(config, profiles) if profiles else []),
        ]
    )


def _causes(results: Sequence[ScenarioResult]) -> list[str]:
    lines = [
        f"- {r.scenario.label} ({r.server.workers} x {r.server.threads}): {n} x `{cause}`"
        for r in results
        for cause, n in r.error_causes.items()
    ]
    return ["", "5xx answers, as the function logged them:", "", *lines] if lines else []


def _profile_part(config: IngestConfig, profiles: Sequence[PathProfile]) -> list[str]:
    return [
        "",
        "### Where a callback's time goes",
        "",
        f"Each receiver in-process (functions-framework's Flask app and test client, no "
        f"gunicorn), {config.profile_callbacks} callbacks one at a time against the same "
        "emulator. Wall and CPU from a plain pass; the split (cProfile cumulative time of "
        "each part, as a share of the request, scaled to the plain pass's wall time) "
        "from a second pass.",
        "",
        profile_table(list(profiles)),
    ]
