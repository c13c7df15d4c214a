"""Run a workflow file in workflows-emulator, in-process, against the local stack.

    result = run_workflow("workflow/example.yaml", {"subject": "Deploy"},
                          settings=RunSettings(firestore_host=host, base_url=url))

What the runner adds to workflows-emulator, each patch scoped to one run:

- the source is composed by ``infra.args.compose_workflow_source``, as the
  Pulumi program composes the deployed one (your ``main`` plus
  workflow/callbacks.yaml), and refused where a deployment would be;
- the Firestore connector is answered by the emulator (FirestoreRestBridge);
- the workflow environment is built by ``infra.workflow_env.workflow_env_vars``,
  exactly as the Pulumi program builds the deployed workflow's, plus
  GOOGLE_CLOUD_PROJECT_ID and a fresh GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID;
- ``events.create_callback_endpoint`` / ``events.await_callback`` (push
  delivery) are served by ``RunSettings.callbacks``, a loopback stand-in for
  Workflows' callback endpoints (local/callback_api.py); without one, the
  run polls;
- ``sys.now`` / ``sys.sleep`` (and the sleeps of ``retry`` steps) use a
  ``clock``, so a benchmark can run hours of polling in virtual time;
- executed steps and connector calls are counted, ``sys.log`` output, the
  URLs ``getCallbackURL`` returns and the links ``getApprovalURLs`` returns
  are surfaced through hooks;
- the emulator's expression gaps are closed (local/emulator_compat.py), so
  YAML behaves as it does on real Workflows.

workflows-emulator keeps its state in module globals and the environment is
process-wide, so runs are serialized with a lock: one workflow at a time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import yaml
from workflows_emulator import main as emulator
from workflows_emulator import render
from workflows_emulator.lib import sys_utils
from workflows_emulator.utils import WorkflowError

# infra.args and infra.workflow_env are free of Pulumi; infra/__init__ loads
# the component (and pulumi_gcp) only when it is asked for.
from infra.args import (
    CALLBACKS_WORKFLOW,
    WorkflowSourceError,
    compose_workflow_source,
    read_text,
)
from infra.workflow_env import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    WaitSettings,
    workflow_env_vars,
)
from local.callback_api import CallbackApi
from local.emulator_compat import (
    patched_attribute,
    patched_item,
    plain,
    real_workflows_semantics,
)
from local.environment import environment
from local.firestore_rest_bridge import FirestoreRestBridge

ENV_PROJECT = "GOOGLE_CLOUD_PROJECT_ID"
ENV_EXECUTION = "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID"
DEFAULT_PROJECT = "demo-workflow-callbacks"

_RUN_LOCK = threading.Lock()


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time; the default."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class RunSettings:
    """Where the workflow's Firestore, receiver and callback endpoints are, and how it waits.

    ``callbacks`` serves ``events.create_callback_endpoint`` and
    ``events.await_callback``; without it there is nothing to push to, and the
    run polls whatever ``wait.delivery`` says.
    """

    firestore_host: str
    base_url: str
    project: str = DEFAULT_PROJECT
    database: str = DEFAULT_DATABASE
    collection: str = DEFAULT_COLLECTION
    wait: WaitSettings = field(default_factory=WaitSettings)
    callbacks: CallbackApi | None = None


@dataclass
class RunResult:
    """What one execution did. ``error`` is the Workflows error map if it failed."""

    execution_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    steps: int = 0
    steps_by_name: Counter[str] = field(default_factory=Counter)
    connector_calls: Counter[str] = field(default_factory=Counter)
    # events.* calls: create_callback_endpoint, await_callback, and what each
    # await ended with (forwarded: a callback arrived; slice_ended: timeout).
    callback_events: Counter[str] = field(default_factory=Counter)
    logs: list[tuple[str, Any]] = field(default_factory=list)
    callback_urls: list[str] = field(default_factory=list)
    # What each getApprovalURLs call returned: {runID, step, links}.
    approvals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.error is None


def load_workflow(path: str | Path) -> dict[str, Any]:
    """Parse a workflow file as deployed: with the callback subworkflows appended."""
    path = Path(path)
    return _composed(read_text(path, "workflow"), str(path))


def with_subworkflows(workflow: Any, origin: str = "workflow") -> dict[str, Any]:
    """A parsed workflow (a map with ``main``) as deployed: with the callback subworkflows."""
    return _composed(yaml.safe_dump(plain(workflow), sort_keys=False), origin)


def _composed(source: str, origin: str) -> dict[str, Any]:
    # The Pulumi program's own composition (infra.args), so a local run
    # accepts and refuses exactly what a deployment does: a map with `main`,
    # no getCallbackURL/waitForResponse of its own, within the size limit.
    try:
        combined = compose_workflow_source(source, read_text(CALLBACKS_WORKFLOW, "callbacks"))
    except WorkflowSourceError as error:
        raise WorkflowSourceError(f"{origin}: {error}") from None
    return yaml.safe_load(combined)


def run_workflow(
    workflow: str | Path | Mapping[str, Any] | list[Any],
    argument: Any = None,
    *,
    settings: RunSettings,
    clock: Clock | None = None,
    bridge: FirestoreRestBridge | None = None,
    execution_id: str | None = None,
    on_log: Callable[[str, Any], None] | None = None,
    on_callback_url: Callable[[str], None] | None = None,
    on_approvals: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Execute ``workflow`` (a path or a parsed map) with ``argument`` as its main's argument.

    The callback subworkflows are appended as in deployment; a workflow the
    deployment would refuse (no ``main``, a bare list of steps, its own
    getCallbackURL or waitForResponse) raises WorkflowSourceError.

    Pass a ``bridge`` to share connector counters or inject faults; otherwise
    one is created for this run. ``on_callback_url`` gets each URL
    getCallbackURL returns, ``on_approvals`` each map getApprovalURLs
    returns, the moment it returns (before any wait). Never raises for a workflow error: see
    ``RunResult.error``.
    """
    config = (
        load_workflow(workflow) if isinstance(workflow, str | Path) else with_subworkflows(workflow)
    )
    run = RunResult(execution_id=execution_id or str(uuid.uuid4()))
    wait = settings.wait
    if settings.callbacks is None:
        wait = dataclasses.replace(wait, delivery="poll")
    env = {
        **workflow_env_vars(
            base_url=settings.base_url,
            database=settings.database,
            collection=settings.collection,
            wait=wait,
        ),
        ENV_PROJECT: settings.project,
        ENV_EXECUTION: run.execution_id,
    }
    hooks = _Hooks(
        run, clock or RealClock(), on_log, on_callback_url, settings.callbacks, on_approvals
    )
    with contextlib.ExitStack() as stack:
        if bridge is None:
            bridge = stack.enter_context(FirestoreRestBridge(settings.firestore_host))
        calls_before = Counter(bridge.calls)
        stack.enter_context(_RUN_LOCK)
        stack.enter_context(environment(env))
        stack.enter_context(_patched_emulator(bridge, hooks))
        try:
            # execute_workflow pops `main` and the emulator mutates what it is given.
            run.result = emulator.execute_workflow(
                copy.deepcopy(config), _main_params(config, argument)
            )
        except WorkflowError as error:
            run.error = plain(error.payload)
        except Exception as error:  # the emulator's own failures: bad YAML, missing vars
            run.error = {"message": str(error), "tags": [type(error).__name__]}
        finally:
            run.connector_calls = bridge.calls - calls_before
            if settings.callbacks is not None:
                # The execution has ended: its callback endpoints answer 404.
                settings.callbacks.end_execution(run.execution_id)
    return run


