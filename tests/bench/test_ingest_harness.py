"""bench.ingest at a tiny size: each mode still runs, its invariants hold, its tables stay.

Asserts invariants only (nothing lost, every answer 200, counts consistent), never
timings: speed belongs to `make bench`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from contextlib import contextmanager

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from bench import scale
from bench.ingest import harness
from bench.ingest.__main__ import main as ingest_main
from bench.ingest.callbacks import make_callbacks
from bench.ingest.harness import DEFAULTS, IngestConfig, error_causes, run_ingest
from bench.ingest.report import Best, best_of, ingest_report, targets_met
from bench.ingest.server import ServerSettings
from bench.ingest.verify import check_ours, check_seed, verify_collection
from bench.stack import emulator as real_emulator

CALLBACKS = 8
CLIENTS = 3
ALL = ["seed", "registered", "unregistered"]


@pytest.fixture(scope="module")
def scenarios(firestore_emulator_host: str):
    config = IngestConfig(
        callbacks=CALLBACKS,
        clients=CLIENTS,
        servers=(ServerSettings(workers=1, threads=2),),
        phase_deadline_s=60,
    )
    return run_ingest(config, log=lambda _m: None)


@pytest.fixture(scope="module")
def profile(firestore_emulator_host: str):
    return run_ingest(dataclasses.replace(DEFAULTS["profile"], callbacks=4), log=lambda _m: None)


@pytest.fixture(scope="module")
def side_by_side(firestore_emulator_host: str):
    """Two tiny rounds, and for each the emulator it ran on: (fresh?, host)."""
    emulators = []

    @contextmanager
    def seen(fresh: bool = False):
        with real_emulator(fresh=fresh) as (host, pid):
            emulators.append((fresh, host))
            yield host, pid

    config = dataclasses.replace(DEFAULTS["side-by-side"], callbacks=20, clients=2, rounds=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "emulator", seen)
        run = run_ingest(config, log=lambda _m: None)
    run.emulators = emulators
    return run


def test_every_scenario_runs_and_stores_each_callback_once(scenarios) -> None:
    assert scenarios.ok
    (results,) = scenarios.rounds
    assert [r.scenario.key for r in results] == ALL
    for r in results:
        assert r.ok, (r.scenario.key, r.phase.statuses, r.verification)
        assert r.phase.sent == CALLBACKS
        assert dict(r.phase.statuses) == {"200": CALLBACKS}
        assert len(r.phase.latencies) == CALLBACKS
        # Warm-up callbacks (one per client) are verified too.
        assert r.verification.expected == r.verification.stored == CALLBACKS + CLIENTS
        assert r.server_cpu_seconds is not None and r.server_cpu_seconds >= 0


def test_a_5xx_fails_the_run(scenarios) -> None:
    seed = scenarios.rounds[0][0]
    failed = dataclasses.replace(
        seed,
        phase=dataclasses.replace(seed.phase, statuses=seed.phase.statuses + Counter({"503": 1})),
    )
    assert seed.ok and not failed.ok
    assert failed.server_errors == 1
    assert not dataclasses.replace(scenarios, rounds=[[failed]]).ok


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


def test_cost_breakdown_counts_the_firestore_rpcs(profile) -> None:
    profiles = {p.key: p for p in profile.profiles}
    assert set(profiles) == set(ALL)
    for p in profiles.values():
        assert p.callbacks == 4
        assert p.statuses == {200: 4}
        assert p.wall_ms > 0 and p.cpu_ms >= 0
    # The seed writes blindly: one Commit. Ours too: its preconditions decide.
    for key in ALL:
        assert profiles[key].rpcs_per_callback == {"Commit": 1.0}, key
    # The split found our own code's parts, by the names the receiver has today.
    assert {"parse request + build payload", "JSON log line"} <= set(
        profiles["registered"].parts_ms
    )


def test_5xx_causes_are_read_from_the_function_log() -> None:
    entries = [
        {"status": 200, "message": "callback stored (200)"},
        {"status": 500, "error": "ServiceUnavailable: 503 down"},
        {"status": 503, "message": "callback unavailable (503)"},
        {"status": 500, "error": "ServiceUnavailable: 503 down"},
    ]
    assert error_causes(entries) == {
        "ServiceUnavailable: 503 down": 2,
        "callback unavailable (503)": 1,
    }


def test_the_headline_server_shape_is_the_deployed_one():
    from infra.settings import defaults

    for mode in ("scenarios", "side-by-side"):
        headline = DEFAULTS[mode].servers[0]
        assert (headline.workers, headline.threads) == (1, defaults()["functionConcurrency"])


def test_side_by_side_rounds_use_fresh_databases_in_rotated_order(
    side_by_side, firestore_emulator_host
) -> None:
    assert side_by_side.ok
    # Each round on an emulator of its own, not the one the session (or a run) shares.
    assert [fresh for fresh, _host in side_by_side.emulators] == [True, True]
    assert firestore_emulator_host not in {host for _fresh, host in side_by_side.emulators}
    rounds = side_by_side.rounds
    assert len(rounds) == 2
    # Rotated: the second round starts with the scenario that was second.
    assert [r.scenario.key for r in rounds[0]] == ALL
    assert [r.scenario.key for r in rounds[1]] == ["registered", "unregistered", "seed"]
    for results in rounds:
        for r in results:
            # A fresh database: the collection holds exactly this scenario's callbacks.
            assert r.verification.ok and r.verification.stored == 22, r.verification.summary()


def test_side_by_side_reports_each_scenarios_best_round(side_by_side) -> None:
    report = ingest_report([side_by_side])
    seed_row = next(line for line in report.splitlines() if line.startswith("| (c) seed"))
    best = max(r.phase.throughput for r in side_by_side.results if r.scenario.key == "seed")
    assert seed_row.split("|")[2].strip() == f"{best:.0f}"


def test_targets_compare_each_ratio_with_its_limit() -> None:
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


def _tables(markdown: str) -> list[str]:
    """Each heading, and each table's header row (its columns), in order."""
    lines = markdown.splitlines()
    return [
        line
        for n, line in enumerate(lines)
        if line.startswith("#") or (line.startswith("|") and not lines[n - 1].startswith("|"))
    ]


