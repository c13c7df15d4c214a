"""ops.cloud against fake Google clients: the requests it makes and how it reads answers.

No Google Cloud here: the fakes stand in for google-cloud-workflows,
-firestore and -logging, and record what they are asked, so these tests pin
the resource names, the execution argument and the error advice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.cloud.workflows import executions_v1

from ops import cloud
from ops.errors import OpsError
from ops.stack_outputs import StackOutputs

OUTPUTS = StackOutputs(
    project="my-project",
    region="europe-west1",
    function_url="https://fn.example",
    verify_workflow="callbacks-dev-verify",
    database="callbacks-dev",
    collection="workflow_callbacks",
)
WORKFLOW = "projects/my-project/locations/europe-west1/workflows/callbacks-dev-verify"


class FakeExecutions:
    workflow_path = staticmethod(executions_v1.ExecutionsClient.workflow_path)

    def __init__(self) -> None:
        self.created: list[tuple[str, executions_v1.Execution]] = []
        self.cancelled: list[str] = []
        self.refuse: Exception | None = None
        self.execution = executions_v1.Execution(state=executions_v1.Execution.State.ACTIVE)

    def create_execution(self, parent: str, execution: executions_v1.Execution):
        if self.refuse is not None:
            raise self.refuse
        self.created.append((parent, execution))
        return executions_v1.Execution(name=f"{parent}/executions/run-1")

    def get_execution(self, name: str) -> executions_v1.Execution:
        self.asked = name
        return self.execution

    def cancel_execution(self, name: str) -> None:
        self.cancelled.append(name)
        raise google_errors.FailedPrecondition("execution already finished")


class FakeWorkflows:
    def __init__(self, delivery: str = "poll") -> None:
        self.delivery = delivery

    def get_workflow(self, name: str):
        assert name == WORKFLOW
        return SimpleNamespace(user_env_vars={"CALLBACKS_DELIVERY": self.delivery})


class FakeLogging:
    def __init__(self, project: str) -> None:
        self.filters: list[str] = []

    def list_entries(self, filter_: str, order_by: str, max_results: int):
        self.filters.append(filter_)
        newest_first = [
            {"runID": "run-1", "status": 200, "forward": "delivered"},
            "a text line",
            {"runID": "run-1", "status": 403},
        ]
        return [SimpleNamespace(payload=payload) for payload in newest_first]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    executions = FakeExecutions()
    monkeypatch.setattr(cloud.executions_v1, "ExecutionsClient", lambda: executions)
    monkeypatch.setattr(cloud.workflows_v1, "WorkflowsClient", lambda: FakeWorkflows())
    monkeypatch.setattr(
        cloud.firestore,
        "Client",
        lambda project, database: SimpleNamespace(
            collection=lambda name: SimpleNamespace(), project=project, database=database
        ),
    )
    logging = FakeLogging("my-project")
    monkeypatch.setattr(cloud.cloud_logging, "Client", lambda project: logging)
    return SimpleNamespace(executions=executions, logging=logging)


def test_start_runs_the_verify_workflow_with_the_argument_as_json(fakes) -> None:
    deployment = cloud.CloudDeployment(OUTPUTS)
    assert deployment.delivery == "poll"  # read from the workflow's environment
    assert deployment.start({"timeoutSeconds": 120, "page": True}) == "run-1"
    ((parent, execution),) = fakes.executions.created
    assert parent == WORKFLOW
    assert json.loads(execution.argument) == {"timeoutSeconds": 120, "page": True}


def test_status_reads_state_result_error_and_end_time(fakes) -> None:
    deployment = cloud.CloudDeployment(OUTPUTS)
    assert deployment.status("run-1").active
    assert fakes.executions.asked == f"{WORKFLOW}/executions/run-1"
    ended = datetime(2026, 12, 2, 12, 0, 1, tzinfo=UTC)
    fakes.executions.execution = executions_v1.Execution(
        state=executions_v1.Execution.State.FAILED,
        error=executions_v1.Execution.Error(payload='{"tags": ["TimeoutError"]}'),
        end_time=ended,
    )
    status = deployment.status("run-1")
    assert (status.state, status.error) == ("FAILED", '{"tags": ["TimeoutError"]}')
    assert status.ended_at == ended.timestamp()
    fakes.executions.execution = executions_v1.Execution(
        state=executions_v1.Execution.State.SUCCEEDED, result='{"machine": {"body": 1}}'
    )
    assert deployment.status("run-1").result == {"machine": {"body": 1}}


def test_receiver_log_is_filtered_by_run_and_oldest_first(fakes) -> None:
    entries = cloud.CloudDeployment(OUTPUTS).receiver_log("run-1")
    assert entries == [
        {"runID": "run-1", "status": 403},
        {"runID": "run-1", "status": 200, "forward": "delivered"},
    ]
    assert fakes.logging.filters == [
        'resource.type="cloud_run_revision" AND jsonPayload.runID="run-1"'
    ]


def test_stop_cancels_and_tolerates_an_ended_execution(fakes) -> None:
    cloud.CloudDeployment(OUTPUTS).stop("run-1")
    assert fakes.executions.cancelled == [f"{WORKFLOW}/executions/run-1"]


@pytest.mark.parametrize(
    ("refusal", "what", "fix"),
    [
        (
            google_errors.PermissionDenied(
                "Workflow Executions API has not been used in project 123 before or it is "
                "disabled. reason: SERVICE_DISABLED"
            ),
            "an API verify needs is not enabled in my-project",
            "gcloud services enable workflows.googleapis.com workflowexecutions.googleapis.com",
        ),
        (
            google_errors.NotFound("Resource not found"),
            "workflow callbacks-dev-verify was not found in my-project/europe-west1",
            "run `pulumi up` for this stack",
        ),
        (
            google_errors.PermissionDenied("Permission 'workflows.executions.create' denied"),
            "your credentials may not run workflows in my-project",
            "roles/workflows.invoker",
        ),
    ],
)
def test_a_refused_start_says_why_and_what_to_do(fakes, refusal, what, fix) -> None:
    deployment = cloud.CloudDeployment(OUTPUTS)
    fakes.executions.refuse = refusal
    with pytest.raises(OpsError) as raised:
        deployment.start({})
    assert raised.value.what.startswith(what)
    assert fix in raised.value.fix


def test_no_credentials_is_one_line_with_the_login_command(monkeypatch) -> None:
    def no_credentials() -> Any:
        raise auth_errors.DefaultCredentialsError("Your default credentials were not found")

    monkeypatch.setattr(cloud.executions_v1, "ExecutionsClient", no_credentials)
    with pytest.raises(OpsError) as raised:
        cloud.CloudDeployment(OUTPUTS)
    assert raised.value.fix == "gcloud auth application-default login"
