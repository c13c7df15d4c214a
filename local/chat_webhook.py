"""A loopback stand-in for a Google Chat incoming webhook: it shows the messages a workflow sends.

workflow/approval_example.yaml posts each approver's link to a chat space
through an incoming webhook, as a deployed workflow would post to
``https://chat.googleapis.com/v1/spaces/SPACE/messages?key=...&token=...``.
Locally nothing leaves the machine: ``python -m local run`` starts this
server and hands its URL to the workflow, and each message's text is
printed (and passed to ``on_message``, which the auto-approver uses).

It is strict where Google Chat is: a message is a JSON object with a
non-empty ``text`` (or ``cardsV2``, which this stand-in does not render);
anything else is refused with 400, so an example that works here does not
fail on the real webhook. https://developers.google.com/workspace/chat/quickstart/webhooks
and https://cloud.google.com/workflows/docs/notify-google-chat (the JSON
body, ``Content-Type: application/json; charset=UTF-8``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Google Chat's link markup in a text message: <URL|label>.
# https://developers.google.com/workspace/chat/format-messages
LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]*)>")
MAX_MESSAGE_BYTES = 32_000  # Google Chat's limit on a message's text is 32,000 bytes.


@dataclass(frozen=True)
class ChatLink:
    url: str
    label: str


def links_in(text: str) -> list[ChatLink]:
    """The ``<url|label>`` links of a Google Chat text message, in order."""
    return [ChatLink(url, label) for url, label in LINK.findall(text)]


class ChatWebhook:
    """A threaded HTTP server on loopback that accepts Google Chat webhook messages."""

    def __init__(self, on_message: Callable[[str], None] | None = None) -> None:
        self.messages: list[str] = []
        self._on_message = on_message
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/spaces/LOCAL/messages"

    def __enter__(self) -> ChatWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def received(self, text: str) -> None:
        with self._lock:
            self.messages.append(text)
        if self._on_message is not None:
            self._on_message(text)


def _handler_for(webhook: ChatWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            problem, text = _message(self)
            if problem is not None:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": {"code": 400, "message": problem}})
                return
            webhook.received(text)
            # What Google Chat answers: the created message (trimmed).
            self._answer(HTTPStatus.OK, {"name": "spaces/LOCAL/messages/local", "text": text})

        def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the messages are what matters, and the runner prints them

    return Handler


def _message(request: BaseHTTPRequestHandler) -> tuple[str | None, str]:
    """(a refusal, or None; the message's text) for a webhook POST."""
    if not (request.headers.get("Content-Type") or "").startswith("application/json"):
        return "Content-Type must be application/json", ""
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_MESSAGE_BYTES + 1_000:
        return "message too large", ""
    try:
        body = json.loads(request.rfile.read(length) or b"null")
    except ValueError:
        return "Invalid JSON payload", ""
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return "Message must have text (this stand-in renders no cards)", ""
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        return "message text is longer than 32,000 bytes", ""
    return None, text
