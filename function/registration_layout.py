"""The registration layout that getCallbackURL writes and the receiver checks.

A registration is two documents, created together in one Commit:

- the callback document ``{runID}_{step}``: state ``WAITING``, the token,
  the page's form, the push endpoint (``forwardUrl``) and ``expireAt``. The
  workflow reads it; the receiver turns it ``RECEIVED``; the workflow then
  leaves it as a tombstone until its TTL: ``CONSUMED`` (it took the
  callback: ``consumedAt``, the payload dropped) or ``EXPIRED`` (it stopped
  waiting: ``expiredAt``). The rest stays (token, fingerprint, value, form,
  times), so the receiver can still answer whoever holds the token.
- its key document ``{runID}_{step}.key.{key}``, where ``key`` is a hash of
  the token and the push endpoint (``registration_key``). It holds only
  ``expireAt``. Nobody can name it without the token, so its existence
  proves the token, and the endpoint with it. A registration with a form
  names it ``{runID}_{step}.formkey.{key}`` instead: the blind Commit names
  ``.key.``, so an answer to a form is always read first and checked
  against the form's choices.

The callback URL carries, besides runID, step and token, the callback
document's creation time (``reg``) and the push endpoint (``cb``). A callback
is then stored with one blind Commit of two preconditioned writes
(callback_store.record): delete the key document (it must exist: the token
and the endpoint are right, and nothing was stored yet) and update the
callback document if it is still the version created at ``reg`` (the first
callback of this very registration). No read is needed to decide, and the
forward target needs no read either: the Commit proved it.

An approval (getApprovalURLs) is a group document ``{runID}_{step}``
(``kind: approval``, a token never handed out) and one link per approver,
``{runID}_{step}.approver.{i}`` (``link_document_id``), each a registration
of its own with a key document ``{link id}.key.{key}``. A link is only
reachable with the URL's ``approver`` parameter, and that path always reads
(approval_links.py), so its key document is never what proves its token.

This module is the single Python description of the layout: the receiver
uses it, and so do the tests and the benchmark when they register callbacks
the way the workflow does (``registration_writes``). workflow/callbacks.yaml
computes the same key (hash.compute_checksum, base64.encode), and a test
checks the two agree.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

WAITING = "WAITING"
RECEIVED = "RECEIVED"
# Tombstones, written by waitForResponse (workflow/callbacks.yaml).
CONSUMED = "CONSUMED"
EXPIRED = "EXPIRED"
# An operator cancelled the wait (issue 22): 410, like EXPIRED.
CANCELLED = "CANCELLED"
# An approval link answered after its group was decided: recorded, never
# counted (approval_links.py).
LATE = "LATE"
CONSUMED_AT_FIELD = "consumedAt"
EXPIRED_AT_FIELD = "expiredAt"
CANCELLED_AT_FIELD = "cancelledAt"
# Where getCallbackURL records the execution's native callback endpoint.
FORWARD_URL_FIELD = "forwardUrl"
# Where getCallbackURL records the page's form (JSON text; "" for none).
FORM_FIELD = "form"
# The callback document's field naming its key document (absent on
# registrations made before the key existed: see docs/protocol.md, Migration).
KEY_FIELD = "key"
# "." cannot occur in a runID or step, so these suffixes never name a
# callback document.
ANSWER_SUFFIX = ".answer"
KEY_INFIX = ".key."
# A registration with a form names its key document with this infix instead:
# the blind Commit, which never checks a choice, always names ``.key.``, so
# it cannot store an answer to a form (docs/protocol.md, "One Commit").
FORM_KEY_INFIX = ".formkey."
# An approval link: ``{runID}_{step}.approver.{i}``, beside its group
# ``{runID}_{step}`` (docs/protocol.md, "Approvals").
APPROVER_INFIX = ".approver."
APPROVER_PARAM = "approver"
# The URL parameters that, with the token, make up the callback's capability.
# The payload's query leaves all three out.
TOKEN_PARAM = "token"
REGISTERED_AT_PARAM = "reg"
FORWARD_PARAM = "cb"
CAPABILITY_PARAMS = (TOKEN_PARAM, REGISTERED_AT_PARAM, FORWARD_PARAM)


# An RFC 3339 time in UTC with up to nanoseconds: 2026-12-02T10:11:12.345678Z.
_RFC3339_UTC = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?Z"
)


def registration_key(token: str, forward_url: str) -> str:
    """The key document's suffix: SHA-256 of ``token + " " + forward_url``, base64.

    Standard base64 with "/" replaced by "_" (a document id cannot hold "/"),
    which is what the workflow can compute with its standard library.
    """
    digest = hashlib.sha256(f"{token} {forward_url}".encode()).digest()
    return base64.b64encode(digest).decode("ascii").replace("/", "_")


def key_document_id(document_id: str, token: str, forward_url: str, with_form: bool = False) -> str:
    """The key document's id; ``with_form`` for a registration with a form (FORM_KEY_INFIX)."""
    infix = FORM_KEY_INFIX if with_form else KEY_INFIX
    return document_id + infix + registration_key(token, forward_url)


