"""python -m local run: the result (and the resume time) is printed before the stack stops.

Stopping the local stack takes seconds; a result printed after it reads as
a slow resume. These tests replace the stack with a stand-in whose teardown
prints a marker, and check the order of the lines, never a timing.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import local.__main__ as cli
from local.workflow_runner import RunResult

TEARDOWN = "TEARDOWN STARTS"
URL = "http://127.0.0.1:1/?runID=r&step=s&token=t"
RESULT = {"decision": "approved"}


class FakeStack:
    """Calls back with one URL, waits until the runner has sent the callback, returns."""

    def __init__(self, wait_for_callback: bool) -> None:
        self.wait_for_callback = wait_for_callback
        self.callback_sent = threading.Event()
        self.receiver_url = "http://127.0.0.1:2/"
        self.settings = SimpleNamespace(
            wait=SimpleNamespace(delivery="push"), firestore_host="127.0.0.1:1"
        )

    def run(self, workflow: Path, argument: Any, **hooks: Any) -> RunResult:
        hooks["on_callback_url"](URL)
        if self.wait_for_callback:
            assert self.callback_sent.wait(10)
        return RunResult(execution_id="e", result=RESULT, callback_events=Counter(forwarded=1))


@pytest.fixture
def fake_stack(monkeypatch) -> Iterator:
    def install(wait_for_callback: bool) -> FakeStack:
        stack = FakeStack(wait_for_callback)

        @contextlib.contextmanager
        def local_stack() -> Iterator[FakeStack]:
            yield stack
            print(TEARDOWN, flush=True)

        def post(url: str, **_kwargs: Any) -> SimpleNamespace:
            stack.callback_sent.set()
            return SimpleNamespace(
                ok=True, status_code=200, text="{}", headers={"Content-Type": "application/json"}
            )

        monkeypatch.setattr(cli, "local_stack", local_stack)
        monkeypatch.setattr(cli.requests, "post", post)
        return stack

    yield install


def run_cli(*args: str) -> int:
    options = cli._parser().parse_args(["run", "workflow/example.yaml", *args])
    return cli._run(Path(options.workflow), options.args, options)


def test_the_result_and_the_resume_time_come_before_the_teardown(fake_stack, capsys, monkeypatch):
    fake_stack(wait_for_callback=True)
    # The sender's 200 at 10.000 s, the workflow's return at 10.035 s.
    monkeypatch.setattr(
        cli,
        "monotonic",
        lambda: 10.035 if threading.current_thread() is threading.main_thread() else 10.0,
    )

    assert run_cli("--auto-callback", "--delay", "0") == 0

    lines = capsys.readouterr().out.splitlines()
    resumed = lines.index("Resumed: the workflow returned 35 ms after the callback's 200.")
    result = lines.index("Workflow result:")
    teardown = lines.index(TEARDOWN)
    assert lines.index("Sent the callback: HTTP 200 {}") < resumed < result < teardown
    assert '  "decision": "approved"' in lines[result:teardown]
    assert lines[teardown - 1] == "Stopping the local stack ..."
    assert lines[-1] == "Local stack stopped."


def test_without_a_callback_of_its_own_the_result_still_comes_first(fake_stack, capsys):
    fake_stack(wait_for_callback=False)

    assert run_cli() == 0

    out = capsys.readouterr().out
    assert "curl -sS -X POST" in out
    assert out.index("Workflow result:") < out.index(TEARDOWN)
    assert "Resumed" not in out  # a person's callback is not timed: no made-up number


def test_a_resume_before_the_sender_had_its_200_is_said_so():
    assert cli.resume_line(-0.004) == (
        "Resumed: the workflow returned 4 ms before the callback's 200 reached the sender "
        "(the receiver forwards, then answers)."
    )
    assert cli.resume_line(2.5) == "Resumed: the workflow returned 2.5 s after the callback's 200."


@pytest.mark.parametrize("delay", ["-5", "nan", "inf", "soon"])
def test_a_negative_or_non_numeric_delay_is_a_usage_error(delay, capsys):
    with pytest.raises(SystemExit) as exited:
        cli._parser().parse_args(["demo", "--delay", delay])

    assert exited.value.code == 2
    assert "argument --delay:" in capsys.readouterr().err.splitlines()[-1]
    assert cli._parser().parse_args(["demo", "--delay", "0"]).delay == 0.0
