"""Turn an HTTP callback request into what the receiver stores.

Pure functions of the request: no Firestore, no logging, no settings cache.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,128}")
STEP_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")

# The only request headers kept in the payload. An allow-list, because a
# deny-list would keep whatever credential header a caller invents
# (Authorization, Cookie, X-Api-Key, signed URLs in Referer, ...).
HEADER_ALLOW_LIST = (
    "accept",
    "content-type",
    "user-agent",
    "idempotency-key",
    "x-request-id",
    "x-correlation-id",
    "traceparent",
    "x-cloud-trace-context",
)
# Header values are the caller's to choose; keep them from bloating the payload.
MAX_HEADER_VALUE_CHARS = 1024
# Lone surrogates (a "\ud800" JSON escape or its raw bytes, which Python's json
# decodes with "surrogatepass", or what utf-7 and unicode_escape decode "+2AA-"
# and "\\ud800" to) are not Unicode text: the payload could not be encoded as
# UTF-8 to be stored, and no workflow could read them.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(Exception):
    """The request is malformed (answered with 400)."""


class BodyTooLarge(Exception):
    """The body exceeds the configured limit (answered with 413)."""


@dataclass(frozen=True)
class CallbackIds:
    run_id: str
    step: str

    @property
    def document_id(self) -> str:
        # Unambiguous because runID cannot contain "_".
        return f"{self.run_id}_{self.step}"


@dataclass(frozen=True)
class Callback:
    """One parsed callback: what is stored, and how retries are recognised."""

    ids: CallbackIds
    token: str | None
    value: str | None
    payload: dict[str, Any]
    fingerprint: str


def parse_ids(args: MultiDict[str, str]) -> CallbackIds:
    """runID and step, validated; the only characters they may hold are safe in ids."""
    run_id = args.get("runID")
    step = args.get("step")
    if run_id is None or not RUN_ID_PATTERN.fullmatch(run_id):
        raise BadRequest("runID is missing or malformed (expected [A-Za-z0-9-]{1,128})")
    if step is None or not STEP_PATTERN.fullmatch(step):
        raise BadRequest("step is missing or malformed (expected [A-Za-z0-9_-]{1,128})")
    return CallbackIds(run_id, step)


def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over `limit` bytes.

    A declared Content-Length over the limit is refused without reading. A
    body of unknown length (chunked) is read up to limit + 1 bytes, so an
    endless stream costs at most that much memory.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge
    stream = request.stream
    chunks: list[bytes] = []
    received = 0
    while received <= limit:
        chunk = stream.read(limit + 1 - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    if received > limit:
        raise BodyTooLarge
    return b"".join(chunks)


def parse_callback(request: Request, ids: CallbackIds, body: bytes, now: datetime) -> Callback:
    """Everything the receiver stores for this request."""
    token = request.args.get("token") or None
    value = request.args.get("value")
    query = _multidict_to_map(request.args, drop=("token",))
    content_type = request.headers.get("Content-Type")
    payload = {
        "method": request.method,
        "query": query,
        "headers": _safe_headers(request),
        "contentType": request.mimetype or None,
        "body": _parse_body(request, body),
        "value": value,
        "receivedAt": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return Callback(
        ids=ids,
        token=token,
        value=value,
        payload=payload,
        fingerprint=fingerprint(request.method, query, content_type, body, value),
    )


def fingerprint(
    method: str, query: dict[str, Any], content_type: str | None, body: bytes, value: str | None
) -> str:
    """Identify "the same callback" across caller retries.

    Covers what the caller chose to send; leaves out what legitimately differs
    between two sends of one callback: the token (it may even be omitted on
    unregistered callbacks), headers (trace ids, user agent versions) and the
    time of receipt.
    """
    digest = hashlib.sha256()
    head = json.dumps([method, query, content_type, value], sort_keys=True, ensure_ascii=False)
    digest.update(head.encode("utf-8"))
    digest.update(b"\0")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


def _multidict_to_map(values: MultiDict[str, str], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A plain map: one value as a string, a repeated name as a list of strings."""
    result: dict[str, Any] = {}
    for name, items in values.lists():
        if name in drop:
            continue
        result[name] = items[0] if len(items) == 1 else items
    return result


def _safe_headers(request: Request) -> dict[str, str]:
    headers = {}
    for name in HEADER_ALLOW_LIST:
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value[:MAX_HEADER_VALUE_CHARS]
    return headers


def _parse_body(request: Request, body: bytes) -> Any:
    """Parsed JSON, a form map, text, or None when empty."""
    if not body:
        return None
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            parsed = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as error:
            raise BadRequest("the body is not valid JSON") from error
        if _has_lone_surrogate(parsed):
            raise BadRequest("the body is not valid JSON")
        return parsed
    text = _decode_text(request, body)
    if mimetype == "application/x-www-form-urlencoded":
        return _multidict_to_map(MultiDict(parse_qsl(text, keep_blank_values=True)))
    return text


def _refuse_constant(name: str) -> Any:
    # Python's json accepts NaN, Infinity and -Infinity; JSON does not, and
    # neither does Workflows' json.decode, so storing them would hand the
    # waiting workflow a payload it cannot decode.
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON syntax but overflows to infinity, which has no JSON form.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a lone surrogate in any key or string.

    Iterative, because the parser accepts nesting as deep as the recursion limit.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _decode_text(request: Request, body: bytes) -> str:
    """The body as text; undecodable bytes and lone surrogates become U+FFFD."""
    try:
        text = body.decode(_charset(request), errors="replace")
    except (LookupError, ValueError):
        # The charset names a codec that is no text encoding (base64) or that
        # cannot replace bad bytes (idna, punycode): read UTF-8, as for an
        # unknown charset, rather than fail the callback.
        text = body.decode("utf-8", errors="replace")
    return LONE_SURROGATE.sub("\ufffd", text)


def _charset(request: Request) -> str:
    charset = request.mimetype_params.get("charset", "utf-8")
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return "utf-8"
