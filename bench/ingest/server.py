"""Serve a function the way Cloud Run functions does: functions-framework on gunicorn.

``python -m functions_framework --target ... --source ...`` is the production
entrypoint; without --debug it runs functions_framework._http.gunicorn's
GunicornApplication: a gthread worker, ``WORKERS`` processes (default 1) and
``THREADS`` threads each (default 4 per CPU). Cloud Run functions leaves WORKERS at
1 and Google recommends THREADS equal to the instance's request concurrency, so the
benchmark sets exactly those two variables and nothing else about the server.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # load never leaves loopback


@dataclass(frozen=True)
class ServerSettings:
    """What the benchmark documents about the server: one instance's shape."""

    workers: int = 1
    threads: int = 8


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int
    pid: int
    log_path: str  # the function's stdout/stderr, until the block exits


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"functions-framework exited with {proc.returncode}")
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            # Any HTTP answer (a 400 for the missing runID) means the worker serves.
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise TimeoutError(f"functions-framework did not serve on {HOST}:{port} in {timeout_s}s")


@contextmanager
def serve_function(
    source: Path,
    env: Mapping[str, str],
    settings: ServerSettings,
    target: str = "processEntry",
    startup_timeout_s: float = 60.0,
) -> Iterator[RunningServer]:
    """Run ``source``'s ``target`` under functions-framework until the block exits."""
    port = free_port()
    full_env = {
        **os.environ,
        **env,
        "WORKERS": str(settings.workers),
        "THREADS": str(settings.threads),
    }
    cmd = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={target}",
        f"--source={source}",
        f"--host={HOST}",
        f"--port={port}",
    ]
    # The function logs one JSON line per request to stdout, as Cloud Logging wants;
    # a file keeps that cost in the measurement without flooding the terminal.
    log = tempfile.NamedTemporaryFile(prefix="bench-function-", suffix=".log")  # noqa: SIM115
    # Own session so the gunicorn arbiter and its worker are stopped together.
    proc = subprocess.Popen(
        cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        try:
            _wait_until_serving(proc, port, startup_timeout_s)
        except (RuntimeError, TimeoutError) as error:
            tail = Path(log.name).read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{error}; its output ends with:\n{tail}") from error
        yield RunningServer(HOST, port, proc.pid, log.name)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.close()
