"""Servers the local stack starts never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

# Starts a receiver, prints its port, then waits to be killed.
PARENT = """
import time
from local.receiver import ReceiverServer
receiver = ReceiverServer({}).start()
print(receiver.port, flush=True)
time.sleep(120)
"""


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_receiver_stops_when_its_parent_is_killed_outright(repo_root):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=repo_root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        port = int(parent.stdout.readline())
        assert answers(port)

        # SIGKILL: no atexit, no finally; only the kernel can tell the child.
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)

        deadline = time.monotonic() + 15
        while answers(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not answers(port)
    finally:
        if parent.poll() is None:
            parent.kill()
