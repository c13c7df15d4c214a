"""waitForResponse's raiseOnReject: a single link's reject choice as an error.

A form choice may carry ``reject: true``. With ``raiseOnReject: true`` a
callback whose value is such a choice raises ``RejectedError`` (carrying the
answer); without it nothing changes: the same result, the same steps.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
import requests

from local.workflow_runner import RunResult, run_workflow

FORM = {
    "title": "Deploy 1.4?",
    "choices": [
        {"value": "approve", "label": "Approve"},
        {"value": "hold", "label": "Hold"},
        {"value": "reject", "label": "Reject", "reject": True},
    ],
    "allowComment": True,
}


def page_round_trip(form: Any = FORM, **wait: Any) -> dict[str, Any]:
    register = {"step": "s", "form": form}
    return {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": register, "result": "url"}},
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {"step": "s", "callbackUrl": "${url}", **wait},
                        "result": "answer",
                    }
                },
                {"done": {"return": "${answer}"}},
            ]
        }
    }


def answered(settings, choice: str, workflow: dict[str, Any]) -> RunResult:
    """Run ``workflow``; a person picks ``choice`` on the page once the wait has begun."""
    api = settings.callbacks
    awaiting = threading.Event()
    original = api.await_callback if api is not None else None
    statuses: list[int] = []

    def await_callback(*args: Any, **kwargs: Any) -> dict:
        awaiting.set()
        return original(*args, **kwargs)

    def person(url: str) -> None:
        def later() -> None:
            if api is not None:
                assert awaiting.wait(10)
            data = {"choice": choice, "comment": "from the page"}
            statuses.append(requests.post(url, data=data, timeout=10).status_code)

        threading.Thread(target=later, daemon=True).start()

    if api is not None:
        api.await_callback = await_callback
    try:
        run = run_workflow(workflow, settings=settings, on_callback_url=person)
    finally:
        if api is not None:
            del api.await_callback
    assert statuses == [200]
    return run


def test_a_reject_choice_raises_a_rejected_error_carrying_the_answer(push_settings):
    run = answered(push_settings, "reject", page_round_trip(raiseOnReject=True))

    assert run.error["tags"] == ["RejectedError"]
    assert run.error["answer"]["value"] == "reject"
    assert run.error["answer"]["body"] == {"choice": "reject", "comment": "from the page"}
    assert (run.error["runID"], run.error["step"]) == (run.execution_id, "s")
    assert run.error["answer"]["runID"] == run.execution_id
    assert "rejected" in run.error["message"]


@pytest.mark.parametrize("choice", ["approve", "hold"])
def test_another_choice_is_returned_with_raise_on_reject(push_settings, choice):
    run = answered(push_settings, choice, page_round_trip(raiseOnReject=True))

    assert run.error is None, run.error
    assert run.result["value"] == choice


def test_without_raise_on_reject_a_reject_is_returned_as_before(push_settings):
    # A slice longer than the answer takes, so each run costs one await.
    wait = dataclasses.replace(push_settings.wait, push_slice_seconds=30)
    settings = dataclasses.replace(push_settings, wait=wait)

    unset = answered(settings, "reject", page_round_trip())
    off = answered(settings, "reject", page_round_trip(raiseOnReject=False))

    for run in (unset, off):
        assert run.error is None, run.error
        assert run.result["value"] == "reject"
        assert run.result["body"] == {"choice": "reject", "comment": "from the page"}
    # The steps of a push round trip before raiseOnReject (test_step_budget.py).
    assert unset.steps == off.steps == 12 + 1


def test_a_form_without_reject_choices_never_raises(push_settings):
    choices = [{"value": "reject", "label": "Only a name"}]
    form = {"title": "Pick", "choices": choices, "allowComment": True}

    run = answered(push_settings, "reject", page_round_trip(form, raiseOnReject=True))

    assert run.error is None, run.error
    assert run.result["value"] == "reject"


def test_the_poll_path_raises_too(settings):
    poll = dataclasses.replace(settings, wait=dataclasses.replace(settings.wait, delivery="poll"))

    run = answered(poll, "reject", page_round_trip(raiseOnReject=True, delivery="poll"))

    assert run.error["tags"] == ["RejectedError"]
    assert run.error["answer"]["value"] == "reject"


def test_raise_on_reject_must_be_a_boolean(push_settings):
    wait = {"call": "waitForResponse", "args": {"step": "s", "raiseOnReject": "yes"}}

    run = run_workflow({"main": {"steps": [{"w": wait}]}}, settings=push_settings)

    assert run.error["tags"] == ["ValueError"]
    assert "raiseOnReject must be true or false" in run.error["message"]
    assert run.connector_calls == {}
