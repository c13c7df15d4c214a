"""The pieces of the local stack the benchmarks borrow: the Firestore emulator.

Uses local/firestore_emulator.py (an existing FIRESTORE_EMULATOR_HOST wins, as
everywhere in the project) and sets FIRESTORE_EMULATOR_HOST for this process while
the block runs, so the benchmark's own Firestore clients reach the same emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.procstat import pid_listening_on
from local.environment import environment
from local.firestore_emulator import ENV_HOST, firestore_emulator


@contextmanager
def emulator() -> Iterator[tuple[str, int | None]]:
    """Yield (host, pid); pid is None when the emulator's process cannot be seen."""
    with firestore_emulator() as host, environment({ENV_HOST: host}):
        yield host, pid_listening_on(int(host.rsplit(":", 1)[1]))
