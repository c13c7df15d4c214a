"""Stopping the helper processes the local stack starts.

Each server (the Firestore emulator, functions-framework with its gunicorn
workers) runs in a session of its own, so a Ctrl-C in the terminal reaches
only us and we stop the whole group in order instead of racing it. Each also
exits when its stdin pipe closes, i.e. when we die without stopping it
(local/watchdog.py, and server.js --exit-on-stdin-close for the emulator).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM the process's group, then SIGKILL what is left of it.

    The group is signalled even if its leader has already exited: members
    it left behind (gunicorn workers of a crashed arbiter) would otherwise
    live on. SIGKILL follows once the leader has exited, or after the grace
    period; a leader that stops cleanly (gunicorn's arbiter, the emulator)
    has stopped its group by then, so the SIGKILL only meets leftovers.
    """
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)
