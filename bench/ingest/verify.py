"""Read every document of a scenario back and check each callback is stored exactly once.

Lost: a callback with no document. Duplicated: a callback's unique value found in more
than one document (or a document nobody sent). Mangled: a document whose value or
body differs from what was sent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore

from bench.ingest.callbacks import Callback

# Checks one stored document against the callback that should have produced it;
# returns a problem description or None.
DocCheck = Callable[[Callback, Mapping[str, Any]], "str | None"]


@dataclass
class Verification:
    expected: int
    stored: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"{self.stored}/{self.expected} stored, {len(self.lost)} lost, "
            f"{len(self.duplicated)} duplicated, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} mismatched"
        )


def check_ours(callback: Callback, doc: Mapping[str, Any]) -> str | None:
    """function/main.py's document: RECEIVED, seed fields, and the payload JSON."""
    if doc.get("state") != "RECEIVED":
        return f"state {doc.get('state')!r}"
    if doc.get("responded") is not True or doc.get("value") != callback.value:
        return f"responded/value {doc.get('responded')!r}/{doc.get('value')!r}"
    try:
        payload = json.loads(doc["payload"])
    except (KeyError, TypeError, ValueError):
        return "payload missing or not JSON"
    if payload.get("body") != callback.body or payload.get("value") != callback.value:
        return f"payload body/value {payload.get('body')!r}/{payload.get('value')!r}"
    leaked = {"token", "reg", "cb"} & set(payload.get("query", {}))
    if leaked:
        return f"{', '.join(sorted(leaked))} leaked into payload.query"
    return None


def check_seed(callback: Callback, doc: Mapping[str, Any]) -> str | None:
    """The seed's document: exactly {responded: true, value}."""
    if dict(doc) != {"responded": True, "value": callback.value}:
        return f"document {dict(doc)!r}"
    return None


def verify_collection(
    db: firestore.Client,
    collection: str,
    callbacks: Sequence[Callback],
    check: DocCheck,
) -> Verification:
    """Compare the whole collection with the callbacks that were sent to it."""
    stored = {snap.id: snap.to_dict() or {} for snap in db.collection(collection).stream()}
    result = Verification(expected=len(callbacks), stored=len(stored))
    by_id = {cb.doc_id: cb for cb in callbacks}
    result.unexpected = sorted(set(stored) - set(by_id))
    # Every value is unique per callback: seeing one twice means it was stored twice.
    values = Counter(doc.get("value") for doc in stored.values())
    for cb in callbacks:
        doc = stored.get(cb.doc_id)
        if doc is None:
            result.lost.append(cb.doc_id)
            continue
        if values[cb.value] > 1:
            result.duplicated.append(cb.doc_id)
        if (problem := check(cb, doc)) is not None:
            result.mismatched.append(f"{cb.doc_id}: {problem}")
    return result
