"""The poll schedule waitForResponse follows, computed directly.

workflow/callbacks.yaml reads once at once, then sleeps ``interval`` (starting at
the first interval, multiplied after every sleep, never above the cap, never past
the deadline) and reads again. The harness runs the real YAML and uses this model
only as a cross-check: the counts the runner reports must agree with it, so a
drifting YAML or runner shows up as a mismatch instead of as a plausible number.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """(first interval, multiplier, cap) in seconds, as WaitSettings spells them."""

    initial: float
    multiplier: float
    cap: float
    name: str = ""

    @property
    def label(self) -> str:
        numbers = f"{_fmt(self.initial)} s x{_fmt(self.multiplier)} up to {_fmt(self.cap)} s"
        return f"{self.name} ({numbers})" if self.name else numbers

    def poll_times(self, until: float, timeout: float) -> list[float]:
        """Virtual offsets of every read up to the first one at or after ``until``."""
        times, now, interval = [0.0], 0.0, self.initial
        while now < until and now < timeout:
            now += max(0.0, min(interval, timeout - now))
            interval = min(interval * self.multiplier, self.cap)
            times.append(now)
        return times


@dataclass(frozen=True)
class Expected:
    reads: int  # waitForResponse's Firestore gets (getCallbackURL reads none normally)
    resume_at: float
    delay: float
    interval_at_arrival: float  # the sleep in progress when the callback arrived


def expected(schedule: Schedule, arrival: float, timeout: float) -> Expected:
    """What a callback arriving ``arrival`` s after registration should cost."""
    times = schedule.poll_times(arrival, timeout)
    resume = times[-1]
    gap = times[-1] - times[-2] if len(times) > 1 else 0.0
    return Expected(
        reads=len(times), resume_at=resume, delay=resume - arrival, interval_at_arrival=gap
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
