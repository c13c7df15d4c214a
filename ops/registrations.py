"""What a stack's callbacks collection holds: the registrations still open, and one in detail.

Reads only, with the high-level Firestore client. The collection is read in
pages (PAGE_SIZE documents, ordered by document id so paging is stable), and
only the newest ``limit`` rows are kept while it is read, so memory stays flat
however many registrations there are. "Newest first" is sorted here: the
registration times are exempt from indexing (docs/scale.md: an indexed
timestamp that only grows caps a collection's writes), so Firestore cannot
order by them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore

WAITING = "WAITING"
RECEIVED = "RECEIVED"
OPEN_STATES = (WAITING, RECEIVED)
PAGE_SIZE = 500
# The fields a listing needs; the token and the payload are never read here.
LISTED_FIELDS = ("state", "createdAt", "receivedAt", "expireAt", "forwardUrl", "form", "approver")
# Shown by `show`; the payload only when asked for.
SHOWN_TIMES = ("createdAt", "receivedAt", "consumedAt", "expiredAt", "cancelledAt", "expireAt")


@dataclass(frozen=True)
class Row:
    """One registration as `pending` lists it."""

    run_id: str
    step: str
    state: str
    kind: str
    delivery: str
    created_at: datetime | None
    expire_at: datetime | None

    def as_json(self, now: datetime) -> dict[str, Any]:
        """The row as `pending --json` prints it: the protocol's names, as `show` uses."""
        return {
            "runID": self.run_id,
            "step": self.step,
            "state": self.state,
            "kind": self.kind,
            "delivery": self.delivery,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "expireAt": self.expire_at.isoformat() if self.expire_at else None,
            "ageSeconds": _seconds(now, self.created_at),
            "expiresInSeconds": _seconds(self.expire_at, now),
        }


def split_id(document_id: str) -> tuple[str, str]:
    """runID and step of ``{runID}_{step}`` (a runID has no "_": docs/protocol.md, Identifiers)."""
    run_id, _, step = document_id.partition("_")
    return run_id, step


def row_of(snapshot: firestore.DocumentSnapshot) -> Row:
    fields = snapshot.to_dict() or {}
    run_id, step = split_id(snapshot.id)
    return Row(
        run_id=run_id,
        step=step,
        state=str(fields.get("state", "")).lower(),
        kind="approval" if fields.get("approver") else "page" if fields.get("form") else "machine",
        delivery="push" if fields.get("forwardUrl") else "poll",
        created_at=fields.get("createdAt"),
        expire_at=fields.get("expireAt"),
    )


def pending(
    collection: firestore.CollectionReference,
    *,
    states: tuple[str, ...] = OPEN_STATES,
    run_id: str | None = None,
    older_than_seconds: float | None = None,
    limit: int = 50,
    now: datetime,
    on_page: Callable[[int], None] | None = None,
    timeout: float = 30.0,
) -> list[Row]:
    """The newest ``limit`` open registrations matching the filters (0: all, unsorted order)."""

    def wanted(row: Row) -> bool:
        if run_id is not None and row.run_id != run_id:
            return False
        if older_than_seconds is None:
            return True
        age = _seconds(now, row.created_at)
        return age is not None and age >= older_than_seconds

    rows = filter(wanted, _open_rows(collection, states, on_page, timeout))
    if limit == 0:
        return list(rows)
    return heapq.nlargest(limit, rows, key=lambda row: row.created_at or datetime.min)


def _open_rows(
    collection: firestore.CollectionReference,
    states: tuple[str, ...],
    on_page: Callable[[int], None] | None,
    timeout: float,
) -> Iterator[Row]:
    query = (
        collection.where(filter=firestore.FieldFilter("state", "in", list(states)))
        .select(LISTED_FIELDS)
        .order_by("__name__")
        .limit(PAGE_SIZE)
    )
    scanned = 0
    last: firestore.DocumentSnapshot | None = None
    while True:
        page_query = query.start_after(last) if last is not None else query
        page = list(page_query.stream(timeout=timeout))
        for snapshot in page:
            yield row_of(snapshot)
        scanned += len(page)
        if on_page is not None:
            on_page(scanned)
        if len(page) < PAGE_SIZE:
            return
        last = page[-1]


def show(
    collection: firestore.CollectionReference,
    run_id: str,
    step: str,
    *,
    payload: bool,
    now: datetime,
    timeout: float = 30.0,
) -> dict[str, Any] | None:
    """One registration's state and times (the payload if asked), never its token, or None."""
    snapshot = collection.document(f"{run_id}_{step}").get(timeout=timeout)
    if not snapshot.exists:
        return None
    fields = snapshot.to_dict() or {}
    row = row_of(snapshot)
    shown: dict[str, Any] = {
        "runID": run_id,
        "step": step,
        "state": row.state,
        "kind": row.kind,
        "delivery": row.delivery,
    }
    for name in SHOWN_TIMES:
        value = fields.get(name)
        shown[name] = value.isoformat() if isinstance(value, datetime) else None
    shown["ageSeconds"] = _seconds(now, fields.get("createdAt"))
    shown["expiresInSeconds"] = _seconds(fields.get("expireAt"), now)
    if isinstance(fields.get("cancelReason"), str):
        # Written by `python -m ops cancel`; the workflow's CancelledError carries it too.
        shown["cancelReason"] = fields["cancelReason"]
    if fields.get("value") is not None:
        shown["value"] = fields["value"]
    if payload:
        shown["payload"] = fields.get("payload")
    return shown


def _seconds(later: Any, earlier: Any) -> float | None:
    if not isinstance(later, datetime) or not isinstance(earlier, datetime):
        return None
    return round((later - earlier).total_seconds(), 1)
