"""python -m ops pending / show against the Firestore emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops import registrations, table

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def registration(state: str, minutes_old: float, **extra: object) -> dict[str, object]:
    created = NOW - timedelta(minutes=minutes_old)
    return {
        "state": state,
        "token": "secret-token",
        "createdAt": created,
        "expireAt": created + timedelta(days=7),
        "forwardUrl": "",
        "form": "",
        **extra,
    }


@pytest.fixture
def collection(firestore_client):
    callbacks = firestore_client.collection("workflow_callbacks")
    documents = {
        "run-a_approve": registration("WAITING", 5, form='{"title": "Go?"}'),
        "run-b_build": registration("RECEIVED", 60, forwardUrl="https://x", payload='{"ok": 1}'),
        "run-c_old": registration("WAITING", 3 * 24 * 60),
        "run-d_done": registration("CONSUMED", 1),
        "run-e_late": registration("EXPIRED", 2),
        # A key document: only expireAt, never listed.
        "run-a_approve.key.abc": {"expireAt": NOW + timedelta(days=7)},
    }
    batch = firestore_client.batch()
    for document_id, fields in documents.items():
        batch.set(callbacks.document(document_id), fields)
    batch.commit()
    return callbacks


def test_pending_lists_open_registrations_newest_first(collection) -> None:
    rows = registrations.pending(collection, now=NOW)
    assert [(row.run_id, row.step, row.state, row.kind, row.delivery) for row in rows] == [
        ("run-a", "approve", "waiting", "page", "poll"),
        ("run-b", "build", "received", "machine", "push"),
        ("run-c", "old", "waiting", "machine", "poll"),
    ]
    text = table.pending(rows, NOW)
    assert text.splitlines()[0].split() == [
        "runID",
        "step",
        "state",
        "kind",
        "delivery",
        "age",
        "expires",
        "in",
    ]
    assert "run-c  old      waiting   machine  poll      3d 0h  4d 0h" in text
    assert "secret-token" not in text


def test_pending_filters_by_state_run_and_age(collection) -> None:
    def ids(**filters: object) -> list[str]:
        return [row.run_id for row in registrations.pending(collection, now=NOW, **filters)]

    assert ids(states=("RECEIVED",)) == ["run-b"]
    assert ids(run_id="run-c") == ["run-c"]
    assert ids(older_than_seconds=3600) == ["run-b", "run-c"]
    assert ids(limit=1) == ["run-a"]


def test_pending_pages_through_10000_registrations_in_flat_memory(firestore_client) -> None:
    callbacks = firestore_client.collection("workflow_callbacks")

    def fill(start: int, count: int) -> None:
        for first in range(start, start + count, 500):
            batch = firestore_client.batch()
            for number in range(first, min(first + 500, start + count)):
                fields = registration("WAITING", number / 60)
                batch.set(callbacks.document(f"run-{number:05d}_wait"), fields)
            batch.commit()

    def peak_while_listing() -> tuple[int, list[int], list[registrations.Row]]:
        pages: list[int] = []
        tracemalloc.start()
        try:
            rows = registrations.pending(callbacks, now=NOW, limit=10, on_page=pages.append)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak, pages, rows

    fill(0, 2_000)
    small_peak, small_pages, _ = peak_while_listing()
    fill(2_000, 8_000)
    big_peak, big_pages, rows = peak_while_listing()

    assert big_pages[-1] == 10_000 and len(big_pages) == 10_000 // registrations.PAGE_SIZE + 1
    assert small_pages[-1] == 2_000
    # The newest ten: created 0 to 9 seconds ago.
    assert [row.run_id for row in rows] == [f"run-{number:05d}" for number in range(10)]
    # Five times the registrations, about the same memory: one page at a time.
    assert big_peak < 1.5 * small_peak, (small_peak, big_peak)


def test_show_gives_state_and_times_never_the_token(collection) -> None:
    shown = registrations.show(collection, "run-b", "build", payload=False, now=NOW)
    assert shown is not None
    assert shown["state"] == "received" and shown["delivery"] == "push"
    assert shown["createdAt"] == (NOW - timedelta(minutes=60)).isoformat()
    assert shown["ageSeconds"] == 3600.0
    assert "payload" not in shown and "secret-token" not in json.dumps(shown)
    with_payload = registrations.show(collection, "run-b", "build", payload=True, now=NOW)
    assert with_payload is not None and with_payload["payload"] == '{"ok": 1}'
    assert registrations.show(collection, "run-x", "none", payload=False, now=NOW) is None


def ops(repo_root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_the_commands_on_the_local_emulator(
    repo_root: Path, collection, firestore_emulator_host: str, gcp_project: str, firestore_database
) -> None:
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_emulator_host}
    where = ["--local", "--project", gcp_project, "--database", firestore_database]

    listed = ops(repo_root, "pending", *where, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row["runID"] for row in json.loads(listed.stdout)] == ["run-c", "run-b", "run-a"][::-1]

    shown = ops(repo_root, "show", "run-a", "approve", *where, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["kind"] == "page"

    missing = ops(repo_root, "show", "run-z", "approve", *where, env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no registration of runID 'run-z' step 'approve'")

    no_emulator = {k: v for k, v in env.items() if k != "FIRESTORE_EMULATOR_HOST"}
    refused = ops(repo_root, "pending", "--local", env=no_emulator)
    assert refused.returncode == 2
    assert "FIRESTORE_EMULATOR_HOST is not set" in refused.stderr
    assert "Traceback" not in refused.stderr

    bad_age = ops(repo_root, "pending", "--local", "--older-than", "soon", env=env)
    assert bad_age.returncode == 2 and "not an age like 90s" in bad_age.stderr
