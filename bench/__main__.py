"""python -m bench (make bench): run bench.ingest and bench.wait, write bench/RESULTS.md.

Exits non-zero if either harness finds a broken invariant (a lost, duplicated or
mangled callback, a 5xx, a workflow that did not resume, counts that disagree
with the poll schedule); RESULTS.md is written either way, so a failure can be read.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from bench.ingest.__main__ import add_arguments as add_ingest_arguments
from bench.ingest.__main__ import config_from as ingest_config_from
from bench.ingest.report import ingest_section
from bench.ingest.run import run_ingest, run_profiles
from bench.ingest.side_by_side import SideBySideConfig, run_side_by_side, side_by_side_section
from bench.machine import facts_markdown
from bench.stack import emulator
from bench.wait.__main__ import add_arguments as add_wait_arguments
from bench.wait.__main__ import config_from as wait_config_from
from bench.wait.report import wait_section
from bench.wait.run import run_wait

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the report")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-wait", action="store_true")
    parser.add_argument(
        "--side-by-side-rounds",
        type=int,
        default=SideBySideConfig().rounds,
        help="rounds of the side-by-side ingest comparison, each on a fresh emulator (0: skip)",
    )
    add_ingest_arguments(parser)
    add_wait_arguments(parser)
    args = parser.parse_args(argv)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))

    sections: list[str] = []
    after_ingest = 0
    ok = True
    facts = facts_markdown()  # before the load, so the load average is the machine's own
    started = time.monotonic()
    with emulator() as (host, pid):
        if not args.skip_ingest:
            config = ingest_config_from(args)
            results = run_ingest(config, host, pid, log=_log)
            ok &= all(r.ok for r in results)
            profiles = run_profiles(config, host, pid, log=_log) if config.profile_callbacks else []
            ok &= all(set(p.statuses) == {200} for p in profiles)
            sections.append(ingest_section(config, results, profiles))
            after_ingest = len(sections)
        if not args.skip_wait:
            wait_config = wait_config_from(args)
            wait_results = run_wait(wait_config, log=_log)
            ok &= wait_results.ok
            sections.append(wait_section(wait_config, wait_results))
    if not args.skip_ingest and args.side_by_side_rounds > 0:
        # Outside the shared emulator: each round starts its own.
        side = SideBySideConfig(rounds=args.side_by_side_rounds)
        best, _rounds = run_side_by_side(side, log=_log)
        ok &= all(b.ok for b in best)
        sections.insert(after_ingest, side_by_side_section(side, best))
    elapsed = time.monotonic() - started

    report = "\n\n".join(
        [
            "# Benchmark results",
            "Written by `make bench`; see bench/README.md for what is measured and how to read it.",
            f"Command: `{command}` (from the repository root; `make bench` runs "
            f"`python -m bench`). Took {elapsed:.0f} s. Verdict: "
            f"{'all invariants held' if ok else 'FAILED: see the tables'}.",
            "## Machine\n\n" + facts,
            *sections,
        ]
    )
    args.results.write_text(report + "\n")
    _log(f"wrote {args.results}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
