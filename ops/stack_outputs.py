"""A stack's outputs: where its function, workflows and Firestore data are.

Read through Pulumi's Automation API (which runs the `pulumi` CLI that
deploying needs anyway), or from the JSON that `pulumi stack output --json`
prints, for a machine (a CI runner, say) that has the outputs but not the
stack's backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError

# workflowId is the workflow's full resource name (pulumi-gcp's id for
# google_workflows_workflow): projects/P/locations/R/workflows/W.
_WORKFLOW_ID = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/workflows/[^/]+"
)
REQUIRED = ("functionUrl", "verifyWorkflowName", "firestoreDatabase", "callbacksCollection")


@dataclass(frozen=True)
class StackOutputs:
    """What the ops commands need of a stack, by the names the program exports."""

    project: str
    region: str
    function_url: str
    verify_workflow: str
    database: str
    collection: str

    @classmethod
    def from_mapping(cls, outputs: Mapping[str, Any], origin: str) -> StackOutputs:
        """``outputs`` by exported name; ``origin`` says where they came from, for errors."""
        missing = [name for name in REQUIRED if not isinstance(outputs.get(name), str)]
        project, region = outputs.get("project"), outputs.get("region")
        if not (isinstance(project, str) and isinstance(region, str)):
            match = _WORKFLOW_ID.fullmatch(str(outputs.get("workflowId", "")))
            if match is None:
                missing.append("project/region (or workflowId)")
            else:
                project, region = match["project"], match["region"]
        if missing:
            raise OpsError(
                f"{origin} lacks the outputs {', '.join(missing)}",
                "run `pulumi up` with this version of the program (it exports them), "
                "then try again",
            )
        return cls(
            project=str(project),
            region=str(region),
            function_url=str(outputs["functionUrl"]).rstrip("/"),
            verify_workflow=str(outputs["verifyWorkflowName"]),
            database=str(outputs["firestoreDatabase"]),
            collection=str(outputs["callbacksCollection"]),
        )


def from_json(text: str, origin: str) -> StackOutputs:
    """Outputs as `pulumi stack output --json` prints them."""
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise OpsError(
            f"{origin} is not JSON ({error})",
            "pass what `pulumi stack output --json` prints",
        ) from None
    if not isinstance(outputs, dict):
        raise OpsError(f"{origin} is not a JSON object", "pass `pulumi stack output --json`")
    return StackOutputs.from_mapping(outputs, origin)


def from_stack(stack_name: str, work_dir: Path) -> StackOutputs:
    """Outputs of ``stack_name`` of the Pulumi project in ``work_dir`` (Automation API)."""
    # Imported here: the rest of the tool (--outputs, --local) runs without it.
    from pulumi import automation as auto

    origin = f"stack {stack_name!r}"
    try:
        stack = auto.select_stack(stack_name=stack_name, work_dir=str(work_dir))
        outputs = {name: output.value for name, output in stack.outputs().items()}
    except FileNotFoundError:
        raise OpsError(
            "the pulumi CLI is not installed (the Automation API runs it to read outputs)",
            "install it (https://www.pulumi.com/docs/iac/download-install/), or pipe the "
            "outputs in: pulumi stack output --json | python -m ops verify --outputs -",
        ) from None
    except auto.StackNotFoundError:
        raise OpsError(
            f"{origin} was not found in {work_dir}",
            "`pulumi stack ls` lists the stacks; pass one with --stack",
        ) from None
    except auto.CommandError as error:
        first_line = next((line for line in str(error).splitlines() if line.strip()), "")
        raise OpsError(
            f"pulumi could not read {origin}: {first_line}",
            "check `pulumi whoami` (logged in to the right backend?) and `pulumi stack ls`",
        ) from None
    return StackOutputs.from_mapping(outputs, origin)
