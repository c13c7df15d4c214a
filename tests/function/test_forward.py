"""Push delivery in the receiver: store first, then forward to the registration's endpoint.

The forward goes only to this project's and region's Workflows callback
endpoints, is retried a bounded number of times, treats 404 as "the
execution has finished", and never changes the caller's answer.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.function_modules import function_module
from local.registration import rfc3339

PROJECT = "demo-workflow-callbacks"  # tests/conftest.py's TEST_PROJECT
REGION = "local1"
TOKEN = "local-callback-token"


class Endpoint:
    """A stub callback endpoint: answers the statuses it is given, records each request."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.seen: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.seen.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": json.loads(body),
                    }
                )
                status = stub.statuses.pop(0) if stub.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, project: str = PROJECT, region: str = REGION, execution: str = "run-1") -> str:
        return (
            f"{self.origin}/v1/projects/{project}/locations/{region}/workflows/wf"
            f"/executions/{execution}/callbacks/cb1"
        )


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    stub = Endpoint()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def forward_module():
    return function_module("callback_forward")


@pytest.fixture
def forwarder(forward_module, endpoint, monkeypatch):
    monkeypatch.setattr(forward_module, "BACKOFF_SECONDS", (0.0, 0.0))
    return forward_module.Forwarder(PROJECT, REGION, origin=endpoint.origin, local_token=TOKEN)


# --- the target ---------------------------------------------------------------------
def test_only_this_projects_and_regions_callback_endpoints_are_targets(
    forward_module, endpoint, forwarder
):
    google = forward_module.Forwarder("my-project", "europe-west1", project_number="4242")
    base = "https://workflowexecutions.googleapis.com/v1/projects"
    path = "/locations/europe-west1/workflows/wf/executions/e-1/callbacks/c_1"

    assert google.target_problem(f"{base}/my-project{path}") is None
    assert google.target_problem(f"{base}/4242{path}") is None  # by project number
    for url in (
        f"{base}/other-project{path}",
        f"{base}/my-project{path.replace('europe-west1', 'us-central1')}",
        f"http://workflowexecutions.googleapis.com/v1/projects/my-project{path}",
        f"https://workflowexecutions.googleapis.com.evil.example/v1/projects/my-project{path}",
        f"{base}/my-project{path}/../../../../../other",
        f"{base}/my-project{path}?x=1",
        f"{base}/my-project/locations/europe-west1/workflows/wf/executions/e-1",
        "https://attacker.example/steal",
    ):
        assert google.target_problem(url) is not None, url
    assert forwarder.target_problem(endpoint.url()) is None


GOOGLE_PREFIX = "https://workflowexecutions.googleapis.com/v1/projects/my-project/locations/eu1"


def callback_endpoint(workflow: str = "wf", execution: str = "e-1", callback: str = "c_1") -> str:
    return f"{GOOGLE_PREFIX}/workflows/{workflow}/executions/{execution}/callbacks/{callback}"


@pytest.mark.parametrize(
    "ids",
    [
        {"workflow": "approvals.v2"},
        {"execution": "run~1.retry"},
        {"callback": "cb.~_-9"},
        {"workflow": "a.b~c", "execution": "x.y~z", "callback": "..."},
        {"execution": "run%7E1"},  # ~, percent-encoded
        {"callback": "c.d%2E"},  # a dot that ends an id, not a dot segment
    ],
    ids=lambda ids: ",".join(ids.values()),
)
def test_ids_outside_the_letters_digits_dash_underscore_alphabet_are_targets(forward_module, ids):
    # Google does not promise [A-Za-z0-9_-] for these ids; refusing a real
    # endpoint would delay the callback by a whole slice.
    google = forward_module.Forwarder("my-project", "eu1")

    assert google.target_problem(callback_endpoint(**ids)) is None


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        ({"execution": "a/b"}, "not projects/P"),
        ({"callback": "c?x=1"}, "a query or fragment"),
        ({"callback": "c#frag"}, "a query or fragment"),
        ({"execution": "a%2Fb"}, "more than one path segment"),
        ({"execution": "a%2fb"}, "more than one path segment"),
        ({"execution": "a%252Fb"}, "more than one path segment"),  # %2F once decoded
        ({"execution": "a%5Cb"}, "more than one path segment"),  # a backslash
        ({"callback": "c%3Fx=1"}, "more than one path segment"),
        ({"callback": "c%23frag"}, "more than one path segment"),
        ({"workflow": ""}, "is empty"),
        ({"callback": ""}, "is empty"),
        ({"execution": ".."}, "a dot segment"),
        ({"execution": "."}, "a dot segment"),
        ({"execution": "%2E%2e"}, "a dot segment"),
        ({"workflow": "%2e"}, "a dot segment"),
        ({"execution": "a%00b"}, "control character"),
        ({"execution": "a b"}, "not printable ASCII"),
        ({"execution": "ä"}, "not printable ASCII"),
        ({"execution": "a%2525252525252Fb"}, "percent-encoded more than"),
    ],
    ids=lambda value: value if isinstance(value, str) else ",".join(value.values()) or "empty",
)
def test_an_id_that_is_not_exactly_one_path_segment_is_refused(forward_module, ids, reason):
    google = forward_module.Forwarder("my-project", "eu1")

    problem = google.target_problem(callback_endpoint(**ids))

    assert problem is not None
    assert reason in problem


