"""Where a callback's time goes: one receiver's code path, one request at a time.

The function runs in this process through functions-framework's Flask app
(create_app + test client: the same Flask, framework and function code as under
gunicorn, minus the HTTP server) against the emulator, sequentially, so each
callback's cost is not blurred by the others:

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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    # The client library turning the writes into protobufs, before the Commit
    # (the seed's; ours builds its own, function/firestore_commit.py: in "rest").
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
REST = "rest: Flask, functions-framework, the handler's own code"
# The first requests create the Firestore client and channel: kept out of timing.
WARM_UP = 5


@dataclass
class PathProfile:
    """One scenario's per-callback costs."""

    key: str
    label: str
    callbacks: int = 0
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    emulator_cpu_ms: float | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    rpcs_per_callback: dict[str, float] = field(default_factory=dict)
    parts_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return set(self.statuses) == {200}


def profile_path(
    key: str,
    label: str,
    source: Path,
    env: Mapping[str, str],
    callbacks: Sequence[Callback],
    emulator_pid: int | None = None,
) -> PathProfile:
    """``source``'s entry point on ``callbacks``: WARM_UP, then a plain pass and a profiled one.

    The two passes each take half of the rest, so no callback is sent twice.
    """
    half = (len(callbacks) - WARM_UP) // 2
    warm, plain, profiled = (
        callbacks[:WARM_UP],
        callbacks[WARM_UP : WARM_UP + half],
        callbacks[WARM_UP + half :],
    )
    result = PathProfile(key, label, len(plain))
    # The function logs a JSON line per request to stdout: into a file, as under gunicorn.
    with environment(env), tempfile.TemporaryFile("w") as log, contextlib.redirect_stdout(log):
        client = create_app(ENTRY_POINT, str(source)).test_client()

        def post(callback: Callback) -> int:
            answer = client.post(
                callback.target, data=callback.body_bytes, content_type="application/json"
            )
            return answer.status_code

        for callback in warm:
            post(callback)
        emulator0 = tree_cpu_seconds(emulator_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result.statuses.update(post(callback) for callback in plain)
        result.wall_ms = (time.perf_counter() - wall0) / len(plain) * 1000
        result.cpu_ms = (time.process_time() - cpu0) / len(plain) * 1000
        emulator1 = tree_cpu_seconds(emulator_pid)
        if emulator0 is not None and emulator1 is not None:
            result.emulator_cpu_ms = (emulator1 - emulator0) / len(plain) * 1000

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [post(callback) for callback in profiled])
    _split(result, pstats.Stats(profiler), len(profiled))
    return result


def _split(result: PathProfile, stats: pstats.Stats, profiled: int) -> None:
    """Each part's share of the profiled requests, scaled to the plain pass's wall time."""
    _calls, entry_seconds = _cumulative(stats, "main.py", (ENTRY_POINT,))
    if entry_seconds <= 0:
        return
    scale = result.wall_ms / (entry_seconds / profiled * 1000)
    for part, suffix, names in PARTS:
        calls, seconds = _cumulative(stats, suffix, names)
        if calls == 0:
            continue
        if part.startswith("Firestore"):
            result.rpcs_per_callback[part.removeprefix("Firestore ")] = calls / profiled
        result.parts_ms[part] = seconds / profiled * 1000 * scale
    result.parts_ms[REST] = max(0.0, result.wall_ms - sum(result.parts_ms.values()))


def _cumulative(stats: pstats.Stats, suffix: str, names: tuple[str, ...]) -> tuple[int, float]:
    calls, seconds = 0, 0.0
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in names and filename.endswith(suffix):
            # row: (primitive calls, total calls, own time, cumulative time, callers)
            calls += row[1]
            seconds += row[3]
    return calls, seconds
