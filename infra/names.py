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

# Custom role ids: 3 to 64 characters of [a-zA-Z0-9_.] (IAM REST reference,
# projects.roles.create:
# https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/create).
MAX_ROLE_ID = 64
_ROLE_ID = re.compile(r"[a-zA-Z0-9_.]{3,64}")
# Random bytes in each role id's suffix (pulumi-random RandomId.byte_length):
# 8 hexadecimal characters, one in 4 billion for two creations to collide.
ROLE_SUFFIX_BYTES = 4
# The custom roles, by key: the receiver's callback sending and each
# identity's Firestore access (infra/component.py says what each holds).
CUSTOM_ROLES = ("callback-sender", "function-data", "workflow-data")


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
    # The verification workflow `python -m ops verify` starts.
    verify_workflow: str
    # The Artifact Registry repository the function build pushes its image to.
    image_repository: str
    # Display names of the three service accounts, by role.
    account_titles: dict[str, str]
    # Each custom role's id before its random suffix (custom_role_id), by
    # CUSTOM_ROLES key.
    role_id_prefixes: dict[str, str]

    @classmethod
    def derive(cls, project: str, base: str) -> ResourceNames:
        """Names for ``base`` (unique per stack) in ``project``.

        Limits: service account ids 6-30, Firestore database ids 4-63, bucket
        names 3-63 and globally unique (hence the project id), Cloud Run
        service names (a gen2 function is one) 49, workflow names 64,
        Artifact Registry repository ids 63 (lower-case letters, digits and
        hyphens, starting with a letter).
        """
        base = slug(base)
        # A database id must start with a letter and must not look like a UUID.
        database = base if base[0].isalpha() else f"db-{base}"
        return cls(
            function=fit(base, 49),
            workflow=fit(base, 64),
            verify_workflow=fit(f"{base}-verify", 64),
            image_repository=fit(_starting_with_a_letter(f"{base}-images", "ar"), 63),
            database=fit(database.ljust(4, "x"), 63),
            bucket=fit(f"{slug(project)}-{base}-src", 63),
            function_account=_account_id(base, "fn"),
            workflow_account=_account_id(base, "wf"),
            build_account=_account_id(base, "build"),
            role_id_prefixes={role: _role_id_prefix(base, role) for role in CUSTOM_ROLES},
            account_titles={
                role: f"{title} ({base})"
                for role, title in (
                    ("function", "Callback receiver function"),
                    ("workflow", "Callback workflow"),
                    ("build", "Callback function build"),
                )
            },
        )


def custom_role_id(prefix: str, suffix: str) -> str:
    """A custom role's id: its stack's prefix, then a suffix that is new with every creation.

    A deleted custom role can be undeleted for 7 days, then is purged
    (projects.roles.delete:
    https://cloud.google.com/iam/docs/reference/rest/v1/projects.roles/delete),
    and its id is taken again only 7 to 37 days after the deletion (the
    provider's google_project_iam_custom_role / gcp.projects.IAMCustomRole
    docs). An id derived from the project and stack alone would make
    `pulumi up` of a stack destroyed in that window fail; the suffix (a
    RandomId's hex, replaced only with the role) never repeats an id.
    """
    role_id = f"{prefix}_{suffix}"
    if not _ROLE_ID.fullmatch(role_id):
        raise ValueError(f"{role_id!r} is not a custom role id (3-64 of [a-zA-Z0-9_.])")
    return role_id


def _role_id_prefix(base: str, role: str) -> str:
    """Room for "_" and the hex suffix; hyphens, which role ids refuse, become underscores."""
    room = MAX_ROLE_ID - 1 - 2 * ROLE_SUFFIX_BYTES
    return fit(f"{base}-{role}", room).replace("-", "_")


def _starting_with_a_letter(name: str, prefix: str) -> str:
    return name if name[0].isalpha() else f"{prefix}-{name}"


def _account_id(base: str, role: str) -> str:
    account = fit(f"{base}-{role}", 30)
    if not account[0].isalpha():
        account = fit(f"sa-{account}", 30)
    return account.ljust(6, "x")
