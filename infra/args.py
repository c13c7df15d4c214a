"""What the CallbackBridge component takes, and every check on it.

Kept free of resource code so the stack settings (infra/settings.py) can
build and check these arguments before a single resource is registered.
Problems are phrased with the stack config key names (camelCase), because
that is where most users set them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.function_contract import DEFAULT_COLLECTION, DEFAULT_MAX_BODY_BYTES
from infra.names import ResourceNames
from infra.workflow_check import check_workflow
from infra.workflow_env import WaitSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FUNCTION_SOURCE_DIR = REPO_ROOT / "function"
DEFAULT_EXAMPLE_WORKFLOW = REPO_ROOT / "workflow" / "example.yaml"
CALLBACKS_WORKFLOW = REPO_ROOT / "workflow" / "callbacks.yaml"

CALL_LOG_LEVELS = ("CALL_LOG_LEVEL_UNSPECIFIED", "LOG_ALL_CALLS", "LOG_ERRORS_ONLY", "LOG_NONE")
DELETION_POLICIES = ("DELETE", "ABANDON", "PREVENT")
# Workflows rejects a source over 128 KB.
MAX_WORKFLOW_SOURCE_BYTES = 128 * 1024
# The waiting workflow holds the callback payload (the body plus the query and
# headers, JSON-escaped) as a string and its decoded copy, within Workflows'
# 512 KB of variables per execution; the receiver refuses payloads over
# 150,000 bytes, so a larger body limit would only promise callbacks that are
# then refused. See docs/protocol.md, "Size limits".
MAX_BODY_BYTES_LIMIT = 128 * 1024

# Cloud Run: at most 1000 concurrent requests per instance; memory above
# each amount (MiB) needs at least that many vCPUs, and 4 or more vCPUs need
# at least that much memory ("Configure CPU limits", "Configure memory limits").
MAX_CONCURRENCY = 1000
CPU_FOR_MEMORY = ((24_576, 8), (16_384, 6), (8_192, 4), (4_096, 2), (1_024, 1), (512, 0.5))
MEMORY_FOR_CPU = ((6, 4_096), (4, 2_048))
WHOLE_CPUS = (1, 2, 4, 6, 8)
# IAM: a service account's display name is at most 100 UTF-8 bytes.
MAX_DISPLAY_NAME_BYTES = 100
# Cloud Storage refuses bucket names containing "google" or close misspellings.
_GOOGLE_LIKE = re.compile(r"g[o0][o0]g[l1][e3]")

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# Resource Manager, "Creating and managing projects"
# (https://cloud.google.com/resource-manager/docs/creating-managing-projects):
# a project id is 6 to 30 lowercase letters, digits or hyphens, starts with a
# letter and does not end with a hyphen. That page gives no other form, so a
# domain-scoped id ("example.com:my-project") is not accepted either.
_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Firestore takes regions (europe-west1) and multi-regions (nam5, eur3).
_FIRESTORE_LOCATION = re.compile(r"^([a-z]+-[a-z]+[0-9]+|[a-z]+[0-9]+)$")
_MEMORY = re.compile(r"^[0-9]+(k|M|G|Mi|Gi)$")
_RUNTIME = re.compile(r"^python3[0-9]+$")
_DATABASE_ID = re.compile(r"^(\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9])$")
_COLLECTION_ID = re.compile(r"^[^/]{1,1500}$")
# A notification channel's resource name, as alert policies take it
# (AlertPolicy.notificationChannels,
# https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies):
# projects/[PROJECT_ID_OR_NUMBER]/notificationChannels/[CHANNEL_ID]; the id
# Monitoring assigns is a number.
_NOTIFICATION_CHANNEL = re.compile(
    r"projects/([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+)/notificationChannels/[0-9]+"
)
# An address with a dotted domain: catches a name, a channel id or a missing
# comma, not every address a mail server refuses.
_EMAIL = re.compile(r"[^@\s,;<>\"']+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


@dataclass(frozen=True)
class CallbackBridgeArgs:
    """Everything the component needs; only project, region and name lack a default.

    ``name`` is the base of every physical name (function, workflow, service
    accounts, bucket, database), so give each stack or environment its own.
    ``workflow_source`` is your workflow's YAML text: a map with ``main`` and
    any subworkflows of your own. The callback subworkflows are appended to
    it. Leave it ``None`` to deploy the example workflow.
    """

    project: str
    region: str
    name: str
    workflow_source: str | None = None
    function_source_dir: Path = DEFAULT_FUNCTION_SOURCE_DIR
    callbacks_workflow_path: Path = CALLBACKS_WORKFLOW
    example_workflow_path: Path = DEFAULT_EXAMPLE_WORKFLOW
    function_runtime: str = "python313"
    function_memory: str = "256Mi"
    function_timeout_seconds: int = 60
    function_min_instances: int = 0
    function_max_instances: int = 10
    # Requests one instance serves at once. The receiver waits on Firestore
    # most of the time, so one instance can serve many; with the default of
    # 1, a burst above function_max_instances callbacks would get 429s. More
    # than 1 needs a whole vCPU (Cloud Run), and functions-framework gets as
    # many worker threads (THREADS), as Google recommends for Python.
    function_concurrency: int = 8
    function_cpu: str = "1"
    allow_unauthenticated: bool = True
    allow_unregistered_callbacks: bool = False
    # Comma-separated browser origins (https://app.example.com) whose pages
    # may call the callback URLs (CORS). Empty: none, as before.
    allowed_origins: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    callbacks_collection: str = DEFAULT_COLLECTION
    # Empty: create a database for this stack. Otherwise the id of a database
    # that already exists (for example "(default)"); nothing is created then.
    existing_firestore_database: str = ""
    # Empty: the region.
    firestore_location: str = ""
    firestore_deletion_policy: str = "DELETE"
    firestore_delete_protection: bool = False
    # Grant Firestore access on this database only (an IAM condition), not on
    # every database in the project.
    restrict_data_access_to_database: bool = True
    wait: WaitSettings = field(default_factory=WaitSettings)
    call_log_level: str = "LOG_ERRORS_ONLY"
    workflow_deletion_protection: bool = False
    source_bucket_force_destroy: bool = True
    # Set False when the surrounding program (or an administrator) already
    # manages the project's services.
    enable_apis: bool = True
    # IAM grants take effect some time after the API call that makes them
    # returns; the function build and the first execution wait this long
    # after the grants (0: no wait). Google: "typically 2 minutes, potentially
    # 7 minutes or longer" (https://cloud.google.com/iam/docs/access-change-propagation).
    iam_propagation_seconds: int = 120
    # With existing_firestore_database, create the TTL policy on its
    # collection anyway. It is a setting of that database, shared with every
    # other stack using it, and destroying this stack would remove it.
    manage_ttl_on_existing_database: bool = False
    # Log-based metrics and a dashboard, which cost nothing within Cloud
    # Monitoring's free allotment, and alert policies, which are billed per
    # condition, only once someone is named to be told (infra/monitoring.py).
    monitoring: bool = True
    # Comma-separated ids of existing Cloud Monitoring notification channels
    # (projects/P/notificationChannels/ID) the alert policies notify.
    alert_notification_channels: str = ""
    # Comma-separated email addresses; each gets an email notification channel.
    alert_emails: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def notification_channel_ids(self) -> list[str]:
        return _comma_list(self.alert_notification_channels)

    @property
    def alert_email_addresses(self) -> list[str]:
        return _comma_list(self.alert_emails)

    @property
    def firestore_location_or_region(self) -> str:
        return self.firestore_location or self.region

    def problems(self) -> list[str]:
        """Every problem with these arguments, as messages a user can act on."""
        problems = self._project_and_region_problems()
        if not self.name:
            problems.append("the resource name base is empty")
        if not _RUNTIME.match(self.function_runtime):
            problems.append(
                f"functionRuntime {self.function_runtime!r} is not a Python runtime like python313"
            )
        if not _MEMORY.match(self.function_memory):
            problems.append(
                f"functionMemory {self.function_memory!r} is not a size like 256Mi or 1Gi"
            )
        if not 1 <= self.function_timeout_seconds <= 3600:
            problems.append("functionTimeoutSeconds must be between 1 and 3600")
        if self.function_min_instances < 0:
            problems.append("functionMinInstances must not be negative")
        if self.function_max_instances < 1:
            problems.append("functionMaxInstances must be at least 1")
        elif self.function_min_instances > self.function_max_instances:
            problems.append("functionMinInstances must not exceed functionMaxInstances")
        problems += self._instance_problems()
        for origin in self.origins:
            if not _ORIGIN.fullmatch(origin):
                problems.append(
                    f"allowedOrigins {origin!r} is not an origin like https://app.example.com "
                    "(scheme and host, an optional port, no path)"
                )
        if not 0 <= self.iam_propagation_seconds <= 600:
            problems.append("iamPropagationSeconds must be between 0 and 600")
        if self.max_body_bytes <= 0:
            problems.append("maxBodyBytes must be greater than 0")
        elif self.max_body_bytes > MAX_BODY_BYTES_LIMIT:
            problems.append(
                f"maxBodyBytes {self.max_body_bytes} is over {MAX_BODY_BYTES_LIMIT}: a waiting "
                "workflow holds the callback as a string and its decoded copy within "
                "Workflows' 512 KB memory limit, so the receiver refuses larger callbacks anyway"
            )
        if not _COLLECTION_ID.match(self.callbacks_collection) or re.fullmatch(
            r"__.*__|\.|\.\.", self.callbacks_collection
        ):
            problems.append(
                f"callbacksCollection {self.callbacks_collection!r} is not a valid "
                "Firestore collection id"
            )
        if self.existing_firestore_database and not _DATABASE_ID.match(
            self.existing_firestore_database
        ):
            problems.append(
                f"firestoreDatabase {self.existing_firestore_database!r} is not a valid "
                "Firestore database id"
            )
        # Empty means gcp:region, whose own problem is reported above.
        if self.firestore_location and not _FIRESTORE_LOCATION.match(self.firestore_location):
            problems.append(
                f"firestoreLocation {self.firestore_location!r} is not a Firestore location "
                "like europe-west1 or eur3"
            )
        problems += _enum_problem(
            "firestoreDeletionPolicy", self.firestore_deletion_policy, DELETION_POLICIES
        )
        problems += _enum_problem("callLogLevel", self.call_log_level, CALL_LOG_LEVELS)
        problems += self.wait.validate()
        problems += self._alert_problems()
        problems += self._name_problems()
        problems += self._source_problems()
        return problems

    def _project_and_region_problems(self) -> list[str]:
        """gcp:project and gcp:region: set, and shaped as Google names them."""
        problems: list[str] = []
        if not self.project:
            problems.append(
                "gcp:project is not set: set it with `pulumi config set gcp:project <project-id>`"
            )
        elif not _PROJECT_ID.match(self.project):
            problems.append(
                f"gcp:project {self.project!r} is not a Google Cloud project id: 6 to 30 "
                "lowercase letters, digits or hyphens, starting with a letter and not ending "
                "with a hyphen (the id, not the project's display name: `gcloud projects list` "
                "shows both)"
            )
        if not self.region:
            problems.append(
                "gcp:region is not set: set it with `pulumi config set gcp:region <region>`, "
                "for example europe-west1"
            )
        elif not _REGION.match(self.region):
            problems.append(
                f"gcp:region {self.region!r} is not a Google Cloud region: lowercase words "
                "joined by hyphens, ending in a number, like europe-west1 or us-central1"
            )
        return problems

    def _instance_problems(self) -> list[str]:
        """Concurrency, CPU and memory, within Cloud Run's combinations."""
        problems: list[str] = []
        if not 1 <= self.function_concurrency <= MAX_CONCURRENCY:
            problems.append(f"functionConcurrency must be between 1 and {MAX_CONCURRENCY}")
        cpu = _cpu(self.function_cpu)
        if cpu is None:
            problems.append(
                f"functionCpu {self.function_cpu!r} is not a vCPU count: 0.08 to 1, or "
                "1, 2, 4, 6 or 8"
            )
            return problems
        if self.function_concurrency > 1 and cpu < 1:
            problems.append(
                f"functionConcurrency {self.function_concurrency} needs functionCpu of at "
                f"least 1 (Cloud Run serves one request at a time below 1 vCPU)"
            )
        memory = _mebibytes(self.function_memory)
        if memory is None:
            return problems
        least_cpu = next((cpus for above, cpus in CPU_FOR_MEMORY if memory > above), 0)
        if cpu < least_cpu:
            problems.append(
                f"functionMemory {self.function_memory} needs functionCpu of at least "
                f"{_plain_number(least_cpu)}"
            )
        least_memory = next((mib for cpus, mib in MEMORY_FOR_CPU if cpu >= cpus), 0)
        if memory < least_memory:
            problems.append(
                f"functionCpu {self.function_cpu} needs functionMemory of at least "
                f"{least_memory // 1024}Gi"
            )
        return problems

    def _alert_problems(self) -> list[str]:
        """Whom the alerts notify: channel ids and email addresses as Google takes them."""
        problems: list[str] = []
        for channel in self.notification_channel_ids:
            if not _NOTIFICATION_CHANNEL.fullmatch(channel):
                problems.append(
                    f"alertNotificationChannels {channel!r} is not a notification channel id "
                    "like projects/my-project/notificationChannels/1234567890 (`gcloud beta "
                    "monitoring channels list --format='value(name)'` lists them)"
                )
        problems += _listed_twice("alertNotificationChannels", self.notification_channel_ids)
        for email in self.alert_email_addresses:
            if not _EMAIL.fullmatch(email):
                problems.append(
                    f"alertEmails {email!r} is not an email address like oncall@example.com"
                )
        problems += _listed_twice(
            "alertEmails", [email.lower() for email in self.alert_email_addresses]
        )
        return problems

    def _name_problems(self) -> list[str]:
        """Limits on the names derived from project and name that Google checks only on create."""
        # Names derived from a missing or malformed project id would only
        # repeat its problem.
        if not _PROJECT_ID.match(self.project) or not self.name:
            return []
        problems: list[str] = []
        names = ResourceNames.derive(self.project, self.name)
        for title in names.account_titles.values():
            if len(title.encode()) > MAX_DISPLAY_NAME_BYTES:
                problems.append(
                    f"the service account display name {title!r} is over "
                    f"{MAX_DISPLAY_NAME_BYTES} bytes: shorten namePrefix or the stack name"
                )
        if names.bucket.startswith("goog") or _GOOGLE_LIKE.search(names.bucket):
            problems.append(
                f"the source bucket name {names.bucket!r} starts with 'goog' or contains "
                "'google' (or a close misspelling), which Cloud Storage refuses: change "
                "namePrefix or the stack name"
            )
        return problems

    def _source_problems(self) -> list[str]:
        problems: list[str] = []
        if not self.function_source_dir.is_dir():
            problems.append(
                f"functionSourceDir {_shown(self.function_source_dir)!r} is not a folder"
            )
        try:
            self.workflow_source_contents()
        except WorkflowSourceError as error:
            problems.append(str(error))
        return problems

    def user_workflow_source(self) -> str:
        """The user's workflow text, or the example workflow's."""
        if self.workflow_source is not None:
            return self.workflow_source
        return read_text(self.example_workflow_path, "example workflow")

    def workflow_source_contents(self) -> str:
        """The deployed source: the user's workflow with the callback subworkflows appended."""
        return compose_workflow_source(
            self.user_workflow_source(),
            read_text(self.callbacks_workflow_path, "callbacks workflow"),
        )


