"""python -m ops: commands for a workflow-callbacks stack.

    python -m ops verify --stack dev          # outputs through Pulumi's Automation API
    pulumi stack output --json | python -m ops verify --outputs -
    python -m ops verify --local              # against python -m local's stack
    python -m ops url EXECUTION_ID STEP --stack dev   # the URL a running execution registered

Exit status: 0 when the check passed, 1 when the stack failed it, 2 when it
could not run (no credentials, stack not found, emulator not running).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops import verify
from ops.errors import OpsError
from ops.stack_outputs import StackOutputs, from_json, from_stack

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        return _url(options) if options.command == "url" else _verify(options)
    except OpsError as error:
        print(f"error: {error.what}", file=sys.stderr)
        if error.fix:
            print(f"fix: {error.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _verify(options: argparse.Namespace) -> int:
    verify_options = verify.Options(timeout_seconds=options.timeout, page=not options.no_page)
    report = verify.Report()
    if options.local:
        return _verify_local(verify_options, report)
    # Imported here: --local needs none of Google's clients.
    from ops.cloud import CloudDeployment

    return _run(CloudDeployment(_outputs(options)), verify_options, report)


def _url(options: argparse.Namespace) -> int:
    from ops.cloud import registration, registration_reader

    outputs = _outputs(options)
    run_id = options.execution.rsplit("/", 1)[-1]
    url, state = registration(registration_reader(outputs), outputs, run_id, options.step)
    if url is None:
        raise OpsError(
            f"no registration of step {options.step!r} for execution {options.execution} in "
            f"{outputs.database}/{outputs.collection}",
            "check the execution id and step; the workflow may not have reached "
            "getCallbackURL yet, or Firestore's TTL removed the registration (ttlSeconds)",
        )
    if state in FINISHED_STATES:
        print(f"note: {FINISHED_STATES[state]}", file=sys.stderr)
    print(url)
    return 0


# What a caller of a URL whose wait is over gets (docs/protocol.md, Answers).
FINISHED_STATES = {
    "CONSUMED": "the workflow already took this callback: the same callback again gets 200 "
    "(already delivered), another one 409",
    "EXPIRED": "the workflow stopped waiting (timeout): a callback now gets 410 Gone",
}


def _outputs(options: argparse.Namespace) -> StackOutputs:
    if options.outputs is not None:
        origin = "standard input" if options.outputs == "-" else options.outputs
        text = sys.stdin.read() if options.outputs == "-" else _read(options.outputs)
        return from_json(text, origin)
    print(f"reading the outputs of stack {options.stack!r} ...", file=sys.stderr, flush=True)
    return from_stack(options.stack, options.work_dir)


def _verify_local(verify_options: verify.Options, report: verify.Report) -> int:
    from local.firestore_emulator import EmulatorError
    from local.receiver import ReceiverError
    from ops.local_target import local_deployment

    print("starting the local stack ...", file=sys.stderr, flush=True)
    try:
        with local_deployment() as deployment:
            return _run(deployment, verify_options, report)
    except (EmulatorError, ReceiverError) as error:
        raise OpsError(
            f"the local stack did not start: {error}",
            "run `make install` (it installs the Firestore emulator), or unset "
            "FIRESTORE_EMULATOR_HOST if it names an emulator that is not running",
        ) from None


def _run(deployment: verify.Deployment, options: verify.Options, report: verify.Report) -> int:
    try:
        verify.run(deployment, options, report)
    except verify.VerifyFailed as failure:
        report.failed(failure)
        print(f"verify failed at: {failure.stage}", file=report.out, flush=True)
        return 1
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise OpsError(f"cannot read {path}: {error.strerror}", "pass an existing file") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "verify",
        help="prove a stack works: a real callback round trip, stage by stage",
        description="Start the stack's verify workflow, call the callback URL it registered "
        "with a random payload, and check that the execution resumes with exactly that.",
    )
    where = _stack_arguments(check)
    where.add_argument(
        "--local", action="store_true", help="verify python -m local's stack (no cloud)"
    )
    check.add_argument(
        "--timeout",
        type=_positive_int,
        default=120,
        help="seconds each stage may take, and the workflow waits (default: 120)",
    )
    check.add_argument(
        "--no-page", action="store_true", help="skip the page for people (view=page) checks"
    )
    url = commands.add_parser(
        "url",
        help="print the callback URL a running execution registered for a step",
        description="Rebuild the callback URL of a waiting execution from its registration "
        "in Firestore (the token never has to be read from the logs).",
    )
    url.add_argument("execution", help="the execution id (or its full resource name)")
    url.add_argument("step", help="the step given to getCallbackURL")
    _stack_arguments(url)
    return parser


def _stack_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """--stack / --outputs / --work-dir: where a command finds the stack's outputs."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack", default="dev", help="the Pulumi stack (default: dev)")
    where.add_argument(
        "--outputs",
        metavar="FILE",
        help="read the outputs from `pulumi stack output --json` saved in FILE (- for stdin) "
        "instead of through the pulumi CLI",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=PROJECT_DIR,
        help="the Pulumi project folder (default: this repository)",
    )
    return where


if __name__ == "__main__":
    sys.exit(main())
