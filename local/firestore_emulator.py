"""Start the npm Firestore emulator (local/firestore-emulator) on loopback.

    with FirestoreEmulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host

or, reusing an emulator someone already runs:

    with firestore_emulator() as host: ...

The emulator keeps everything in memory: stopping it loses all data.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from local.environment import environment
from local.processes import stop_process_group

EMULATOR_DIR = Path(__file__).resolve().parent / "firestore-emulator"
SERVER_JS = EMULATOR_DIR / "server.js"
PACKAGE_DIR = EMULATOR_DIR / "node_modules" / "@firestore-emulator" / "server"
ENV_HOST = "FIRESTORE_EMULATOR_HOST"

_READY = re.compile(r"Firestore emulator listening on 127\.0\.0\.1:(\d+)")
# Any project id works against the emulator; only used for the readiness probe.
_PROBE_PROJECT = "demo-emulator-probe"


class EmulatorError(RuntimeError):
    """The emulator could not be started."""


class FirestoreEmulator:
    """One emulator process; a context manager that starts and stops it."""

    def __init__(self, port: int | None = None) -> None:
        # None asks the server for a free port; after the first start we keep
        # it, so stop() then start() restarts on the same address.
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def host(self) -> str:
        """The FIRESTORE_EMULATOR_HOST value, "127.0.0.1:PORT"."""
        if self._port is None or self._port == 0:
            raise EmulatorError("the emulator has not been started yet")
        return f"127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> FirestoreEmulator:
        """Spawn the emulator and wait until it answers a gRPC call."""
        if self.running:
            return self
        node = shutil.which("node")
        if node is None:
            raise EmulatorError("node is not installed (Node 20+ is needed for the emulator)")
        if not PACKAGE_DIR.is_dir():
            missing = PACKAGE_DIR.relative_to(EMULATOR_DIR.parent.parent)
            raise EmulatorError(f"{missing} is missing: run make install")
        # Output goes to a file, not a pipe nobody drains (a full pipe would
        # block the emulator); it also explains a failed start.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix="firestore-emulator-", suffix=".log"
        )
        self._process = subprocess.Popen(
            [node, str(SERVER_JS), str(self._port or 0), "--exit-on-stdin-close"],
            cwd=EMULATOR_DIR,
            # The emulator exits when this pipe closes, i.e. when we die,
            # even if we are killed before stop() or atexit can run.
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C in the terminal reaches us, and
            # we stop it in order instead of racing it.
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._port = self._wait_for_port(timeout)
            self._wait_until_answering(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the emulator; safe to call more than once."""
        process, self._process = self._process, None
        if process is not None:
            atexit.unregister(self.stop)
            stop_process_group(process, grace_seconds=5)
            if process.stdin is not None:
                process.stdin.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _output(self) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(errors="replace")

    def _check_alive(self) -> None:
        if self._process is None or self._process.poll() is not None:
            raise EmulatorError(f"the Firestore emulator exited:\n{self._output()}")

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            match = _READY.search(self._output())
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        raise EmulatorError(f"the Firestore emulator did not start in {timeout} s")

    def _wait_until_answering(self, timeout: float) -> None:
        # Imported here so that merely importing this module stays cheap.
        from google.api_core import exceptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore

        with environment({ENV_HOST: self.host}):
            client = firestore.Client(project=_PROBE_PROJECT, credentials=AnonymousCredentials())
        probe = client.collection("probe").document("probe")
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._check_alive()
                try:
                    probe.get(retry=None, timeout=2)
                    return
                except exceptions.GoogleAPICallError as error:
                    if time.monotonic() > deadline:
                        message = f"the Firestore emulator does not answer: {error}"
                        raise EmulatorError(message) from error
                    time.sleep(0.1)
        finally:
            client.close()


@contextlib.contextmanager
def firestore_emulator() -> Iterator[str]:
    """Yield an emulator host: FIRESTORE_EMULATOR_HOST if set, else a new emulator's."""
    existing = os.environ.get(ENV_HOST)
    if existing:
        yield existing
        return
    with FirestoreEmulator() as emulator:
        yield emulator.host
