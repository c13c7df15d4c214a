"""python -m bench.wait: steps, reads and resume delay of a wait, per schedule and T.

Exits non-zero if an execution failed, its payload came back changed, or its counts
disagree with the poll schedule.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli import positive_float, positive_floats
from bench.stack import emulator
from bench.wait.report import wait_section
from bench.wait.run import ARRIVALS, SEED, SHIPPED, WaitConfig, run_wait
from bench.wait.schedule import Schedule


def _schedule(text: str) -> Schedule:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"want INITIAL,MULTIPLIER,CAP, got {text!r}")
    initial, multiplier, cap = (positive_float(part.strip()) for part in parts)
    # A shrinking or zero interval would poll without end (Schedule.poll_times).
    if multiplier < 1 or cap < initial:
        raise argparse.ArgumentTypeError(f"want MULTIPLIER >= 1 and CAP >= INITIAL, got {text!r}")
    return Schedule(initial, multiplier, cap)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WaitConfig()
    parser.add_argument(
        "--arrivals",
        type=positive_floats,
        default=ARRIVALS,
        help="callback arrival times in seconds (above 0, below --timeout), comma-separated",
    )
    parser.add_argument(
        "--schedule",
        type=_schedule,
        action="append",
        metavar="INITIAL,MULTIPLIER,CAP",
        help="a schedule to evaluate besides the seed's and the shipped one (repeatable); "
        "default: the built-in candidates",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=defaults.timeout_s,
        help="seconds each wait may last",
    )


def config_from(args: argparse.Namespace) -> WaitConfig:
    arrivals = tuple(args.arrivals)
    if any(a >= args.timeout for a in arrivals):
        raise SystemExit("error: --arrivals must be below --timeout")
    schedules = WaitConfig().schedules
    if args.schedule:
        schedules = (SEED, SHIPPED, *args.schedule)
    return WaitConfig(arrivals=arrivals, schedules=schedules, timeout_s=args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wait", description=__doc__)
    add_arguments(parser)
    config = config_from(parser.parse_args(argv))
    with emulator():
        results = run_wait(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(wait_section(config, results))
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main())
