"""Every stack setting, read and checked in one place.

Stack config files are not read under Pulumi's test mocks, and a user may
set nothing beyond gcp:project and gcp:region, so every default lives here
in code. Pulumi.yaml declares the same keys for the CLI; a test keeps the
two in step.

All problems are collected and raised as one error before any resource is
registered, so a typo in one key never leaves a half-created stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pulumi

from infra.args import REPO_ROOT, CallbackBridgeArgs, WorkflowSourceError, read_text
from infra.names import slug
from infra.workflow_env import DEFAULT_COLLECTION, WaitSettings

_WAIT = WaitSettings()


class SettingsError(ValueError):
    """The stack configuration has one or more problems."""


@dataclass(frozen=True)
class ConfigKey:
    """One project config key: its name, the Settings field it fills, its meaning."""

    name: str
    field: str
    kind: type
    description: str

    @property
    def yaml_type(self) -> str:
        """The Pulumi.yaml type; the project schema has no float, so floats are strings."""
        return {str: "string", int: "integer", bool: "boolean", float: "string"}[self.kind]


@dataclass(frozen=True)
class Settings:
    """The stack's configuration with every default; field names mirror the config keys."""

    project: str
    region: str
    stack: str
    name_prefix: str = "callbacks"
    function_source_dir: str = "function"
    workflow_file: str = ""
    function_runtime: str = "python313"
    function_memory: str = "256Mi"
    function_timeout_seconds: int = 60
    function_min_instances: int = 0
    function_max_instances: int = 10
    allow_unauthenticated: bool = True
    allow_unregistered_callbacks: bool = False
    max_body_bytes: int = 65_536
    callbacks_collection: str = DEFAULT_COLLECTION
    firestore_database: str = ""
    firestore_location: str = ""
    firestore_deletion_policy: str = "DELETE"
    firestore_delete_protection: bool = False
    restrict_data_access_to_database: bool = True
    poll_initial_seconds: float = _WAIT.poll_initial_seconds
    poll_multiplier: float = _WAIT.poll_multiplier
    poll_max_seconds: float = _WAIT.poll_max_seconds
    timeout_seconds: int = _WAIT.timeout_seconds
    ttl_seconds: int = _WAIT.ttl_seconds
    call_log_level: str = "LOG_ERRORS_ONLY"
    workflow_deletion_protection: bool = False
    source_bucket_force_destroy: bool = True
    enable_apis: bool = True

    @property
    def name_base(self) -> str:
        """The base of every physical name: prefix plus stack, so stacks never collide."""
        return f"{slug(self.name_prefix)}-{slug(self.stack)}"

    @property
    def wait(self) -> WaitSettings:
        return WaitSettings(
            poll_initial_seconds=self.poll_initial_seconds,
            poll_multiplier=self.poll_multiplier,
            poll_max_seconds=self.poll_max_seconds,
            timeout_seconds=self.timeout_seconds,
            ttl_seconds=self.ttl_seconds,
        )

    def to_args(self) -> CallbackBridgeArgs:
        """The component arguments; raises WorkflowSourceError if workflowFile is unreadable."""
        return CallbackBridgeArgs(
            project=self.project,
            region=self.region,
            name=self.name_base,
            workflow_source=(
                read_text(_resolve(self.workflow_file), "workflowFile")
                if self.workflow_file
                else None
            ),
            function_source_dir=_resolve(self.function_source_dir),
            function_runtime=self.function_runtime,
            function_memory=self.function_memory,
            function_timeout_seconds=self.function_timeout_seconds,
            function_min_instances=self.function_min_instances,
            function_max_instances=self.function_max_instances,
            allow_unauthenticated=self.allow_unauthenticated,
            allow_unregistered_callbacks=self.allow_unregistered_callbacks,
            max_body_bytes=self.max_body_bytes,
            callbacks_collection=self.callbacks_collection,
            existing_firestore_database=self.firestore_database,
            firestore_location=self.firestore_location,
            firestore_deletion_policy=self.firestore_deletion_policy,
            firestore_delete_protection=self.firestore_delete_protection,
            restrict_data_access_to_database=self.restrict_data_access_to_database,
            wait=self.wait,
            call_log_level=self.call_log_level,
            workflow_deletion_protection=self.workflow_deletion_protection,
            source_bucket_force_destroy=self.source_bucket_force_destroy,
            enable_apis=self.enable_apis,
            labels={"stack": slug(self.stack)[:63]},
        )

    def problems(self) -> list[str]:
        problems: list[str] = []
        if not slug(self.name_prefix)[0].isalpha():
            problems.append(f"namePrefix {self.name_prefix!r} must start with a letter")
        try:
            args = self.to_args()
        except WorkflowSourceError as error:
            return [*problems, str(error)]
        return problems + args.problems()


