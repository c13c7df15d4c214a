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
from google.cloud import firestore

from infra.function_contract import DEFAULT_COLLECTION, ENTRY_POINT
from local.receiver import FUNCTION_SOURCE
from local.registration import KEY_FIELD, Registration, rfc3339

COLLECTION = DEFAULT_COLLECTION


def _callback_url(run_id: str | None = "run-1", step: str | None = "approve", **params: Any) -> str:
    query = {"runID": run_id, "step": step, **params}
    return "/?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)


@pytest.fixture
def registrations() -> dict[str, dict[str, str]]:
    """token -> the rest of its URL's capability (reg, cb), for this test's registrations."""
    return {}


@pytest.fixture
def callback_url(registrations) -> Callable[..., str]:
    """callback_url(run_id, step, token=.., value=..): the path and query a caller uses.

    A token from ``register`` brings the rest of the URL getCallbackURL
    returns (reg, and cb for push), so the receiver can take its one-Commit
    path; ``legacy=True`` leaves them out, as a URL from before the key
    layout. None leaves a parameter out; a list repeats it.
    """

    def url(*args: Any, legacy: bool = False, **params: Any) -> str:
        token = params.get("token")
        if not legacy and isinstance(token, str) and token in registrations:
            params = {**registrations[token], **params}
        return _callback_url(*args, **params)

    return url


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
def register(firestore_client, callbacks, registrations) -> Callable[..., str]:
    """Register a callback the way the workflow does (both documents); returns its token.

    ``legacy=True`` writes the layout from before the key document: the
    callback document alone, with its token.
    """

    def register(
        run_id: str = "run-1",
        step: str = "approve",
        forward_url: str = "",
        form_json: str = "",
        legacy: bool = False,
    ) -> str:
        token = secrets.token_hex(32)
        now = datetime.now(UTC)
        registration = Registration(f"{run_id}_{step}", token, forward_url, form_json)
        documents = registration.documents(now, timedelta(days=7))
        if legacy:
            fields = dict(documents[registration.document_id])
            del fields[KEY_FIELD]
            callbacks.document(registration.document_id).create(fields)
            return token
        batch = firestore_client.batch()
        for document_id, fields in documents.items():
            batch.create(callbacks.document(document_id), fields)
        results = batch.commit()
        created = list(documents).index(registration.document_id)
        registrations[token] = registration.query(rfc3339(results[created].update_time))
        del registrations[token]["token"]
        return token

    return register


@pytest.fixture
def tombstone(firestore_client, callbacks) -> Callable[..., datetime]:
    """tombstone("CONSUMED" | "EXPIRED", document_id): what waitForResponse leaves; returns when.

    As the contract between the receiver and the subworkflows says: one
    patch of the callback document at the version read, CONSUMED with
    ``consumedAt`` and the payload deleted, EXPIRED with ``expiredAt``;
    every other field stays.
    """

    def write(state: str, document_id: str = "run-1_approve") -> datetime:
        document = callbacks.document(document_id)
        version = document.get().update_time
        now = datetime.now(UTC)
        fields: dict[str, Any] = (
            {"state": "CONSUMED", "consumedAt": now, "payload": firestore.DELETE_FIELD}
            if state == "CONSUMED"
            else {"state": "EXPIRED", "expiredAt": now}
        )
        document.update(fields, option=firestore_client.write_option(last_update_time=version))
        if state == "CONSUMED":
            # The emulator keeps a field the update mask names but the write
            # omits; Firestore deletes it ("Fields referenced in the mask,
            # but not present in the input document, are deleted",
            # https://cloud.google.com/firestore/docs/reference/rest/v1/projects.databases.documents/patch).
            # Leave what Firestore would (nothing else writes during a test;
            # the emulator's set merges too, so delete and create).
            kept = document.get().to_dict() or {}
            kept.pop("payload", None)
            document.delete()
            document.create(kept)
        return now

    return write