def _main_params(config: Mapping[str, Any], argument: Any) -> dict[str, Any]:
    # Real Workflows binds the execution argument to main's single parameter;
    # the emulator matches parameters by name, so name it. An execution
    # without an argument gets null there, not an empty map: a workflow that
    # reads it must cope with null (map.get(null, key) is null).
    main = config["main"]
    params = main.get("params", []) if isinstance(main, dict) else []
    if not params:
        return {}
    first = params[0]
    name = next(iter(first)) if isinstance(first, dict) else first
    return {name: argument}


class _Hooks:
    def __init__(
        self,
        run: RunResult,
        clock: Clock,
        on_log: Callable[[str, Any], None] | None,
        on_callback_url: Callable[[str], None] | None,
        callbacks: CallbackApi | None,
        on_approvals: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.run = run
        self.clock = clock
        self.on_log = on_log
        self.on_callback_url = on_callback_url
        self.callbacks = callbacks
        self.on_approvals = on_approvals

    def log(self, severity: str, payload: Any) -> None:
        self.run.logs.append((severity, payload))
        if self.on_log is not None:
            self.on_log(severity, payload)

    def callback_url(self, url: Any) -> None:
        if isinstance(url, str):
            self.run.callback_urls.append(url)
            if self.on_callback_url is not None:
                self.on_callback_url(url)

    def approval_links(self, approvals: Any) -> None:
        if isinstance(approvals, dict):
            self.run.approvals.append(plain(approvals))
            if self.on_approvals is not None:
                self.on_approvals(plain(approvals))

    def step(self, name: str, times: int = 1) -> None:
        self.run.steps += times
        self.run.steps_by_name[name] += times

    def retried(self, name: str, policy: Any, attempts: _Attempts) -> None:
        """Bill a retried step as Workflows does, rounding up where it is unclear.

        https://cloud.google.com/workflows/pricing: "Each retry attempt counts
        as a step execution" (the first attempt was counted when the step
        was looked up). The pricing page does not say whether the retry
        predicate's call is a step besides the predicate's own steps (which
        are counted as they run); it is counted as one, once per failed attempt.
        """
        self.step(name, max(0, attempts.runs - 1))
        predicate = policy.get("predicate") if isinstance(policy, dict) else None
        if isinstance(predicate, str) and attempts.failures:
            self.step(predicate.removeprefix("${").removesuffix("}").strip(), attempts.failures)


@dataclass
class _Attempts:
    """How often a retried step's body ran, and how often it failed."""

    runs: int = 0
    failures: int = 0


class _RetryCounter:
    """The retry steps running on each thread, innermost last, with their attempts.

    workflows-emulator runs a retried step's body with ``execute_step``
    directly, not through ``get_step``, so the runner's step count would
    miss every attempt after the first; parallel branches run on threads of
    their own, hence one stack per thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _stack(self) -> list[tuple[int, _Attempts]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[tuple[int, _Attempts]] = self._local.stack
        return stack

    @contextlib.contextmanager
    def watching(self, body: Any) -> Iterator[_Attempts]:
        attempts = _Attempts()
        self._stack().append((id(body), attempts))
        try:
            yield attempts
        finally:
            self._stack().pop()

    def of(self, config: Any) -> _Attempts | None:
        """The attempts of the innermost retry whose body ``config`` is, if any."""
        for body, attempts in reversed(self._stack()):
            if body == id(config):
                return attempts
        return None


@contextlib.contextmanager
def _patched_emulator(bridge: FirestoreRestBridge, hooks: _Hooks) -> Iterator[None]:
    original_connector = emulator.StepCall.execute_connector
    original_call = emulator.StepCall.execute
    original_get_step = emulator.get_step
    original_retry = emulator.StepRetry.execute
    original_execute_step = emulator.execute_step
    retries = _RetryCounter()

    def execute_retry(step: emulator.StepRetry) -> Any:
        with retries.watching(step.config["try"]) as attempts:
            try:
                return original_retry(step)
            finally:
                hooks.retried(step.step_id, step.config.get("retry"), attempts)

    def execute_step(step_id: Any, config: Any, context: Any) -> Any:
        attempts = retries.of(config)
        if attempts is None:
            return original_execute_step(step_id, config, context)
        attempts.runs += 1
        try:
            return original_execute_step(step_id, config, context)
        except WorkflowError:
            attempts.failures += 1
            raise

    def execute_connector(rendered_step: dict[str, Any]) -> Any:
        if bridge.handles(rendered_step["call"]):
            return bridge.call(rendered_step["call"], rendered_step.get("args", {}))
        return original_connector(rendered_step)

    def execute_call(step: emulator.StepCall) -> Any:
        outcome = original_call(step)
        # Surface the URL as soon as getCallbackURL returns, before any wait.
        if step.config.get("call") == "getCallbackURL" and "result" in step.config:
            hooks.callback_url(step.context.get(step.config["result"]))
        if step.config.get("call") == "getApprovalURLs" and "result" in step.config:
            hooks.approval_links(step.context.get(step.config["result"]))
        return outcome

    def get_step(steps: list[dict[str, Any]], step_id: str | None) -> Any:
        # execute_steps_list looks up every step it runs here, once per step.
        found = original_get_step(steps, step_id)
        if found[1] != emulator.STEP_NOT_FOUND:
            hooks.step(found[0])
        return found

    def sys_log(
        text: Any = None,
        severity: str = "DEFAULT",
        json: Any = None,
        data: Any = None,
        timeout: Any = None,
    ) -> None:
        payload = next((value for value in (text, json, data) if value is not None), None)
        hooks.log(str(severity), plain(payload))

    def sleep(seconds: Any) -> None:
        check_sleep_seconds(seconds)
        hooks.clock.sleep(float(seconds))

    def sleep_until(when: str) -> None:
        sleep(max(0.0, _parse_time(when) - hooks.clock.now()))

    def create_callback_endpoint(http_callback_method: str = "POST") -> dict[str, Any]:
        if hooks.callbacks is None:
            raise NotImplementedError("events.create_callback_endpoint needs RunSettings.callbacks")
        hooks.run.callback_events["create_callback_endpoint"] += 1
        return hooks.callbacks.create_endpoint(hooks.run.execution_id, http_callback_method)

    def await_callback(callback: Any, timeout: Any = 43_200) -> dict[str, Any]:
        if hooks.callbacks is None:
            raise NotImplementedError("events.await_callback needs RunSettings.callbacks")
        hooks.run.callback_events["await_callback"] += 1
        try:
            event = hooks.callbacks.await_callback(plain(callback), timeout, hooks.clock)
        except TimeoutError:
            hooks.run.callback_events["slice_ended"] += 1
            raise
        hooks.run.callback_events["forwarded"] += 1
        return event

    events = SimpleNamespace(
        create_callback_endpoint=create_callback_endpoint, await_callback=await_callback
    )
    patches = [
        (emulator.StepCall, "execute_connector", staticmethod(execute_connector)),
        (emulator.StepCall, "execute", execute_call),
        (emulator, "get_step", get_step),
        (emulator.StepRetry, "execute", execute_retry),
        (emulator, "execute_step", execute_step),
        (emulator, "sleep", hooks.clock.sleep),  # the backoff sleeps of `retry`
        (sys_utils, "now", hooks.clock.now),
        (sys_utils, "sleep", sleep),
        (sys_utils, "sleep_until", sleep_until),
        (sys_utils, "log", sys_log),
    ]
    with contextlib.ExitStack() as stack:
        for target, name, value in patches:
            stack.enter_context(patched_attribute(target, name, value))
        stack.enter_context(patched_item(render.STANDARD_LIBRARY, "events", events))
        stack.enter_context(real_workflows_semantics())
        yield


# https://cloud.google.com/workflows/docs/sleeping: sys.sleep "suspends
# execution for the given number of seconds to a maximum of 31536000 (one year)".
MAX_SLEEP_SECONDS = 31_536_000


def check_sleep_seconds(seconds: Any) -> None:
    """Refuse what Workflows' sys.sleep does not describe, instead of sleeping anyway.

    The reference (https://cloud.google.com/workflows/docs/reference/stdlib/sys/sleep)
    takes ``seconds`` as a number (int or double) and describes no negative
    length; https://cloud.google.com/workflows/docs/sleeping caps it at
    MAX_SLEEP_SECONDS. Strict where the reference is silent: a non-number (a
    bool included) is a TypeError, a negative or longer length a ValueError.
    0 is a number of seconds within the range, and allowed.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"sys.sleep: seconds must be a number, got {type(seconds).__name__}")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"sys.sleep: seconds must be from 0 to {MAX_SLEEP_SECONDS}, got {seconds}")


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