def link_document_id(group_id: str, approver: int) -> str:
    """The approval link document of approver ``approver`` (0-based) of group ``group_id``."""
    return f"{group_id}{APPROVER_INFIX}{approver}"


def parse_registered_at(text: str | None) -> timestamp_pb2.Timestamp | None:
    """The ``reg`` parameter (an RFC 3339 time, as Firestore's REST API writes it), or None."""
    if not text:
        return None
    match = _RFC3339_UTC.fullmatch(text)
    if match is not None:
        # What Firestore writes (UTC, "Z"), read in about 3 us instead of the
        # 17 of Timestamp.FromJsonString (strptime), on every callback.
        try:
            moment = datetime.fromisoformat(match.group(1) + "+00:00")
        except ValueError:
            return None  # no such date or time (FromJsonString refuses them too)
        nanos = int((match.group(2) or "").ljust(9, "0"))
        return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()), nanos=nanos)
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(text)
    except ValueError:
        return None
    return stamp


@dataclass(frozen=True)
class Registration:
    """What the workflow writes for one callback, as Firestore fields (tests, benchmark)."""

    document_id: str
    token: str
    forward_url: str = ""
    form_json: str = ""

    @property
    def key_document_id(self) -> str:
        return key_document_id(
            self.document_id, self.token, self.forward_url, with_form=bool(self.form_json)
        )

    def documents(self, now: datetime, ttl: timedelta) -> Mapping[str, dict[str, Any]]:
        """Document id -> fields, for a Commit that creates both (exists: false)."""
        expire_at = now + ttl
        return {
            self.document_id: {
                "state": WAITING,
                "token": self.token,
                "createdAt": now,
                "expireAt": expire_at,
                FORWARD_URL_FIELD: self.forward_url,
                FORM_FIELD: self.form_json,
                KEY_FIELD: self.key_document_id,
            },
            self.key_document_id: {"expireAt": expire_at},
        }

    def query(self, registered_at: str) -> dict[str, str]:
        """The capability part of the callback URL; ``registered_at`` is the create time."""
        query = {TOKEN_PARAM: self.token, REGISTERED_AT_PARAM: registered_at}
        if self.forward_url:
            query[FORWARD_PARAM] = self.forward_url
        return query


def rfc3339(stamp: Any) -> str:
    """A Firestore time (DatetimeWithNanoseconds or Timestamp) as the REST API writes it."""
    if isinstance(stamp, timestamp_pb2.Timestamp):
        return stamp.ToJsonString()
    return stamp.timestamp_pb().ToJsonString()


def rfc3339_or_none(value: Any) -> str | None:
    """A stored time field as ``rfc3339`` writes it; None if absent or not a Firestore time."""
    if isinstance(value, timestamp_pb2.Timestamp) or hasattr(value, "timestamp_pb"):
        return rfc3339(value)
    return None
