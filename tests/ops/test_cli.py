"""python -m ops as a user runs it: one clear line and exit 2 for what they can fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from local.registration import Registration
from ops.stack_outputs import StackOutputs, from_json

OUTPUTS = {
    "functionUrl": "https://callbacks-dev-abc-ew.a.run.app/",
    "verifyWorkflowName": "callbacks-dev-verify",
    "workflowId": "projects/my-project/locations/europe-west1/workflows/callbacks-dev",
    "firestoreDatabase": "callbacks-dev",
    "callbacksCollection": "workflow_callbacks",
}


def ops(repo_root: Path, *args: str, stdin: str = "", path: str | None = None):
    env = {**os.environ}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=repo_root,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.e2e
def test_verify_local_passes_end_to_end(repo_root: Path, firestore_emulator_host: str) -> None:
    done = ops(repo_root, "verify", "--local", "--timeout", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    result matches" in done.stdout
    assert "verify passed in" in done.stdout


def test_outputs_that_are_not_json_are_one_line(repo_root: Path) -> None:
    done = ops(repo_root, "verify", "--outputs", "-", stdin="Current stack outputs (5):")
    assert done.returncode == 2
    assert done.stderr.startswith("error: standard input is not JSON")
    assert "fix: pass what `pulumi stack output --json` prints" in done.stderr
    assert "Traceback" not in done.stderr


def test_outputs_of_an_older_deploy_name_what_is_missing(repo_root: Path) -> None:
    older = {name: value for name, value in OUTPUTS.items() if name != "verifyWorkflowName"}
    done = ops(repo_root, "verify", "--outputs", "-", stdin=json.dumps(older))
    assert done.returncode == 2
    assert "lacks the outputs verifyWorkflowName" in done.stderr
    assert "fix: run `pulumi up`" in done.stderr


def test_no_pulumi_cli_says_how_to_do_without(repo_root: Path, tmp_path: Path) -> None:
    # A PATH with python but no pulumi.
    done = ops(repo_root, "verify", "--stack", "dev", path=str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "error: the pulumi CLI is not installed" in done.stderr
    assert "pulumi stack output --json | python -m ops verify --outputs -" in done.stderr


def test_a_timeout_that_is_not_a_positive_number_is_refused(repo_root: Path) -> None:
    done = ops(repo_root, "verify", "--local", "--timeout", "0")
    assert done.returncode == 2
    assert "must be greater than 0" in done.stderr


def test_outputs_give_project_and_region_from_the_workflow_id() -> None:
    outputs = from_json(json.dumps(OUTPUTS), "test")
    assert outputs == StackOutputs(
        project="my-project",
        region="europe-west1",
        function_url="https://callbacks-dev-abc-ew.a.run.app",
        verify_workflow="callbacks-dev-verify",
        database="callbacks-dev",
        collection="workflow_callbacks",
    )
    explicit = from_json(json.dumps({**OUTPUTS, "project": "p2", "region": "us-east1"}), "t")
    assert (explicit.project, explicit.region) == ("p2", "us-east1")


def test_url_prints_what_a_waiting_execution_registered(
    repo_root: Path,
    firestore_emulator_host: str,
    firestore_client,
    firestore_database: str,
    gcp_project: str,
) -> None:
    token = "t" * 64
    endpoint = "https://workflowexecutions.googleapis.com/v1/projects/p/locations/r/x"
    registration = Registration("run-7_approval", token, endpoint, '{"title": "Go?"}')
    register(firestore_client, registration)
    created = firestore_client.collection("workflow_callbacks").document("run-7_approval").get()
    outputs = json.dumps(
        {**OUTPUTS, "project": gcp_project, "region": "r", "firestoreDatabase": firestore_database}
    )
    execution = "projects/my-project/locations/europe-west1/workflows/w/executions/run-7"

    done = ops(repo_root, "url", execution, "approval", "--outputs", "-", stdin=outputs)

    assert done.returncode == 0, done.stderr
    url = urlsplit(done.stdout.strip())
    assert f"{url.scheme}://{url.netloc}" == "https://callbacks-dev-abc-ew.a.run.app"
    query = parse_qs(url.query)
    assert query["runID"] == ["run-7"] and query["step"] == ["approval"]
    assert query["token"] == [token] and query["cb"] == [endpoint]
    assert query["view"] == ["page"]  # registered with a form: the page for people
    registered = datetime.fromisoformat(query["reg"][0].replace("Z", "+00:00"))
    assert registered == created.create_time == created.update_time

    # Registered again over a tombstone of an earlier wait: the document is
    # older than the registration, and reg is the WAITING version.
    document = firestore_client.collection("workflow_callbacks").document("run-7_approval")
    document.update({"state": "WAITING", "createdAt": datetime.now(UTC)})
    rewritten = document.get()
    again = ops(repo_root, "url", execution, "approval", "--outputs", "-", stdin=outputs)
    reg = parse_qs(urlsplit(again.stdout.strip()).query)["reg"][0]
    assert datetime.fromisoformat(reg.replace("Z", "+00:00")) == rewritten.update_time
    assert rewritten.update_time != rewritten.create_time

    missing = ops(repo_root, "url", "run-8", "approval", "--outputs", "-", stdin=outputs)
    assert missing.returncode == 2
    assert "error: no registration of step 'approval' for execution run-8" in missing.stderr


def test_the_outputs_ops_reads_are_the_ones_the_program_exports() -> None:
    from infra.component import CallbackBridge
    from ops.stack_outputs import REQUIRED

    assert {*REQUIRED, "project", "region"} <= set(CallbackBridge.OUTPUTS)


def test_url_of_a_consumed_registration_says_what_a_caller_gets(
    repo_root: Path,
    firestore_emulator_host: str,
    firestore_client,
    firestore_database: str,
    gcp_project: str,
) -> None:
    registration = Registration("run-9_approval", "t" * 64)
    register(firestore_client, registration)
    firestore_client.collection("workflow_callbacks").document("run-9_approval").update(
        {"state": "CONSUMED"}
    )
    outputs = json.dumps(
        {**OUTPUTS, "project": gcp_project, "region": "r", "firestoreDatabase": firestore_database}
    )

    done = ops(repo_root, "url", "run-9", "approval", "--outputs", "-", stdin=outputs)

    assert done.returncode == 0, done.stderr
    assert "token=" + "t" * 64 in done.stdout
    assert "note: the workflow already took this callback" in done.stderr


def register(firestore_client, registration: Registration) -> None:
    """Both documents of a registration, as getCallbackURL writes them."""
    batch = firestore_client.batch()
    documents = registration.documents(datetime.now(UTC), timedelta(hours=1))
    for document_id, fields in documents.items():
        batch.create(
            firestore_client.collection("workflow_callbacks").document(document_id), fields
        )
    batch.commit()
