"""Physical resource names, derived from one base name per stack.

Two stacks in one project must never collide, and every Google Cloud name
has its own length and alphabet rules. Names that would be too long are cut
and given a short hash of the full name, so cutting never merges two stacks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_NOT_NAME_CHARS = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """Lower-case letters, digits and single hyphens; a hash marks any lossy change.

    Pulumi stack names may hold upper case, dots and underscores, which most
    Google Cloud names reject. Without the hash, "my_stack" and "my-stack"
    would map to the same resources.
    """
    cleaned = _NOT_NAME_CHARS.sub("-", text.lower()).strip("-") or "x"
    if cleaned != text:
        cleaned = f"{cleaned}-{_short_hash(text)}"
    return cleaned


def fit(name: str, max_len: int) -> str:
    """Cut ``name`` to ``max_len`` characters, keeping it unique with a hash suffix."""
    if len(name) <= max_len:
        return name
    suffix = _short_hash(name)
    head = name[: max_len - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class ResourceNames:
    """Every physical name the component gives a Google Cloud resource."""

    function: str
    workflow: str
    database: str
    bucket: str
    function_account: str
    workflow_account: str
    build_account: str
    # Display names of the three service accounts, by role.
    account_titles: dict[str, str]
    # The custom role that lets the receiver send callbacks (push delivery).
    callback_sender_role: str

    @classmethod
    def derive(cls, project: str, base: str) -> ResourceNames:
        """Names for ``base`` (unique per stack) in ``project``.

        Limits: service account ids 6-30, Firestore database ids 4-63, bucket
        names 3-63 and globally unique (hence the project id), Cloud Run
        service names (a gen2 function is one) 49, workflow names 64.
        """
        base = slug(base)
        # A database id must start with a letter and must not look like a UUID.
        database = base if base[0].isalpha() else f"db-{base}"
        return cls(
            function=fit(base, 49),
            workflow=fit(base, 64),
            database=fit(database.ljust(4, "x"), 63),
            bucket=fit(f"{slug(project)}-{base}-src", 63),
            function_account=_account_id(base, "fn"),
            workflow_account=_account_id(base, "wf"),
            build_account=_account_id(base, "build"),
            callback_sender_role=fit(f"{base}-callback-sender", 64).replace("-", "_"),
            account_titles={
                role: f"{title} ({base})"
                for role, title in (
                    ("function", "Callback receiver function"),
                    ("workflow", "Callback workflow"),
                    ("build", "Callback function build"),
                )
            },
        )


def _account_id(base: str, role: str) -> str:
    account = fit(f"{base}-{role}", 30)
    if not account[0].isalpha():
        account = fit(f"sa-{account}", 30)
    return account.ljust(6, "x")
