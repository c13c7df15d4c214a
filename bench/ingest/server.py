"""Serve a function the way Cloud Run functions does: functions-framework on gunicorn.

``python -m functions_framework --target ... --source ...`` is the production
entrypoint (local/receiver.py starts it); without --debug it runs
functions_framework._http.gunicorn's GunicornApplication: a gthread worker,
``WORKERS`` processes (default 1) and ``THREADS`` threads each (default 4 per
CPU). Cloud Run functions leaves WORKERS at 1 and Google recommends THREADS
equal to the instance's request concurrency, so the benchmark sets exactly
those two variables and nothing else about the server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.args import CallbackBridgeArgs
from local.receiver import ReceiverServer

# The Pulumi program's default functionConcurrency, which it also sets as THREADS.
DEPLOYED_CONCURRENCY = CallbackBridgeArgs(project="", region="", name="").function_concurrency


@dataclass(frozen=True)
class ServerSettings:
    """What the benchmark documents about the server: one instance's shape."""

    workers: int = 1
    threads: int = DEPLOYED_CONCURRENCY


@contextmanager
def serve_function(
    source: Path, env: Mapping[str, str], settings: ServerSettings
) -> Iterator[ReceiverServer]:
    """Run ``source``'s entry point on 127.0.0.1 until the block exits.

    The function's one JSON line per request goes to a file (the receiver's
    log), as under Cloud Run: its cost stays in the measurement, and the
    lines can be read back (``log_entries``).
    """
    shape = {"WORKERS": str(settings.workers), "THREADS": str(settings.threads)}
    server = ReceiverServer({**env, **shape}, source=source)
    try:
        server.start(timeout=60.0)
        yield server
    finally:
        server.stop()
