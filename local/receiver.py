"""Serve the receiver function (function/main.py) on loopback, as Cloud Functions would.

    with ReceiverServer({"FIRESTORE_EMULATOR_HOST": host, ...}) as receiver:
        requests.get(receiver.url, params={"runID": ..., "step": ..., "token": ...})

It runs functions-framework in a subprocess, so the function sees only its
own environment, and its log lines go to `log_path` (or are discarded).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from local.processes import die_with_parent, stop_process_group

FUNCTION_SOURCE = Path(__file__).resolve().parent.parent / "function" / "main.py"
ENTRY_POINT = "processEntry"


class ReceiverError(RuntimeError):
    """The receiver could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ReceiverServer:
    """A functions-framework process serving processEntry; a context manager."""

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        log_path: Path | None = None,
        source: Path = FUNCTION_SOURCE,
        target: str = ENTRY_POINT,
    ) -> None:
        # source/target serve another function the same way (the benchmark's
        # seed-equivalent receiver).
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        self.source = source
        self.target = target
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        """The server's process (gunicorn's arbiter), while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 30.0) -> ReceiverServer:
        if self._process is not None and self._process.poll() is None:
            return self
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            self.target,
            "--source",
            str(self.source),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            if self.log_path:
                output.close()  # the child has its own descriptor
        atexit.register(self.stop)
        try:
            self._wait_until_answering(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (gunicorn and its workers); safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        stop_process_group(process, grace_seconds=10)

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                raise ReceiverError(f"the receiver exited while starting (see {self.log_path})")
            try:
                # Any HTTP answer will do: a request without ids gets 400.
                urllib.request.urlopen(self.url, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError as error:
                if time.monotonic() > deadline:
                    raise ReceiverError(f"the receiver did not answer on {self.url}") from error
                time.sleep(0.05)
