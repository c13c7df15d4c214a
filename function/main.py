"""The callback receiver: a public HTTP Cloud Function (entry point processEntry).

External systems call it with ?runID=..&step=..&token=.. to deliver a
callback; it stores the callback in Firestore for the waiting workflow. The
protocol is docs/protocol.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import flask
from google.cloud import firestore

import callback_store
import contract
from approval_page import (
    MAX_COMMENT_CHARS,
    Form,
    FormError,
    answered_message,
    form_page,
    html_response,
    is_page_request,
    message_page,
)
from callback_body import (
    LONE_SURROGATE,
    BodyError,
    DecodedTooLarge,
    UnsupportedEncoding,
    decode_content,
    strict_text,
)
from callback_forward import GOOGLE_ORIGIN, Forwarder
from callback_request import (
    BadRequest,
    BodyTooLarge,
    Callback,
    CallbackIds,
    parse_callback,
    parse_ids,
    read_body,
)
from callback_store import Outcome

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH")
RETRY_AFTER_SECONDS = 5
# The waiting workflow must hold the payload: Workflows caps an execution's
# variables at 512 KB in total and a string at about 256 KB, and
# waitForResponse holds the payload string and its decoded copy at once. A
# callback answered 200 that the workflow then cannot hold is a lost callback,
# so refuse it here instead (well under Firestore's 1 MiB document limit too).
MAX_STORED_PAYLOAD_BYTES = 150_000


@dataclass(frozen=True)
class Settings:
    """The function's configuration, from its environment variables."""

    project: str | None = None
    database: str = "(default)"
    collection: str = contract.DEFAULT_COLLECTION
    allow_unregistered: bool = False
    # Small enough that the payload built from it fits MAX_STORED_PAYLOAD_BYTES.
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES
    ttl_seconds: int = contract.DEFAULT_TTL_SECONDS
    # Push delivery: the region of the workflows whose callback endpoints the
    # receiver may call, and (deployed) the project number, which endpoint
    # URLs may carry instead of the project id.
    region: str | None = None
    project_number: str | None = None
    # Local stack only: where the callback endpoints are and the fixed token
    # they take (see callback_forward.Forwarder).
    forward_origin: str = GOOGLE_ORIGIN
    forward_local_token: str | None = None
    # Browser origins (https://app.example.com) whose pages may call the
    # machine URLs (CORS); none by default.
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            database=env.get("CALLBACKS_DATABASE") or cls.database,
            collection=env.get("CALLBACKS_COLLECTION") or cls.collection,
            allow_unregistered=_flag(env, "CALLBACKS_ALLOW_UNREGISTERED", cls.allow_unregistered),
            max_body_bytes=_positive_int(env, "CALLBACKS_MAX_BODY_BYTES", cls.max_body_bytes),
            ttl_seconds=_positive_int(env, "CALLBACKS_TTL_SECONDS", cls.ttl_seconds),
            region=env.get("CALLBACKS_REGION") or None,
            project_number=env.get("CALLBACKS_PROJECT_NUMBER") or None,
            forward_origin=env.get("CALLBACKS_FORWARD_ORIGIN") or cls.forward_origin,
            forward_local_token=env.get("CALLBACKS_FORWARD_LOCAL_TOKEN") or None,
            allowed_origins=frozenset(
                origin.strip().rstrip("/")
                for origin in env.get("CALLBACKS_ALLOWED_ORIGINS", "").split(",")
                if origin.strip()
            ),
        )

    def forwarder(self) -> Forwarder:
        return Forwarder(
            self.project,
            self.region,
            origin=self.forward_origin,
            local_token=self.forward_local_token,
            project_number=self.project_number,
        )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


# One configuration and one Firestore client per instance, created by the
# first request (not at import, so a configuration error is reported as a
# logged 500 rather than a crashed deploy). Each functions_framework.create_app
# loads this module afresh, which is how tests run it with another environment.
_runtime_lock = threading.Lock()
_settings: Settings | None = None
_client: firestore.Client | None = None
_forwarder: Forwarder | None = None


