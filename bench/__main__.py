"""python -m bench (make bench): run bench.ingest and bench.wait, write the report.

The report goes to bench/out/RESULTS.md (ignored by git) with the capacity
model recomputed from it in bench/out/scale.md; the tracked bench/RESULTS.md
and docs/scale.md are rewritten only with --write (make bench WRITE=1), both
from the same run. Progress, with the time since the start, goes to stderr,
and the total time at the end.

Exits non-zero if either harness finds a broken invariant (a lost, duplicated or
mangled callback, a 5xx, a workflow that did not resume, counts that disagree
with the poll schedule); the report is written either way, so a failure can be read.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench import scale
from bench.cli import non_negative_int
from bench.ingest.__main__ import add_arguments as add_ingest_arguments
from bench.ingest.__main__ import config_from as ingest_config_from
from bench.ingest.harness import DEFAULTS, IngestConfig, run_ingest
from bench.ingest.report import ingest_report
from bench.machine import facts_markdown
from bench.stack import emulator
from bench.wait.__main__ import add_arguments as add_wait_arguments
from bench.wait.__main__ import config_from as wait_config_from
from bench.wait.report import wait_section
from bench.wait.run import WaitConfig, run_wait

TRACKED_RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
OUT = Path(__file__).resolve().parent / "out"  # in .gitignore


class Progress:
    """Progress lines on stderr, each with the time since the run started."""

    def __init__(self, stages: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.stages = stages
        self._done = 0
        self._clock = clock
        self.started = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def log(self, message: str) -> None:
        print(f"[bench {_clock_time(self.elapsed)}] {message}", file=sys.stderr, flush=True)

    def next_stage(self) -> None:
        self._done += 1
        self.log(f"stage {self._done}/{len(self.stages)}: {self.stages[self._done - 1]}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    partial = (
        args.skip_ingest
        or args.skip_wait
        or 0 in (args.side_by_side_rounds, args.profile_callbacks)
    )
    if args.write and partial:
        parser.error(
            "--write replaces the tracked bench/RESULTS.md and docs/scale.md: it needs a full "
            "run (no --skip-ingest, --skip-wait, --side-by-side-rounds 0 or --profile-callbacks 0)"
        )
    # Every configuration before anything starts: a bad combination fails at once.
    ingest = [] if args.skip_ingest else _ingest_configs(args)
    wait_config = None if args.skip_wait else wait_config_from(args)
    results_path, scale_path = _destinations(args)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    progress = Progress(_stages(ingest, wait_config))
    progress.log(f"{len(progress.stages)} stages; the report goes to {_shown(results_path)}")

    sections: list[str] = []
    ok = True
    facts = facts_markdown()  # before the load, so the load average is the machine's own
    with emulator():  # one emulator for all but the side-by-side rounds, which start their own
        runs = []
        for config in ingest:
            progress.next_stage()
            runs.append(run_ingest(config, log=progress.log))
            ok &= runs[-1].ok
        if runs:
            sections.append(ingest_report(runs))
        if wait_config is not None:
            progress.next_stage()
            wait_results = run_wait(wait_config, log=progress.log)
            ok &= wait_results.ok
            sections.append(wait_section(wait_config, wait_results))
    elapsed = progress.elapsed

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
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(report + "\n")
    progress.log(f"wrote {_shown(results_path)}")
    ok &= _write_scale(results_path, scale_path, tracked=args.write, log=progress.log)
    progress.log(
        f"done in {_clock_time(elapsed)} ({elapsed:.0f} s): "
        f"{'all invariants held' if ok else 'FAILED: see the report'}"
    )
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--write",
        action="store_true",
        help="write the tracked bench/RESULTS.md and docs/scale.md (a full run only)",
    )
    where.add_argument(
        "--results",
        type=Path,
        help=f"where to write the report (default: {_shown(OUT / 'RESULTS.md')}; "
        "the capacity model goes next to it as scale.md)",
    )
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-wait", action="store_true")
    parser.add_argument(
        "--side-by-side-rounds",
        type=non_negative_int,
        default=DEFAULTS["side-by-side"].rounds,
        help="rounds of the side-by-side ingest comparison, each on a fresh emulator (0: skip)",
    )
    parser.add_argument(
        "--profile-callbacks",
        type=non_negative_int,
        default=DEFAULTS["profile"].callbacks,
        help="callbacks per scenario for the one-at-a-time cost breakdown (0: skip it)",
    )
    add_ingest_arguments(parser)
    add_wait_arguments(parser)
    return parser


def _destinations(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the report and the capacity model go: tracked files only with --write."""
    if args.write:
        return TRACKED_RESULTS, scale.SCALE_DOC
    results = args.results or OUT / "RESULTS.md"
    return results, results.with_name("scale.md")


def _ingest_configs(args: argparse.Namespace) -> list[IngestConfig]:
    """The ingest flags size the scenarios mode; the other two have a flag each (0: skip)."""
    configs = [ingest_config_from("scenarios", args)]
    if args.profile_callbacks:
        profile = DEFAULTS["profile"]
        chosen = configs[0].scenarios
        configs.append(replace(profile, callbacks=args.profile_callbacks, scenarios=chosen))
    if args.side_by_side_rounds:
        configs.append(replace(DEFAULTS["side-by-side"], rounds=args.side_by_side_rounds))
    return configs


def _stages(ingest: list[IngestConfig], wait: WaitConfig | None) -> list[str]:
    described = {
        "scenarios": lambda c: (
            f"ingest under load ({c.callbacks} callbacks x "
            f"{len(c.servers)} server shapes x {len(c.scenarios)} scenarios)"
        ),
        "profile": lambda c: f"ingest cost breakdown ({c.callbacks} callbacks each)",
        "side-by-side": lambda c: f"side-by-side ingest ({c.rounds} rounds, a fresh emulator each)",
    }
    stages = [described[config.mode](config) for config in ingest]
    if wait is not None:
        stages.append(
            f"waits in virtual time ({len(wait.arrivals)} arrivals x push and "
            f"{len(wait.schedules)} poll schedules)"
        )
    return stages


def _write_scale(
    results: Path, destination: Path, tracked: bool, log: Callable[[str], None]
) -> bool:
    """The capacity model from ``results``: into docs/scale.md if tracked, else a file of its own.

    A partial run has no tables to compute it from; that is said, not an error.
    """
    try:
        measured = scale.read_results(results)
        generated = scale.tables(measured)
    except (ValueError, KeyError, IndexError) as error:
        if tracked:
            log(f"could not recompute {_shown(destination)} from {_shown(results)}: {error!r}")
            return False
        log(f"no capacity model from a partial run ({type(error).__name__}); skipped")
        return True
    if tracked:
        scale.write_doc(results, destination)
    else:
        title = "# Capacity model (python -m bench.scale) from this run"
        destination.write_text(f"{title}\n\n{generated}\n")
    log(f"wrote {_shown(destination)}")
    return True


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(scale.REPO))
    except ValueError:
        return str(path)


def _clock_time(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


if __name__ == "__main__":
    sys.exit(main())