def test_an_extra_or_missing_segment_is_refused(forward_module):
    google = forward_module.Forwarder("my-project", "eu1")

    for url in (
        callback_endpoint() + "/",
        callback_endpoint().replace("/workflows/", "/workflows//"),
        callback_endpoint().replace("/callbacks/", "/callback/"),
        callback_endpoint().replace("/executions/e-1", "/executions/e-1/x"),
        callback_endpoint().replace("/locations/", "/locations/eu1/../"),
    ):
        assert google.target_problem(url) is not None, url


def test_a_local_token_never_leaves_loopback(forward_module):
    with pytest.raises(forward_module.ForwardConfigError, match="loopback"):
        forward_module.Forwarder(PROJECT, REGION, origin="https://example.com", local_token=TOKEN)
    with pytest.raises(forward_module.ForwardConfigError, match="needs CALLBACKS_FORWARD"):
        forward_module.Forwarder(PROJECT, REGION, origin="http://127.0.0.1:9")


# --- sending ------------------------------------------------------------------------
def test_a_forward_posts_the_callback_as_json_with_the_bearer_token(forwarder, endpoint):
    result = forwarder.forward(endpoint.url(), {"body": {"ok": True}, "runID": "run-1"})

    assert (result.outcome, result.status, result.attempts) == ("delivered", 200, 1)
    [request] = endpoint.seen
    assert request["authorization"] == f"Bearer {TOKEN}"
    assert request["body"] == {"body": {"ok": True}, "runID": "run-1"}


def test_transient_failures_are_retried_a_bounded_number_of_times(forwarder, endpoint):
    endpoint.statuses = [503, 500]
    assert forwarder.forward(endpoint.url(), {}).log_fields() == {
        "forward": "delivered",
        "forwardAttempts": 3,
        "forwardStatus": 200,
    }

    endpoint.statuses = [500, 502, 504, 200]
    failed = forwarder.forward(endpoint.url(), {})
    assert (failed.outcome, failed.status, failed.attempts) == ("failed", 504, 3)
    assert len(endpoint.seen) == 6


def test_a_finished_execution_is_not_an_error_and_not_retried(forwarder, endpoint):
    endpoint.statuses = [404]

    result = forwarder.forward(endpoint.url(), {})

    assert (result.outcome, result.status, result.attempts) == ("execution_finished", 404, 1)


def test_a_client_error_is_not_retried(forwarder, endpoint):
    endpoint.statuses = [403]

    result = forwarder.forward(endpoint.url(), {})

    assert (result.outcome, result.status, result.attempts) == ("failed", 403, 1)


def test_an_unreachable_endpoint_fails_after_the_bounded_attempts(forward_module, monkeypatch):
    monkeypatch.setattr(forward_module, "BACKOFF_SECONDS", (0.0, 0.0))
    closed = forward_module.Forwarder(
        PROJECT, REGION, origin="http://127.0.0.1:9", local_token=TOKEN
    )
    url = (
        f"http://127.0.0.1:9/v1/projects/{PROJECT}/locations/{REGION}/workflows/wf"
        "/executions/e/callbacks/c"
    )

    result = closed.forward(url, {})

    assert (result.outcome, result.attempts, result.detail) == ("failed", 3, "ConnectionError")