class WorkflowSourceError(ValueError):
    """A workflow source that cannot be joined with the callback subworkflows."""


def compose_workflow_source(user_source: str, callbacks_source: str) -> str:
    """Append the callback subworkflows to a user's workflow source, and check the result.

    Both sources are top-level YAML maps (``main`` plus subworkflows), so
    joining their text yields one map; checking the user's map first turns a
    confusing deploy-time error into a clear one here. The joined source must
    then pass infra.workflow_check: the rules Workflows applies at deploy time
    that workflows-emulator does not.
    """
    user_map = _yaml_map(user_source, "the workflow source")
    if not isinstance(user_map, dict) or "main" not in user_map:
        raise WorkflowSourceError(
            "the workflow source must be a YAML map with a 'main' workflow (and optional "
            "subworkflows), so the callback subworkflows can be added next to it"
        )
    # Every subworkflow callbacks.yaml defines, helpers included, so the
    # joined map never holds one name twice.
    clashes = [name for name in _yaml_map(callbacks_source, "callbacks.yaml") if name in user_map]
    if clashes:
        raise WorkflowSourceError(
            "the workflow source defines "
            + ", ".join(clashes)
            + " itself; remove it: the deployed workflow gets these subworkflows from "
            "workflow/callbacks.yaml"
        )
    combined = user_source.rstrip("\n") + "\n\n" + callbacks_source.lstrip("\n")
    if not combined.endswith("\n"):
        combined += "\n"
    size = len(combined.encode())
    if size > MAX_WORKFLOW_SOURCE_BYTES:
        raise WorkflowSourceError(
            f"the workflow source with the callback subworkflows is {size} bytes; "
            f"Workflows accepts at most {MAX_WORKFLOW_SOURCE_BYTES}"
        )
    problems = check_workflow(yaml.safe_load(combined))
    if problems:
        raise WorkflowSourceError(
            "Workflows would refuse this source at deploy time:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
    return combined


def _yaml_map(source: str, what: str) -> Any:
    try:
        return yaml.safe_load(source) or {}
    except yaml.YAMLError as error:
        raise WorkflowSourceError(f"{what} is not valid YAML: {error}") from None


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise WorkflowSourceError(
            f"cannot read the {what} {_shown(path)!r}: {error.strerror}"
        ) from None


def _shown(path: Path) -> str:
    """Paths inside the project relative to it, as the user wrote them in config."""
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _cpu(text: str) -> float | None:
    """The vCPU count of a functionCpu value, or None if Cloud Run does not offer it."""
    try:
        cpu = float(text)
    except ValueError:
        return None
    if 0.08 <= cpu <= 1 or cpu in WHOLE_CPUS:
        return cpu
    return None


_MEMORY_UNITS = {"k": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20, "Mi": 1, "Gi": 1024}


def _mebibytes(text: str) -> float | None:
    match = _MEMORY.match(text)
    if match is None:
        return None
    return int(text[: match.start(1)]) * _MEMORY_UNITS[match.group(1)]


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _listed_twice(key: str, values: list[str]) -> list[str]:
    # Each value becomes one resource (or one entry Google would refuse twice).
    seen: set[str] = set()
    twice: list[str] = []
    for value in values:
        if value in seen and value not in twice:
            twice.append(value)
        seen.add(value)
    return [f"{key} lists {value!r} more than once" for value in twice]


def _enum_problem(key: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    if value in allowed:
        return []
    return [f"{key} {value!r} is not one of: {', '.join(allowed)}"]
