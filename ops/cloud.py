"""The verification workflow on a deployed stack, with the user's application-default credentials.

Executions: google-cloud-workflows. The registration: google-cloud-firestore.
The receiver's log lines: google-cloud-logging. Every Google error that has a
usual cause is turned into an OpsError (before the run) or left to verify's
own diagnosis (during it).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.cloud import firestore, workflows_v1
from google.cloud import logging as cloud_logging
from google.cloud.workflows import executions_v1

from ops.deployment import ExecutionStatus, RegistrationReader
from ops.errors import OpsError
from ops.stack_outputs import StackOutputs

ENV_DELIVERY = "CALLBACKS_DELIVERY"
LOG_LINES = 20


def credentials_error() -> OpsError:
    return OpsError(
        "no Google credentials (application-default credentials are not set up)",
        "gcloud auth application-default login",
    )


def registration_reader(outputs: StackOutputs) -> RegistrationReader:
    """Reads the stack's registrations with the user's credentials."""
    try:
        client = firestore.Client(project=outputs.project, database=outputs.database)
    except auth_errors.DefaultCredentialsError:
        raise credentials_error() from None
    return RegistrationReader(client, outputs.collection, outputs.function_url)


def registered_url(
    reader: RegistrationReader, outputs: StackOutputs, run_id: str, step: str
) -> str | None:
    """The URL of a registration, or None; a refused read says which role is missing."""
    return registration(reader, outputs, run_id, step)[0]


def registration(
    reader: RegistrationReader, outputs: StackOutputs, run_id: str, step: str
) -> tuple[str | None, str | None]:
    """A registration's URL and state, or (None, None)."""
    try:
        return reader.registered(run_id, step)
    except google_errors.PermissionDenied as error:
        raise OpsError(
            f"your credentials may not read Firestore database {outputs.database}: "
            f"{_first_line(str(error))}",
            "the URL is rebuilt from the registration: you need roles/datastore.viewer on "
            "the project",
        ) from None


class CloudDeployment:
    """A deployed stack, addressed by its outputs."""

    def __init__(self, outputs: StackOutputs) -> None:
        self.outputs = outputs
        self.function_url = outputs.function_url
        self.description = (
            f"workflow {outputs.verify_workflow} in {outputs.project}/{outputs.region}, "
            f"receiver {outputs.function_url}"
        )
        self._registrations = registration_reader(outputs)
        try:
            self._executions = executions_v1.ExecutionsClient()
            self._workflows = workflows_v1.WorkflowsClient()
            self._logging = cloud_logging.Client(project=outputs.project)
        except auth_errors.DefaultCredentialsError:
            raise credentials_error() from None
        self._workflow_path = self._executions.workflow_path(
            outputs.project, outputs.region, outputs.verify_workflow
        )
        self.delivery = self._delivery()

    def _delivery(self) -> str:
        """The stack's delivery, from the workflow's environment (verify only reports it)."""
        try:
            workflow = self._workflows.get_workflow(name=self._workflow_path)
        except google_errors.GoogleAPICallError as error:
            raise start_error(error, self.outputs) from None
        return str(workflow.user_env_vars.get(ENV_DELIVERY, "push"))

    def start(self, argument: dict[str, Any]) -> str:
        try:
            execution = self._executions.create_execution(
                parent=self._workflow_path,
                execution=executions_v1.Execution(argument=json.dumps(argument)),
            )
        except google_errors.GoogleAPICallError as error:
            raise start_error(error, self.outputs) from None
        return execution.name.rsplit("/", 1)[-1]

    def status(self, run_id: str) -> ExecutionStatus:
        execution = self._executions.get_execution(name=self._execution_name(run_id))
        state = executions_v1.Execution.State(execution.state).name
        error = None
        if execution.error and execution.error.payload:
            error = execution.error.payload
        return ExecutionStatus(
            state=state,
            result=json.loads(execution.result) if execution.result else None,
            error=error,
            ended_at=execution.end_time.timestamp() if execution.end_time else None,
        )

    def registration_url(self, run_id: str, step: str) -> str | None:
        return registered_url(self._registrations, self.outputs, run_id, step)

    def receiver_log(self, run_id: str) -> list[dict[str, Any]]:
        # The receiver's JSON lines land in jsonPayload; the runID is unique.
        log_filter = f'resource.type="cloud_run_revision" AND jsonPayload.runID="{run_id}"'
        try:
            entries = self._logging.list_entries(
                filter_=log_filter, order_by=cloud_logging.DESCENDING, max_results=LOG_LINES
            )
            payloads = [entry.payload for entry in entries if isinstance(entry.payload, dict)]
        except google_errors.GoogleAPICallError:
            return []  # reading logs is a diagnosis aid; without it, verify times out instead
        return list(reversed(payloads))

    def stop(self, run_id: str) -> None:
        # Already ended, or not ours to cancel: nothing lingers either way.
        with contextlib.suppress(google_errors.GoogleAPICallError):
            self._executions.cancel_execution(name=self._execution_name(run_id))

    def _execution_name(self, run_id: str) -> str:
        return f"{self._workflow_path}/executions/{run_id}"


def start_error(error: google_errors.GoogleAPICallError, outputs: StackOutputs) -> OpsError:
    """What a refused start usually means, and the fix."""
    text = str(error)
    project = outputs.project
    if "SERVICE_DISABLED" in text or "has not been used" in text or "is disabled" in text:
        return OpsError(
            f"an API verify needs is not enabled in {project}: {_first_line(text)}",
            f"gcloud services enable workflows.googleapis.com workflowexecutions.googleapis.com "
            f"firestore.googleapis.com logging.googleapis.com --project {project}",
        )
    if isinstance(error, google_errors.NotFound):
        return OpsError(
            f"workflow {outputs.verify_workflow} was not found in {project}/{outputs.region}",
            "run `pulumi up` for this stack (it deploys the verify workflow), and check the "
            "stack you named",
        )
    if isinstance(error, google_errors.PermissionDenied | google_errors.Unauthenticated):
        return OpsError(
            f"your credentials may not run workflows in {project}: {_first_line(text)}",
            "you need roles/workflows.invoker (run) and roles/datastore.viewer (read the "
            "registration) on the project; `gcloud auth application-default login` as a "
            "user who has them",
        )
    return OpsError(f"Google Cloud refused: {_first_line(text)}", "try again in a minute")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
