"""Facts about the machine and software a benchmark ran on, for bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("functions-framework", "gunicorn", "google-cloud-firestore", "workflows-emulator")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": f"{os.cpu_count()} (usable by this process: {usable})",
        "CPU": _cpu_model(),
        "memory": _memory(),
        # Other work on the machine skews throughput: record how busy it was.
        "load average (1/5/15 min) at start": _loadavg(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Node": _command_output(["node", "--version"]),
        "git commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        **{package: _version(package) for package in _PACKAGES},
    }


def _loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def facts_markdown() -> str:
    return "\n".join(f"- {key}: {value}" for key, value in machine_facts().items())
