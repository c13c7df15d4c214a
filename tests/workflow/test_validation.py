"""The subworkflows' argument checks, and the emulator semantics they rely on.

Each check raises a ValueError before Firestore is touched. Zero, "" and
false are values, not "unset": real Workflows' default() replaces only null,
so an explicit 0 must reach the check instead of being replaced by the
environment's setting.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.workflow_runner import RunSettings, run_workflow


def calling(subworkflow: str, **args: Any) -> dict[str, Any]:
    return {"main": {"steps": [{"call": {"call": subworkflow, "args": args, "result": "r"}}]}}


def returning(expression: str) -> dict[str, Any]:
    return {"main": {"steps": [{"done": {"return": expression}}]}}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("${default(0, 5)}", 0),
        ("${default(0.0, 5)}", 0.0),
        ('${default("", "x")}', ""),
        ("${default(false, true)}", False),
        ("${default([], [1])}", []),
        ("${default(null, 5)}", 5),
        ('${default(map.get({"a": 1}, "b"), "fallback")}', "fallback"),
    ],
)
def test_default_replaces_only_null(settings, expression, expected):
    run = run_workflow(returning(expression), settings=settings)

    assert run.error is None
    assert run.result == expected
    assert type(run.result) is type(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"pollInitialSeconds": 0}, "pollInitialSeconds must be greater than 0"),
        ({"pollMultiplier": 0}, "pollMultiplier must be at least 1"),
        ({"timeoutSeconds": 0}, "timeoutSeconds must be greater than 0"),
    ],
)
def test_zero_wait_settings_are_refused_not_replaced(settings, args, message):
    run = run_workflow(calling("waitForResponse", step="s", **args), settings=settings)

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.connector_calls == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"ttlSeconds": 0}, "ttlSeconds must be greater than 0"),
        ({"baseUrl": ""}, "no base URL"),
    ],
)
def test_zero_registration_settings_are_refused_not_replaced(settings, args, message):
    run = run_workflow(calling("getCallbackURL", step="s", **args), settings=settings)

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.connector_calls == {}


def test_a_timeout_beyond_the_ttl_is_refused(settings, fake_clock):
    # settings.wait.ttl_seconds is CALLBACKS_TTL_SECONDS in the environment.
    wait = calling(
        "waitForResponse",
        step="s",
        timeoutSeconds=settings.wait.ttl_seconds + 1,
        pollInitialSeconds=1000,  # if it waited anyway, only a few polls
        pollMaxSeconds=1000,
    )
    run = run_workflow(wait, settings=settings, clock=fake_clock)

    assert run.error["tags"] == ["ValueError"]
    assert (
        f"must not exceed CALLBACKS_TTL_SECONDS ({settings.wait.ttl_seconds})"
        in (run.error["message"])
    )
    assert run.connector_calls == {}


def test_a_timeout_equal_to_the_ttl_is_accepted(settings, fake_clock):
    wait = calling(
        "waitForResponse",
        step="s",
        timeoutSeconds=settings.wait.ttl_seconds,
        pollInitialSeconds=1000,
        pollMaxSeconds=1000,
    )
    run = run_workflow(wait, settings=settings, clock=fake_clock)

    assert "TimeoutError" in run.error["tags"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"pollInitialSeconds": -1}, "pollInitialSeconds must be greater than 0"),
        ({"pollMultiplier": 0.5}, "pollMultiplier must be at least 1"),
        (
            {"pollInitialSeconds": 5, "pollMaxSeconds": 4},
            "pollMaxSeconds must not be below pollInitialSeconds",
        ),
        ({"timeoutSeconds": -5}, "timeoutSeconds must be greater than 0"),
        ({"step": "a/b"}, "step must match"),
        ({"step": 7}, "step must be a string"),
        ({"runID": "a_b"}, "runID must match"),
        ({"runID": 7}, "runID must be a string"),
        ({"runID": "x" * 129}, "runID must match"),
    ],
)
def test_wait_arguments_are_checked(settings, args, message):
    run = run_workflow(calling("waitForResponse", **{"step": "s", **args}), settings=settings)

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.error["message"].startswith("waitForResponse - ")
    assert run.connector_calls == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"ttlSeconds": -1}, "ttlSeconds must be greater than 0"),
        ({"step": 7}, "step must be a string"),
        ({"step": "é"}, "step must match"),
        ({"runID": 7}, "runID must be a string"),
        ({"runID": "__x__"}, "runID must match"),
    ],
)
def test_registration_arguments_are_checked(settings, args, message):
    run = run_workflow(calling("getCallbackURL", **{"step": "s", **args}), settings=settings)

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.connector_calls == {}


def test_a_missing_base_url_is_refused(settings):
    # CALLBACK_BASE_URL empty and no baseUrl argument.
    no_url = RunSettings(**{**settings.__dict__, "base_url": ""})
    run = run_workflow(calling("getCallbackURL", step="s"), settings=no_url)

    assert run.error["tags"] == ["ValueError"]
    assert "set the CALLBACK_BASE_URL environment variable or pass baseUrl" in run.error["message"]
    assert run.connector_calls == {}


def test_a_base_url_argument_replaces_a_missing_environment_value(settings):
    no_url = RunSettings(**{**settings.__dict__, "base_url": ""})
    run = run_workflow(
        calling("getCallbackURL", step="s", baseUrl="https://cb.example/hook?k=1"),
        settings=no_url,
    )

    assert run.error is None
    assert run.connector_calls == {"commit": 1}


# --- Workflows' steps-per-execution limit ---------------------------------------
# FAST (the test settings) keeps registrations 3,600 s, so timeoutSeconds 3600:
# at a steady 0.1 s the loop would poll 36,000 times, up to 180,000 steps.
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"timeoutSeconds": 3600, "pollMaxSeconds": 0.1, "pollInitialSeconds": 0.05},
            "timeoutSeconds 3600 with pollMaxSeconds 0.1 polls at least 36000 times, up to "
            "180000 steps; a wait may use 90000 of Workflows' 100000 steps per execution - "
            "raise pollMaxSeconds",
        ),
        (
            {"timeoutSeconds": 3600, "pollInitialSeconds": 0.1, "pollMultiplier": 1},
            "timeoutSeconds 3600 with pollInitialSeconds 0.1 and pollMultiplier 1 polls 36000 "
            "times, up to 180000 steps; a wait may use 90000 of Workflows' 100000 steps per "
            "execution - raise pollInitialSeconds",
        ),
    ],
)
def test_a_wait_that_would_outrun_the_steps_limit_is_refused(settings, args, message):
    run = run_workflow(calling("waitForResponse", step="s", **args), settings=settings)

    assert run.error["tags"] == ["ValueError"]
    assert message in run.error["message"]
    assert run.connector_calls == {}


def test_a_wait_within_the_steps_limit_is_accepted(settings, callbacks):
    # 0.25 s steady: 72,000 steps at most, under the 90,000 a wait may use. A
    # callback is already stored, so the accepted wait returns at its first poll.
    payload = '{"method": "POST", "body": {"ok": true}}'
    callbacks.document("budget-run_s").set({"state": "RECEIVED", "payload": payload})
    args = {"timeoutSeconds": 3600, "pollMaxSeconds": 0.25, "pollInitialSeconds": 0.05}
    run = run_workflow(
        calling("waitForResponse", step="s", runID="budget-run", **args), settings=settings
    )

    assert run.error is None, run.error
    assert run.connector_calls == {"get": 1, "patch": 1}


def test_the_step_budget_in_the_yaml_is_the_one_the_stack_settings_apply(repo_root):
    import yaml

    from infra.workflow_env import STEPS_PER_POLL, WAIT_STEP_BUDGET

    wait = yaml.safe_load((repo_root / "workflow" / "callbacks.yaml").read_text())
    assigned = {
        name: value
        for entry in wait["waitForResponse"]["steps"][0]["init"]["assign"]
        for name, value in entry.items()
    }
    assert (assigned["maxWaitSteps"], assigned["stepsPerPoll"]) == (
        WAIT_STEP_BUDGET,
        STEPS_PER_POLL,
    )


def test_each_poll_costs_the_steps_the_budget_assumes(settings, fake_clock):
    from infra.workflow_env import STEPS_PER_POLL

    args = {"timeoutSeconds": 10, "pollInitialSeconds": 1, "pollMultiplier": 1, "pollMaxSeconds": 1}
    run = run_workflow(
        calling("waitForResponse", step="s", **args), settings=settings, clock=fake_clock
    )

    # Nothing registered: every poll 404s, the costliest loop.
    polls = run.steps_by_name["poll"]
    assert polls == 11
    loop = {name: count for name, count in run.steps_by_name.items() if count >= polls - 1}
    assert len(loop) == STEPS_PER_POLL, loop