def _profile_rows(markdown: str) -> list[str]:
    """The cost breakdown's row names: a part the profile no longer finds is a row less."""
    lines = markdown.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("| per callback"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def test_the_modes_write_every_ingest_table_of_results_md(
    scenarios, profile, side_by_side, repo_root
) -> None:
    tracked = (repo_root / "bench" / "RESULTS.md").read_text()
    ingest_part = tracked[tracked.index("## bench.ingest") : tracked.index("## bench.wait")]

    written = ingest_report([scenarios, profile, side_by_side])

    assert _tables(written) == _tables(ingest_part)
    assert _profile_rows(written) == _profile_rows(ingest_part)
    # Every row a scenario's, every profile row a part: nothing left empty.
    assert len(re.findall(r"^\| \(\w\) ", written, re.MULTILINE)) == 3 + 3


def test_the_command_line_runs_one_mode_and_prints_its_table(firestore_emulator_host, capsys):
    assert ingest_main(["--mode", "profile", "--callbacks", "2", "--scenarios", "seed"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("### Where a callback's time goes")
    assert "| statuses | 200: 2 |" in out


def test_the_capacity_model_reads_the_side_by_side_as_written(
    scenarios, profile, side_by_side, repo_root, tmp_path
) -> None:
    tracked = (repo_root / "bench" / "RESULTS.md").read_text()
    start, end = tracked.index("## bench.ingest"), tracked.index("## bench.wait")
    results = tmp_path / "RESULTS.md"
    written = ingest_report([scenarios, profile, side_by_side])
    results.write_text(tracked[:start] + written + "\n\n" + tracked[end:])

    measured = scale.read_results(results)

    for key in ALL:
        best = best_of(side_by_side.results, key)
        assert measured.cpu_ms[key] == pytest.approx(best.server_cpu_ms, abs=0.005), key


def test_side_by_side_scenarios_take_turns_slice_by_slice(firestore_emulator_host) -> None:
    sent: list[tuple[int, list[str]]] = []
    real_run_phase = harness.run_phase

    def recording(port, callbacks, clients, deadline_s):
        sent.append((port, [c.doc_id for c in callbacks]))
        return real_run_phase(port, callbacks, clients, deadline_s)

    config = dataclasses.replace(
        DEFAULTS["side-by-side"], callbacks=10, clients=2, rounds=1, slices=5
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "run_phase", recording)
        run = run_ingest(config, log=lambda _m: None)

    assert run.ok
    warm_ups, timed = sent[:3], sent[3:]
    assert [len(ids) for _port, ids in warm_ups] == [2, 2, 2]
    ports = [port for port, _ids in warm_ups]  # seed, registered, unregistered
    # Five turns, each scenario in the round's order, two callbacks a slice.
    assert [port for port, _ids in timed] == ports * 5
    assert all(len(ids) == 2 for _port, ids in timed)
    for port, result in zip(ports, run.rounds[0], strict=True):
        ids = [i for p, slice_ids in timed if p == port for i in slice_ids]
        assert len(ids) == len(set(ids)) == 10  # every callback once
        assert result.phase.sent == 10 and len(result.phase.latencies) == 10
        assert result.verification.ok and result.verification.stored == 12
