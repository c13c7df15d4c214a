"""The verification workflow on `python -m local`'s stack: the suite's stand-in for Google.

The workflow runs in a thread (the local runner is blocking), with an
execution id chosen here, as Workflows chooses one when an execution is
created. Everything else is what verify does against a deployed stack: the
registration is read from the (emulated) Firestore, the receiver is called
over HTTP, and the receiver's log lines are read back from its log file.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from local.environment import environment
from local.firestore_emulator import ENV_HOST
from local.stack import LocalStack, local_stack
from local.workflow_runner import RunResult
from ops.deployment import FAILED, SUCCEEDED, ExecutionStatus, RegistrationReader

VERIFY_WORKFLOW = Path(__file__).resolve().parent.parent / "workflow" / "verify.yaml"


class LocalDeployment:
    """One local stack; each start runs workflow/verify.yaml on it in a thread."""

    def __init__(self, stack: LocalStack, receiver_log: Path, function_url: str | None = None):
        settings = stack.settings
        self.stack = stack
        # function_url: a test points verify elsewhere (a receiver that is down).
        self.function_url = (function_url or stack.receiver_url).rstrip("/")
        self.delivery = settings.wait.delivery if settings.callbacks is not None else "poll"
        self.description = f"the local stack, receiver {self.function_url}"
        self._receiver_log = receiver_log
        # The client reads the emulator's address from the environment when
        # it is created (and only then).
        with environment({ENV_HOST: settings.firestore_host}):
            self._client = firestore.Client(
                project=settings.project,
                database=settings.database,
                credentials=AnonymousCredentials(),
            )
        self._registrations = RegistrationReader(
            self._client, settings.collection, self.function_url
        )
        self._runs: dict[str, tuple[threading.Thread, list[tuple[RunResult, float]]]] = {}
        # What getCallbackURL returned, by run: tests compare verify's URLs with them.
        self.returned_urls: dict[str, list[str]] = {}
        # The longest a run can take: its own timeout per wait, plus slack.
        self._longest_run = 10.0

    def start(self, argument: dict[str, Any]) -> str:
        run_id = str(uuid.uuid4())
        waits = 2 if argument.get("page") else 1
        timeout = float(argument.get("timeoutSeconds") or settings_timeout(self.stack))
        self._longest_run = max(self._longest_run, waits * timeout + 10)
        outcome: list[tuple[RunResult, float]] = []

        returned = self.returned_urls.setdefault(run_id, [])

        def execute() -> None:
            result = self.stack.run(
                VERIFY_WORKFLOW, argument, execution_id=run_id, on_callback_url=returned.append
            )
            outcome.append((result, time.time()))

        thread = threading.Thread(target=execute, name=f"verify-{run_id}", daemon=True)
        self._runs[run_id] = (thread, outcome)
        thread.start()
        return run_id

    def status(self, run_id: str) -> ExecutionStatus:
        _, outcome = self._runs[run_id]
        if not outcome:
            return ExecutionStatus(state="ACTIVE")
        result, ended_at = outcome[0]
        if result.succeeded:
            return ExecutionStatus(state=SUCCEEDED, result=result.result, ended_at=ended_at)
        return ExecutionStatus(state=FAILED, error=json.dumps(result.error), ended_at=ended_at)

    def registration_url(self, run_id: str, step: str) -> str | None:
        return self._registrations.url(run_id, step)

    def receiver_log(self, run_id: str) -> list[dict[str, Any]]:
        entries = []
        for line in self._receiver_log.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("runID") == run_id:
                    entries.append(entry)
        return entries

    def stop(self, run_id: str) -> None:
        # The local runner cannot be cancelled: end the execution's endpoints
        # (as Workflows does for a cancelled execution) and let it time out.
        callbacks = self.stack.settings.callbacks
        if callbacks is not None:
            callbacks.end_execution(run_id)

    def close(self) -> None:
        """Wait for the runs to end (they hold the local runner, one run at a time)."""
        for thread, _ in self._runs.values():
            thread.join(self._longest_run)
        self._client.close()


def settings_timeout(stack: LocalStack) -> float:
    return float(stack.settings.wait.timeout_seconds)


@contextlib.contextmanager
def local_deployment(function_url: str | None = None) -> Iterator[LocalDeployment]:
    """A local stack for verify; its receiver logs to a file verify reads."""
    with tempfile.TemporaryDirectory(prefix="verify-") as folder:
        log = Path(folder) / "receiver.log"
        with local_stack(receiver_log=log) as stack:
            deployment = LocalDeployment(stack, log, function_url)
            try:
                yield deployment
            finally:
                deployment.close()
