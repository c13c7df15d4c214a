"""A loopback stand-in for Workflows' HTTP callback endpoints, and the events.* it serves.

workflows-emulator has no ``events.create_callback_endpoint`` or
``events.await_callback``. The local runner provides both (see
local/workflow_runner.py), backed by this server, which behaves as the
Workflow Executions API's callback endpoints do where the project relies on
them:

- the real URL path shape:
  ``/v1/projects/P/locations/L/workflows/W/executions/E/callbacks/ID``;
- one HTTP method per endpoint (another method gets 405);
- a required ``Authorization: Bearer`` header (401 without it; only
  LOCAL_FORWARD_TOKEN is accepted: this is no real credential check);
- payloads buffered until awaited, in order;
- 404 once the execution has ended (and for an endpoint never created);
- waiting on the run's clock, so a benchmark can wait hours in virtual time.

``fail_next`` and ``stall_next`` make the next requests fail or hang, to test
what the receiver and the waiting workflow do when a forward goes wrong.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
# What the receiver sends when told to forward locally (CALLBACKS_FORWARD_LOCAL_TOKEN).
LOCAL_FORWARD_TOKEN = "local-callback-token"
DEFAULT_WORKFLOW = "local-workflow"


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass
class _Endpoint:
    execution: str
    method: str
    received: deque[dict[str, Any]] = field(default_factory=deque)


class CallbackApi:
    """The callback endpoints of one project and region, served on 127.0.0.1."""

    def __init__(
        self, project: str, region: str, workflow: str = DEFAULT_WORKFLOW, port: int = 0
    ) -> None:
        self.project = project
        self.region = region
        self.workflow = workflow
        self._endpoints: dict[str, _Endpoint] = {}
        self._ended: set[str] = set()
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer((HOST, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        # Every request answered: (method, path, status), for tests and the benchmark.
        self.requests: list[tuple[str, str, int]] = []
        # Injected faults for the next requests: an HTTP status, or seconds to stall.
        self._faults: deque[tuple[str, float]] = deque()

    @property
    def origin(self) -> str:
        """What CALLBACKS_FORWARD_ORIGIN is set to for a receiver forwarding here."""
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> CallbackApi:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CallbackApi:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the workflow calls ---------------------------------------------

    def create_endpoint(self, execution: str, http_callback_method: str = "POST") -> dict:
        """events.create_callback_endpoint: a new endpoint of ``execution``."""
        callback_id = uuid.uuid4().hex
        path = (
            f"/v1/projects/{self.project}/locations/{self.region}/workflows/{self.workflow}"
            f"/executions/{execution}/callbacks/{callback_id}"
        )
        with self._arrived:
            self._endpoints[path] = _Endpoint(execution, http_callback_method.upper())
        return {"url": self.origin + path}

    def await_callback(self, callback: dict, timeout: Any, clock: Clock) -> dict:
        """events.await_callback: the next buffered request.

        Raises TimeoutError after ``timeout`` seconds, which workflows-emulator
        tags ``TimeoutError``, as Workflows tags an await that times out; a
        timeout that is not a positive number is refused (check_await_timeout).
        """
        timeout = check_await_timeout(timeout)
        path = urlsplit(str(callback.get("url", ""))).path
        with self._arrived:
            endpoint = self._endpoints.get(path)
        if endpoint is None:
            raise ValueError(f"events.await_callback: no callback endpoint {callback!r}")

        def take() -> dict | None:
            with self._arrived:
                return endpoint.received.popleft() if endpoint.received else None

        event = _wait(clock, timeout, take, self._arrived)
        if event is None:
            raise TimeoutError(f"timeout waiting for a callback at {callback['url']}")
        return event

    def fail_next(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status``, buffering nothing."""
        with self._arrived:
            self._faults.extend([("status", float(status))] * times)

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` requests ``seconds`` before answering (and buffering)."""
        with self._arrived:
            self._faults.extend([("stall", seconds)] * times)

    def end_execution(self, execution: str) -> None:
        """The execution finished: its endpoints answer 404 from now on."""
        with self._arrived:
            self._ended.add(execution)

    # -- what a caller (the receiver) sends -----------------------------------

    def _receive(self, request: BaseHTTPRequestHandler, method: str) -> tuple[int, dict]:
        with self._arrived:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault[0] == "status":
            return int(fault[1]), _error(int(fault[1]), "injected fault (local callback API)")
        if fault is not None:
            time.sleep(fault[1])
        url = urlsplit(request.path)
        with self._arrived:
            endpoint = self._endpoints.get(url.path)
            if endpoint is None or endpoint.execution in self._ended:
                return HTTPStatus.NOT_FOUND, _error(404, "the execution or callback was not found")
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return HTTPStatus.UNAUTHORIZED, _error(401, "request is missing a bearer token")
        if request.headers["Authorization"] != f"Bearer {LOCAL_FORWARD_TOKEN}":
            return HTTPStatus.FORBIDDEN, _error(403, "the caller may not send this callback")
        if method != endpoint.method:
            return HTTPStatus.METHOD_NOT_ALLOWED, _error(405, f"{method} is not {endpoint.method}")
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        body: Any = raw.decode("utf-8", "replace")
        if request.headers.get("Content-Type", "").startswith("application/json"):
            body = json.loads(raw or b"null")
        event = {
            "http_request": {
                "body": body,
                "headers": {name.lower(): value for name, value in request.headers.items()},
                "method": method,
                "query": {k: v if len(v) > 1 else v[0] for k, v in parse_qs(url.query).items()},
                "url": request.path,
            },
            "received_time": datetime.now(UTC).isoformat(),
            "type": "HTTP",
        }
        with self._arrived:
            endpoint.received.append(event)
            self._arrived.notify_all()
        return HTTPStatus.OK, {}


def check_await_timeout(timeout: Any) -> float:
    """The timeout of events.await_callback, refused where Google's reference is silent.

    https://cloud.google.com/workflows/docs/reference/stdlib/events/await_callback
    types ``timeout`` as a float, "the maximum request timeout in seconds
    (default: 43200.0)", and raises TypeError for invalid input types and
    ValueError for invalid input values. It gives no meaning to a timeout of
    0 or less, so the stand-in refuses one (ValueError) instead of timing
    out at once: a workflow that computes its timeout must keep it positive.
    A non-number (a bool included) is a TypeError.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"events.await_callback: timeout must be a number, got {type(timeout).__name__}"
        )
    if not timeout > 0:
        raise ValueError(f"events.await_callback: timeout must be greater than 0, got {timeout}")
    return float(timeout)


def _wait(
    clock: Clock,
    timeout: float,
    take: Callable[[], dict | None],
    arrived: threading.Condition,
) -> dict | None:
    """``take()`` as soon as it yields something, within ``timeout`` on ``clock``.

    A clock with ``wait_until(ready, seconds)`` (the benchmark's virtual
    clock) decides how time passes; on real time, wait on the condition.
    """
    found: list[dict] = []

    def ready() -> bool:
        if not found and (event := take()) is not None:
            found.append(event)
        return bool(found)

    wait_until = getattr(clock, "wait_until", None)
    if wait_until is not None:
        wait_until(ready, timeout)
        return found[0] if found else None
    deadline = time.monotonic() + timeout
    with arrived:
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            arrived.wait(remaining)
    return found[0]


def _error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": HTTPStatus(code).name}}


def _handler_for(api: CallbackApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, body = api._receive(self, self.command)
            # Recorded before answering, so whoever got the answer can see it.
            api.requests.append((self.command, self.path, int(status)))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests read api.requests instead

    return Handler
