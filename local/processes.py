"""Stopping the helper processes the local stack starts.

Each server (the Firestore emulator, functions-framework with its gunicorn
workers) runs in a session of its own, so a Ctrl-C in the terminal reaches
only us and we stop the whole group in order instead of racing it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
