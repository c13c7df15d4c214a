"""The piece of the local stack the benchmarks borrow: the Firestore emulator.

Uses local/firestore_emulator.py and sets FIRESTORE_EMULATOR_HOST for this
process while the block runs, so the benchmark's own Firestore clients reach
the same emulator as the functions it serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from bench.procstat import pid_listening_on
from local.environment import environment
from local.firestore_emulator import ENV_HOST, FirestoreEmulator, firestore_emulator


@contextmanager
def emulator(fresh: bool = False) -> Iterator[tuple[str, int | None]]:
    """Yield (host, pid); pid is None when the emulator's process cannot be seen.

    An existing FIRESTORE_EMULATOR_HOST wins, as everywhere in the project,
    unless ``fresh``: then always a new emulator, an empty database.
    """
    with ExitStack() as stack:
        if fresh:
            host = stack.enter_context(FirestoreEmulator()).host
        else:
            host = stack.enter_context(firestore_emulator())
        stack.enter_context(environment({ENV_HOST: host}))
        yield host, pid_listening_on(int(host.rsplit(":", 1)[1]))
