"""The workflow-callbacks infrastructure as a reusable Pulumi component.

The component (and with it pulumi_gcp) loads on first use, so the local
runner can import infra.workflow_env without pulling in Pulumi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.args import CallbackBridgeArgs, WorkflowSourceError, compose_workflow_source

if TYPE_CHECKING:
    from infra.component import TYPE_TOKEN, CallbackBridge

__all__ = [
    "TYPE_TOKEN",
    "CallbackBridge",
    "CallbackBridgeArgs",
    "WorkflowSourceError",
    "compose_workflow_source",
]


def __getattr__(name: str) -> Any:
    if name in ("CallbackBridge", "TYPE_TOKEN"):
        from infra import component

        return getattr(component, name)
    raise AttributeError(f"module 'infra' has no attribute {name!r}")
