"""The emulator launcher, and the transaction isolation server.js adds.

The npm package alone lets two concurrent transactions both commit after
reading the same document; these tests fail against it.
"""

from __future__ import annotations

import os
import threading

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from local.firestore_emulator import ENV_HOST, FirestoreEmulator, firestore_emulator


def _client(project: str, database: str) -> firestore.Client:
    return firestore.Client(project=project, database=database, credentials=AnonymousCredentials())


def test_racing_transactions_have_exactly_one_winner(firestore_client, gcp_project):
    ref = firestore_client.collection("race").document("doc")
    ref.set({"state": "WAITING"})
    threads_count = 8
    # Every transaction reads before any commits, so without isolation all win.
    all_read = threading.Barrier(threads_count, timeout=10)
    winners: list[int] = []
    errors: list[BaseException] = []

    def contender(number: int) -> None:
        client = _client(gcp_project, firestore_client._database)
        mine = client.collection("race").document("doc")
        first_attempt = True

        @firestore.transactional
        def claim(transaction: firestore.Transaction) -> bool:
            nonlocal first_attempt
            state = mine.get(transaction=transaction).get("state")
            if first_attempt:
                first_attempt = False
                all_read.wait()
            if state != "WAITING":
                return False
            transaction.update(mine, {"state": "RECEIVED", "winner": number})
            return True

        try:
            if claim(client.transaction()):
                winners.append(number)
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(winners) == 1
    assert ref.get().to_dict() == {"state": "RECEIVED", "winner": winners[0]}


def test_commit_aborts_when_a_read_document_changed(firestore_client):
    ref = firestore_client.collection("c").document("d")
    ref.set({"n": 1})

    @firestore.transactional
    def increment(transaction: firestore.Transaction) -> None:
        n = ref.get(transaction=transaction).get("n")
        ref.set({"n": 100})  # a write outside the transaction, after its read
        transaction.update(ref, {"n": n + 1})

    with pytest.raises(ValueError) as raised:
        increment(firestore_client.transaction(max_attempts=1))
    assert isinstance(raised.value.__cause__, exceptions.Aborted)
    assert ref.get().to_dict() == {"n": 100}


def test_commit_aborts_when_a_document_read_as_missing_was_created(firestore_client):
    ref = firestore_client.collection("c").document("new")

    @firestore.transactional
    def create_if_missing(transaction: firestore.Transaction) -> None:
        assert not ref.get(transaction=transaction).exists
        ref.set({"by": "someone else"})
        transaction.set(ref, {"by": "transaction"})

    with pytest.raises(ValueError):
        create_if_missing(firestore_client.transaction(max_attempts=1))
    assert ref.get().to_dict() == {"by": "someone else"}


def test_failed_precondition_applies_no_write_of_the_batch(firestore_client):
    collection = firestore_client.collection("c")
    collection.document("exists").set({"v": 1})
    batch = firestore_client.batch()
    batch.set(collection.document("first"), {"v": 1})
    batch.create(collection.document("exists"), {"v": 2})
    with pytest.raises(exceptions.AlreadyExists):
        batch.commit()
    assert not collection.document("first").get().exists


def test_update_time_precondition_is_enforced(firestore_client):
    ref = firestore_client.collection("c").document("d")
    ref.set({"v": 1})
    stale = ref.get().update_time
    ref.update({"v": 2})
    with pytest.raises(exceptions.FailedPrecondition):
        ref.update({"v": 3}, option=firestore_client.write_option(last_update_time=stale))
    fresh = ref.get().update_time
    ref.update({"v": 4}, option=firestore_client.write_option(last_update_time=fresh))
    assert ref.get().get("v") == 4


def test_versions_of_a_document_never_share_an_update_time(firestore_client):
    # Real Firestore never gives two versions of a document one update time.
    # The npm package stamps commits in milliseconds, so writes close together
    # shared one (19 of 300 back-to-back set-then-update pairs did), and a
    # delete conditioned on the older version deleted the newer document:
    # the guard waitForResponse relies on at timeout. Four writers at once
    # make such neighbours certain.
    ref = firestore_client.collection("versions").document("d")
    ref.set({"n": 0})
    times: list = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        for index in range(100):
            written = ref.set({"n": index, "writer": writer}).update_time
            with lock:
                times.append(written)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(times)) == len(times) == 400
    # And so a stale version never passes for the current one.
    stale = sorted(times)[-2]
    with pytest.raises(exceptions.FailedPrecondition):
        ref.delete(option=firestore_client.write_option(last_update_time=stale))
    assert ref.get().exists


def test_emulator_restarts_on_the_same_port_and_stop_is_idempotent(gcp_project):
    emulator = FirestoreEmulator().start()
    try:
        host = emulator.host
        process = emulator._process
        emulator.stop()
        emulator.stop()
        assert process.poll() is not None
        emulator.start()
        assert emulator.host == host
    finally:
        emulator.stop()


def test_firestore_emulator_reuses_the_configured_host(firestore_emulator_host):
    assert os.environ[ENV_HOST] == firestore_emulator_host
    with firestore_emulator() as host:
        assert host == firestore_emulator_host


def test_set_replaces_the_document_as_firestore_does(firestore_client):
    # The npm package merges a set() into what is there; Firestore replaces.
    ref = firestore_client.collection("writes").document("replace")
    ref.set({"state": "WAITING", "token": "t"})
    ref.set({"state": "RECEIVED"})
    assert ref.get().to_dict() == {"state": "RECEIVED"}


def test_a_masked_field_the_write_leaves_out_is_deleted(firestore_client):
    # A tombstone patch names payload in its mask and leaves it out: Firestore
    # deletes it, and keeps every field the mask does not name.
    ref = firestore_client.collection("writes").document("mask")
    ref.set({"state": "RECEIVED", "payload": "{}", "token": "t"})
    ref.update({"state": "CONSUMED", "payload": firestore.DELETE_FIELD})
    assert ref.get().to_dict() == {"state": "CONSUMED", "token": "t"}


def test_pages_by_document_name_follow_the_cursor(firestore_client):
    # The npm package ignores cursors: every page was the first one.
    pages = firestore_client.collection("paged")
    batch = firestore_client.batch()
    for number in (3, 1, 4, 0, 2):
        batch.set(pages.document(f"doc-{number}"), {"n": number})
    batch.commit()
    query = pages.order_by("__name__").limit(2)
    seen: list[str] = []
    last = None
    while True:
        page = list((query.start_after(last) if last else query).stream())
        seen += [snapshot.id for snapshot in page]
        if len(page) < 2:
            break
        last = page[-1]
    assert seen == [f"doc-{number}" for number in range(5)]
    descending = pages.order_by("__name__", direction=firestore.Query.DESCENDING).limit(2)
    assert [s.id for s in descending.stream()] == ["doc-4", "doc-3"]


def test_a_cursor_the_emulator_cannot_honour_is_refused_not_ignored(firestore_client):
    pages = firestore_client.collection("paged-by-field")
    pages.document("a").set({"n": 1})
    query = pages.order_by("n").start_after({"n": 0})
    with pytest.raises(exceptions.MethodNotImplemented, match="ordered by __name__"):
        list(query.stream())
