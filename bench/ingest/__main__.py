"""python -m bench.ingest: the receiver under load, or its cost per callback; prints Markdown.

--mode scenarios (default): every scenario under load on every server shape;
--mode side-by-side: ours against the seed, rounds on fresh emulators, best of each;
--mode profile: where a callback's time goes, in this process, one at a time.

Exits non-zero if any callback was lost, duplicated or mangled, or answered 5xx
(profile: anything but 200).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from bench.cli import choices, positive_float, positive_int, positive_ints
from bench.ingest.harness import DEFAULTS, MODES, SCENARIOS, IngestConfig, run_ingest
from bench.ingest.report import ingest_report
from bench.ingest.server import ServerSettings

# The flags each mode reads: giving another is a usage error, not silently ignored.
_LOAD = {"callbacks", "clients", "threads", "workers", "phase_deadline"}
FLAGS = {
    "scenarios": _LOAD | {"scenarios"},
    # No --scenarios: the comparison needs every scenario, the seed first of all.
    "side-by-side": _LOAD | {"rounds", "slices"},
    "profile": {"callbacks", "scenarios"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that size a mode (python -m bench shares them); unset: the mode's default."""
    scenario_keys = tuple(scenario.key for scenario in SCENARIOS)
    parser.add_argument(
        "--callbacks",
        type=positive_int,
        help="callbacks per scenario (default: "
        + ", ".join(f"{mode} {config.callbacks}" for mode, config in DEFAULTS.items())
        + ")",
    )
    parser.add_argument("--clients", type=positive_int, help="concurrent connections")
    parser.add_argument(
        "--threads",
        type=positive_ints,
        help="gunicorn THREADS per server shape, comma-separated: each runs every scenario",
    )
    parser.add_argument("--workers", type=positive_int, help="gunicorn WORKERS (default 1)")
    parser.add_argument(
        "--phase-deadline",
        type=positive_float,
        help="seconds after which a phase stops sending (the run then fails)",
    )
    parser.add_argument(
        "--scenarios",
        type=choices(scenario_keys),
        help=f"comma-separated subset of {','.join(scenario_keys)}",
    )


def config_from(mode: str, args: argparse.Namespace) -> IngestConfig:
    """``mode``'s defaults, with what the flags set."""
    base = DEFAULTS[mode]
    servers = base.servers
    if args.threads or args.workers:
        threads = args.threads or tuple(s.threads for s in base.servers)
        servers = tuple(ServerSettings(workers=args.workers or 1, threads=t) for t in threads)
    given = {
        "callbacks": args.callbacks,
        "clients": args.clients,
        "phase_deadline_s": args.phase_deadline,
        "scenarios": args.scenarios,
        "rounds": getattr(args, "rounds", None),
        "slices": getattr(args, "slices", None),
    }
    return dataclasses.replace(
        base, servers=servers, **{name: value for name, value in given.items() if value is not None}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--mode", choices=MODES, default="scenarios")
    add_arguments(parser)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        help=f"side-by-side rounds (default {DEFAULTS['side-by-side'].rounds})",
    )
    parser.add_argument(
        "--slices",
        type=positive_int,
        help="side-by-side: each scenario's callbacks in this many slices, the scenarios "
        f"taking turns (default {DEFAULTS['side-by-side'].slices})",
    )
    args = parser.parse_args(argv)
    ignored = [
        f"--{name.replace('_', '-')}"
        for name, value in vars(args).items()
        if name != "mode" and value is not None and name not in FLAGS[args.mode]
    ]
    if ignored:
        parser.error(f"{', '.join(ignored)}: not for --mode {args.mode}")
    if args.mode == "side-by-side" and args.threads and len(args.threads) > 1:
        parser.error("--threads: side-by-side compares on one server shape")
    run = run_ingest(config_from(args.mode, args), log=lambda m: print(m, file=sys.stderr))
    print(ingest_report([run]))
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main())
