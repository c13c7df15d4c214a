"""python -m bench.ingest: the receiver under load (prints a Markdown table).

Exits non-zero if any callback was lost, duplicated or mangled, or answered 5xx.
"""

from __future__ import annotations

import argparse
import sys

from bench.cli import choices, non_negative_int, positive_float, positive_int, positive_ints
from bench.ingest.report import ingest_section
from bench.ingest.run import SCENARIOS, IngestConfig, run_ingest, run_profiles
from bench.ingest.server import ServerSettings
from bench.stack import emulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = IngestConfig()
    parser.add_argument("--callbacks", type=positive_int, default=defaults.callbacks)
    parser.add_argument("--clients", type=positive_int, default=defaults.clients)
    parser.add_argument(
        "--threads",
        type=positive_ints,
        default=tuple(s.threads for s in defaults.servers),
        help="gunicorn THREADS per run, comma-separated: each runs every scenario",
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="gunicorn WORKERS")
    parser.add_argument(
        "--phase-deadline",
        type=positive_float,
        default=defaults.phase_deadline_s,
        help="seconds after which a phase stops sending (the run then fails)",
    )
    scenario_keys = tuple(scenario.key for scenario in SCENARIOS)
    parser.add_argument(
        "--scenarios",
        type=choices(scenario_keys),
        default=defaults.scenarios,
        help=f"comma-separated subset of {','.join(scenario_keys)}",
    )
    parser.add_argument(
        "--profile-callbacks",
        type=non_negative_int,
        default=500,
        help="callbacks per scenario for the one-at-a-time cost breakdown (0: skip it)",
    )


def config_from(args: argparse.Namespace) -> IngestConfig:
    return IngestConfig(
        callbacks=args.callbacks,
        clients=args.clients,
        servers=tuple(ServerSettings(workers=args.workers, threads=t) for t in args.threads),
        phase_deadline_s=args.phase_deadline,
        scenarios=tuple(args.scenarios),
        profile_callbacks=args.profile_callbacks,
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    add_arguments(parser)
    config = config_from(parser.parse_args(argv))
    with emulator() as (host, pid):
        results = run_ingest(config, host, pid, log=_log)
        profiles = run_profiles(config, host, pid, log=_log) if config.profile_callbacks else []
    print(ingest_section(config, results, profiles))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
