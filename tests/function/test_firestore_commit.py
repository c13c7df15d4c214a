"""The receiver's Commits, built as protobufs, are the requests the high-level client sends.

function/firestore_commit.py builds the writes itself because the high-level
client's encoding costs more than the rest of the request. These tests hold
it to the same request and the same metadata: each write the receiver makes
is built both ways and caught where both end up, the GAPIC client's
``commit``, before anything is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.protobuf import timestamp_pb2

from infra.function_modules import function_module

PROJECT = "demo-commit"
DATABASE = "callbacks-db"
COLLECTION = "workflow_callbacks"
NOW = datetime(2026, 12, 2, 10, 11, 12, 345678, tzinfo=UTC)
# The fields a stored callback sets (callback_store.received_fields).
RECEIVED = {
    "state": "RECEIVED",
    "receivedAt": NOW,
    "responded": True,
    "value": "approved ✓ & more",
    "payload": '{"method":"POST","body":{"n":1}}',
    "fingerprint": "sha256:" + "ab" * 32,
}
UNREGISTERED = {**RECEIVED, "value": None, "createdAt": NOW, "expireAt": NOW + timedelta(days=7)}


class Caught(Exception):
    """Raised instead of sending: the request and its metadata, as the GAPIC client got them."""

    def __init__(self, request: firestore_types.CommitRequest, metadata: list) -> None:
        super().__init__("caught before sending")
        self.request = request
        self.metadata = metadata


@pytest.fixture
def caught(monkeypatch):
    """Every Commit stops at FirestoreClient.commit; returns what was sent."""

    def catch(self, *, request, metadata=(), **kwargs):
        if isinstance(request, dict):  # how the high-level client passes it
            request = firestore_types.CommitRequest(
                database=request["database"], writes=request["writes"]
            )
        raise Caught(request, list(metadata))

    monkeypatch.setattr(FirestoreClient, "commit", catch)

    def sent(commit) -> Caught:
        with pytest.raises(Caught) as error:
            commit()
        return error.value

    return sent


@pytest.fixture
def commit_module():
    return function_module("firestore_commit")


@pytest.fixture(params=["emulator", "google"])
def clients(request, commit_module, monkeypatch):
    """(high-level client, CommitClient) for one database, on the emulator or on Google."""
    if request.param == "emulator":
        # Nothing is sent: every Commit is caught.
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    else:
        monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    high = firestore.Client(project=PROJECT, database=DATABASE, credentials=AnonymousCredentials())
    return high, commit_module.CommitClient(high)


def same(theirs: Caught, ours: Caught) -> None:
    """Byte for byte the same request (maps in key order), and the same metadata."""
    pb = firestore_types.CommitRequest.pb
    assert pb(ours.request).SerializeToString(deterministic=True) == (
        pb(theirs.request).SerializeToString(deterministic=True)
    )
    assert ours.metadata == theirs.metadata


def test_the_blind_commit_of_a_registered_callback(clients, commit_module, caught):
    high, low = clients
    registered_at = timestamp_pb2.Timestamp(seconds=1796250000, nanos=123456789)
    callbacks = high.collection(COLLECTION)
    batch = high.batch()
    batch.delete(callbacks.document("run-1_approve.key.abc"), option=high.write_option(exists=True))
    batch.update(
        callbacks.document("run-1_approve"),
        RECEIVED,
        option=high.write_option(last_update_time=registered_at),
    )
    writes = [
        commit_module.delete(low.document_name(COLLECTION, "run-1_approve.key.abc"), True),
        commit_module.update(
            low.document_name(COLLECTION, "run-1_approve"), RECEIVED, registered_at
        ),
    ]

    theirs = caught(lambda: batch.commit(retry=None, timeout=2.0))
    ours = caught(lambda: low.commit(writes, 2.0))

    same(theirs, ours)
    assert ("google-cloud-resource-prefix", f"projects/{PROJECT}/databases/{DATABASE}") in (
        ours.metadata
    )


def test_the_blind_commit_of_an_unregistered_callback(clients, commit_module, caught):
    high, low = clients
    batch = high.batch()
    batch.create(high.collection(COLLECTION).document("run-1_approve"), UNREGISTERED)
    write = commit_module.create(low.document_name(COLLECTION, "run-1_approve"), UNREGISTERED)

    same(caught(lambda: batch.commit()), caught(lambda: low.commit([write], 2.0)))


def test_the_commit_after_a_read(clients, commit_module, caught):
    """The version is a snapshot's update time; the key document goes unconditionally."""
    high, low = clients
    # What DocumentSnapshot.update_time is; Firestore's times have microseconds.
    version = DatetimeWithNanoseconds(2026, 12, 2, 10, 0, 0, nanosecond=123456000, tzinfo=UTC)
    callbacks = high.collection(COLLECTION)
    batch = high.batch()
    batch.update(
        callbacks.document("run-1_approve"),
        RECEIVED,
        option=high.write_option(last_update_time=version),
    )
    batch.delete(callbacks.document("run-1_approve.key.abc"))
    writes = [
        commit_module.update(low.document_name(COLLECTION, "run-1_approve"), RECEIVED, version),
        commit_module.delete(low.document_name(COLLECTION, "run-1_approve.key.abc")),
    ]

    same(caught(lambda: batch.commit()), caught(lambda: low.commit(writes, 2.0)))


def test_a_version_keeps_its_nanoseconds(commit_module):
    """The high-level client would cut them to microseconds (through a datetime): not ours."""
    version = DatetimeWithNanoseconds(2026, 12, 2, 10, 0, 0, nanosecond=123456789, tzinfo=UTC)

    write = commit_module.update("projects/p/databases/d/documents/c/x", {"a": 1}, version)

    assert write.current_document.update_time.nanos == 123456789


def test_a_value_or_field_it_cannot_write_as_the_high_level_client_would_is_refused(
    commit_module,
):
    with pytest.raises(TypeError):
        commit_module.encode_value(b"bytes")
    with pytest.raises(ValueError):
        # The high-level client would read "a.b" as a path into a map.
        commit_module.update("projects/p/databases/d/documents/c/x", {"a.b": 1}, NOW)
