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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
    # ``reject: true``: an answer with this choice counts toward rejecting
    # (waitForApprovals; an approval page does not count it as an approval).
    reject: bool = False


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
            label = str(choice.get("label") or choice["value"])
            parsed.append(Choice(choice["value"], label, reject=choice.get("reject") is True))
        return cls(
            title=str(raw.get("title") or "Your answer is needed"),
            description=str(raw.get("description") or ""),
            choices=tuple(parsed),
            allow_comment=raw.get("allowComment") is True,
        )

    def label_of(self, value: str | None) -> str | None:
        return next((c.label for c in self.choices if c.value == value), None)

    @property
    def values(self) -> tuple[str, ...]:
        """The answers this form takes, in its order."""
        return tuple(c.value for c in self.choices)

    def is_reject(self, value: Any) -> bool:
        return any(c.value == value and c.reject for c in self.choices)


def is_page_request(request: flask.Request) -> bool:
    return request.args.get("view") == PAGE_VIEW


def form_page(form: Form, action: str, facts: Sequence[str] = ()) -> str:
    """The form: title, facts (whom it is for, until when), description, a button per
    choice, the comment box if allowed."""
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
        f'{_facts(facts)}<form method="post" action="{escape(action)}">{description}{comment}'
        f'<div class="choices">{buttons}</div></form>'
    )
    return _document(form.title, body)


def message_page(title: str, message: str, facts: Sequence[str] = ()) -> str:
    return _document(title, f"{_facts(facts)}<p>{escape(message)}</p>")


def choices_page(form: Form, problem: str, facts: Sequence[str] = ()) -> str:
    """The 422 page: why the answer was refused, and the choices this form takes."""
    items = "".join(f"<li>{escape(c.label)}</li>" for c in form.choices)
    body = (
        f"{_facts(facts)}<p>{escape(problem)}</p>"
        f"<p>This page takes one of these answers:</p><ul>{items}</ul>"
        "<p>Go back and choose one of them.</p>"
    )
    return _document(form.title, body)


def _facts(facts: Sequence[str]) -> str:
    return "".join(f'<p class="fact">{escape(fact)}</p>' for fact in facts)


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
    "label{display:block;margin:1rem 0 .3rem}.fact{margin:.2rem 0;color:#555}"
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


def cancelled_message(cancelled_at: Any) -> str:
    """What a person reads once an operator cancelled the wait (410)."""
    when = _minute(cancelled_at)
    stopped = "This request was cancelled" + (f" at {when}." if when else ".")
    return f"{stopped} An answer can no longer be recorded."


def deadline_fact(deadline: Any, now: datetime) -> str:
    """The wait's deadline: "Decision due by 2026-12-02 10:00 UTC (3 h 20 min left)."."""
    return f"Decision due by {_minute(deadline)} ({time_left(deadline, now)})."


def valid_until_fact(expire_at: Any, now: datetime) -> str:
    """Until when the link can be answered at all (its registration's expireAt)."""
    return f"This link is valid until {_minute(expire_at)} ({time_left(expire_at, now)})."


def time_left(until: datetime, now: datetime) -> str:
    """ "2 d 4 h left", "3 h 20 min left", "5 min left", "less than a minute left", "passed"."""
    minutes = int((until - now).total_seconds() // 60)
    if until <= now:
        return "passed"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h left"
    if hours:
        return f"{hours} h {minutes} min left"
    return f"{minutes} min left" if minutes else "less than a minute left"


def _minute(stamp: Any) -> str:
    if not hasattr(stamp, "astimezone"):
        return ""
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
