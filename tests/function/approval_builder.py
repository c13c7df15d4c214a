"""Approvals written straight into the emulator, as the issue 21 contract lays them out.

getApprovalURLs (workflow/callbacks.yaml) must write exactly this; until it
does, the receiver's tests build approvals here. One Commit creates (each
write ``exists: false``) the group, the N links and their N key documents:

- group ``{runID}_{step}``: kind "approval", state WAITING, token (random,
  never handed out), approvers (the labels, in order), form (JSON text),
  forwardUrl, createdAt, expireAt;
- link ``{runID}_{step}.approver.{i}``: kind "approval-link", state WAITING,
  token (its own), createdAt, expireAt, forwardUrl and form (the group's),
  key (its key document's id), approver (its label), approverIndex (i),
  group ("{runID}_{step}");
- key ``{link id}.key.{hash}`` (registration_layout.key_document_id of the
  link id, its token and forwardUrl): expireAt.

waitForApprovals' writes are here too: ``start_wait`` (quorum,
rejectQuorum, deadline), ``end_group`` (APPROVED/REJECTED with decidedAt,
EXPIRED with expiredAt, CANCELLED with cancelledAt) and ``consume``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from google.cloud import firestore

from local.registration import key_document_id, rfc3339

# getApprovalURLs' default form.
DEFAULT_FORM: dict[str, Any] = {
    "title": "Approval requested",
    "choices": [
        {"value": "approve", "label": "Approve"},
        {"value": "reject", "label": "Reject", "reject": True},
    ],
    "allowComment": True,
}
TTL = timedelta(days=7)


@dataclass
class Approval:
    """One approval as written: what each approver's URL is made of."""

    run_id: str
    step: str
    labels: list[str]
    tokens: list[str]
    group_token: str
    forward_url: str
    # Each link's WAITING version (its creation time): the URL's reg.
    registered: list[str]

    @property
    def group_id(self) -> str:
        return f"{self.run_id}_{self.step}"

    def link_id(self, index: int) -> str:
        return f"{self.group_id}.approver.{index}"

    def url(self, index: int, token: str | None = None, **params: Any) -> str:
        """Approver ``index``'s machine URL (path and query); params add to or replace it."""
        query: dict[str, Any] = {
            "runID": self.run_id,
            "step": self.step,
            "approver": index,
            "token": self.tokens[index] if token is None else token,
            "reg": self.registered[index],
        }
        if self.forward_url:
            query["cb"] = self.forward_url
        query.update(params)
        return "/?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)

    def page_url(self, index: int, **params: Any) -> str:
        return self.url(index, **params, view="page")


def create_approval(
    client: firestore.Client,
    collection: str,
    labels: list[str],
    *,
    run_id: str = "run-1",
    step: str = "approve",
    form: dict[str, Any] | None = None,
    forward_url: str = "",
    now: datetime | None = None,
) -> Approval:
    """Write the group, its links and their key documents in one Commit."""
    now = now or datetime.now(UTC)
    expire_at = now + TTL
    form_json = json.dumps(DEFAULT_FORM if form is None else form)
    group_id = f"{run_id}_{step}"
    documents = client.collection(collection)
    batch = client.batch()
    group_token = secrets.token_hex(32)
    batch.create(
        documents.document(group_id),
        {
            "kind": "approval",
            "state": "WAITING",
            "token": group_token,
            "approvers": list(labels),
            "form": form_json,
            "forwardUrl": forward_url,
            "createdAt": now,
            "expireAt": expire_at,
        },
    )
    tokens = [secrets.token_hex(32) for _ in labels]
    for index, (label, token) in enumerate(zip(labels, tokens, strict=True)):
        link_id = f"{group_id}.approver.{index}"
        key_id = key_document_id(link_id, token, forward_url)
        batch.create(
            documents.document(link_id),
            {
                "kind": "approval-link",
                "state": "WAITING",
                "token": token,
                "createdAt": now,
                "expireAt": expire_at,
                "forwardUrl": forward_url,
                "form": form_json,
                "key": key_id,
                "approver": label,
                "approverIndex": index,
                "group": group_id,
            },
        )
        batch.create(documents.document(key_id), {"expireAt": expire_at})
    results = batch.commit()
    # Writes: the group, then a link and its key per approver.
    registered = [rfc3339(results[1 + 2 * index].update_time) for index in range(len(labels))]
    return Approval(run_id, step, list(labels), tokens, group_token, forward_url, registered)


def start_wait(
    client: firestore.Client,
    collection: str,
    approval: Approval,
    deadline: datetime,
    quorum: int | None = None,
    reject_quorum: int = 1,
) -> None:
    """What waitForApprovals writes when it starts (a patch of the existing group)."""
    client.collection(collection).document(approval.group_id).update(
        {
            "quorum": len(approval.labels) if quorum is None else quorum,
            "rejectQuorum": reject_quorum,
            "deadline": deadline,
        }
    )


def end_group(
    client: firestore.Client, collection: str, approval: Approval, state: str
) -> datetime:
    """The group decided (APPROVED, REJECTED), timed out (EXPIRED) or cancelled; returns when."""
    when = datetime.now(UTC)
    time_field = {"EXPIRED": "expiredAt", "CANCELLED": "cancelledAt"}.get(state, "decidedAt")
    client.collection(collection).document(approval.group_id).update(
        {"state": state, time_field: when}
    )
    return when


def consume(client: firestore.Client, collection: str, approval: Approval, index: int) -> None:
    """The wait takes a link's answer: CONSUMED at its RECEIVED version; the payload stays."""
    document = client.collection(collection).document(approval.link_id(index))
    version = document.get().update_time
    document.update(
        {"state": "CONSUMED", "consumedAt": datetime.now(UTC), "consumedBy": "wait-1"},
        option=client.write_option(last_update_time=version),
    )
