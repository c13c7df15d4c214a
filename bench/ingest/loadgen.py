"""A bounded, closed-loop HTTP load generator on loopback.

``clients`` threads each hold one keep-alive connection and send callbacks back to
back until the list is used up or the deadline passes; it always stops by itself.
http.client is used instead of requests because the generator shares two cores with
the server: a plain connection costs a fraction of a requests.Session's CPU per call,
so the measurement is of the server, not of the client library.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.ingest.callbacks import Callback

HOST = "127.0.0.1"  # load never leaves loopback
# A reused keep-alive connection the server already closed fails before any byte of
# the answer arrives; such a request never reached the function and is safe to resend.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
UNSENT, TRANSPORT_ERROR = "unsent", "transport error"  # statuses that are not HTTP's


@dataclass
class PhaseResult:
    """What one phase saw from the client side."""

    sent: int
    wall_seconds: float
    client_cpu_seconds: float
    latencies: list[float]
    statuses: Counter[str]  # "200", "503", ..., or UNSENT / TRANSPORT_ERROR
    reconnects: int

    @property
    def throughput(self) -> float:
        return self.sent / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @classmethod
    def combined(cls, parts: Sequence[PhaseResult]) -> PhaseResult:
        """Slices of one phase as one: their sends, times, latencies and statuses added up."""
        return cls(
            sent=sum(p.sent for p in parts),
            wall_seconds=sum(p.wall_seconds for p in parts),
            client_cpu_seconds=sum(p.client_cpu_seconds for p in parts),
            latencies=[latency for p in parts for latency in p.latencies],
            statuses=sum((p.statuses for p in parts), Counter()),
            reconnects=sum(p.reconnects for p in parts),
        )


def _send(conn: http.client.HTTPConnection, callback: Callback) -> str:
    conn.request(
        "POST",
        callback.target,
        body=callback.body_bytes,
        headers={"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()  # drain, or the connection cannot be reused
    return str(response.status)


def run_phase(
    port: int,
    callbacks: Sequence[Callback],
    clients: int,
    deadline_s: float,
    request_timeout_s: float = 30.0,
) -> PhaseResult:
    """Send every callback once over ``clients`` concurrent connections."""
    latencies: list[float | None] = [None] * len(callbacks)
    statuses = [UNSENT] * len(callbacks)
    reconnects = [0] * clients
    indexes, lock = itertools.count(), threading.Lock()
    deadline = time.monotonic() + deadline_s

    def take() -> int | None:
        with lock:
            index = next(indexes)
        return index if index < len(callbacks) and time.monotonic() <= deadline else None

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=request_timeout_s)
        try:
            while (index := take()) is not None:
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
                    status = TRANSPORT_ERROR
                latencies[index] = time.perf_counter() - started
                statuses[index] = status
        finally:
            conn.close()

    threads = [
        threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(clients)
    ]
    cpu_before, started = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request has its own timeout, so the join is bounded too.
        thread.join(timeout=deadline_s + request_timeout_s + 5)
    return PhaseResult(
        sent=sum(1 for s in statuses if s != UNSENT),
        wall_seconds=time.perf_counter() - started,
        client_cpu_seconds=time.process_time() - cpu_before,
        latencies=[lat for lat in latencies if lat is not None],
        statuses=Counter(statuses),
        reconnects=sum(reconnects),
    )
