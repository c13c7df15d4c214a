"""The local runner runs a workflow as the deployed one would run."""

from __future__ import annotations

from local.workflow_runner import run_workflow

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
