"""The callbacks a benchmark scenario sends, registered first where the scenario wants it.

Every callback carries a unique value (with characters that need URL encoding) and a
small JSON body, so the read-back can tell a lost, duplicated or mangled callback
from a stored one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from google.cloud import firestore

from local.registration import Registration, rfc3339

_BATCH = 400  # Firestore commits take at most 500 writes


@dataclass(frozen=True)
class Callback:
    """One HTTP callback: the request to send and the payload it must store."""

    run_id: str
    step: str
    value: str
    body: dict[str, object]
    token: str | None = None
    # The registration's creation time, part of the URL getCallbackURL returns.
    registered_at: str | None = None
    body_bytes: bytes = field(init=False, repr=False)
    target: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Rendered once up front so the load generator does no encoding in the timed loop.
        query = {"runID": self.run_id, "step": self.step, "value": self.value}
        if self.token is not None:
            query["token"] = self.token
        if self.registered_at is not None:
            query["reg"] = self.registered_at
        object.__setattr__(self, "target", "/?" + urlencode(query))
        object.__setattr__(self, "body_bytes", json.dumps(self.body).encode())

    @property
    def doc_id(self) -> str:
        """The document the contract stores it under: {runID}_{step}."""
        return f"{self.run_id}_{self.step}"


def make_callbacks(name: str, count: int, with_tokens: bool) -> list[Callback]:
    """``count`` distinct callbacks, one workflow execution (runID) each, as in production."""
    callbacks = []
    for i in range(count):
        step = f"{name}-{i}"
        callbacks.append(
            Callback(
                run_id=str(uuid.uuid4()),
                step=step,
                # Unique per callback (the read-back counts values to find duplicates);
                # space, umlaut, '&' and '=' check it survives URL decoding intact.
                value=f"cb {step} ü&x=1",
                body={"callback": i, "approved": i % 2 == 0, "note": f"payload {step}"},
                token=uuid.uuid4().hex if with_tokens else None,
            )
        )
    return callbacks


def register(db: firestore.Client, collection: str, callbacks: list[Callback]) -> list[Callback]:
    """Register each callback as getCallbackURL does (both documents), in batches.

    Returns the callbacks with the URL getCallbackURL would have returned
    (``reg``: the callback document's creation time), so the receiver can
    take its one-Commit path.
    """
    now, ttl = dt.datetime.now(dt.UTC), dt.timedelta(days=7)
    registered: list[Callback] = []
    per_batch = _BATCH // 2  # two documents per callback
    for start in range(0, len(callbacks), per_batch):
        chunk = callbacks[start : start + per_batch]
        batch = db.batch()
        for cb in chunk:
            assert cb.token is not None
            for document_id, fields in (
                Registration(cb.doc_id, cb.token).documents(now, ttl).items()
            ):
                batch.create(db.collection(collection).document(document_id), fields)
        results = batch.commit()
        for n, cb in enumerate(chunk):
            # The callback document is the first of the callback's two writes.
            created = rfc3339(results[2 * n].update_time)
            registered.append(dataclasses.replace(cb, registered_at=created))
    return registered
