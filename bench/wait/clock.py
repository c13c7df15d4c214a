"""A virtual clock for the workflow runner: hours of polling in seconds of real time.

``sleep`` advances virtual time instantly and ``now`` returns it, so the real
workflow YAML runs unchanged while a 24 h wait costs only the steps it executes.
Actions scheduled ``at`` a virtual offset run when a sleep carries time past it:
that is how a callback "arrives" at T in the middle of a poll interval, exactly as
an external system's request would land between two of the workflow's reads.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Scheduled:
    due: float
    order: int
    action: Callable[[], None] = field(compare=False)


class VirtualClock:
    """Implements the runner's clock protocol: ``now() -> float``, ``sleep(seconds)``."""

    def __init__(self, start: float | None = None) -> None:
        # Start at the real epoch so timestamps the workflow writes (expireAt) look real.
        self._start = time.time() if start is None else start
        self._now = self._start
        self._queue: list[_Scheduled] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        # (virtual offset, length of the sleep it fell in) for every action run.
        self.fired: list[tuple[float, float]] = []

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was created."""
        return self._now - self._start

    def now(self) -> float:
        return self._now

    def at(self, offset_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` once virtual time reaches start + ``offset_s``."""
        with self._lock:
            heapq.heappush(
                self._queue, _Scheduled(self._start + offset_s, next(self._order), action)
            )

    def sleep(self, seconds: float) -> None:
        """Advance ``seconds``, running what falls due on the way at its own time."""
        self.wait_until(lambda: False, seconds)

    def wait_until(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Wait up to ``seconds`` for ``ready()``: how events.await_callback waits.

        Scheduled actions due in the window run at their own virtual time;
        the wait ends at the first after which ``ready()`` is true (the clock
        stays there: no delay), or at the end of the window. Each action runs
        at its own virtual time, in order, so it sees (and can record) the
        moment it happened.
        """
        if seconds < 0:
            raise ValueError(f"cannot wait a negative time: {seconds}")
        target = self._now + seconds
        while not ready():
            with self._lock:
                if not self._queue or self._queue[0].due > target:
                    self._now = target
                    return ready()
                item = heapq.heappop(self._queue)
            self._now = max(self._now, item.due)
            self.fired.append((item.due - self._start, seconds))
            item.action()
        return True
