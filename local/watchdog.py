"""Run a Python module as ``python -m`` would, and end it when its stdin closes.

    python local/watchdog.py MODULE [ARG...]

The local stack starts a server this way with a pipe as its stdin and keeps
the pipe's write end. However the starter ends (returns, raises, or is
killed with SIGKILL), the kernel then closes that end, a read here sees
end-of-file, and this process's group gets SIGTERM, then SIGKILL if it is
still there GRACE_SECONDS later. Started with ``start_new_session=True``,
the group is the server and everything it forked (functions-framework's
gunicorn workers). The Firestore emulator does the same
(``server.js --exit-on-stdin-close``).

This replaces ``prctl(PR_SET_PDEATHSIG)``, which fires when the *thread*
that started the child exits rather than the process, and has to be set in
a ``preexec_fn``, which is unsafe when the starter runs other threads.

The module runs in this process, so the server's pid is this one. The file
is run by path rather than with ``-m local.watchdog``, so it does not depend
on the caller's working directory, and it imports nothing from ``local``.
"""

from __future__ import annotations

import os
import runpy
import signal
import stat
import sys
import threading
import time

GRACE_SECONDS = 5.0


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        sys.exit("usage: python local/watchdog.py MODULE [ARG...]")
    if not stat.S_ISFIFO(os.fstat(0).st_mode):
        # /dev/null or a terminal would end (or hold) the server at once.
        sys.exit("local/watchdog.py: stdin must be a pipe that the starter keeps open")
    threading.Thread(target=_end_when_stdin_closes, name="stdin-watchdog", daemon=True).start()
    module, *args = argv
    # As `python -m MODULE`: the working directory first on sys.path rather
    # than this file's directory, and sys.argv[0] set to the module's file.
    sys.path[0] = os.getcwd()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _end_when_stdin_closes() -> None:
    try:
        # Whatever the starter writes is ignored: only the end matters.
        # os.read, not sys.stdin: no buffer lock is held across a fork.
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    _signal_ourselves(signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    # Still here: the server did not stop in time.
    _signal_ourselves(signal.SIGKILL)


def _signal_ourselves(signum: int) -> None:
    """Signal our process group if we lead it (a session of our own), else only us."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signum)
    else:
        os.kill(os.getpid(), signum)


if __name__ == "__main__":
    main(sys.argv[1:])
