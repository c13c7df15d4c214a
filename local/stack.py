"""The local stack: Firestore emulator + receiver function + workflow runner, on loopback.

    with local_stack() as stack:
        result = stack.run("workflow/example.yaml", {"subject": "Deploy"})

Everything started here is stopped when the ``with`` block ends, however it
ends (exception, Ctrl-C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.workflow_env import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    ENV_COLLECTION,
    ENV_DATABASE,
    ENV_TTL,
    WaitSettings,
)
from local.callback_api import LOCAL_FORWARD_TOKEN, CallbackApi
from local.firestore_emulator import ENV_HOST, firestore_emulator
from local.receiver import ReceiverServer
from local.workflow_runner import DEFAULT_PROJECT, RunResult, RunSettings, run_workflow

# The region the local callback endpoints claim to be in; any name works, as
# long as the receiver is told the same one (CALLBACKS_REGION).
LOCAL_REGION = "local1"

# Short polls so a local round trip takes seconds, not the deployed minutes.
LOCAL_WAIT = WaitSettings(
    poll_initial_seconds=0.5,
    poll_multiplier=2.0,
    poll_max_seconds=2.0,
    timeout_seconds=3_600,
    ttl_seconds=7_200,
)


@dataclass(frozen=True)
class LocalStack:
    settings: RunSettings

    @property
    def receiver_url(self) -> str:
        return self.settings.base_url

    def run(
        self, workflow: str | Path | dict[str, Any], argument: Any = None, **hooks: Any
    ) -> RunResult:
        """run_workflow on this stack; ``hooks`` are run_workflow's keyword arguments."""
        return run_workflow(workflow, argument, settings=self.settings, **hooks)


@contextlib.contextmanager
def local_stack(
    *,
    project: str = DEFAULT_PROJECT,
    database: str = DEFAULT_DATABASE,
    collection: str = DEFAULT_COLLECTION,
    wait: WaitSettings = LOCAL_WAIT,
    receiver_log: Path | None = None,
    allowed_origins: tuple[str, ...] = (),
) -> Iterator[LocalStack]:
    """Start (or reuse, if FIRESTORE_EMULATOR_HOST is set) the emulator, serve the receiver
    and the callback endpoints it forwards to (push delivery)."""
    with (
        firestore_emulator() as host,
        CallbackApi(project, LOCAL_REGION) as callbacks,
        ReceiverServer(
            receiver_env(host, project, database, collection, wait, callbacks)
            | {"CALLBACKS_ALLOWED_ORIGINS": ",".join(allowed_origins)},
            log_path=receiver_log,
        ) as receiver,
    ):
        yield LocalStack(
            RunSettings(
                firestore_host=host,
                base_url=receiver.url,
                project=project,
                database=database,
                collection=collection,
                wait=wait,
                callbacks=callbacks,
            )
        )


def receiver_env(
    firestore_host: str,
    project: str,
    database: str,
    collection: str,
    wait: WaitSettings,
    callbacks: CallbackApi | None = None,
) -> dict[str, str]:
    """The receiver's environment on the local stack; with ``callbacks``, it forwards there."""
    env = {
        ENV_HOST: firestore_host,
        "GOOGLE_CLOUD_PROJECT": project,
        ENV_DATABASE: database,
        ENV_COLLECTION: collection,
        ENV_TTL: str(wait.ttl_seconds),
    }
    if callbacks is not None:
        env |= {
            "CALLBACKS_REGION": callbacks.region,
            "CALLBACKS_FORWARD_ORIGIN": callbacks.origin,
            "CALLBACKS_FORWARD_LOCAL_TOKEN": LOCAL_FORWARD_TOKEN,
        }
    return env
