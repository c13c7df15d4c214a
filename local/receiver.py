"""Serve the receiver function (function/main.py) on loopback, as Cloud Functions would.

    with ReceiverServer({"FIRESTORE_EMULATOR_HOST": host, ...}) as receiver:
        requests.get(receiver.url, params={"runID": ..., "step": ..., "token": ...})

It runs functions-framework in a subprocess, so the function sees only its
own environment, and its log lines go to `log_path` (or to a temporary file,
kept until stop(), whose end explains a failed start). The subprocess runs under
local/watchdog.py with a pipe as its stdin: if this process dies without
stopping it (even by SIGKILL), the pipe closes and the receiver, gunicorn
workers included, exits too.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from infra.function_contract import ENTRY_POINT
from local.processes import stop_process_group

FUNCTION_SOURCE = Path(__file__).resolve().parent.parent / "function" / "main.py"
WATCHDOG = Path(__file__).resolve().parent / "watchdog.py"
# How much of the receiver's output a failed start reports.
LOG_TAIL_BYTES = 4000


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
        self._temporary_log: IO[bytes] | None = None
        self._log_start = 0  # where this start's output begins in the log

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
        self.stop()  # what a receiver that exited on its own left behind
        command = [
            sys.executable,
            str(WATCHDOG),
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
        output: IO[bytes]
        if self.log_path:
            output = open(self.log_path, "ab")  # noqa: SIM115 (closed below)
            self._log_start = output.seek(0, os.SEEK_END)
        else:
            # Unlinked at once, so nothing is left behind even if we are
            # killed; closed in stop().
            output = tempfile.TemporaryFile(prefix="receiver-", suffix=".log")  # noqa: SIM115
            self._temporary_log, self._log_start = output, 0
        try:
            self._process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                # The watchdog ends the receiver when this pipe closes, i.e.
                # when we die, even if we are killed before stop() or atexit
                # can run. We never write to it.
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group (gunicorn's arbiter and workers): a
                # Ctrl-C in the terminal reaches us, and we stop it in order.
                start_new_session=True,
            )
        finally:
            if self.log_path:
                output.close()  # the child has its own descriptor
        atexit.register(self.stop)
        try:
            self._wait_until_answering(timeout)
        except BaseException:
            # Nothing is in flight yet, and gunicorn acts on SIGTERM only
            # once it has bound the port (it retries for seconds if taken).
            self._stop(grace_seconds=1)
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (gunicorn and its workers); safe to call twice."""
        self._stop(grace_seconds=10)

    def _stop(self, grace_seconds: float) -> None:
        process, self._process = self._process, None
        if process is not None:
            atexit.unregister(self.stop)
            stop_process_group(process, grace_seconds)
            if process.stdin is not None:
                process.stdin.close()
        if self._temporary_log is not None:
            self._temporary_log.close()
            self._temporary_log = None

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
        """Wait until the receiver itself answers on our port.

        Another server could hold the port (it was free when we chose it, or
        it was given to us): its answers do not count, and our receiver
        exits once gunicorn gives up binding the port.
        """
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if self._process is None or self._process.poll() is not None:
                raise ReceiverError(
                    f"the receiver exited while starting; its output ends with:\n{self._log_tail()}"
                )
            try:
                answer = _get(self.url)
            except (OSError, http.client.HTTPException) as error:
                last = f"no answer ({error!r})"
            else:
                if self._is_own_answer(*answer):
                    return
                last = f"an answer that is not the receiver's (HTTP {answer[0]})"
            if time.monotonic() > deadline:
                message = f"the receiver did not answer on {self.url} in {timeout} s: {last}"
                raise ReceiverError(message)
            time.sleep(0.05)

    def _is_own_answer(self, status: int, content_type: str, body: bytes) -> bool:
        """Whether an answer to a request without runID and step is the one we serve.

        The receiver (function/main.py) refuses it with 400 and a JSON
        object holding only an "error" message about runID. Of another
        function (the benchmark's seed-equivalent one) we only know that a
        callback receiver refuses it with 400.
        """
        if status != 400:
            return False
        if (self.source, self.target) != (FUNCTION_SOURCE, ENTRY_POINT):
            return True
        if content_type.split(";")[0].strip() != "application/json":
            return False
        try:
            answer = json.loads(body)
        except ValueError:
            return False
        return (
            isinstance(answer, dict)
            and list(answer) == ["error"]
            and isinstance(answer["error"], str)
            and "runID" in answer["error"]
        )

    def log_entries(self) -> list[dict]:
        """The structured log lines (one per request) written since this start."""
        entries = []
        for line in self._log_since_start().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # gunicorn's own lines
            if isinstance(entry, dict) and "outcome" in entry:
                entries.append(entry)
        return entries

    def _log_since_start(self) -> str:
        if self.log_path:
            with open(self.log_path, "rb") as log:
                return _read_from(log.fileno(), self._log_start)
        if self._temporary_log is not None:
            return _read_from(self._temporary_log.fileno(), self._log_start)
        return ""

    def _log_tail(self) -> str:
        """The end of what the receiver has written since this start."""
        if self.log_path:
            try:
                with open(self.log_path, "rb") as log:
                    return _tail(log.fileno(), self._log_start)
            except OSError as error:
                return f"(cannot read {self.log_path}: {error})"
        if self._temporary_log is not None:
            return _tail(self._temporary_log.fileno(), self._log_start)
        return ""


def _read_from(fd: int, start: int) -> str:
    size = os.fstat(fd).st_size
    return os.pread(fd, max(0, size - start), start).decode(errors="replace")


def _tail(fd: int, start: int) -> str:
    # pread leaves the file offset alone: the receiver may share it.
    size = os.fstat(fd).st_size
    begin = max(start, size - LOG_TAIL_BYTES)
    return os.pread(fd, max(0, size - begin), begin).decode(errors="replace")


def _get(url: str) -> tuple[int, str, bytes]:
    """GET url without parameters: its status, Content-Type and body, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Content-Type", ""), error.read()
