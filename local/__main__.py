"""python -m local demo|run: a workflow and its callbacks on the local stack.

    python -m local demo [--wait-for-human]
    python -m local run path/to/workflow.yaml [--auto-callback] [--args JSON]

Starts the Firestore emulator and the receiver, runs the workflow (with
workflow/callbacks.yaml appended, as in deployment),
prints each callback URL the moment getCallbackURL returns it, and the result
(and, for a callback it sent itself, how long the workflow took to resume)
as soon as the workflow returns, before the stack is stopped.
The demo calls each URL itself after a short delay (a POST with a JSON body),
so it completes on its own, unless --wait-for-human. Your own workflow waits
for you to call it, unless --auto-callback: a made-up answer is only what a
demo wants. A workflow that reads a ``chatWebhookUrl`` argument (as
workflow/approval_example.yaml does) gets a loopback Google Chat webhook
stand-in's URL unless you pass one; its messages are printed, and with
--auto-callback every link in them is answered (``approve``) as its
approver would.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import signal
import sys
import threading
from pathlib import Path
from time import monotonic
from types import FrameType
from typing import Any

import requests

from infra.args import WorkflowSourceError
from local.chat_webhook import ChatWebhook, links_in
from local.firestore_emulator import EmulatorError
from local.receiver import ReceiverError
from local.stack import local_stack
from local.workflow_runner import RunResult, load_workflow

EXAMPLE = Path(__file__).resolve().parent.parent / "workflow" / "example.yaml"
DEMO_ARGUMENT = {"subject": "Deploy release 1.4.2 to production"}
DEFAULT_BODY = {"approved": True, "by": "demo"}
# A machine's answer to a page for people: one of the form's choices (the
# receiver refuses anything else with 422). The example's form offers approve.
DEFAULT_FORM_ANSWER = {"value": "approve", "comment": "approved from the command line"}
# --callback-body's default: none given (JSON null is a body one may give).
NOT_GIVEN: Any = object()
# What getCallbackURL appends for a page for people (a registration with a form).
PAGE_MARK = "&view=page"
# The argument through which a workflow (approval_example.yaml) gets a Google
# Chat incoming webhook; locally, the stand-in's URL unless one is passed.
CHAT_WEBHOOK_ARGUMENT = "chatWebhookUrl"
# How long to let a callback that is being sent finish once the workflow has
# returned (the request's own timeout is 10 s), so its line comes first.
SENDER_GRACE_SECONDS = 12.0


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if options.verbose else logging.CRITICAL)
    # Ctrl-C (even if our parent ignored it) and SIGTERM unwind the with-blocks,
    # which stop everything they started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    if options.command == "demo":
        workflow, argument = EXAMPLE, DEMO_ARGUMENT
        options.auto_callback = not options.wait_for_human
    else:
        workflow, argument = Path(options.workflow), options.args
        if not workflow.is_file():
            print(f"error: no such workflow file: {workflow}", file=sys.stderr)
            return 2
        # Refuse what a deployment would refuse before starting anything.
        try:
            load_workflow(workflow)
        except WorkflowSourceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        return _run(workflow, argument, options)
    except (EmulatorError, ReceiverError) as error:
        print(f"error: the local stack did not start: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: local stack stopped", file=sys.stderr)
        return 130


def _run(workflow: Path, argument: Any, options: argparse.Namespace) -> int:
    timers: list[threading.Timer] = []
    # When each callback this runner sent got its 2xx (monotonic seconds).
    answered_at: list[float] = []

    printed_urls: list[str] = []

    def on_url(url: str) -> None:
        print(f"Callback URL: {url}", flush=True)
        printed_urls.append(url)
        if not options.auto_callback:
            page = PAGE_MARK in url
            default = DEFAULT_FORM_ANSWER if page else DEFAULT_BODY
            body = json.dumps(_or_default(options.callback_body, default), ensure_ascii=False)
            if page:
                print("Waiting for you. Open the page in a browser and choose:", flush=True)
                print(f"  {url}", flush=True)
                print("or, as a machine would, call it without view=page:", flush=True)
            else:
                print("Waiting for you. Call it, for example:", flush=True)
            print(
                "  curl -sS -X POST -H 'Content-Type: application/json' "
                f"-d {shlex.quote(body)} {shlex.quote(url.replace(PAGE_MARK, ''))}",
                flush=True,
            )
            return
        answer_later(url)

    def answer_later(url: str) -> None:
        timer = threading.Timer(
            options.delay,
            _send_callback,
            (url, _or_default(options.callback_body, DEFAULT_BODY), answered_at),
        )
        timer.daemon = True
        timers.append(timer)
        timer.start()

    def on_chat_message(text: str) -> None:
        # The approvers' links arrive as chat messages (approval_example.yaml).
        print(f"[chat] {text}", flush=True)
        if options.auto_callback:
            for link in links_in(text):
                answer_later(link.url)

    def on_log(severity: str, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        # The URL has its own line already; once is enough to copy it from.
        for url in printed_urls:
            text = text.replace(url, "(the callback URL above)")
        print(f"[workflow {severity}] {text}", flush=True)

    print(f"Starting the local stack for {workflow} ...", flush=True)
    with local_stack() as stack, ChatWebhook(on_chat_message) as chat:
        argument = _with_chat_webhook(workflow, argument, chat.url)
        print(f"Receiver on {stack.receiver_url}", flush=True)
        # What `python -m ops pending --local` needs to read this stack.
        print(f"Firestore emulator on {stack.settings.firestore_host}", flush=True)
        print(f"Delivery: {stack.settings.wait.delivery}", flush=True)
        try:
            result = stack.run(workflow, argument, on_callback_url=on_url, on_log=on_log)
            returned_at = monotonic()
        finally:
            _stop_senders(timers)
        # Reported before the stack is stopped: stopping takes seconds, and the
        # result printed after it would read as a slow resume.
        code = _report(result, answered_at, returned_at)
        print("Stopping the local stack ...", flush=True)
    print("Local stack stopped.", flush=True)
    return code


def _with_chat_webhook(workflow: Path, argument: Any, url: str) -> Any:
    """The argument, with the chat stand-in's URL as chatWebhookUrl if the workflow reads one."""
    if CHAT_WEBHOOK_ARGUMENT not in workflow.read_text() or not isinstance(argument, dict | None):
        return argument
    if CHAT_WEBHOOK_ARGUMENT in (argument or {}):
        return argument
    print(f"Chat webhook stand-in on {url} (passed as {CHAT_WEBHOOK_ARGUMENT})", flush=True)
    return {**(argument or {}), CHAT_WEBHOOK_ARGUMENT: url}


