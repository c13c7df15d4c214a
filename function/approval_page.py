"""The page for people: an approval form that link scanners can fetch without answering it.

A registration made with a ``form`` (title, description, choices, optional
comment) gets a page URL: the callback URL plus ``view=page``. GET (or HEAD)
on it only renders; the buttons POST the form, which the receiver records as
a callback with ``value`` = the choice and the form fields as the body.
Every text is escaped, nothing external is loaded, and the page can be
neither framed nor cached nor indexed, and never leaks its URL (with the
token) in a Referer. docs/protocol.md, "The page for people".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

import flask

PAGE_VIEW = "page"
MAX_COMMENT_CHARS = 2_000
SECURITY_HEADERS = {
    # Nothing from anywhere: inline styles only, forms only to this URL.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}


class FormError(ValueError):
    """A registration's form that cannot be shown (the workflow passed a bad one)."""


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Form:
    title: str
    description: str
    choices: tuple[Choice, ...]
    allow_comment: bool

    @classmethod
    def from_json(cls, text: str) -> Form:
        """The form getCallbackURL stored (JSON text), checked."""
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise FormError("the form is not JSON") from error
        if not isinstance(raw, Mapping):
            raise FormError("the form is not a map")
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise FormError("the form has no choices")
        parsed = []
        for choice in choices:
            if not isinstance(choice, Mapping) or not isinstance(choice.get("value"), str):
                raise FormError("each choice needs a value (text) and a label")
            parsed.append(Choice(choice["value"], str(choice.get("label") or choice["value"])))
        return cls(
            title=str(raw.get("title") or "Your answer is needed"),
            description=str(raw.get("description") or ""),
            choices=tuple(parsed),
            allow_comment=raw.get("allowComment") is True,
        )

    def label_of(self, value: str | None) -> str | None:
        return next((c.label for c in self.choices if c.value == value), None)


def is_page_request(request: flask.Request) -> bool:
    return request.args.get("view") == PAGE_VIEW


def form_page(form: Form, action: str) -> str:
    """The form: title, description, a button per choice, the comment box if allowed."""
    comment = (
        '<label for="comment">Comment (optional)</label>'
        f'<textarea id="comment" name="comment" maxlength="{MAX_COMMENT_CHARS}" rows="4">'
        "</textarea>"
        if form.allow_comment
        else ""
    )
    buttons = "".join(
        f'<button type="submit" name="choice" value="{escape(c.value)}">{escape(c.label)}</button>'
        for c in form.choices
    )
    description = f"<p>{escape(form.description)}</p>" if form.description else ""
    body = (
        f'<form method="post" action="{escape(action)}">{description}{comment}'
        f'<div class="choices">{buttons}</div></form>'
    )
    return _document(form.title, body)


def message_page(title: str, message: str) -> str:
    return _document(title, f"<p>{escape(message)}</p>")


def html_response(page: str, status: int = 200, head_only: bool = False) -> flask.Response:
    response = flask.Response(
        b"" if head_only else page.encode("utf-8"),
        status=status,
        mimetype="text/html",
    )
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers.update(SECURITY_HEADERS)
    return response


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f5;color:#222}"
    "main{max-width:32rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:8px}"
    "h1{font-size:1.4rem;margin-top:0}p{line-height:1.5;white-space:pre-wrap}"
    "label{display:block;margin:1rem 0 .3rem}"
    "textarea{width:100%;box-sizing:border-box;font:inherit}"
    ".choices{display:flex;flex-wrap:wrap;gap:.6rem;margin-top:1rem}"
    "button{font:inherit;padding:.7rem 1.2rem;border-radius:6px;border:1px solid #888;"
    "background:#fff;cursor:pointer}button:first-child{background:#1a73e8;color:#fff;"
    "border-color:#1a73e8}"
)


def answered_message(label: str, received_at: Any) -> str:
    when = _minute(received_at)
    return f"Already answered: {label}" + (f" ({when})." if when else ".")


def expired_message(expired_at: Any) -> str:
    """What a person reads once the workflow has stopped waiting (410)."""
    when = _minute(expired_at)
    stopped = "The workflow stopped waiting for an answer" + (f" at {when}." if when else ".")
    return f"{stopped} An answer can no longer be recorded."


def _minute(stamp: Any) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M UTC") if hasattr(stamp, "strftime") else ""
