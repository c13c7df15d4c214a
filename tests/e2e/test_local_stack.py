"""End to end over HTTP: `python -m local` runs the example; we call the URL it prints."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

pytestmark = pytest.mark.e2e
TIMEOUT = 60


class LocalCli:
    """`python -m local ...` as a subprocess whose output lines we can wait for."""

    def __init__(self, repo_root: Path, args: list[str], env: dict[str, str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "local", *args],
            cwd=repo_root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str) -> str:
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                raise AssertionError(f"exited before {prefix!r}:\n" + "\n".join(self.output))
            self.output.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=TIMEOUT)
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            self.output.append(line)
        return code, "\n".join(self.output)

    def result(self) -> dict:
        code, output = self.finish()
        assert code == 0, output
        # The result is printed before the stack stops; its lines follow.
        text = output.split("Workflow result:", 1)[1].lstrip()
        return json.JSONDecoder().raw_decode(text)[0]


@pytest.fixture
def cli(repo_root) -> Iterator:
    started: list[LocalCli] = []

    def start(*args: str, env: dict[str, str] | None = None) -> LocalCli:
        started.append(LocalCli(repo_root, list(args), env or dict(os.environ)))
        return started[-1]

    yield start
    for each in started:  # never leave a stack behind, even when a test fails
        if each.process.poll() is None:
            each.process.terminate()
            each.process.wait(timeout=30)


def test_run_waits_for_a_human_who_posts_to_the_printed_url(cli, firestore_emulator_host):
    run = cli("run", "workflow/example.yaml", "--args", '{"subject": "E2E change"}')
    url = run.wait_for("Callback URL:")
    run.wait_for("Waiting for you. Open the page in a browser")
    curl = shlex.split(run.wait_for("  curl "))

    # The example hands out a page for people; a machine answers without
    # view=page, with one of the form's choices: the printed curl line's
    # body and URL, as a person would paste it.
    machine = curl[-1]
    body = json.loads(curl[curl.index("-d") + 1])
    assert machine == url.removesuffix("&view=page")
    assert body == {"value": "approve", "comment": "approved from the command line"}
    response = requests.post(machine, json=body, timeout=10)

    assert response.status_code == 200, response.text
    result = run.result()
    assert result["decision"] == "approved"
    assert result["subject"] == "E2E change"
    assert result["callback"]["body"] == body


def test_a_machine_answer_the_form_does_not_offer_is_refused_and_the_run_waits_on(
    cli, firestore_emulator_host
):
    run = cli("run", "workflow/example.yaml")
    machine = run.wait_for("Callback URL:").removesuffix("&view=page")

    refused = requests.post(machine, json={"approved": True, "by": "e2e"}, timeout=10)
    assert refused.status_code == 422
    assert refused.json()["allowed"] == ["approve", "reject"]
    assert requests.get(machine + "&value=reject", timeout=10).status_code == 200

    result = run.result()
    assert result["decision"] == "rejected"
    assert result["callback"]["value"] == "reject"


def test_a_human_can_approve_with_a_get_and_a_value(cli, firestore_emulator_host):
    run = cli("run", "workflow/example.yaml")
    url = run.wait_for("Callback URL:")

    machine = url.removesuffix("&view=page")
    assert requests.get(machine + "&value=approve", timeout=10).status_code == 200

    result = run.result()
    assert result["decision"] == "approved"
    assert result["callback"]["method"] == "GET"
    assert result["callback"]["value"] == "approve"


def test_the_demo_completes_on_its_own_on_a_fresh_stack(cli):
    # No FIRESTORE_EMULATOR_HOST: the demo starts (and stops) its own emulator.
    env = {key: value for key, value in os.environ.items() if key != "FIRESTORE_EMULATOR_HOST"}
    demo = cli("demo", "--delay", "0.2", env=env)

    assert demo.wait_for("Callback URL:").startswith("http://127.0.0.1:")
    result = demo.result()
    assert result["decision"] == "approved"
    # The demo answers on the page, as a person clicking Approve would.
    assert result["callback"]["value"] == "approve"
    assert result["callback"]["body"] == {"choice": "approve", "comment": "approved by the demo"}


def test_the_approval_example_posts_one_link_per_approver_and_two_approvals_decide(
    cli, firestore_emulator_host, repo_root
):
    # approval_example.yaml reads chatWebhookUrl: the runner passes its
    # Google Chat stand-in, prints each message, and --auto-callback answers
    # every link on its page as its approver would.
    run = cli("run", str(repo_root / "workflow" / "approval_example.yaml"),
              "--auto-callback", "--delay", "0.2")  # fmt: skip

    messages = [run.wait_for("[chat]") for _ in range(3)]
    result = run.result()

    links = [re.search(r"<(http[^|]+)\|", m).group(1) for m in messages]
    assert [parse_qs(urlsplit(link).query)["approver"] for link in links] == [["0"], ["1"], ["2"]]
    assert len({parse_qs(urlsplit(link).query)["token"][0] for link in links}) == 3
    assert result["decision"] == "approved"
    answers = result["answers"]
    assert len(answers) == 2 and {a["value"] for a in answers} == {"approve"}
    assert len({a["approver"] for a in answers}) == 2
    assert {a["approver"] for a in answers} <= {
        "alice@example.com", "bob@example.com", "carol@example.com"
    }  # fmt: skip


OWN_WORKFLOW = """
main:
  steps:
    - url:
        call: getCallbackURL
        args: {step: own}
        result: url
    - tell:
        call: sys.log
        args: {text: '${"call " + url}'}
    - wait:
        call: waitForResponse
        args: {step: own}
        result: answer
    - done:
        return: ${answer}
