"""Stopping the helper processes the local stack starts.

Each server (the Firestore emulator, functions-framework with its gunicorn
workers) runs in a session of its own, so a Ctrl-C in the terminal reaches
only us and we stop the whole group in order instead of racing it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

# prctl(2) option: the signal a child gets when its parent dies.
PR_SET_PDEATHSIG = 1


def stop_process_group(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM the process's group, then SIGKILL it if it outlives the grace period."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when the process that started it dies.

    Used as ``preexec_fn``: when a test run or the local stack is killed
    outright (SIGKILL, a CI timeout), neither ``atexit`` nor a ``finally``
    runs, and a server left behind would keep its port. Elsewhere than Linux
    this does nothing; ``stop_process_group`` remains the normal way out.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
