"""Serve a function the way Cloud Run functions does: functions-framework on gunicorn.

``python -m functions_framework --target ... --source ...`` is the production
entrypoint; without --debug it runs functions_framework._http.gunicorn's
GunicornApplication: a gthread worker, ``WORKERS`` processes (default 1) and
``THREADS`` threads each (default 4 per CPU). Cloud Run functions leaves WORKERS at
1 and Google recommends THREADS equal to the instance's request concurrency, so the
benchmark sets exactly those two variables and nothing else about the server.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.args import CallbackBridgeArgs
from infra.function_contract import ENTRY_POINT
from local.receiver import ReceiverError, ReceiverServer

HOST = "127.0.0.1"  # load never leaves loopback


# The Pulumi program's default functionConcurrency, which it also sets as THREADS.
DEPLOYED_CONCURRENCY = CallbackBridgeArgs(project="", region="", name="").function_concurrency


@dataclass(frozen=True)
class ServerSettings:
    """What the benchmark documents about the server: one instance's shape."""

    workers: int = 1
    threads: int = DEPLOYED_CONCURRENCY


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int
    pid: int
    log_path: str  # the function's stdout/stderr, until the block exits


@contextmanager
def serve_function(
    source: Path,
    env: Mapping[str, str],
    settings: ServerSettings,
    target: str = ENTRY_POINT,
    startup_timeout_s: float = 60.0,
) -> Iterator[RunningServer]:
    """Run ``source``'s ``target`` under functions-framework until the block exits."""
    # The function logs one JSON line per request to stdout, as Cloud Logging wants;
    # a file keeps that cost in the measurement without flooding the terminal.
    log = tempfile.NamedTemporaryFile(prefix="bench-function-", suffix=".log")  # noqa: SIM115
    server = ReceiverServer(
        {**env, "WORKERS": str(settings.workers), "THREADS": str(settings.threads)},
        log_path=Path(log.name),
        source=source,
        target=target,
    )
    try:
        try:
            server.start(timeout=startup_timeout_s)
        except ReceiverError as error:
            tail = Path(log.name).read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{error}; its output ends with:\n{tail}") from error
        assert server.pid is not None
        yield RunningServer(HOST, server.port, server.pid, log.name)
    finally:
        server.stop()
        log.close()
