"""How the receiver answers: who asked (a machine or a person), and every error answer.

A machine gets JSON, a person (``view=page``) a page, a status reader
(``view=status``) JSON; the one renderer here chooses by the request's
audience, so no error can reach a person as JSON or a machine as HTML, and
``Allow`` always lists the methods of the path that was asked.
"""

from __future__ import annotations

import contextlib
import enum
import json
import socket
from collections.abc import Mapping
from typing import Any

import flask

from approval_page import html_response, is_page_request, message_page

MACHINE_METHODS = ("GET", "POST", "PUT", "PATCH")
PAGE_METHODS = ("GET", "HEAD", "POST")
# The status only reads: a method that could carry a callback is refused
# rather than taken as one.
STATUS_VIEW = "status"
STATUS_METHODS = ("GET",)
RETRY_AFTER_SECONDS = 5
# What a person reads for an unexpected error; a machine gets "internal error".
PAGE_INTERNAL_ERROR = "Please try again in a minute."


class Audience(enum.Enum):
    """Who asked, decided once per request: a machine, a person on the page, a status reader."""

    MACHINE = "machine"
    PAGE = "page"
    STATUS = "status"

    @classmethod
    def of(cls, request: flask.Request) -> Audience:
        if is_page_request(request):
            return cls.PAGE
        return cls.STATUS if request.args.get("view") == STATUS_VIEW else cls.MACHINE

    @property
    def methods(self) -> tuple[str, ...]:
        return {Audience.PAGE: PAGE_METHODS, Audience.STATUS: STATUS_METHODS}.get(
            self, MACHINE_METHODS
        )


class Reply(Exception):
    """Ends request handling with this status and error message.

    ``body_unread``: the answer comes before the body was read (or while it
    was being read); it is then sent without reading the rest.
    """

    def __init__(
        self,
        status: int,
        error: str,
        outcome: str,
        body_unread: bool = False,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.outcome = outcome
        self.body_unread = body_unread
        # More for a machine's JSON answer, beside "error" (410's expiredAt).
        self.fields = dict(fields or {})


def json_response(body: dict[str, Any], status: int = 200) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def error_response(reply: Reply, audience: Audience, request: flask.Request) -> flask.Response:
    """Every error answer, 500 included: JSON or a page, with the headers its status needs."""
    if audience is Audience.PAGE:
        # A person never sees raw JSON or a stack trace: the same answer, as a page.
        text = PAGE_INTERNAL_ERROR if reply.status == 500 else reply.error
        response = html_response(message_page("Something went wrong", text), reply.status)
    else:
        response = json_response({"error": reply.error, **reply.fields}, reply.status)
    if reply.body_unread:
        response = answer_and_close(response, request)
    if reply.status == 405:
        response.headers["Allow"] = ", ".join(audience.methods)
    if reply.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def internal_error(audience: Audience, request: flask.Request) -> flask.Response:
    # How much of the body was read before the failure is unknown: whatever
    # is left is nobody's to read.
    reply = Reply(500, "internal error", "error", body_unread=declares_body(request))
    return error_response(reply, audience, request)


def declares_body(request: flask.Request) -> bool:
    """Whether the request says a body follows (a Content-Length above 0, or chunked)."""
    chunked = "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
    return chunked or bool(request.content_length)


def answer_and_close(rendered: flask.Response, request: flask.Request) -> flask.Response:
    """``rendered``, for a request whose body is unread, ending the connection without reading it.

    An unauthenticated caller must not hold an instance reading a body that
    nobody will use. functions-framework reads the whole body after every
    non-streamed response, so this one is streamed. gunicorn then ignores a
    Connection header set by the app and, to keep the connection alive, would
    read the rest of the body before the next request; so once the answer is
    written, the socket is shut down and gunicorn closes the connection. The
    shutdown runs when the server closes the response, not after its last
    chunk: werkzeug sends no body at all for HEAD. Other servers (werkzeug,
    in tests) honour ``Connection: close``.
    """
    body = rendered.get_data()
    response = flask.Response(iter((body,)), status=rendered.status_code)
    response.headers.clear()
    response.headers.extend(rendered.headers)
    # A known length, so the answer is complete when its bytes are: no
    # closing chunk has to follow the shutdown.
    response.headers["Content-Length"] = str(len(body))
    response.headers["Connection"] = "close"
    connection = request.environ.get("gunicorn.socket")
    if connection is not None:
        response.call_on_close(lambda: _shut_down(connection))
    return response


def _shut_down(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
