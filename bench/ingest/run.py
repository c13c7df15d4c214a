"""Run the three ingest scenarios, one server at a time, against one Firestore emulator.

(a) registered: function/main.py with its defaults; every callback was registered
    directly in Firestore before the timed phase as getCallbackURL does (the
    callback document, WAITING + token, and its key document), and is sent to
    the URL getCallbackURL returns (with reg).
(b) unregistered: function/main.py with CALLBACKS_ALLOW_UNREGISTERED=true and no
    registration.
(c) seed: bench/ingest/seed_function, the original sample's one unconditional set.

All three get the same requests (POST with a small JSON body and a ``value`` query
parameter; the seed ignores the body as the sample did), each scenario writes to its
own collection, and every scenario is read back and verified after its phase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from bench.ingest.callbacks import Callback, make_callbacks
from bench.ingest.loadgen import PhaseResult, run_phase
from bench.ingest.profile import PathProfile, profile_path
from bench.ingest.server import DEPLOYED_CONCURRENCY, ServerSettings, serve_function
from bench.ingest.verify import DocCheck, Verification, check_ours, check_seed, verify_collection
from bench.procstat import tree_cpu_seconds
from bench.stats import percentile
from local.registration import Registration, rfc3339

REPO = Path(__file__).resolve().parents[2]
FUNCTION_SOURCE = REPO / "function" / "main.py"
SEED_SOURCE = Path(__file__).resolve().parent / "seed_function" / "main.py"
_BATCH = 400  # Firestore commits take at most 500 writes


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
    callbacks: int = 5000
    clients: int = 50
    # Each server shape runs every scenario; the first is the headline table:
    # the deployed shape, one worker with a thread per concurrent request.
    servers: tuple[ServerSettings, ...] = (
        ServerSettings(threads=DEPLOYED_CONCURRENCY),
        ServerSettings(threads=1),
    )
    phase_deadline_s: float = 900.0
    request_timeout_s: float = 30.0
    project: str = "bench-callbacks"
    scenarios: tuple[str, ...] = ("seed", "registered", "unregistered")
    # Callbacks per scenario for the one-at-a-time cost breakdown (0: skip it).
    profile_callbacks: int = 0


@dataclass
class ScenarioResult:
    scenario: Scenario
    server: ServerSettings
    phase: PhaseResult
    server_cpu_seconds: float | None
    emulator_cpu_seconds: float | None
    verification: Verification
    warmup_statuses: dict[str, int]
    # The function's own account of its 5xx answers: error message -> count.
    error_causes: dict[str, int] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        """5xx answers, transport errors and unsent callbacks: all fail the run."""
        return sum(
            n
            for status, n in self.phase.statuses.items()
            if status.startswith("5") or status in ("transport error", "unsent")
        ) + sum(
            n
            for status, n in self.warmup_statuses.items()
            if status.startswith("5") or status in ("transport error", "unsent")
        )

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and self.verification.ok

    def latency_ms(self, pct: float) -> float:
        return percentile(self.phase.latencies, pct) * 1000


def register(db: firestore.Client, collection: str, callbacks: list[Callback]) -> list[Callback]:
    """Register each callback as getCallbackURL does (both documents), in batches.

    Returns the callbacks with the URL getCallbackURL would have returned
    (``reg``: the callback document's creation time), so the receiver can
    take its one-Commit path.
    """
    now = dt.datetime.now(dt.UTC)
    ttl = dt.timedelta(days=7)
    registered: list[Callback] = []
    # Two documents per callback.
    per_batch = _BATCH // 2
    for start in range(0, len(callbacks), per_batch):
        chunk = callbacks[start : start + per_batch]
        batch = db.batch()
        for cb in chunk:
            assert cb.token is not None
            for document_id, fields in (
                Registration(cb.doc_id, cb.token).documents(now, ttl).items()
            ):
                batch.create(db.collection(collection).document(document_id), fields)
        results = batch.commit()
        for n, cb in enumerate(chunk):
            # The callback document is the first of the callback's two writes.
            created = rfc3339(results[2 * n].update_time)
            registered.append(dataclasses.replace(cb, registered_at=created))
    return registered


def run_scenario(
    scenario: Scenario,
    server_settings: ServerSettings,
    config: IngestConfig,
    emulator_host: str,
    emulator_pid: int | None,
    run_tag: str,
    log: Callable[[str], None],
) -> ScenarioResult:
    collection = f"bench-{run_tag}-{scenario.key}-t{server_settings.threads}"
    db = firestore.Client(project=config.project, credentials=AnonymousCredentials())
    # One warm-up callback per client opens every connection and the function's
    # Firestore channel before timing; they are verified like the timed ones.
    warmup = make_callbacks(f"{scenario.key}-warm", config.clients, scenario.with_tokens)
    timed = make_callbacks(scenario.key, config.callbacks, scenario.with_tokens)
    if scenario.with_tokens:
        warmup = register(db, collection, warmup)
        timed = register(db, collection, timed)
    env = _scenario_env(scenario, config, emulator_host, collection)
    log(
        f"{scenario.label}, {server_settings.workers} worker x {server_settings.threads} "
        f"threads: {config.callbacks} callbacks from {config.clients} clients"
    )
    with serve_function(scenario.source, env, server_settings) as server:
        warm = run_phase(
            server.host, server.port, warmup, config.clients, 60.0, config.request_timeout_s
        )
        server_cpu = tree_cpu_seconds(server.pid)
        emulator_cpu = tree_cpu_seconds(emulator_pid)
        phase = run_phase(
            server.host,
            server.port,
            timed,
            config.clients,
            config.phase_deadline_s,
            config.request_timeout_s,
        )
        server_after = tree_cpu_seconds(server.pid)
        emulator_after = tree_cpu_seconds(emulator_pid)
        causes = error_causes(Path(server.log_path))
    verification = verify_collection(db, collection, warmup + timed, scenario.check)
    db.close()
    result = ScenarioResult(
        scenario=scenario,
        server=server_settings,
        phase=phase,
        server_cpu_seconds=_delta(server_cpu, server_after),
        emulator_cpu_seconds=_delta(emulator_cpu, emulator_after),
        verification=verification,
        warmup_statuses=dict(warm.statuses),
        error_causes=causes,
    )
    log(
        f"  {phase.throughput:.0f} callbacks/s, p50 {result.latency_ms(50):.1f} ms, "
        f"statuses {dict(phase.statuses)}; {verification.summary()}"
    )
    return result


def _scenario_env(
    scenario: Scenario, config: IngestConfig, emulator_host: str, collection: str
) -> dict[str, str]:
    return {
        "FIRESTORE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": config.project,
        "CALLBACKS_COLLECTION": collection,
        **scenario.env,
    }


def run_profiles(
    config: IngestConfig,
    emulator_host: str,
    emulator_pid: int | None = None,
    log: Callable[[str], None] = print,
) -> list[PathProfile]:
    """Each scenario's cost per callback, one request at a time (see bench.ingest.profile)."""
    run_tag = uuid.uuid4().hex[:8]
    db = firestore.Client(project=config.project, credentials=AnonymousCredentials())
    profiles = []
    for scenario in (s for s in SCENARIOS if s.key in config.scenarios):
        collection = f"bench-{run_tag}-profile-{scenario.key}"
        n = config.profile_callbacks
        plain = make_callbacks(f"{scenario.key}-plain", n + 5, scenario.with_tokens)
        profiled = make_callbacks(f"{scenario.key}-prof", n, scenario.with_tokens)
        if scenario.with_tokens:
            plain = register(db, collection, plain)
            profiled = register(db, collection, profiled)
        log(f"profiling {scenario.label}: {n} callbacks, one at a time")
        profiles.append(
            profile_path(
                scenario.key,
                scenario.label,
                scenario.source,
                _scenario_env(scenario, config, emulator_host, collection),
                plain,
                profiled,
                emulator_pid,
            )
        )
    db.close()
    return profiles


def error_causes(log: Path) -> dict[str, int]:
    """Count the ``error`` of every 5xx line the function logged (one JSON line a request)."""
    causes: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"status": 5' not in line:
            continue  # cheap filter: most lines are 200s
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and int(entry.get("status", 0)) >= 500:
            cause = str(entry.get("error") or entry.get("message") or "unknown")
            causes[cause] = causes.get(cause, 0) + 1
    return causes


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def run_ingest(
    config: IngestConfig,
    emulator_host: str,
    emulator_pid: int | None,
    log: Callable[[str], None] = print,
) -> list[ScenarioResult]:
    """Every configured scenario on every server shape; the caller decides pass/fail from .ok."""
    run_tag = uuid.uuid4().hex[:8]
    chosen = [s for s in SCENARIOS if s.key in config.scenarios]
    return [
        run_scenario(s, server, config, emulator_host, emulator_pid, run_tag, log)
        for server in config.servers
        for s in chosen
    ]