def _runtime_settings() -> Settings:
    global _settings
    with _runtime_lock:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings


def _runtime() -> tuple[Settings, firestore.Client, Forwarder]:
    global _settings, _client, _forwarder
    with _runtime_lock:
        if _settings is None:
            _settings = Settings.from_env()
        if _forwarder is None:
            _forwarder = _settings.forwarder()
        if _client is None:
            _client = firestore.Client(project=_settings.project, database=_settings.database)
        return _settings, _client, _forwarder


class _Reply(Exception):
    """Ends request handling with this status and error message.

    ``body_unread``: the answer comes before the body was read (or while it
    was being read); it is then sent without reading the rest.
    """

    def __init__(self, status: int, error: str, outcome: str, body_unread: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.outcome = outcome
        self.body_unread = body_unread


OUTCOME_REPLIES = {
    Outcome.FORBIDDEN: (403, "token missing or wrong for this callback"),
    Outcome.NOT_REGISTERED: (404, "no callback is registered for this runID and step"),
    Outcome.CONFLICT: (409, "this callback was already received with a different payload"),
    Outcome.UNKNOWN_STATE: (409, "this callback is in a state the receiver does not accept"),
}


def processEntry(request: flask.Request) -> flask.Response:
    """Receive one callback; every answer is JSON."""
    started = time.monotonic()
    log: dict[str, Any] = {"runID": None, "step": None, "method": request.method}
    token = request.args.get("token")
    origin = _allowed_origin(request)
    if origin is not None and request.method == "OPTIONS":
        response = _preflight(origin)
        _log(request, log, "preflight", response.status_code, started)
        return response
    try:
        if is_page_request(request):
            outcome, status, response = _page(request, log)
        else:
            outcome, status = _handle(request, log)
            response = _json({"status": "received", "runID": log["runID"], "step": log["step"]})
    except _Reply as reply:
        outcome, status = reply.outcome, reply.status
        response = _error_response(reply, request)
    except Exception as error:
        outcome, status = "error", 500
        if is_page_request(request):
            page = message_page("Something went wrong", "Please try again in a minute.")
            response = html_response(page, 500)
        else:
            response = _json({"error": "internal error"}, 500)
        log["error"] = _redact(f"{type(error).__name__}: {error}", token)
        log["stack_trace"] = _redact("".join(traceback.format_exception(error)), token)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    _log(request, log, outcome, status, started)
    return response


CORS_MAX_AGE_SECONDS = 600


def _allowed_origin(request: flask.Request) -> str | None:
    """The request's Origin if the stack allows it (CALLBACKS_ALLOWED_ORIGINS), else None."""
    origin = request.headers.get("Origin")
    if not origin or is_page_request(request):
        return None
    try:
        settings = _runtime_settings()
    except ValueError:
        return None
    return origin if origin in settings.allowed_origins else None


def _preflight(origin: str) -> flask.Response:
    """The CORS preflight of a browser page on an allowed origin: which calls it may make."""
    response = flask.Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS),
            "Vary": "Origin",
        }
    )
    return response


def _handle(request: flask.Request, log: dict[str, Any]) -> tuple[str, int]:
    ids = _checked_ids(request, log, ALLOWED_METHODS)
    settings, client, forwarder = _runtime()
    now = datetime.now(UTC)
    callback = _parse(request, ids, settings, now)
    recorded = _store(callback, settings, client, now)
    outcome = recorded.outcome
    log["firestoreCalls"] = recorded.firestore_calls
    if outcome in OUTCOME_REPLIES:
        status, message = OUTCOME_REPLIES[outcome]
        raise _Reply(status, message, outcome.value)
    _forward(recorded, callback, forwarder, log)
    return outcome.value, 200


