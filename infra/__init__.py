"""The workflow-callbacks infrastructure as a reusable Pulumi component.

Importing the package loads pulumi_gcp; infra.workflow_env stays importable
on its own (no Pulumi import) for the local runner.
"""

from infra.args import CallbackBridgeArgs, WorkflowSourceError, compose_workflow_source
from infra.component import TYPE_TOKEN, CallbackBridge

__all__ = [
    "TYPE_TOKEN",
    "CallbackBridge",
    "CallbackBridgeArgs",
    "WorkflowSourceError",
    "compose_workflow_source",
]