def _resolve(path: str) -> Path:
    """Paths in config are relative to the project folder (where Pulumi.yaml is)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("namePrefix", "name_prefix", str,
              "Start of every resource name; the stack name follows it."),
    ConfigKey("functionSourceDir", "function_source_dir", str,
              "Folder holding the receiver function, relative to Pulumi.yaml."),
    ConfigKey("workflowFile", "workflow_file", str,
              "Your workflow YAML (a map with main), relative to Pulumi.yaml; the callback "
              "subworkflows are appended. Empty: workflow/example.yaml."),
    ConfigKey("functionRuntime", "function_runtime", str,
              "Cloud Functions Python runtime id."),
    ConfigKey("functionMemory", "function_memory", str,
              "Memory per function instance, e.g. 256Mi or 1Gi."),
    ConfigKey("functionTimeoutSeconds", "function_timeout_seconds", int,
              "Request timeout of the function (1-3600)."),
    ConfigKey("functionMinInstances", "function_min_instances", int,
              "Instances kept warm; above 0 removes cold starts and costs money."),
    ConfigKey("functionMaxInstances", "function_max_instances", int,
              "Upper bound on function instances."),
    ConfigKey("allowUnauthenticated", "allow_unauthenticated", bool,
              "Let anyone call the function URL (callbacks are guarded by their token)."),
    ConfigKey("allowUnregisteredCallbacks", "allow_unregistered_callbacks", bool,
              "Store callbacks nobody registered (no token check)."),
    ConfigKey("maxBodyBytes", "max_body_bytes", int,
              "Largest callback body the function accepts (at most 131072: a waiting workflow "
              "must hold the callback in Workflows' 512 KB of memory)."),
    ConfigKey("callbacksCollection", "callbacks_collection", str,
              "Firestore collection holding callback documents."),
    ConfigKey("firestoreDatabase", "firestore_database", str,
              "Id of an existing Firestore database to use. Empty: create one for this stack."),
    ConfigKey("firestoreLocation", "firestore_location", str,
              "Location of the created database (region or multi-region). Empty: gcp:region."),
    ConfigKey("firestoreDeletionPolicy", "firestore_deletion_policy", str,
              "What pulumi destroy does to the created database: DELETE, ABANDON or PREVENT."),
    ConfigKey("firestoreDeleteProtection", "firestore_delete_protection", bool,
              "Turn on Firestore's own delete protection for the created database."),
    ConfigKey("restrictDataAccessToDatabase", "restrict_data_access_to_database", bool,
              "Limit the service accounts' Firestore role to this database (IAM condition)."),
    ConfigKey("pollInitialSeconds", "poll_initial_seconds", float,
              "First wait between polls for a callback."),
    ConfigKey("pollMultiplier", "poll_multiplier", float,
              "Factor applied to the poll interval after each poll."),
    ConfigKey("pollMaxSeconds", "poll_max_seconds", float,
              "Longest wait between polls."),
    ConfigKey("timeoutSeconds", "timeout_seconds", int,
              "How long waitForResponse waits before raising TimeoutError."),
    ConfigKey("ttlSeconds", "ttl_seconds", int,
              "Lifetime of a callback document before Firestore's TTL deletes it."),
    ConfigKey("callLogLevel", "call_log_level", str,
              "Workflows call logging: LOG_ALL_CALLS, LOG_ERRORS_ONLY, LOG_NONE or "
              "CALL_LOG_LEVEL_UNSPECIFIED. LOG_ALL_CALLS logs callback URLs with tokens."),
    ConfigKey("workflowDeletionProtection", "workflow_deletion_protection", bool,
              "Refuse to delete the workflow on destroy or replace."),
    ConfigKey("sourceBucketForceDestroy", "source_bucket_force_destroy", bool,
              "Let destroy delete the source bucket with its objects."),
    ConfigKey("enableApis", "enable_apis", bool,
              "Enable the Google Cloud APIs the stack needs (never disabled on destroy)."),
)  # fmt: skip


def defaults() -> dict[str, Any]:
    """Each config key's default, as the code applies it."""
    by_field = {f.name: f for f in fields(Settings)}
    return {key.name: by_field[key.field].default for key in CONFIG_KEYS}


def load_settings() -> Settings:
    """Read the stack config; raise SettingsError listing every problem."""
    gcp_config = pulumi.Config("gcp")
    config = pulumi.Config()
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        raw = config.get(key.name)
        if raw is None:
            continue
        try:
            values[key.field] = _parse(raw, key.kind)
        except ValueError:
            problems.append(f"{key.name} {raw!r} is not {_KIND_NAMES[key.kind]}")
    settings = Settings(
        project=gcp_config.get("project") or "",
        region=gcp_config.get("region") or "",
        stack=pulumi.get_stack(),
        **values,
    )
    problems += settings.problems()
    if problems:
        raise SettingsError(
            f"stack {pulumi.get_stack()!r} has invalid configuration:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )
    return settings


_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _parse(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(raw)
        return lowered == "true"
    if kind is int:
        return int(raw.strip())
    if kind is float:
        number = float(raw.strip())
        if not math.isfinite(number):
            raise ValueError(raw)
        return number
    return raw
