"""What the push tests share: a round trip that passes its URL, and a way to act mid-await."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from local.callback_api import LOCAL_FORWARD_TOKEN
from local.workflow_runner import RunResult, run_workflow


def round_trip_with_url(step: str = "s") -> dict[str, Any]:
    """The smallest workflow that waits for one callback as users are told to:
    getCallbackURL, then waitForResponse given its URL, returning the answer."""
    return {
        "main": {
            "steps": [
                {"url": {"call": "getCallbackURL", "args": {"step": step}, "result": "url"}},
                {
                    "wait": {
                        "call": "waitForResponse",
                        "args": {"step": step, "callbackUrl": "${url}"},
                        "result": "answer",
                    }
                },
                {"done": {"return": "${answer}"}},
            ]
        }
    }


ROUND_TRIP_WITH_URL = round_trip_with_url()


def capability(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def proof(token: str, version: str, payload: str) -> str:
    """What the receiver sends (the contract): base64 of HMAC-SHA256(token, version\\npayload)."""
    digest = hmac.new(token.encode(), f"{version}\n{payload}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def post_to_endpoint(endpoint: str, body: Any, content_type: str = "application/json") -> int:
    """POST straight to the execution's callback endpoint, as any holder of
    workflows.callbacks.send could (the local API's stand-in credential)."""
    data = json.dumps(body) if content_type == "application/json" else str(body)
    headers = {"Authorization": f"Bearer {LOCAL_FORWARD_TOKEN}", "Content-Type": content_type}
    return requests.post(endpoint, data=data, headers=headers, timeout=10).status_code


def run_awaiting(
    settings, act: Callable[[str], None], workflow=ROUND_TRIP_WITH_URL, **kwargs: Any
) -> RunResult:
    """Run ``workflow``; ``act(url)`` runs in a thread once the wait has begun awaiting."""
    api = settings.callbacks
    awaiting = threading.Event()
    original = api.await_callback
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []

    def await_callback(*args, **kw):
        awaiting.set()
        return original(*args, **kw)

    def on_url(url: str) -> None:
        def later() -> None:
            try:
                assert awaiting.wait(10), "the wait never began"
                act(url)
            except BaseException as error:  # re-raised below
                failures.append(error)

        thread = threading.Thread(target=later)
        threads.append(thread)
        thread.start()

    api.await_callback = await_callback
    try:
        run = run_workflow(workflow, settings=settings, on_callback_url=on_url, **kwargs)
    finally:
        del api.await_callback  # back to the class's method
    for thread in threads:
        thread.join(timeout=30)
    if failures:
        raise failures[0]
    return run
