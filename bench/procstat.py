"""CPU seconds used by a process tree, read from /proc (Linux only).

The benchmark runs server, emulator and load generator on the same two cores; their
CPU seconds per phase show who the machine's time went to, which a throughput number
alone cannot.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; the fields after its closing ')' are fixed.
    return stat.rsplit(")", 1)[1].split()


def _parents() -> dict[int, list[int]]:
    # /proc/<pid>/task/*/children needs a kernel option this machine lacks: scan ppids.
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _cpu_of(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def tree_cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU of ``pid`` and its live descendants; None when unknown."""
    if pid is None or not Path(f"/proc/{pid}").exists():
        return None
    children = _parents()
    total, stack, seen = 0.0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _cpu_of(current)
        stack.extend(children.get(current, []))
    return total


def pid_listening_on(port: int) -> int | None:
    """The process with a TCP socket listening on ``port``, found through /proc.

    Lets the benchmark charge CPU to an emulator it did not start itself (or whose
    launcher does not expose its pid).
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            # cols[1] is "ADDR:PORT" in hex, cols[3] the state (0A: LISTEN), cols[9] the inode.
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:
            continue
    return None