def _stop_senders(timers: list[threading.Timer]) -> None:
    """Cancel the callbacks not sent yet; let one being sent finish, within a bound."""
    for timer in timers:
        timer.cancel()
    for timer in timers:
        timer.join(SENDER_GRACE_SECONDS)


def _report(result: RunResult, answered_at: list[float], returned_at: float) -> int:
    """Print how the run ended; the exit code."""
    if not result.succeeded:
        error = json.dumps(result.error, indent=2, ensure_ascii=False)
        print(f"Workflow failed: {error}", file=sys.stderr, flush=True)
        return 1
    events = result.callback_events
    if events["forwarded"]:
        print("Delivered by push: the receiver forwarded the callback and the wait resumed.")
    elif events["create_callback_endpoint"]:
        print("Delivered from Firestore: the callback was there before the wait or a slice ended.")
    if answered_at:
        print(resume_line(returned_at - answered_at[-1]))
    print("Workflow result:")
    print(json.dumps(result.result, indent=2, ensure_ascii=False), flush=True)
    return 0


def resume_line(seconds_after_answer: float) -> str:
    """How long after the last callback's 2xx the workflow returned, for people."""
    if seconds_after_answer < 0:
        # Push: the receiver forwards before it answers, so the workflow can
        # be done before the sender has its 200.
        return (
            f"Resumed: the workflow returned {_duration(-seconds_after_answer)} before "
            "the callback's 200 reached the sender (the receiver forwards, then answers)."
        )
    return (
        f"Resumed: the workflow returned {_duration(seconds_after_answer)} "
        "after the callback's 200."
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _or_default(body: Any, default: dict[str, Any]) -> Any:
    """The --callback-body given (any JSON, even null or false), else ``default``."""
    return default if body is NOT_GIVEN else body


def _send_callback(url: str, body: Any, answered_at: list[float]) -> None:
    try:
        if PAGE_MARK in url:
            # What a person's click sends: the page's form.
            answer = {"choice": "approve", "comment": "approved by the demo"}
            response = requests.post(url, data=answer, timeout=10)
        else:
            response = requests.post(url, json=body, timeout=10)
        if response.ok:
            answered_at.append(monotonic())
        shown = (
            response.text.strip()
            if response.headers.get("Content-Type", "").startswith("application/json")
            else f"({response.headers.get('Content-Type')} page)"
        )
        print(f"Sent the callback: HTTP {response.status_code} {shown}", flush=True)
    except requests.RequestException as error:
        print(f"Could not send the callback: {error}", file=sys.stderr, flush=True)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"want 0 or more seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run workflow/example.yaml (an approval gate)")
    run = commands.add_parser("run", help="run your own workflow file")
    run.add_argument("workflow", help="workflow YAML with a main (subworkflows are appended)")
    run.add_argument("--args", type=_json, default=None, help="the execution argument, as JSON")
    run.add_argument(
        "--auto-callback",
        action="store_true",
        help="send each callback yourself after --delay seconds instead of waiting for me",
    )
    demo.add_argument(
        "--wait-for-human",
        action="store_true",
        help="do not send the callback: print a curl line and wait for you",
    )
    for command in (demo, run):
        command.add_argument(
            "--delay",
            type=_seconds,
            default=1.0,
            help="seconds (0 or more) before the automatic callback",
        )
        command.add_argument(
            "--callback-body",
            type=_json,
            default=NOT_GIVEN,
            help=(
                "JSON body of the callback (automatic or in the curl line); default "
                f"{json.dumps(DEFAULT_BODY)}, or {json.dumps(DEFAULT_FORM_ANSWER)} "
                "in the curl line for a page for people"
            ),
        )
        command.add_argument("--verbose", action="store_true", help="show the emulator's logs")
    return parser


if __name__ == "__main__":
    sys.exit(main())