def _checked_ids(
    request: flask.Request, log: dict[str, Any], methods: tuple[str, ...]
) -> CallbackIds:
    """The method and the ids, checked before anything is read."""
    if request.method not in methods:
        raise _Reply(
            405, f"method {request.method} is not allowed", "method_not_allowed", body_unread=True
        )
    try:
        ids = parse_ids(request.args)
    except BadRequest as error:
        raise _Reply(400, str(error), "bad_request", body_unread=True) from None
    log["runID"], log["step"] = ids.run_id, ids.step
    return ids


def _store(
    callback: Callback,
    settings: Settings,
    client: firestore.Client,
    now: datetime,
    page_choices: Any = None,
) -> callback_store.Recorded:
    # allow_nan=False: never store NaN or Infinity, which the workflow's
    # json.decode rejects (the body parser already refuses them).
    payload_json = json.dumps(
        callback.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    if len(payload_json.encode("utf-8")) > MAX_STORED_PAYLOAD_BYTES:
        message = (
            f"the callback is too large for a workflow to hold "
            f"(its payload is over {MAX_STORED_PAYLOAD_BYTES} bytes)"
        )
        raise _Reply(413, message, "too_large")
    try:
        return callback_store.record(
            client,
            settings.collection,
            callback,
            payload_json,
            now,
            settings.allow_unregistered,
            timedelta(seconds=settings.ttl_seconds),
            page_choices=page_choices,
        )
    except Exception as error:
        if callback_store.is_transient(error):
            message = "the callback store is unavailable, retry later"
            raise _Reply(503, message, "unavailable") from error
        raise


def _forward(
    recorded: callback_store.Recorded,
    callback: Callback,
    forwarder: Forwarder,
    log: dict[str, Any],
) -> None:
    if recorded.forward_url:
        # Stored first, so the caller's 200 stands whatever the forward does:
        # a failed forward is found in Firestore at the end of the wait's slice.
        ids_fields = {"runID": callback.ids.run_id, "step": callback.ids.step}
        result = forwarder.forward(recorded.forward_url, {**callback.payload, **ids_fields})
        log.update(result.log_fields())


# --- the page for people ---------------------------------------------------------------
PAGE_METHODS = ("GET", "HEAD", "POST")
EXPIRED = "This link has expired or is unknown."


def _page(request: flask.Request, log: dict[str, Any]) -> tuple[str, int, flask.Response]:
    """GET/HEAD render the page and change nothing; POST records the choice."""
    ids = _checked_ids(request, log, PAGE_METHODS)
    settings, client, forwarder = _runtime()
    token = request.args.get("token")
    # Read (and bounded) on every method, so no body is ever drained unbounded.
    body = _read_body(request, settings.max_body_bytes)
    if request.method != "POST":
        # Relative: behind Cloud Run's TLS proxy the app may see http://, and
        # an absolute http action on an https page would be blocked.
        action = "?" + request.query_string.decode("latin-1")
        outcome, status, page = _show_page(client, settings, ids, token, action)
        return outcome, status, html_response(page, status, head_only=request.method == "HEAD")
    now = datetime.now(UTC)
    fields = _answer_fields(body)
    choice = fields.get("choice", "")
    if len(fields.get("comment", "")) > MAX_COMMENT_CHARS:
        message = f"the comment is longer than {MAX_COMMENT_CHARS} characters"
        raise _Reply(400, message, "bad_request")
    try:
        callback = parse_callback(request, ids, body, now, value=choice)
    except (BadRequest, BodyError) as error:
        raise _Reply(400, str(error), "bad_request") from None
    recorded = _store(callback, settings, client, now, page_choices=_offered_choices)
    outcome = recorded.outcome
    log["firestoreCalls"] = recorded.firestore_calls
    form = _form_of(recorded.stored)
    if outcome in (Outcome.STORED, Outcome.DUPLICATE) and form is not None:
        _forward(recorded, callback, forwarder, log)
        label = form.label_of(choice) or choice
        page = message_page(form.title, f"Thank you. Your answer was recorded: {label}.")
        return outcome.value, 200, html_response(page)
    if outcome is Outcome.INVALID_CHOICE and form is not None:
        page = message_page(form.title, "That is not one of the choices on this page.")
        return outcome.value, 400, html_response(page, 400)
    if outcome is Outcome.CONFLICT and form is not None:
        stored = recorded.stored or {}
        label = form.label_of(stored.get("value")) or str(stored.get("value"))
        page = message_page(form.title, answered_message(label, stored.get("receivedAt")))
        return outcome.value, 409, html_response(page, 409)
    return outcome.value, 404, html_response(message_page("Unknown link", EXPIRED), 404)


def _show_page(
    client: firestore.Client, settings: Settings, ids: CallbackIds, token: str | None, action: str
) -> tuple[str, int, str]:
    """(outcome, status, page) for a GET: read only, never written."""
    collection = client.collection(settings.collection)
    snapshot = callback_store.read(collection.document(ids.document_id))
    stored = snapshot.to_dict() if snapshot.exists else None
    if stored is not None and callback_store.token_matches(stored.get("token"), token):
        form = _form_of(stored)
        if form is not None and stored.get("state") == callback_store.WAITING:
            return "page", 200, form_page(form, action)
        if form is not None and stored.get("state") == callback_store.RECEIVED:
            label = form.label_of(stored.get("value")) or str(stored.get("value"))
            message = answered_message(label, stored.get("receivedAt"))
            return "page_answered", 200, message_page(form.title, message)
    if stored is None:
        # Consumed by the workflow (or expired): the answer record says which.
        answer = callback_store.read(
            collection.document(ids.document_id + callback_store.ANSWER_SUFFIX)
        )
        record = answer.to_dict() if answer.exists else None
        if record is not None and callback_store.token_matches(
            record.get("tokenHash"), callback_store.token_hash(token)
        ):
            form = _form_of(record)
            title = form.title if form else "Already answered"
            label = (form.label_of(record.get("value")) if form else None) or record.get("value")
            message = answered_message(str(label), record.get("answeredAt"))
            return "page_answered", 200, message_page(title, message)
    return "page_unknown", 404, message_page("Unknown link", EXPIRED)


def _form_of(stored: Mapping[str, Any] | None) -> Form | None:
    text = (stored or {}).get(callback_store.FORM_FIELD)
    if not isinstance(text, str) or not text:
        return None
    try:
        return Form.from_json(text)
    except FormError:
        return None


def _offered_choices(stored: Mapping[str, Any]) -> tuple[str, ...] | None:
    form = _form_of(stored)
    return None if form is None else tuple(choice.value for choice in form.choices)


def _answer_fields(body: bytes) -> dict[str, str]:
    """The page's form fields; the page is UTF-8, so its form is too, or it is refused."""
    text = strict_text(body, "utf-8")
    try:
        pairs = parse_qsl(text or "", keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        pairs = None
    if text is None or pairs is None or any(LONE_SURROGATE.search(k + v) for k, v in pairs):
        raise _Reply(400, "the answer is not valid UTF-8 text", "bad_request")
    return dict(pairs)


def _parse(request: flask.Request, ids: CallbackIds, settings: Settings, now: datetime) -> Callback:
    body = _read_body(request, settings.max_body_bytes)
    try:
        return parse_callback(request, ids, body, now)
    except (BadRequest, BodyError) as error:
        raise _Reply(400, str(error), "bad_request") from None


def _read_body(request: flask.Request, limit: int) -> bytes:
    """The body, decoded: the one way both paths read it, so their limits cannot differ."""
    try:
        sent = read_body(request, limit)
        return decode_content(request.headers.get("Content-Encoding"), sent, limit)
    except BodyTooLarge:
        message = f"the body is larger than {limit} bytes"
        raise _Reply(413, message, "too_large", body_unread=True) from None
    except DecodedTooLarge:
        message = f"the body is larger than {limit} bytes once decoded"
        raise _Reply(413, message, "too_large") from None
    except UnsupportedEncoding as error:
        raise _Reply(415, str(error), "unsupported_encoding") from None
    except BodyError as error:
        raise _Reply(400, str(error), "bad_request") from None


def _json(body: dict[str, Any], status: int = 200) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def _error_response(reply: _Reply, request: flask.Request) -> flask.Response:
    page = is_page_request(request)
    if reply.body_unread:
        return _answer_and_close(reply, request)
    if page:
        # A person never sees raw JSON: the same answer, as a page.
        response = html_response(message_page("Something went wrong", reply.error), reply.status)
    else:
        response = _json({"error": reply.error}, reply.status)
    if reply.status == 405:
        response.headers["Allow"] = ", ".join(PAGE_METHODS if page else ALLOWED_METHODS)
    if reply.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _answer_and_close(reply: _Reply, request: flask.Request) -> flask.Response:
    """Answer a request whose body is unread, then end the connection without reading it.

    An unauthenticated caller must not hold an instance reading a body that
    nobody will use. functions-framework reads the whole body after every
    non-streamed response, so this one is streamed. gunicorn then ignores a
    Connection header set by the app and, to keep the connection alive, would
    read the rest of the body before the next request; so once the answer is
    written, the socket is shut down and gunicorn closes the connection.
    Other servers (werkzeug, in tests) honour ``Connection: close``.
    """
    page = is_page_request(request)
    if page:
        # Headers and a page for a person; the connection still closes.
        template = html_response(message_page("Something went wrong", reply.error), reply.status)
        body, mimetype = template.get_data(), "text/html"
    else:
        body, mimetype = json.dumps({"error": reply.error}).encode(), "application/json"
    connection = request.environ.get("gunicorn.socket")

    def answer_then_shut_down() -> Iterator[bytes]:
        yield body
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    response = flask.Response(answer_then_shut_down(), status=reply.status, mimetype=mimetype)
    if page:
        response.headers.update(template.headers)
    # A known length, so the answer is complete when its bytes are: no
    # closing chunk has to follow the shutdown.
    response.headers["Content-Length"] = str(len(body))
    response.headers["Connection"] = "close"
    if reply.status == 405:
        response.headers["Allow"] = ", ".join(PAGE_METHODS if page else ALLOWED_METHODS)
    return response


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


_TRACE_HEADER = re.compile(r"([0-9a-fA-F]{32})(?:/.*)?")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def _trace(request: flask.Request) -> str | None:
    """The Cloud Trace id, so Cloud Logging groups our line with the request."""
    project = (_settings.project if _settings else None) or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        return None
    match = _TRACE_HEADER.fullmatch(request.headers.get("X-Cloud-Trace-Context", "")) or (
        _TRACEPARENT.fullmatch(request.headers.get("traceparent", ""))
    )
    return f"projects/{project}/traces/{match.group(1)}" if match else None


def _log(
    request: flask.Request, fields: dict[str, Any], outcome: str, status: int, started: float
) -> None:
    """One JSON line on stdout, which Cloud Logging parses into a structured entry.

    Never includes the token, the body or the payload.
    """
    severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    if severity == "INFO" and fields.get("forward") in ("failed", "refused"):
        # Stored and answered, but the waiting workflow resumes only at the
        # end of its slice.
        severity = "WARNING"
    entry = {
        "severity": severity,
        "message": f"callback {outcome} ({status})",
        **fields,
        "outcome": outcome,
        "status": status,
        "latencyMs": round((time.monotonic() - started) * 1000, 1),
    }
    trace = _trace(request)
    if trace:
        entry["logging.googleapis.com/trace"] = trace
    sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
    sys.stdout.flush()
