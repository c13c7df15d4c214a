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
    assert run.connector_calls == {"createDocument": 1}
