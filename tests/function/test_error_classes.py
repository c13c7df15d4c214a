"""Errors are classified as transient (503, the caller retries) or a bug (500).

And every Firestore call is bounded, so neither kind can hold a caller for long.
"""

from __future__ import annotations

import json
import sys

import pytest
from google.api_core import exceptions
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient


def last_log_entry(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_a_bug_is_a_500_with_its_stack(client, register, callback_url, monkeypatch, capsys):
    token = register()
    store = sys.modules["callback_store"]

    def buggy_decide(*args, **kwargs):
        raise TypeError("a bug in the decision")

    monkeypatch.setattr(store, "decide", buggy_decide)
    capsys.readouterr()

    # A legacy URL: the decision is made after a read.
    response = client.post(callback_url(token=token, legacy=True), json={"approved": True})

    assert response.status_code == 500, response.get_json()
    assert "Retry-After" not in response.headers
    entry = last_log_entry(capsys.readouterr().out)
    assert entry["error"] == "TypeError: a bug in the decision"
    assert "a bug in the decision" in entry["stack_trace"]


def test_a_500_closes_the_connection_of_a_request_with_a_body(
    client, register, callback_url, monkeypatch
):
    # Nobody knows how much of the body the failed request read; the rest is
    # not read (functions-framework would, for a plain response) but dropped.
    token = register()
    monkeypatch.setattr(sys.modules["callback_store"], "decide", _raise_type_error)

    with_body = client.post(callback_url(token=token, legacy=True), json={"approved": True})
    without = client.get(callback_url(token=token, legacy=True))

    assert with_body.status_code == without.status_code == 500
    assert with_body.headers["Connection"] == "close"
    assert "Connection" not in without.headers


def _raise_type_error(*args, **kwargs):
    raise TypeError("a bug in the decision")


def test_an_invalid_argument_is_a_500(client, register, callback_url, monkeypatch):
    """A request Firestore finds malformed is our bug, not the database's weather."""
    token = register()

    def commit_rejected(self, *args, **kwargs):
        raise exceptions.InvalidArgument("transaction write has an invalid field path")

    monkeypatch.setattr(FirestoreClient, "commit", commit_rejected)

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 500


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (exceptions.ServiceUnavailable("down"), True),
        (exceptions.DeadlineExceeded("slow"), True),
        (exceptions.ResourceExhausted("quota"), True),
        (exceptions.InvalidArgument("The referenced transaction has expired"), False),
        (exceptions.FailedPrecondition("stale"), False),
        (exceptions.PermissionDenied("no"), False),
        (TypeError("bug"), False),
    ],
)
def test_is_transient_judges_the_error(error, transient, client):
    store = sys.modules["callback_store"]

    assert store.is_transient(error) is transient


def test_a_document_that_changes_under_every_attempt_gives_503(
    client, register, callback_url, monkeypatch, capsys
):
    """Each conditional write finds a newer version: bounded rounds, then a retryable 503."""
    token = register()
    store = sys.modules["callback_store"]

    commits = []

    def always_stale(self, *args, **kwargs):
        commits.append(1)
        raise exceptions.FailedPrecondition("the stored version does not match")

    monkeypatch.setattr(FirestoreClient, "commit", always_stale)
    capsys.readouterr()

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"]
    entry = last_log_entry(capsys.readouterr().out)
    assert entry["outcome"] == "unavailable"
    # The rounds were bounded: the blind Commit, then one conditional
    # Commit (after its read) per round.
    assert len(commits) == 1 + store.ATTEMPTS


def test_every_call_is_bounded_and_the_happy_path_is_one_commit(
    client, register, callback_url, monkeypatch
):
    """The 2 s timeout reaches every RPC; a commit is never resent by the library.

    A resent commit could meet its own earlier write; the receiver handles
    an unanswered commit itself (it re-reads), see test_unavailable.py.
    """
    token = register()
    seen: list[tuple[str, dict]] = []
    for name in ("commit", "batch_get_documents"):
        real = getattr(FirestoreClient, name)

        def recording(self, *args, _real=real, _name=name, **kwargs):
            seen.append((_name, {"timeout": kwargs.get("timeout"), "retry": kwargs.get("retry")}))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(FirestoreClient, name, recording)
    store = sys.modules["callback_store"]

    first = client.post(callback_url(token=token), json={"approved": True})
    again = client.post(callback_url(token=token), json={"approved": True})

    assert (first.status_code, again.status_code) == (200, 200)
    bounded_commit = {"timeout": store.RPC_TIMEOUT_SECONDS, "retry": None}
    bounded_read = {"timeout": store.RPC_TIMEOUT_SECONDS, "retry": store.RPC_RETRY}
    assert seen == [
        ("commit", bounded_commit),  # the first: one Commit, nothing else
        ("commit", bounded_commit),  # the retry: its Commit fails (already stored) ...
        ("batch_get_documents", bounded_read),  # ... and a read says it is the same callback
    ]


def test_the_page_reads_are_bounded_too(client, register, callback_url, monkeypatch):
    token = register(form_json='{"title": "T", "choices": [{"value": "ok", "label": "OK"}]}')
    seen: list[dict] = []
    real = FirestoreClient.batch_get_documents

    def recording(self, *args, **kwargs):
        seen.append({"timeout": kwargs.get("timeout"), "retry": kwargs.get("retry")})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FirestoreClient, "batch_get_documents", recording)
    store = sys.modules["callback_store"]

    page = client.get(callback_url(token=token, view="page"))

    assert page.status_code == 200
    assert seen == [{"timeout": store.RPC_TIMEOUT_SECONDS, "retry": store.RPC_RETRY}]
