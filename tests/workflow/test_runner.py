"""The local runner runs a workflow as the deployed one would run."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from infra.args import WorkflowSourceError, compose_workflow_source
from local.workflow_runner import load_workflow, run_workflow

ECHO_ARGUMENT = {
    "main": {
        "params": ["input"],
        "steps": [{"done": {"return": {"type": "${get_type(input)}", "input": "${input}"}}}],
    }
}


def test_without_an_argument_main_gets_null_as_on_real_workflows(settings):
    run = run_workflow(ECHO_ARGUMENT, settings=settings)

    assert run.error is None
    assert run.result == {"type": "null", "input": None}


def test_an_argument_is_passed_unchanged(settings):
    run = run_workflow(ECHO_ARGUMENT, {"a": [1, {}]}, settings=settings)

    assert run.result == {"type": "map", "input": {"a": [1, {}]}}


@pytest.mark.parametrize(
    ("workflow", "problem"),
    [
        ([{"done": {"return": 1}}], "must be a YAML map with a 'main'"),
        ({"other": {"steps": [{"done": {"return": 1}}]}}, "must be a YAML map with a 'main'"),
        (
            {
                "main": {"steps": [{"done": {"return": 1}}]},
                "getCallbackURL": {"steps": [{"done": {"return": "mine"}}]},
            },
            "defines getCallbackURL itself",
        ),
        (
            {
                "main": {"steps": [{"done": {"return": 1}}]},
                "waitForResponse": {"steps": [{"done": {"return": "mine"}}]},
            },
            "defines waitForResponse itself",
        ),
    ],
)
def test_a_workflow_the_deployment_refuses_is_refused_locally(settings, workflow, problem):
    with pytest.raises(WorkflowSourceError, match=problem):
        run_workflow(workflow, settings=settings)


def test_a_file_is_composed_exactly_as_the_deployment_composes_it(repo_root):
    example = repo_root / "workflow" / "example.yaml"
    deployed = compose_workflow_source(
        example.read_text(), (repo_root / "workflow" / "callbacks.yaml").read_text()
    )

    assert load_workflow(example) == yaml.safe_load(deployed)


def test_the_runner_does_not_load_pulumi(repo_root):
    # The local stack must work where only requirements-dev's emulator side is
    # usable; infra/__init__ loads the Pulumi component lazily.
    check = (
        "import sys, local.workflow_runner; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_gcp')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], cwd=repo_root, capture_output=True, text=True, check=True
    )

    assert loaded.stdout.strip() == "[]"


def test_a_failing_assign_does_not_hang_the_next_run(settings):
    failing = {"main": {"steps": [{"bad": {"assign": [{"x": '${json.decode("{")}'}]}}]}}
    working = {"main": {"steps": [{"ok": {"assign": [{"x": 1}]}}, {"done": {"return": "${x}"}}]}}
    runs: list[Any] = []

    runs.append(run_workflow(failing, settings=settings))
    # The emulator's assign holds a process-wide lock; a failed expression
    # must not leave it held.
    second = threading.Thread(
        target=lambda: runs.append(run_workflow(working, settings=settings)), daemon=True
    )
    second.start()
    second.join(timeout=10)

    assert runs[0].error is not None
    assert not second.is_alive(), "the run after a failed assign hangs"
    assert runs[1].result == 1


def test_hash_compute_checksum_works_as_documented(settings):
    """Workflows' documented example, and its TypeError and ValueError (emulator_compat 18)."""
    steps = [
        {
            "done": {
                "return": {
                    "digest": "${base64.encode(hash.compute_checksum("
                    'text.encode("Hello World", "UTF-8"), "SHA256"))}',
                }
            }
        }
    ]
    run = run_workflow({"main": {"steps": steps}}, settings=settings)
    assert run.result == {"digest": "pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4="}

    for expression, tag in (
        ('${hash.compute_checksum("text, not bytes", "SHA256")}', "TypeError"),
        ('${hash.compute_checksum(text.encode("a"), "SHA3")}', "ValueError"),
    ):
        failed = run_workflow(
            {"main": {"steps": [{"done": {"return": expression}}]}}, settings=settings
        )
        assert tag in failed.error["tags"], failed.error


def test_hash_compute_hmac_works_as_documented(settings):
    """Workflows' documented example (key "key", "Hello World", SHA256), and its errors."""
    documented = (
        '${base64.encode(hash.compute_hmac(text.encode("key", "UTF-8"), '
        'text.encode("Hello World", "UTF-8"), "SHA256"))}'
    )
    run = run_workflow(returning(documented), settings=settings)
    assert run.result == "QidPcoCDkuWLV9co1+PA5RY+rwfRZdwDEF9iq74afRE="

    for expression, tag in (
        ('${hash.compute_hmac("key", text.encode("data"), "SHA256")}', "TypeError"),
        ('${hash.compute_hmac(text.encode("k"), text.encode("d"), "SHA3")}', "ValueError"),
    ):
        failed = run_workflow(
            {"main": {"steps": [{"done": {"return": expression}}]}}, settings=settings
        )
        assert tag in failed.error["tags"], failed.error


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('${if(1 == 1, "yes", "no")}', "yes"),
        ('${if(1 == 2, "yes", "no")}', "no"),
        # A null condition chooses ifFalse (the reference's "false or null").
        ('${if(map.get({"a": 1}, "b"), "yes", "no")}', "no"),
        # Nested, and an "if(" inside a string literal stays text.
        ('${if(1 == 1, if(2 == 3, "a", "if(b)"), "c")}', "if(b)"),
    ],
)
def test_if_chooses_as_documented(settings, expression, expected):
    run = run_workflow(returning(expression), settings=settings)

    assert run.error is None, run.error
    assert run.result == expected


def test_if_refuses_a_condition_that_is_not_a_boolean(settings):
    run = run_workflow(returning('${if("yes", 1, 2)}'), settings=settings)

    assert "TypeError" in run.error["tags"]


def returning(expression: str) -> dict[str, Any]:
    return {"main": {"steps": [{"done": {"return": expression}}]}}
