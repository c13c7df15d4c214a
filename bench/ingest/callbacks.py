"""The callbacks one benchmark scenario sends, and what each must leave in Firestore.

Every callback carries a unique value (with characters that need URL encoding) and a
small JSON body, so the read-back can tell a lost, duplicated or mangled callback
from a stored one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode


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


def make_callbacks(scenario: str, count: int, with_tokens: bool) -> list[Callback]:
    """``count`` distinct callbacks, one workflow execution (runID) each, as in production."""
    callbacks = []
    for i in range(count):
        step = f"{scenario}-{i}"
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
