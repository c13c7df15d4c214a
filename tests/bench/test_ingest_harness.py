"""bench.ingest at a tiny size: the harness still runs and its invariants hold.

Asserts invariants only (nothing lost, every answer 200, counts consistent), never
timings: speed belongs to `make bench`.
"""

from __future__ import annotations

import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from bench.ingest.callbacks import make_callbacks
from bench.ingest.run import IngestConfig, error_causes, run_ingest, run_profiles
from bench.ingest.server import ServerSettings
from bench.ingest.verify import check_ours, check_seed, verify_collection

CALLBACKS = 8
CLIENTS = 3


@pytest.fixture(scope="module")
def results(firestore_emulator_host: str) -> list:
    config = IngestConfig(
        callbacks=CALLBACKS,
        clients=CLIENTS,
        servers=(ServerSettings(workers=1, threads=2),),
        phase_deadline_s=60,
    )
    return run_ingest(config, firestore_emulator_host, None, log=lambda _m: None)


def test_every_scenario_runs_and_stores_each_callback_once(results) -> None:
    assert [r.scenario.key for r in results] == ["seed", "registered", "unregistered"]
    for r in results:
        assert r.ok, (r.scenario.key, r.phase.statuses, r.verification)
        assert r.phase.sent == CALLBACKS
        assert dict(r.phase.statuses) == {"200": CALLBACKS}
        assert len(r.phase.latencies) == CALLBACKS
        # Warm-up callbacks (one per client) are verified too.
        assert r.verification.expected == r.verification.stored == CALLBACKS + CLIENTS
        assert r.server_cpu_seconds is not None and r.server_cpu_seconds >= 0


def _client(gcp_project: str) -> firestore.Client:
    return firestore.Client(project=gcp_project, credentials=AnonymousCredentials())


def test_read_back_finds_a_lost_callback(firestore_emulator_host, gcp_project) -> None:
    db = _client(gcp_project)
    callbacks = make_callbacks("lost", 3, with_tokens=False)
    collection = "bench-test-lost"
    for cb in callbacks[:2]:
        db.collection(collection).document(cb.doc_id).set({"responded": True, "value": cb.value})
    result = verify_collection(db, collection, callbacks, check_seed)
    assert not result.ok
    assert result.lost == [callbacks[2].doc_id]


def test_read_back_finds_duplicates_and_mangled_payloads(
    firestore_emulator_host, gcp_project
) -> None:
    db = _client(gcp_project)
    first, second = make_callbacks("dup", 2, with_tokens=False)
    collection = "bench-test-dup"
    # The first callback's value stored under both ids: a duplicate, and the second
    # callback's own payload is lost in the overwrite (a mismatch).
    for cb in (first, second):
        db.collection(collection).document(cb.doc_id).set({"responded": True, "value": first.value})
    db.collection(collection).document("stray").set({"responded": True, "value": "x"})
    result = verify_collection(db, collection, [first, second], check_seed)
    assert result.duplicated == [first.doc_id]
    assert [m.split(":")[0] for m in result.mismatched] == [second.doc_id]
    assert result.unexpected == ["stray"]


def test_our_document_check_wants_the_exact_payload() -> None:
    (cb,) = make_callbacks("check", 1, with_tokens=True)
    good = {
        "state": "RECEIVED",
        "responded": True,
        "value": cb.value,
        "payload": json.dumps({"body": cb.body, "value": cb.value, "query": {}}),
    }
    assert check_ours(cb, good) is None
    assert check_ours(cb, {**good, "state": "WAITING"}) is not None
    assert check_ours(cb, {**good, "payload": '{"body": {}, "value": null}'}) is not None


def test_cost_breakdown_counts_the_firestore_rpcs(firestore_emulator_host) -> None:
    config = IngestConfig(profile_callbacks=4)
    profiles = {
        p.key: p for p in run_profiles(config, firestore_emulator_host, log=lambda _m: None)
    }
    assert set(profiles) == {"seed", "registered", "unregistered"}
    for p in profiles.values():
        assert p.statuses == {200: p.callbacks}
        assert p.wall_ms > 0 and p.cpu_ms >= 0
    # The seed writes blindly: one Commit. Ours too: its preconditions decide.
    for key in ("seed", "registered", "unregistered"):
        assert profiles[key].rpcs_per_callback == {"Commit": 1.0}, key


def test_5xx_causes_are_read_from_the_function_log(tmp_path) -> None:
    log = tmp_path / "function.log"
    log.write_text(
        '{"status": 200, "message": "callback stored (200)"}\n'
        '{"status": 500, "error": "ServiceUnavailable: 503 down"}\n'
        "gunicorn noise that is not JSON\n"
        '{"status": 503, "message": "callback unavailable (503)"}\n'
        '{"status": 500, "error": "ServiceUnavailable: 503 down"}\n'
    )
    assert error_causes(log) == {
        "ServiceUnavailable: 503 down": 2,
        "callback unavailable (503)": 1,
    }


def test_the_headline_server_shape_is_the_deployed_one():
    from bench.ingest.run import IngestConfig
    from infra.settings import defaults

    headline = IngestConfig().servers[0]
    assert (headline.workers, headline.threads) == (1, defaults()["functionConcurrency"])


def test_side_by_side_rounds_use_fresh_databases_and_report_the_best() -> None:
    from bench.ingest.side_by_side import SideBySideConfig, run_side_by_side, side_by_side_section

    config = SideBySideConfig(callbacks=20, clients=2, rounds=2)
    best, rounds = run_side_by_side(config, log=lambda _m: None)

    assert len(rounds) == 2
    # Rotated: the second round starts with the scenario that was second.
    assert [r.scenario.key for r in rounds[0]] == ["seed", "registered", "unregistered"]
    assert [r.scenario.key for r in rounds[1]] == ["registered", "unregistered", "seed"]
    for results in rounds:
        for r in results:
            # A fresh database: the collection holds exactly this scenario's callbacks.
            assert r.verification.ok and r.verification.stored == 22, r.verification.summary()
    by_key = {b.key: b for b in best}
    assert by_key["seed"].throughput == max(
        r.phase.throughput for results in rounds for r in results if r.scenario.key == "seed"
    )
    assert "Side by side" in side_by_side_section(config, best)


def test_targets_compare_each_ratio_with_its_limit() -> None:
    from bench.ingest.side_by_side import Best, targets_met

    def best(key: str, throughput: float, p99: float, cpu: float) -> Best:
        return Best(key, key, throughput, p99, cpu, server_errors=0, ok=True)

    met = targets_met(
        [
            best("seed", 100.0, 10.0, 1.0),
            best("registered", 100.0, 12.0, 1.3),  # exactly at every limit
            best("unregistered", 99.0, 12.1, 1.31),  # just past every limit
        ]
    )

    assert met["registered"] == {"throughput": True, "p99": True, "cpu": True}
    assert met["unregistered"] == {"throughput": False, "p99": False, "cpu": False}
