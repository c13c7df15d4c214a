"""A bounded, closed-loop HTTP load generator on loopback.

``clients`` threads each hold one keep-alive connection and send callbacks back to
back until the list is used up or the deadline passes; it always stops by itself.
http.client is used instead of requests because the generator shares two cores with
the server: a plain connection costs a fraction of a requests.Session's CPU per call,
so the measurement is of the server, not of the client library.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.ingest.callbacks import Callback

# A reused keep-alive connection the server already closed fails before any byte of
# the answer arrives; such a request never reached the function and is safe to resend.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class PhaseResult:
    """What one timed phase saw from the client side."""

    sent: int
    wall_seconds: float
    client_cpu_seconds: float
    latencies: list[float]
    statuses: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0

    @property
    def throughput(self) -> float:
        return self.sent / self.wall_seconds if self.wall_seconds > 0 else 0.0


class _Cursor:
    """Hands out list indexes to worker threads, until the end or the deadline."""

    def __init__(self, total: int, deadline: float) -> None:
        self._next = 0
        self._total = total
        self._deadline = deadline
        self._lock = threading.Lock()

    def take(self) -> int | None:
        if time.monotonic() > self._deadline:
            return None
        with self._lock:
            if self._next >= self._total:
                return None
            index = self._next
            self._next += 1
            return index


def _send(conn: http.client.HTTPConnection, callback: Callback) -> int:
    conn.request(
        "POST",
        callback.target,
        body=callback.body_bytes,
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()  # drain, or the connection cannot be reused
    return response.status


def _worker(
    host: str,
    port: int,
    callbacks: Sequence[Callback],
    cursor: _Cursor,
    timeout_s: float,
    latencies: list[float],
    statuses: list[int],
    reconnects: list[int],
    slot: int,
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        while (index := cursor.take()) is not None:
            started = time.perf_counter()
            try:
                try:
                    status = _send(conn, callbacks[index])
                except _STALE_CONNECTION:
                    conn.close()
                    reconnects[slot] += 1
                    status = _send(conn, callbacks[index])
            except (OSError, http.client.HTTPException):
                conn.close()  # a fresh connection for the next callback
                status = -1  # transport error: no HTTP status
            latencies[index] = time.perf_counter() - started
            statuses[index] = status
    finally:
        conn.close()


def run_phase(
    host: str,
    port: int,
    callbacks: Sequence[Callback],
    clients: int,
    deadline_s: float,
    request_timeout_s: float = 30.0,
) -> PhaseResult:
    """Send every callback once over ``clients`` concurrent connections."""
    total = len(callbacks)
    latencies = [float("nan")] * total
    statuses = [0] * total  # 0: never sent (deadline passed first)
    reconnects = [0] * clients
    cursor = _Cursor(total, time.monotonic() + deadline_s)
    threads = [
        threading.Thread(
            target=_worker,
            args=(host, port, callbacks, cursor, request_timeout_s),
            kwargs={
                "latencies": latencies,
                "statuses": statuses,
                "reconnects": reconnects,
                "slot": slot,
            },
            name=f"loadgen-{slot}",
            daemon=True,
        )
        for slot in range(clients)
    ]
    cpu_before = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request has its own timeout, so the join is bounded too.
        thread.join(timeout=deadline_s + request_timeout_s + 5)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    sent = sum(1 for s in statuses if s != 0)
    counts: Counter[str] = Counter(
        "unsent" if s == 0 else "transport error" if s == -1 else str(s) for s in statuses
    )
    return PhaseResult(
        sent=sent,
        wall_seconds=wall,
        client_cpu_seconds=cpu,
        latencies=[lat for lat in latencies if lat == lat],  # drop NaN: unsent
        statuses=counts,
        reconnects=sum(reconnects),
    )