def test_a_refused_target_is_never_contacted(forwarder, endpoint):
    result = forwarder.forward(endpoint.url(project="someone-else"), {})

    assert result.outcome == "refused"
    assert endpoint.seen == []


# --- in the receiver ----------------------------------------------------------------
@pytest.fixture(autouse=True)
def deletes_answered_like_firestore(monkeypatch):
    """A delete's write result has no update time on Firestore; the emulator gives it one.

    WriteResult.update_time: "Not set after a delete"
    (https://cloud.google.com/firestore/docs/reference/rpc/google.firestore.v1#writeresult).
    Answered as Firestore answers, a version taken from the wrong write of a
    Commit cannot pass for the callback document's.
    """
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient
    from google.cloud.firestore_v1.types import firestore, write

    real_commit = FirestoreClient.commit

    def commit(self, *args, request, **kwargs):
        # The receiver sends a CommitRequest, the high-level client a dict.
        writes = request["writes"] if isinstance(request, dict) else request.writes
        response = real_commit(self, *args, request=request, **kwargs)
        results = firestore.CommitResponse.pb(response).write_results
        for sent, result in zip(writes, results, strict=True):
            if write.Write.pb(sent).WhichOneof("operation") == "delete":
                result.ClearField("update_time")
        return response

    monkeypatch.setattr(FirestoreClient, "commit", commit)


@pytest.fixture
def pushing_client(make_client, endpoint):
    return make_client(
        CALLBACKS_REGION=REGION,
        CALLBACKS_FORWARD_ORIGIN=endpoint.origin,
        CALLBACKS_FORWARD_LOCAL_TOKEN=TOKEN,
    )