"""


def test_run_sends_the_callback_itself_only_when_asked(cli, firestore_emulator_host, tmp_path):
    workflow = tmp_path / "own.yaml"
    workflow.write_text(OWN_WORKFLOW)
    body = '{"approved": true, "by": "Zo\u00eb \u2713"}'
    run = cli("run", str(workflow), "--auto-callback", "--delay", "0.2",
              "--callback-body", body)  # fmt: skip

    url = run.wait_for("Callback URL:")
    result = run.result()
    assert result["body"] == {"approved": True, "by": "Zo\u00eb \u2713"}
    # Text as text, not \u escapes; and the URL once, on its own line.
    output = "\n".join(run.output)
    assert '"by": "Zo\u00eb \u2713"' in output
    assert output.count(url) == 1
    assert "(the callback URL above)" in output


def test_a_failing_workflow_exits_non_zero_with_the_error(cli, firestore_emulator_host, tmp_path):
    workflow = tmp_path / "bad.yaml"
    workflow.write_text(
        "main:\n  steps:\n    - url:\n        call: getCallbackURL\n        args:\n"
        "          step: not/valid\n"
    )
    code, output = cli("run", str(workflow)).finish()

    assert code == 1
    assert "Workflow failed" in output
    assert "ValueError" in output


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "main:\n  steps:\n    - done:\n        return: 1\n"
            "getCallbackURL:\n  steps:\n    - done:\n        return: mine\n",
            "defines getCallbackURL itself",
        ),
        # workflows-emulator would run this and fail only at the call, as a SyntaxError.
        (
            "main:\n  steps:\n    - url:\n        call: getCallbackUrl\n"
            "        args: {step: a}\n        result: url\n    - done:\n        return: ${url}\n",
            "main/url: calls 'getCallbackUrl', which is not a subworkflow",
        ),
    ],
    ids=["defines-a-subworkflow", "breaks-a-deploy-time-rule"],
)
def test_a_workflow_the_deployment_refuses_is_refused_before_the_stack_starts(
    cli, tmp_path, source, problem
):
    workflow = tmp_path / "own.yaml"
    workflow.write_text(source)
    code, output = cli("run", str(workflow)).finish()

    assert code == 2
    assert problem in output
    assert "Starting the local stack" not in output


def children_of(pid: int) -> set[int]:
    listing = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return {int(word) for word in listing.stdout.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits for its parent to read its status.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ctrl_c_stops_everything_the_stack_started(cli):
    env = {key: value for key, value in os.environ.items() if key != "FIRESTORE_EMULATOR_HOST"}
    run = cli("run", "workflow/example.yaml", env=env)
    receiver_url = run.wait_for("Receiver on")
    run.wait_for("Callback URL:")
    started = children_of(run.process.pid)
    assert len(started) == 2  # the emulator and the receiver

    run.process.send_signal(signal.SIGINT)
    code, output = run.finish()

    assert code == 130, output
    assert "interrupted" in output
    assert not [pid for pid in started if alive(pid)]
    with pytest.raises(requests.ConnectionError):
        requests.get(receiver_url, timeout=2)


def test_ops_pending_lists_what_the_local_run_waits_for(cli, repo_root):
    env = {key: value for key, value in os.environ.items() if key != "FIRESTORE_EMULATOR_HOST"}
    run = cli("run", "workflow/example.yaml", env=env)
    emulator = run.wait_for("Firestore emulator on")
    url = run.wait_for("Callback URL:")
    run_id = url.split("runID=")[1].split("&")[0]

    listed = subprocess.run(
        [sys.executable, "-m", "ops", "pending", "--local", "--json"],
        cwd=repo_root,
        env={**env, "FIRESTORE_EMULATOR_HOST": emulator},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(row["runID"], row["step"], row["state"], row["kind"]) for row in rows] == [
        (run_id, "approval", "waiting", "page")
    ]
