"""Servers the local stack starts never outlive the process that started them.

The receiver needs no Firestore here: a request without ids is refused
before the function touches its store.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from local.processes import stop_process_group
from local.receiver import ReceiverError, ReceiverServer

# Two gunicorn workers, so that "the receiver's group" is more than one process.
RECEIVER_ENV = {"WORKERS": "2"}
GROUP_SIZE = 3  # the arbiter and its two workers

# Starts a receiver, prints its port and pid, then waits to be killed.
PARENT = f"""
import time
from local.receiver import ReceiverServer
receiver = ReceiverServer({RECEIVER_ENV!r}).start()
print(receiver.port, receiver.pid, flush=True)
time.sleep(120)
"""

# Starts a receiver from a thread that then ends; the process lives on.
PARENT_WITH_SHORT_LIVED_THREAD = f"""
import threading, time
from local.receiver import ReceiverServer
started = []
starter = threading.Thread(target=lambda: started.append(ReceiverServer({RECEIVER_ENV!r}).start()))
starter.start()
starter.join()
print(started[0].port, started[0].pid, flush=True)
time.sleep(120)
"""


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    # A zombie is dead too: it only waits for its parent to read its status.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def group_members(group: int) -> set[int]:
    """The live (not zombie) processes in a process group."""
    members = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # After the command: state, ppid, pgrp.
        if fields[0] != "Z" and int(fields[2]) == group:
            members.add(int(entry))
    return members


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def spawn_parent(repo_root) -> Iterator[Callable[[str], tuple[subprocess.Popen[str], int, int]]]:
    """Run a parent script; returns it and the port and pid of the receiver it started."""
    parents: list[subprocess.Popen[str]] = []
    groups: list[int] = []

    def spawn(script: str) -> tuple[subprocess.Popen[str], int, int]:
        parent = subprocess.Popen(
            [sys.executable, "-c", script], cwd=repo_root, stdout=subprocess.PIPE, text=True
        )
        parents.append(parent)
        assert parent.stdout is not None
        port, pid = map(int, parent.stdout.readline().split())
        groups.append(pid)
        # Readiness needs one worker; wait for the other too.
        assert wait_until(lambda: len(group_members(pid)) == GROUP_SIZE, timeout=10)
        return parent, port, pid

    yield spawn
    for parent in parents:
        if parent.poll() is None:
            parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    for group in groups:  # whatever a failed test left behind
        for pid in group_members(group):
            os.kill(pid, signal.SIGKILL)


def test_receiver_stops_when_its_parent_is_killed_outright(spawn_parent):
    parent, port, pid = spawn_parent(PARENT)
    assert answers(port)

    # SIGKILL: no atexit, no finally; only the kernel can tell the child.
    parent.kill()
    parent.wait(timeout=10)

    assert wait_until(lambda: not group_members(pid), timeout=15)
    assert not answers(port)


def test_receiver_outlives_the_thread_that_started_it(spawn_parent):
    parent, port, pid = spawn_parent(PARENT_WITH_SHORT_LIVED_THREAD)
    members = group_members(pid)

    # The starting thread has ended; the process that started the receiver
    # lives on, so the receiver does too. (PR_SET_PDEATHSIG followed the
    # thread and stopped it here; there is no event to wait for, so watch.)
    watch_until = time.monotonic() + 2
    while time.monotonic() < watch_until:
        assert group_members(pid) == members
        assert answers(port)
        time.sleep(0.1)

    parent.kill()
    parent.wait(timeout=10)
    assert wait_until(lambda: not group_members(pid), timeout=15)
    assert not answers(port)


def test_receiver_stops_when_its_stdin_pipe_closes():
    receiver = ReceiverServer(RECEIVER_ENV).start()
    try:
        pid = receiver.pid
        assert pid is not None
        assert wait_until(lambda: len(group_members(pid)) == GROUP_SIZE, timeout=10)
        process = receiver._process
        assert process is not None and process.stdin is not None

        process.stdin.close()  # what the kernel does when we die

        assert wait_until(lambda: not group_members(pid), timeout=15)
        assert not answers(receiver.port)
    finally:
        receiver.stop()


class _Foreign(http.server.BaseHTTPRequestHandler):
    status = 200
    content_type = "text/plain"
    body = b"hello"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _foreign(status: int, content_type: str, body: bytes) -> type[_Foreign]:
    attributes = {"status": status, "content_type": content_type, "body": body}
    return type("Foreign", (_Foreign,), attributes)


@pytest.mark.parametrize(
    "handler",
    [
        http.server.SimpleHTTPRequestHandler,  # 200, a directory listing
        _foreign(400, "text/html", b"<h1>Bad Request</h1>"),
        _foreign(400, "application/json", b'{"message": "runID is required"}'),
    ],
    ids=["listing", "html-400", "other-json-400"],
)
def test_readiness_refuses_a_foreign_server_on_the_port(handler, tmp_path):
    foreign = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=foreign.serve_forever, daemon=True)
    serving.start()
    try:
        port = foreign.server_address[1]
        receiver = ReceiverServer({}, port=port)
        started = time.monotonic()
        with pytest.raises(ReceiverError, match="not the receiver's"):
            receiver.start(timeout=1)
        assert time.monotonic() - started < 1 + 3  # and stopped what it spawned at once
        assert receiver.pid is None
        assert answers(port)  # and left the other server alone
    finally:
        foreign.shutdown()
        foreign.server_close()


def test_start_fails_with_the_output_of_a_receiver_that_exited():
    receiver = ReceiverServer({}, target="noSuchEntryPoint")
    started = time.monotonic()
    with pytest.raises(ReceiverError, match="exited while starting") as raised:
        receiver.start(timeout=30)
    assert time.monotonic() - started < 15
    assert "noSuchEntryPoint" in str(raised.value)  # functions-framework's complaint


def test_stop_process_group_kills_what_an_exited_leader_left_behind():
    # The leader starts a long sleep in its group, prints its pid and exits.
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert leader.stdout is not None
    with leader.stdout:
        left_behind = int(leader.stdout.readline())
    try:
        leader.wait(timeout=10)
        assert alive(left_behind)

        stop_process_group(leader, grace_seconds=5)

        assert wait_until(lambda: not alive(left_behind), timeout=5)
    finally:
        if alive(left_behind):
            os.kill(left_behind, signal.SIGKILL)
