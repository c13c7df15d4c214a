"""Firestore going away mid-test: 503 with Retry-After, then recovery.

Uses its own emulator so stopping it does not disturb the session's.
"""

from __future__ import annotations

import json
import time

import pytest

from local.firestore_emulator import FirestoreEmulator


@pytest.fixture
def own_emulator():
    emulator = FirestoreEmulator().start()
    yield emulator
    emulator.stop()


def test_stopped_firestore_gives_503_then_recovers(make_client, own_emulator, callback_url, capsys):
    client = make_client(
        FIRESTORE_EMULATOR_HOST=own_emulator.host, CALLBACKS_ALLOW_UNREGISTERED="true"
    )
    assert client.get(callback_url(step="before")).status_code == 200

    own_emulator.stop()
    started = time.monotonic()
    response = client.post(callback_url(step="during"), json={"a": 1})
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "error" in response.get_json()
    assert elapsed < 8, "a dead database must be reported within seconds"
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (entry["status"], entry["severity"]) == (503, "ERROR")

    own_emulator.start()  # same port, empty database
    assert client.post(callback_url(step="during"), json={"a": 1}).status_code == 200