def log_of(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def proof_of(token: str, version: str, payload: str) -> str:
    """What waitForResponse computes: hash.compute_hmac(token, version + "\\n" + payload)."""
    message = (version + "\n" + payload).encode("utf-8")
    return base64.b64encode(hmac.new(token.encode("utf-8"), message, "sha256").digest()).decode()


def assert_proven_forward_of(event: dict, document, token: str) -> None:
    """``event`` is the contract's forward of ``document``'s callback, as it is now stored."""
    snapshot = document.get()
    assert set(event) == {"payload", "runID", "step", "version", "proof"}
    # Byte for byte the stored string, not a re-encoding of it.
    assert event["payload"] == snapshot.get("payload")
    assert event["version"] == rfc3339(snapshot.update_time)
    assert event["proof"] == proof_of(token, event["version"], event["payload"])


def test_the_receiver_stores_then_forwards_the_payload_with_its_version_and_proof(
    register, pushing_client, endpoint, callbacks, callback_url, capsys
):
    token = register(forward_url=endpoint.url())
    capsys.readouterr()

    response = pushing_client.post(
        callback_url(token=token), json={"approved": True, "by": "Zoë ✓", "n": 1.50}
    )

    assert response.status_code == 200
    [request] = endpoint.seen
    document = callbacks.document("run-1_approve")
    assert_proven_forward_of(request["body"], document, token)
    assert (request["body"]["runID"], request["body"]["step"]) == ("run-1", "approve")
    assert json.loads(request["body"]["payload"])["body"] == {
        "approved": True,
        "by": "Zoë ✓",
        "n": 1.5,
    }
    entry = log_of(capsys)
    assert entry["firestoreCalls"] == 1  # the Commit proved the target: no read
    assert (entry["forward"], entry["forwardStatus"], entry["severity"]) == (
        "delivered",
        200,
        "INFO",
    )


@pytest.mark.parametrize(
    ("statuses", "outcome"), [([500, 500, 500], "failed"), ([404], "execution_finished")]
)
def test_the_caller_gets_200_whatever_the_forward_does(
    register,
    pushing_client,
    endpoint,
    callbacks,
    callback_url,
    capsys,
    monkeypatch,
    statuses,
    outcome,
):
    import sys

    monkeypatch.setattr(sys.modules["callback_forward"], "BACKOFF_SECONDS", (0.0, 0.0))
    endpoint.statuses = list(statuses)
    token = register(forward_url=endpoint.url())
    capsys.readouterr()

    response = pushing_client.post(callback_url(token=token), json={"n": 1})

    assert response.status_code == 200
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"
    entry = log_of(capsys)
    assert entry["forward"] == outcome
    assert entry["severity"] == ("WARNING" if outcome == "failed" else "INFO")


def test_a_target_from_another_project_is_refused_logged_and_the_callback_kept(
    register, pushing_client, endpoint, callbacks, callback_url, capsys
):
    token = register(forward_url=endpoint.url(project="someone-else"))
    capsys.readouterr()

    response = pushing_client.post(callback_url(token=token), json={"n": 1})

    assert response.status_code == 200
    assert endpoint.seen == []
    assert callbacks.document("run-1_approve").get().get("state") == "RECEIVED"
    entry = log_of(capsys)
    assert (entry["forward"], entry["severity"]) == ("refused", "WARNING")
    assert "someone-else" not in json.dumps(entry)  # the detail names ours, not theirs


def test_a_retry_of_a_stored_callback_is_not_forwarded_again(
    register, pushing_client, endpoint, callbacks, callback_url
):
    token = register(forward_url=endpoint.url())
    first = pushing_client.post(callback_url(token=token), json={"n": 1})
    again = pushing_client.post(callback_url(token=token), json={"n": 1})

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(endpoint.seen) == 1


def test_a_tampered_cb_is_never_a_target(
    register, pushing_client, endpoint, callbacks, callback_url, capsys
):
    """cb is proven by the key document: another endpoint in it fails the one Commit.

    The receiver then reads the registration, finds the token right, stores
    the callback and forwards to the endpoint the registration names.
    """
    token = register(forward_url=endpoint.url())
    capsys.readouterr()

    response = pushing_client.post(
        callback_url(token=token, cb=endpoint.url(execution="other")), json={"n": 1}
    )

    assert response.status_code == 200
    assert [request["path"] for request in endpoint.seen] == [
        endpoint.url().removeprefix(endpoint.origin)
    ]
    assert log_of(capsys)["firestoreCalls"] == 3  # the failed Commit, a read, a Commit
    # Stored by the read-decide-write Commit: its version, proven all the same.
    assert_proven_forward_of(endpoint.seen[0]["body"], callbacks.document("run-1_approve"), token)


def test_a_legacy_registration_forwards_to_its_stored_endpoint(
    register, pushing_client, endpoint, callbacks, callback_url
):
    """Registrations from before the key layout (no key document, URL without reg/cb)."""
    token = register(forward_url=endpoint.url(), legacy=True)

    response = pushing_client.post(callback_url(token=token, legacy=True), json={"n": 1})

    assert response.status_code == 200
    assert [request["path"] for request in endpoint.seen] == [
        endpoint.url().removeprefix(endpoint.origin)
    ]
    assert_proven_forward_of(endpoint.seen[0]["body"], callbacks.document("run-1_approve"), token)


def test_a_commit_whose_answer_was_lost_is_still_forwarded(
    register, pushing_client, endpoint, callbacks, callback_url, capsys, monkeypatch
):
    """The Commit applied, its answer lost: the read finds our callback, and it is forwarded.

    Nobody else would forward it: the caller's retry finds it stored (a
    duplicate, not forwarded), and the waiting workflow would only see it at
    the end of its slice.
    """
    from google.api_core import exceptions
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    token = register(forward_url=endpoint.url())
    real_commit = FirestoreClient.commit
    lost: list[bool] = []

    def commit_then_lose_the_answer(self, *args, **kwargs):
        result = real_commit(self, *args, **kwargs)
        if not lost:
            lost.append(True)
            raise exceptions.DeadlineExceeded("the answer was lost")
        return result

    monkeypatch.setattr(FirestoreClient, "commit", commit_then_lose_the_answer)
    capsys.readouterr()

    response = pushing_client.post(callback_url(token=token), json={"n": 1})

    assert response.status_code == 200
    entry = log_of(capsys)
    assert (entry["outcome"], entry["forward"], entry["firestoreCalls"]) == (
        "duplicate",
        "delivered",
        2,
    )
    assert len(endpoint.seen) == 1
    # The version and payload the read found: the ones the Commit wrote.
    assert_proven_forward_of(endpoint.seen[0]["body"], callbacks.document("run-1_approve"), token)
    # A later retry is an ordinary duplicate: not forwarded again.
    assert pushing_client.post(callback_url(token=token), json={"n": 1}).status_code == 200
    assert len(endpoint.seen) == 1


def test_a_retry_whose_commit_got_no_answer_forwards_the_stored_callback_not_its_own(
    register, pushing_client, endpoint, callbacks, callback_url, capsys, monkeypatch
):
    """The retry's Commit was not applied, but it cannot know: it forwards what is stored.

    The stored payload is the first attempt's (its headers differ from the
    retry's), and the proof must cover that string, which the workflow gets.
    """
    from google.api_core import exceptions
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    token = register(forward_url=endpoint.url())
    first = pushing_client.post(
        callback_url(token=token), json={"n": 1}, headers={"User-Agent": "first/1"}
    )
    assert first.status_code == 200

    def unanswered(self, *args, **kwargs):
        raise exceptions.DeadlineExceeded("no answer")

    monkeypatch.setattr(FirestoreClient, "commit", unanswered)
    capsys.readouterr()

    retry = pushing_client.post(
        callback_url(token=token), json={"n": 1}, headers={"User-Agent": "retry/2"}
    )

    assert retry.status_code == 200
    assert log_of(capsys)["outcome"] == "duplicate"
    first_forward, second_forward = (request["body"] for request in endpoint.seen)
    assert second_forward == first_forward
    assert json.loads(second_forward["payload"])["headers"]["user-agent"] == "first/1"
    assert_proven_forward_of(second_forward, callbacks.document("run-1_approve"), token)


def test_a_page_answer_is_forwarded_with_its_proof(register, pushing_client, endpoint, callbacks):
    form = {"title": "Deploy", "choices": [{"value": "approve", "label": "Approve"}]}
    token = register(forward_url=endpoint.url(), form_json=json.dumps(form))

    response = pushing_client.post(
        f"/?runID=run-1&step=approve&token={token}&view=page",
        data={"choice": "approve"},
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    [request] = endpoint.seen
    assert_proven_forward_of(request["body"], callbacks.document("run-1_approve"), token)
    assert json.loads(request["body"]["payload"])["value"] == "approve"


def test_a_url_from_the_request_is_never_a_target(
    register, pushing_client, endpoint, callbacks, callback_url
):
    token = register(forward_url=endpoint.url())

    response = pushing_client.post(
        callback_url(token=token) + "&forwardUrl=" + endpoint.url(execution="other"),
        json={"forwardUrl": endpoint.url(execution="other")},
        headers={"X-Forward-Url": endpoint.url(execution="other")},
    )

    assert response.status_code == 200
    assert [request["path"] for request in endpoint.seen] == [
        endpoint.url().removeprefix(endpoint.origin)
    ]


def test_inconsistent_forward_settings_are_a_logged_500(make_client, callback_url, capsys):
    client = make_client(
        CALLBACKS_FORWARD_ORIGIN="https://example.com", CALLBACKS_FORWARD_LOCAL_TOKEN=TOKEN
    )
    capsys.readouterr()

    response = client.get(callback_url(token="t"))

    assert response.status_code == 500
    assert "loopback" in log_of(capsys)["error"]


def test_deployed_forwards_use_default_credentials_with_the_cloud_platform_scope_once(
    forward_module, monkeypatch
):
    # The deployed seam: google-auth's default credentials (the function's
    # service account), asked for once per instance and reused, so the access
    # token is cached and refreshed by the session, not fetched per callback.
    import google.auth
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    asked: list[tuple] = []

    def default(scopes=None, **_kwargs):
        asked.append(tuple(scopes or ()))
        return Credentials(token="service-account-token"), "my-project"

    monkeypatch.setattr(google.auth, "default", default)
    forwarder = forward_module.Forwarder("my-project", "europe-west1")

    first, second = forwarder._http(), forwarder._http()

    assert isinstance(first, AuthorizedSession)
    assert first is second
    assert asked == [(forward_module.CLOUD_PLATFORM_SCOPE,)]
    assert first.credentials.token == "service-account-token"
