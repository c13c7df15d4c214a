"""What the browser tests share besides the ``browser`` fixture (conftest.py)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from pathlib import Path
from typing import Any

from local.workflow_runner import RunResult

# Seconds to wait for a page, a workflow's URLs or its end.
TIMEOUT = 30
# The environment variable that asks the tests to copy their screenshots
# there too (a directory, relative to the repository): make screenshots.
SCREENSHOTS_DIR = "SCREENSHOTS_DIR"


class RunInBackground:
    """A workflow on the local stack in a thread, so the test can answer it meanwhile.

    The URLs getCallbackURL returns arrive in ``urls``, the maps
    getApprovalURLs returns in ``approvals``, each the moment it returns.
    """

    def __init__(self, stack: Any, workflow: Path | dict[str, Any], argument: Any) -> None:
        self.urls: queue.Queue[str] = queue.Queue()
        self.approvals: queue.Queue[dict[str, Any]] = queue.Queue()
        self.result: RunResult | None = None
        self.thread = threading.Thread(
            target=self._run, args=(stack, workflow, argument), daemon=True
        )
        self.thread.start()

    def _run(self, stack: Any, workflow: Path | dict[str, Any], argument: Any) -> None:
        self.result = stack.run(
            workflow, argument, on_callback_url=self.urls.put, on_approvals=self.approvals.put
        )

    def approval_links(self) -> dict[str, Any]:
        """The next map getApprovalURLs returned; the run's error if it ended without one."""
        give_up = time.monotonic() + TIMEOUT
        while time.monotonic() < give_up:
            with contextlib.suppress(queue.Empty):
                return self.approvals.get(timeout=0.2)
            if not self.thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    return self.approvals.get_nowait()  # put just before the run ended
                error = self.result.error if self.result is not None else None
                raise AssertionError(f"the workflow ended without approval links: {error}")
        raise AssertionError("getApprovalURLs did not return in time")

    def finished(self) -> RunResult:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the workflow did not finish"
        assert self.result is not None
        return self.result
