"""Where a callback's time goes: each receiver's code path, one request at a time.

``python -m bench.ingest --profile`` runs every scenario's function in this process
through functions-framework's Flask app (create_app + test client: the same Flask,
framework and function code as under gunicorn, minus the HTTP server) against the
same emulator, sequentially, so each callback's cost is not blurred by the others:

1. a plain pass measures wall time and CPU time (this process, all its threads,
   including gRPC's) per callback;
2. a cProfile pass attributes the time to the parts of the path: each Firestore RPC,
   request parsing, the log line, and the rest (Flask, framework, handler).

cProfile slows pure-Python code more than C, so its numbers are used as shares of
the profiled pass, scaled to the plain pass's wall time per callback.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flask.testing import FlaskClient
from functions_framework import create_app

from bench.ingest.callbacks import Callback
from bench.procstat import tree_cpu_seconds
from infra.function_contract import ENTRY_POINT
from local.environment import environment

# (label, file suffix, function names): the frames whose cumulative time is reported.
PARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Firestore Commit", "firestore/client.py", ("commit",)),
    # Only when a Commit's precondition failed (retries, conflicts, wrong tokens).
    ("Firestore BatchGetDocuments (read)", "firestore/client.py", ("batch_get_documents",)),
    # The client library turning the writes into protobufs, before the Commit.
    (
        "encode the writes (client library)",
        "firestore_v1/base_batch.py",
        ("create", "set", "update", "delete"),
    ),
    ("parse request + build payload", "callback_request.py", ("parse_callback",)),
    ("read body", "callback_request.py", ("read_body",)),
    ("JSON answer", "replies.py", ("json_response",)),
    ("JSON log line", "request_log.py", ("write_line",)),
)
_ENTRY = ("main.py", ENTRY_POINT)
REST = "rest: Flask, functions-framework, the handler's own code"


@dataclass
class PathProfile:
    """One scenario's per-callback costs."""

    key: str
    label: str
    callbacks: int
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    emulator_cpu_ms: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    rpcs_per_callback: dict[str, float] = field(default_factory=dict)
    parts_ms: dict[str, float] = field(default_factory=dict)


def _post(client: FlaskClient, callback: Callback) -> int:
    response = client.post(
        callback.target, data=callback.body_bytes, content_type="application/json"
    )
    return response.status_code


def _cumulative(stats: pstats.Stats, suffix: str, names: tuple[str, ...]) -> tuple[int, float]:
    calls, seconds = 0, 0.0
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in names and filename.endswith(suffix):
            # row: (primitive calls, total calls, own time, cumulative time, callers)
            calls += row[1]
            seconds += row[3]
    return calls, seconds


def profile_path(
    key: str,
    label: str,
    source: Path,
    env: Mapping[str, str],
    plain: list[Callback],
    profiled: list[Callback],
    emulator_pid: int | None = None,
) -> PathProfile:
    """Measure ``source``'s processEntry on two disjoint lists of callbacks."""
    result = PathProfile(key, label, len(plain))
    # The function logs a JSON line per request to stdout: into a file, as under gunicorn.
    with (
        environment(env),
        tempfile.TemporaryFile("w") as log,
        contextlib.redirect_stdout(log),
    ):
        app = create_app(ENTRY_POINT, str(source))
        client = app.test_client()
        # First request creates the Firestore client and channel: keep it out of timing.
        warm, plain = plain[:5], plain[5:]
        for callback in warm:
            _post(client, callback)
        emulator0 = tree_cpu_seconds(emulator_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for callback in plain:
            status = _post(client, callback)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        result.wall_ms = (time.perf_counter() - wall0) / len(plain) * 1000
        result.cpu_ms = (time.process_time() - cpu0) / len(plain) * 1000
        emulator1 = tree_cpu_seconds(emulator_pid)
        if emulator0 is not None and emulator1 is not None:
            result.emulator_cpu_ms = (emulator1 - emulator0) / len(plain) * 1000
        result.callbacks = len(plain)

        profiler = cProfile.Profile()
        profiler.enable()
        for callback in profiled:
            _post(client, callback)
        profiler.disable()
    stats = pstats.Stats(profiler)
    _calls, entry_seconds = _cumulative(stats, _ENTRY[0], (_ENTRY[1],))
    if entry_seconds <= 0:
        return result
    scale = result.wall_ms / (entry_seconds / len(profiled) * 1000)
    accounted = 0.0
    for part, suffix, names in PARTS:
        calls, seconds = _cumulative(stats, suffix, names)
        if calls == 0:
            continue
        if part.startswith("Firestore"):
            result.rpcs_per_callback[part.removeprefix("Firestore ")] = calls / len(profiled)
        ms = seconds / len(profiled) * 1000 * scale
        result.parts_ms[part] = ms
        accounted += ms
    result.parts_ms[REST] = max(0.0, result.wall_ms - accounted)
    return result


def profile_table(profiles: list[PathProfile]) -> str:
    """Rows: costs; columns: scenarios."""
    header = "| per callback, one at a time | " + " | ".join(p.label for p in profiles) + " |"
    lines = [header, "|---|" + "---:|" * len(profiles)]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    row("wall ms", [f"{p.wall_ms:.2f}" for p in profiles])
    row("CPU ms, receiver (Python process, all threads)", [f"{p.cpu_ms:.2f}" for p in profiles])
    row(
        "CPU ms, emulator (Node)",
        [f"{p.emulator_cpu_ms:.2f}" if p.emulator_cpu_ms is not None else "n/a" for p in profiles],
    )
    row(
        "Firestore RPCs",
        [f"{sum(p.rpcs_per_callback.values()):.1f}" for p in profiles],
    )
    parts = [part for part, _s, _n in PARTS] + [REST]
    for part in parts:
        if any(part in p.parts_ms for p in profiles):
            row(
                f"… {part} (wall ms)",
                [f"{p.parts_ms[part]:.2f}" if part in p.parts_ms else "-" for p in profiles],
            )
    row(
        "statuses",
        [", ".join(f"{s}: {n}" for s, n in sorted(p.statuses.items())) for p in profiles],
    )
    return "\n".join(lines)
