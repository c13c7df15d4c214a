"""CallbackBridge used from another Pulumi program, without this project's config."""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra import CallbackBridge, CallbackBridgeArgs

APPROVALS = (
    "main:\n"
    "  steps:\n"
    "    - url:\n"
    "        call: getCallbackURL\n"
    "        args: {step: approve}\n"
    "        result: url\n"
    "    - done:\n"
    "        return: ${url}\n"
)


def _bridge(**overrides: object) -> None:
    args = CallbackBridgeArgs(
        project="shared-project", region="us-central1", name="approvals-qa", **overrides
    )
    bridge = CallbackBridge("approvals", args)
    pulumi.export("url", bridge.function_url)
    pulumi.export("template", bridge.callback_url_template)


def test_another_program_deploys_its_own_workflow_under_its_own_names(deploy_catching) -> None:
    deployment, error = deploy_catching(
        program=lambda: _bridge(workflow_source=APPROVALS, enable_apis=False)
    )

    assert error is None
    workflow = deployment.named("approvals-workflow").inputs
    assert workflow["name"] == "approvals-qa"
    assert workflow["sourceContents"].startswith(APPROVALS)
    assert "waitForResponse:" in workflow["sourceContents"]
    # The verification workflow comes with it, under the same base name.
    assert deployment.named("approvals-verify-workflow").inputs["name"] == "approvals-qa-verify"
    assert deployment.one("gcp:cloudfunctionsv2/function:Function").inputs["project"] == (
        "shared-project"
    )
    # The surrounding program manages the project's services itself.
    assert deployment.of_type("gcp:projects/service:Service") == []
    assert deployment.outputs["template"].endswith("?runID={runID}&step={step}&token={token}")


def test_invalid_arguments_fail_before_anything_is_registered(deploy_catching) -> None:
    deployment, error = deploy_catching(
        program=lambda: _bridge(
            workflow_source="getCallbackURL:\n  steps: []\nmain:\n  steps: []\n",
            call_log_level="EVERYTHING",
            function_source_dir=Path("/nonexistent/function"),
        )
    )

    assert isinstance(error, ValueError)
    message = str(error)
    assert "CallbackBridge 'approvals' has invalid arguments" in message
    assert "defines getCallbackURL itself" in message
    assert "callLogLevel 'EVERYTHING'" in message
    assert "functionSourceDir '/nonexistent/function' is not a folder" in message
    assert deployment.resources == []


def test_a_workflow_source_workflows_would_refuse_fails_at_up_with_the_step(deploy_catching):
    # Valid YAML the emulator runs, but Workflows refuses it at deploy time:
    # `failure` exists only inside the except block that creates it.
    source = APPROVALS.replace(
        "    - done:\n        return: ${url}\n",
        "    - done:\n        return: ${failure}\n",
    )
    deployment, error = deploy_catching(program=lambda: _bridge(workflow_source=source))

    assert isinstance(error, ValueError)
    assert "Workflows would refuse this source at deploy time" in str(error)
    assert "main/done: reads 'failure', which nothing creates" in str(error)
    assert deployment.resources == []
