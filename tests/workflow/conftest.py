"""Fixtures for running the callback subworkflows in workflows-emulator.

One receiver (functions-framework) per session, on its own database; tests
do not interfere because every run has its own execution id (the runID).
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from infra.function_contract import DEFAULT_COLLECTION
from infra.workflow_env import WaitSettings
from local.callback_api import CallbackApi
from local.firestore_rest_bridge import FirestoreRestBridge
from local.receiver import ReceiverServer
from local.stack import LOCAL_REGION, receiver_env
from local.workflow_runner import RunSettings

# Short polls: a round trip takes a fraction of a second. Most tests here are
# about polling; test_push.py runs push delivery (PUSH, with short slices).
FAST = WaitSettings(
    poll_initial_seconds=0.05,
    poll_multiplier=2.0,
    poll_max_seconds=0.2,
    timeout_seconds=30,
    ttl_seconds=3_600,
    delivery="poll",
)
PUSH = dataclasses.replace(FAST, delivery="push", push_slice_seconds=1)


class FakeClock:
    """Virtual time: sleep() returns at once and advances now(); records every sleep.

    Actions scheduled ``at`` a virtual offset run when time passes it (a
    caller answering at T), and ``wait_until`` is how events.await_callback
    waits on it (local/callback_api.py): an await returns as soon as its
    endpoint holds a callback, or after its whole timeout of virtual time.
    """

    def __init__(self) -> None:
        self.start = self.time = time.time()
        self.sleeps: list[float] = []
        self.awaits: list[float] = []
        self._due: list[tuple[float, int, Callable[[], None]]] = []

    @property
    def elapsed(self) -> float:
        return self.time - self.start

    def now(self) -> float:
        return self.time

    def at(self, offset: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._due, (self.start + offset, len(self._due), action))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._advance(seconds, lambda: False)

    def wait_until(self, ready: Callable[[], bool], seconds: float) -> bool:
        self.awaits.append(seconds)
        return self._advance(seconds, ready)

    def _advance(self, seconds: float, ready: Callable[[], bool]) -> bool:
        target = self.time + seconds
        while not ready():
            if not self._due or self._due[0][0] > target:
                self.time = target
                return ready()
            due, _, action = heapq.heappop(self._due)
            self.time = max(self.time, due)
            action()
        return True


class TriggerClock:
    """Real time, but runs ``action`` once, at the first sleep: i.e. during the wait."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action: Callable[[], None] | None = action
        self.sleeps = 0

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        action, self.action = self.action, None
        if action is not None:
            action()
        time.sleep(seconds)


@pytest.fixture(scope="session")
def callbacks_database(firestore_emulator_host: str) -> str:
    return f"workflow-tests-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def callback_api(gcp_project: str) -> Iterator[CallbackApi]:
    """The local stand-in for Workflows' callback endpoints, which the receiver forwards to."""
    with CallbackApi(gcp_project, LOCAL_REGION) as api:
        yield api


@pytest.fixture(scope="session")
def receiver(
    firestore_emulator_host: str,
    gcp_project: str,
    callbacks_database: str,
    callback_api: CallbackApi,
) -> Iterator[ReceiverServer]:
    env = receiver_env(
        firestore_emulator_host,
        gcp_project,
        callbacks_database,
        DEFAULT_COLLECTION,
        FAST,
        callback_api,
    )
    with ReceiverServer(env) as server:
        yield server


@pytest.fixture
def settings(
    firestore_emulator_host: str,
    gcp_project: str,
    callbacks_database: str,
    receiver: ReceiverServer,
) -> RunSettings:
    return RunSettings(
        firestore_host=firestore_emulator_host,
        base_url=receiver.url,
        project=gcp_project,
        database=callbacks_database,
        wait=FAST,
    )


@pytest.fixture
def push_settings(settings: RunSettings, callback_api: CallbackApi) -> RunSettings:
    """The same stack with push delivery: the receiver forwards, the wait awaits."""
    return dataclasses.replace(settings, wait=PUSH, callbacks=callback_api)


@pytest.fixture
def bridge(firestore_emulator_host: str) -> Iterator[FirestoreRestBridge]:
    with FirestoreRestBridge(firestore_emulator_host) as opened:
        yield opened


@pytest.fixture
def callbacks(
    firestore_emulator_host: str, gcp_project: str, callbacks_database: str
) -> Iterator[firestore.CollectionReference]:
    """The receiver's collection, to look at (or plant) callback documents."""
    client = firestore.Client(
        project=gcp_project, database=callbacks_database, credentials=AnonymousCredentials()
    )
    yield client.collection(DEFAULT_COLLECTION)
    client.close()


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Run a function in a thread; joined (and its exception re-raised) at teardown."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(function: Callable[[], None]) -> None:
        def target() -> None:
            try:
                function()
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=target, daemon=True)
        threads.append(thread)
        thread.start()

    yield start
    for thread in threads:
        thread.join(timeout=10)
    if errors:
        raise errors[0]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def trigger_clock() -> type[TriggerClock]:
    return TriggerClock
