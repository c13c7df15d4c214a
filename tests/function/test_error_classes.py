"""Errors are classified by what failed first: transient (503) or a bug (500).

A bug inside the transaction whose rollback then times out must stay a bug:
a 503 would make every caller retry it forever.
"""

from __future__ import annotations

import json
import sys

import pytest
from google.api_core import exceptions
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient


def last_log_entry(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_a_bug_followed_by_a_failing_rollback_is_a_500_with_its_stack(
    client, register, callback_url, monkeypatch, capsys
):
    token = register()
    store = sys.modules["callback_store"]

    def buggy_decide(*args, **kwargs):
        raise TypeError("a bug in the decision")

    def rollback_times_out(self, *args, **kwargs):
        raise exceptions.DeadlineExceeded("rollback timed out")

    monkeypatch.setattr(store, "decide", buggy_decide)
    monkeypatch.setattr(FirestoreClient, "rollback", rollback_times_out)
    capsys.readouterr()

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 500, response.get_json()
    assert "Retry-After" not in response.headers
    entry = last_log_entry(capsys.readouterr().out)
    assert entry["error"] == "TypeError: a bug in the decision"
    assert "a bug in the decision" in entry["stack_trace"]
    assert "rollback timed out" in entry["stack_trace"]


def test_an_invalid_argument_that_merely_mentions_a_transaction_is_a_500(
    client, register, callback_url, monkeypatch
):
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
        (exceptions.InvalidArgument("The referenced transaction has expired"), False),
        (
            exceptions.InvalidArgument(
                "The referenced transaction has expired or is no longer valid."
            ),
            True,
        ),
        (exceptions.PermissionDenied("no"), False),
        (TypeError("bug"), False),
    ],
)
def test_is_transient_judges_the_error_itself(error, transient, client):
    store = sys.modules["callback_store"]

    assert store.is_transient(error) is transient


def test_contention_that_outlasts_every_attempt_is_transient(client):
    store = sys.modules["callback_store"]
    try:
        try:
            raise exceptions.Aborted("contention")
        except exceptions.Aborted as aborted:
            raise ValueError("Failed to commit transaction in 5 attempts.") from aborted
    except ValueError as exhausted:
        assert store.is_transient(exhausted)


def test_a_transient_error_raised_while_handling_a_bug_is_not_transient(client):
    store = sys.modules["callback_store"]
    try:
        try:
            raise KeyError("bug")
        except KeyError:
            raise exceptions.ServiceUnavailable("rollback failed") from None
    except exceptions.ServiceUnavailable as suppressed:
        # `from None`: the author says the bug is not the point; the 503 stands.
        assert store.is_transient(suppressed)
    try:
        try:
            raise KeyError("bug")
        except KeyError:
            raise exceptions.ServiceUnavailable("rollback failed")  # noqa: B904
    except exceptions.ServiceUnavailable as secondary:
        assert not store.is_transient(secondary)
        assert isinstance(store.primary_error(secondary), KeyError)


def test_every_commit_goes_through_the_bounded_api(client, register, callback_url, monkeypatch):
    # Canary: the 2 s timeout (and no resend) reach the commit only because
    # BoundedClient wraps the client library's private _firestore_api. If a
    # library update moves the commit elsewhere, this fails instead of the
    # bounds silently disappearing.
    token = register()
    seen: list[dict] = []
    real_commit = FirestoreClient.commit

    def recording_commit(self, *args, **kwargs):
        seen.append({"timeout": kwargs.get("timeout"), "retry": kwargs.get("retry")})
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(FirestoreClient, "commit", recording_commit)

    response = client.post(callback_url(token=token), json={"approved": True})

    assert response.status_code == 200
    store = sys.modules["callback_store"]
    assert seen == [{"timeout": store.RPC_TIMEOUT_SECONDS, "retry": None}]
