"""What a callback's body becomes in the stored payload: never a lossy copy.

A body is stored as JSON, a form map, text, a multipart map or base64, and
the payload says which (``bodyEncoding``). Bytes that are not valid text in
their declared (or default UTF-8) charset, and every type that is not text,
are kept as base64 (Workflows has ``base64.decode``), so a caller is never
told "received" for a body that was changed on the way. docs/protocol.md,
"Payload", is the reference.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

# Lone surrogates (a "\ud800" JSON escape or its raw bytes, which Python's json
# decodes with "surrogatepass", or what utf-7 and unicode_escape decode "+2AA-"
# and "\\ud800" to) are not Unicode text: the payload could not be encoded as
# UTF-8 to be stored, and no workflow could read them.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Content-Encoding values the receiver decodes; "identity" means none.
SUPPORTED_CONTENT_ENCODINGS = ("gzip", "x-gzip", "deflate", "identity")
# Media types that are text, besides text/*; their bodies are decoded, and
# kept as base64 only if their bytes are not valid text.
TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/ecmascript",
    "application/yaml",
    "application/x-yaml",
    "application/x-ndjson",
    "application/csv",
    "application/graphql",
)


class BodyError(Exception):
    """The body cannot be accepted as sent (answered with 400)."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding the receiver does not decode (answered with 415)."""


class DecodedTooLarge(Exception):
    """The body is within the limit as sent but over it once decoded (413)."""


@dataclass(frozen=True)
class StoredBody:
    """The body as it goes into the payload, and how it is encoded there."""

    encoding: str | None  # json, form, text, multipart, base64; None when empty
    value: Any


def decode_content(content_encoding: str | None, body: bytes, limit: int) -> bytes:
    """Undo the Content-Encoding (gzip, deflate), at most ``limit`` decoded bytes.

    A decompression bomb is refused once it passes the limit, without
    inflating the rest. Several encodings are undone in reverse order.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding not in SUPPORTED_CONTENT_ENCODINGS:
            raise UnsupportedEncoding(
                f"Content-Encoding {coding} is not supported (use gzip, deflate or none)"
            )
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, zlib.MAX_WBITS | 16, limit)
        elif coding == "deflate":
            # RFC 9110's deflate is zlib-wrapped; some senders send it raw.
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except BodyError:
                body = _inflate(body, -zlib.MAX_WBITS, limit)
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        decoded = inflater.decompress(data, limit + 1)
        if len(decoded) <= limit and not inflater.unconsumed_tail:
            decoded += inflater.flush()
    except zlib.error as error:
        raise BodyError("the body does not match its Content-Encoding") from error
    if len(decoded) > limit or inflater.unconsumed_tail:
        raise DecodedTooLarge
    if not inflater.eof:
        raise BodyError("the body does not match its Content-Encoding (it is cut short)")
    return decoded


def store_body(mimetype: str, params: Mapping[str, str], body: bytes) -> StoredBody:
    """The payload form of ``body``, sent as ``mimetype`` with ``params`` (charset, boundary)."""
    if not body:
        return StoredBody(None, None)
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return StoredBody("json", _json(body, params.get("charset")))
    if mimetype == "application/x-www-form-urlencoded":
        form = _form(body, params.get("charset"))
        return StoredBody("form", form) if form is not None else _base64(body)
    if mimetype == "multipart/form-data":
        return StoredBody("multipart", _multipart(body, params.get("boundary")))
    if not mimetype or _is_text_type(mimetype):
        text = strict_text(body, params.get("charset"))
        return StoredBody("text", text) if text is not None else _base64(body)
    return _base64(body)


def strict_text(data: bytes, charset: str | None) -> str | None:
    """``data`` as text in ``charset`` (default UTF-8), or None if it is not valid text.

    A charset Python does not know, or that is no text encoding (base64), is
    read as UTF-8.
    """
    codec = _text_codec(charset) or "utf-8"
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, ValueError, LookupError):
        return None
    return None if LONE_SURROGATE.search(text) else text


def _codec_name(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def _text_codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return None
    # base64, hex, zlib...: bytes-to-bytes codecs, not text encodings.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _is_text_type(mimetype: str) -> bool:
    return mimetype.startswith("text/") or mimetype in TEXT_TYPES or mimetype.endswith("+xml")


def _base64(data: bytes) -> StoredBody:
    return StoredBody("base64", base64.b64encode(data).decode("ascii"))


def _json(body: bytes, charset: str | None) -> Any:
    source: bytes | str = body
    if charset and _codec_name(charset) not in _UTF_CODECS:
        codec = _text_codec(charset)
        if codec is None:
            raise BodyError(f"the JSON body's charset {charset} is not a text encoding we know")
        try:
            source = body.decode(codec)
        except (UnicodeDecodeError, ValueError) as error:
            raise BodyError(f"the JSON body is not valid {charset} text") from error
    try:
        parsed = json.loads(source, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        raise BodyError("the body is not valid JSON") from error
    if _has_lone_surrogate(parsed):
        raise BodyError("the body is not valid JSON")
    return parsed


def _form(body: bytes, charset: str | None) -> dict[str, Any] | None:
    """The form as a map, or None if its bytes or its decoded values are not valid text."""
    text = strict_text(body, charset)
    if text is None:
        return None
    codec = _text_codec(charset) or "utf-8"
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=codec, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    if any(LONE_SURROGATE.search(name + value) for name, value in pairs):
        return None
    return _grouped(pairs)


def _multipart(body: bytes, boundary: str | None) -> dict[str, Any]:
    """Each part by name: text for a text field, a file object for anything else.

    A file object is ``{"filename", "contentType", "encoding": "base64",
    "data"}``; a field whose bytes are not valid text becomes one too (with
    ``filename`` null), so nothing is lost.
    """
    if not boundary:
        raise BodyError("the multipart body has no boundary parameter")
    decoder = MultipartDecoder(boundary.encode("latin-1", "replace"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[str, Any]] = []
    current: Field | File | None = None
    chunks: list[bytes] = []
    try:
        while not isinstance(event := decoder.next_event(), Epilogue | NeedData):
            if isinstance(event, Field | File):
                current, chunks = event, []
            elif isinstance(event, Data) and current is not None:
                chunks.append(event.data)
                if not event.more_data:
                    parts.append((current.name, _part(current, b"".join(chunks))))
                    current = None
    except ValueError as error:
        raise BodyError(f"the multipart body is malformed: {error}") from error
    if not isinstance(event, Epilogue):
        raise BodyError("the multipart body is malformed: it ends before its last boundary")
    return _grouped(parts)


def _part(header: Field | File, data: bytes) -> Any:
    content_type = header.headers.get("Content-Type")
    if isinstance(header, Field):
        charset = _param(content_type, "charset")
        text = strict_text(data, charset)
        if text is not None:
            return text
    return {
        "filename": header.filename if isinstance(header, File) else None,
        "contentType": content_type,
        "encoding": "base64",
        "data": base64.b64encode(data).decode("ascii"),
    }


def _param(content_type: str | None, name: str) -> str | None:
    for item in (content_type or "").split(";")[1:]:
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def _grouped(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A map: one value as itself, a repeated name as a list."""
    grouped: dict[str, list[Any]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


_UTF_CODECS = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


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
