"""Fixtures for the receiver: the real function behind a Flask test client."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import functions_framework
import pytest
from flask.testing import FlaskClient

from infra import contract as infra_contract
from local.receiver import ENTRY_POINT, FUNCTION_SOURCE

COLLECTION = infra_contract.DEFAULT_COLLECTION


def _callback_url(run_id: str | None = "run-1", step: str | None = "approve", **params: Any) -> str:
    query = {"runID": run_id, "step": step, **params}
    return "/?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)


@pytest.fixture
def callback_url() -> Callable[..., str]:
    """callback_url(run_id, step, token=.., value=..): the path and query a caller uses.

    None leaves a parameter out; a list repeats it.
    """
    return _callback_url


@pytest.fixture
def receiver_env(firestore_emulator_host, gcp_project, firestore_database) -> dict[str, str]:
    """The function's environment: this test's own database in the emulator."""
    return {
        "FIRESTORE_EMULATOR_HOST": firestore_emulator_host,
        "GOOGLE_CLOUD_PROJECT": gcp_project,
        "CALLBACKS_DATABASE": firestore_database,
        "CALLBACKS_COLLECTION": COLLECTION,
    }


@pytest.fixture
def make_client(receiver_env, monkeypatch) -> Callable[..., FlaskClient]:
    """make_client(CALLBACKS_...="...") -> a test client for a fresh function instance.

    The function reads its environment on its first request, and every
    create_app loads function/main.py afresh, so each client is one instance.
    """

    def make(**env: str) -> FlaskClient:
        for name, value in {**receiver_env, **env}.items():
            monkeypatch.setenv(name, value)
        return functions_framework.create_app(ENTRY_POINT, str(FUNCTION_SOURCE)).test_client()

    return make


@pytest.fixture
def client(make_client) -> FlaskClient:
    return make_client()


@pytest.fixture
def callbacks(firestore_client):
    return firestore_client.collection(COLLECTION)


@pytest.fixture
def register(callbacks) -> Callable[..., str]:
    """Register a callback the way the workflow does; returns its token."""

    def register(run_id: str = "run-1", step: str = "approve") -> str:
        token = secrets.token_hex(16)
        now = datetime.now(UTC)
        callbacks.document(f"{run_id}_{step}").set(
            {
                "state": "WAITING",
                "token": token,
                "createdAt": now,
                "expireAt": now + timedelta(days=7),
            }
        )
        return token

    return register
