"""python -m ops: commands for a workflow-callbacks stack.

    python -m ops verify --stack dev          # outputs through Pulumi's Automation API
    pulumi stack output --json | python -m ops verify --outputs -
    python -m ops verify --local              # against python -m local's stack
    python -m ops url EXECUTION_ID STEP --stack dev   # the URL a running execution registered
    python -m ops pending --stack dev         # registrations still waiting or received
    python -m ops show RUNID STEP --stack dev # one registration's state and times
    python -m ops cancel RUNID STEP --reason "wrong build" --stack dev  # end a wait

Exit status: 0 when the check passed, 1 when the stack failed it (cancel:
when it refused), 2 when it could not run (no credentials, stack not found,
emulator not running).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ops import verify
from ops.errors import OpsError
from ops.stack_outputs import StackOutputs

if TYPE_CHECKING:
    from ops.cancel import Cancellation

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    commands = {
        "url": _url,
        "verify": _verify,
        "pending": _pending,
        "show": _show,
        "cancel": _cancel,
    }
    try:
        return commands[options.command](options)
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


def _pending(options: argparse.Namespace) -> int:
    from ops import registrations, table
    from ops.data_source import collection_of, firestore_errors

    collection, where = collection_of(options, PROJECT_DIR)
    states = tuple(state.upper() for state in options.state) or registrations.OPEN_STATES
    now = datetime.now(UTC)

    def progress(scanned: int) -> None:
        if scanned >= registrations.PAGE_SIZE:
            print(f"read {scanned} registrations ...", file=sys.stderr, flush=True)

    with firestore_errors(where):
        rows = registrations.pending(
            collection,
            states=states,
            run_id=options.run,
            older_than_seconds=options.older_than,
            limit=options.limit,
            now=now,
            on_page=progress,
        )
    if options.json:
        print(json.dumps([row.as_json(now) for row in rows], indent=2))
    else:
        print(table.pending(rows, now))
    return 0


def _show(options: argparse.Namespace) -> int:
    from ops import registrations
    from ops.data_source import collection_of, firestore_errors

    collection, where = collection_of(options, PROJECT_DIR)
    with firestore_errors(where):
        shown = registrations.show(
            collection, options.run_id, options.step, payload=options.payload, now=datetime.now(UTC)
        )
    if shown is None:
        raise OpsError(
            f"no registration of runID {options.run_id!r} step {options.step!r} in {where}",
            "`python -m ops pending` lists the open ones; a finished one stays until its TTL",
        )
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    return 0


def _cancel(options: argparse.Namespace) -> int:
    from google.api_core import exceptions as google_errors

    from ops import cancel
    from ops.data_source import collection_of, firestore_errors

    collection, where = collection_of(options, PROJECT_DIR)
    with firestore_errors(where):
        try:
            done = cancel.cancel(
                collection,
                options.run_id,
                options.step,
                options.reason,
                # A local emulator answers at once, or is not running.
                timeout=LOCAL_TIMEOUT_SECONDS if options.local else CLOUD_TIMEOUT_SECONDS,
            )
        except google_errors.PermissionDenied:
            raise OpsError(
                f"your credentials may not write {where}",
                "cancelling needs roles/datastore.user on the project (gcloud auth "
                "application-default login as a user who has it)",
            ) from None
    name = f"runID {options.run_id} step {options.step}"
    if not done.succeeded:
        print(f"cannot cancel {name}: {_refusal(done, where)}", file=sys.stderr)
        return 1
    if done.outcome == "already_cancelled":
        when = _at(done.cancelled_at)
        print(f"{name} was already cancelled{when} (reason: {done.reason}): nothing to do")
        return 0
    print(f"cancelled {name}{_at(done.cancelled_at)} (reason: {done.reason})")
    if done.state == "received":
        print(
            f"note: a callback had arrived{_at(done.received_at)} that the workflow had not "
            "taken yet; it is cancelled too and will not be delivered"
        )
    print("a callback sent now gets 410 Gone")
    if not done.forward_url:
        print("the workflow (poll) ends its wait with CancelledError at its next read")
        return 0
    print("telling the waiting execution (push) ...", file=sys.stderr, flush=True)
    event = cancel.cancel_event(options.run_id, options.step)
    problem = cancel.send_cancel_event(done.forward_url, event, local=options.local)
    if problem is None:
        print("the workflow (push) was told: its wait ends now with CancelledError")
    else:
        print(
            f"warning: the execution was not told: {problem}. The cancel stands: the wait "
            "ends with CancelledError at its next Firestore read, at the end of its push "
            "slice (pushSliceSeconds, 1 h by default)",
            file=sys.stderr,
        )
    return 0


def _refusal(done: Cancellation, where: str) -> str:
    if done.outcome == "consumed":
        return "the workflow already took its callback (consumed): there is no wait to cancel"
    if done.outcome == "expired":
        return "the wait already ended (expired: the workflow timed out)"
    if done.outcome == "decided":
        return f"the approval was already decided ({done.state}): there is no wait to cancel"
    if done.outcome == "not_registered":
        return f"no registration in {where} (`python -m ops pending` lists the open ones)"
    return f"it is in a state this tool does not cancel ({done.state})"


def _at(moment: object) -> str:
    return f" at {moment.isoformat(timespec='seconds')}" if isinstance(moment, datetime) else ""


# What a caller of a URL whose wait is over gets (docs/protocol.md, Answers).
FINISHED_STATES = {
    "CONSUMED": "the workflow already took this callback: the same callback again gets 200 "
    "(already delivered), another one 409",
    "EXPIRED": "the workflow stopped waiting (timeout): a callback now gets 410 Gone",
    "CANCELLED": "an operator cancelled the wait (python -m ops cancel): a callback now gets "
    "410 Gone",
}


def _outputs(options: argparse.Namespace) -> StackOutputs:
    from ops.data_source import outputs_of

    return outputs_of(options, PROJECT_DIR)


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

    listing = commands.add_parser(
        "pending",
        help="list the registrations not yet taken by their workflow, newest first",
        description="The open registrations (waiting for a callback, or received and not yet "
        "taken), newest first. Reads the collection in pages; memory stays flat.",
    )
    listing.add_argument(
        "--state",
        action="append",
        choices=["waiting", "received", "cancelled"],
        default=[],
        help="only this state (repeatable; default: waiting and received, the open ones; "
        "cancelled lists the waits an operator cancelled, until their TTL)",
    )
    listing.add_argument("--run", metavar="RUNID", help="only this execution's registrations")
    listing.add_argument(
        "--older-than",
        type=_duration,
        metavar="AGE",
        help="only registrations at least this old: 90s, 15m, 2h or 3d",
    )
    listing.add_argument(
        "--limit",
        type=_count,
        default=50,
        help="rows to show, the newest (default 50; 0: all, in no particular order)",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    _data_arguments(listing)

    detail = commands.add_parser(
        "show",
        help="one registration's state and times (never its token)",
    )
    detail.add_argument("run_id", metavar="RUNID")
    detail.add_argument("step")
    detail.add_argument(
        "--payload", action="store_true", help="also print the stored callback's payload"
    )
    _data_arguments(detail)

    ending = commands.add_parser(
        "cancel",
        help="cancel a wait: the registration becomes CANCELLED, the workflow gets "
        "CancelledError, a later callback 410",
        description="Mark a waiting (or received, not yet taken) registration CANCELLED. "
        "With push delivery the waiting execution is told at once (a cancel event to its "
        "callback endpoint); with poll it sees it at its next read. Idempotent; refuses what "
        "the workflow already took or stopped waiting for.",
    )
    ending.add_argument("run_id", metavar="RUNID")
    ending.add_argument("step")
    ending.add_argument(
        "--reason",
        type=_reason,
        default=DEFAULT_REASON,
        help=f"why, for the workflow's error and the record (default: {DEFAULT_REASON!r})",
    )
    _data_arguments(ending)
    return parser


DEFAULT_REASON = "cancelled by an operator"
# How long cancel's Firestore calls may take, retries included.
LOCAL_TIMEOUT_SECONDS = 5.0
CLOUD_TIMEOUT_SECONDS = 30.0
# The reason travels in the workflow's error message: keep it one short line.
MAX_REASON_CHARS = 500


def _reason(text: str) -> str:
    reason = " ".join(text.split())
    if not reason:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(reason) > MAX_REASON_CHARS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_REASON_CHARS} characters, got {len(reason)}"
        )
    return reason


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a data command reads: a stack's outputs, python -m local's emulator, or flags."""
    where = _stack_arguments(parser)
    where.add_argument(
        "--local",
        action="store_true",
        help="the emulator of a running python -m local (FIRESTORE_EMULATOR_HOST)",
    )
    parser.add_argument("--project", help="instead of the outputs: the project id")
    parser.add_argument("--database", help="instead of the outputs: the Firestore database id")
    parser.add_argument("--collection", help="instead of the outputs: the callbacks collection")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    unit = _UNITS.get(text[-1:].lower())
    try:
        value = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"not an age like 90s, 15m, 2h or 3d: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


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
