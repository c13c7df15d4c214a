"""What a registration with a form accepts: one of its choices and a comment, on every path.

A person answers on the page (a form body ``choice``, ``comment``); a
machine sends the same answer to the URL without ``view=page``: the query's
``value`` (and ``comment``), or a JSON body ``{"value", "comment"}``, or a
form body (``value`` or ``choice``, and ``comment``). Whatever the method or
content type, only the form's choice values and a comment of at most
MAX_COMMENT_CHARS (where the form allows one) are accepted; anything else
is refused with 422 and the allowed values. Registrations without a form
take anything, as before. docs/protocol.md, "Answers to a form".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from approval_page import MAX_COMMENT_CHARS, Form, FormError
from registration_layout import FORM_FIELD

# The names an answer's fields may have: ``choice`` is the page's button.
CHOICE_NAMES = ("value", "choice")
COMMENT_NAME = "comment"
ANSWER_NAMES = (*CHOICE_NAMES, COMMENT_NAME)
# Body encodings (callback_body.StoredBody) that can carry an answer's fields.
FIELD_ENCODINGS = ("json", "form")
HOW_TO_ANSWER = (
    "send the choice as value (and a comment as comment) in the query, or as a JSON or form body"
)


@dataclass(frozen=True)
class Answer:
    """The choice and comment a callback carries, or why it carries no single answer."""

    choice: str | None
    comment: str
    problem: str | None = None


def form_of(stored: Mapping[str, Any] | None) -> Form | None:
    """The registration's form, or None (none, or one that cannot be shown)."""
    text = (stored or {}).get(FORM_FIELD)
    if not isinstance(text, str) or not text:
        return None
    try:
        return Form.from_json(text)
    except FormError:
        return None


def answer_of(payload: Mapping[str, Any]) -> Answer:
    """The answer in a callback's payload (callback_request.parse_callback): query, then body.

    The same field may come from both only with the same value; a body that
    holds anything but the answer's fields is no answer.
    """
    query = payload.get("query")
    sources: list[Mapping[str, Any]] = [query if isinstance(query, Mapping) else {}]
    encoding, body = payload.get("bodyEncoding"), payload.get("body")
    if encoding in FIELD_ENCODINGS:
        if not isinstance(body, Mapping):
            return Answer(None, "", f"the body is not a map of fields: {HOW_TO_ANSWER}")
        if any(name not in ANSWER_NAMES for name in body):
            # The names are the sender's: not repeated back.
            return Answer(None, "", f"the body holds more than an answer: {HOW_TO_ANSWER}")
        sources.append(body)
    elif encoding is not None:
        return Answer(None, "", f"a {encoding} body is no answer: {HOW_TO_ANSWER}")
    try:
        choice = _one(sources, CHOICE_NAMES, "choice")
        comment = _one(sources, (COMMENT_NAME,), "comment") or ""
    except _NotOneText as error:
        return Answer(None, "", str(error))
    if choice is None:
        return Answer(None, comment, f"there is no choice: {HOW_TO_ANSWER}")
    return Answer(choice, comment)


def problem(answer: Answer, form: Form) -> str | None:
    """Why ``form`` does not take ``answer`` (the 422's error), or None if it does."""
    if answer.problem is not None:
        return answer.problem
    if answer.choice not in form.values:
        return "the choice is not one this form offers"
    if len(answer.comment) > MAX_COMMENT_CHARS:
        return f"the comment is longer than {MAX_COMMENT_CHARS} characters"
    if answer.comment and not form.allow_comment:
        return "this form takes no comment"
    return None


class _NotOneText(ValueError):
    """A field given twice with different values, or not as text."""


def _one(sources: list[Mapping[str, Any]], names: tuple[str, ...], what: str) -> str | None:
    """The one text value of the fields ``names`` across ``sources``; None if absent."""
    found: set[str] = set()
    for source in sources:
        for name in names:
            value = source.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _NotOneText(f"the {what} is not one text value")
            found.add(value)
    if len(found) > 1:
        raise _NotOneText(f"the {what} is given more than once, with different values")
    return next(iter(found), None)
