"""Every stack setting, read and checked in one place.

Each config key fills one CallbackBridgeArgs field (or a field of its
WaitSettings), and its default is that field's default: the component's
arguments are the only place a default is written in code. Only the three
keys the program turns into arguments itself (namePrefix, functionSourceDir,
workflowFile) carry their own. Stack config files are not read under
Pulumi's test mocks, and a user may set nothing beyond gcp:project and
gcp:region, so these code defaults are what applies; Pulumi.yaml declares the
same keys and defaults for the CLI, and a test keeps the two in step.

All problems are collected and raised as one error before any resource is
registered, so a typo in one key never leaves a half-created stack.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import pulumi

from infra.args import (
    DEFAULT_FUNCTION_SOURCE_DIR,
    REPO_ROOT,
    CallbackBridgeArgs,
    WorkflowSourceError,
    read_text,
)
from infra.names import slug
from infra.workflow_env import WaitSettings

# ConfigKey.field prefix for the fields of CallbackBridgeArgs.wait.
WAIT_PREFIX = "wait."


class SettingsError(ValueError):
    """The stack configuration has one or more problems."""

    def __init__(self, stack: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"stack {stack!r} has invalid configuration:\n"
            + "\n".join(f"  - {problem}" for problem in self.problems)
        )


@dataclass(frozen=True)
class ConfigKey:
    """One project config key: its name, the argument it fills, its meaning.

    ``field`` names the CallbackBridgeArgs field the key fills ("wait.<name>"
    for a field of its WaitSettings), or is None for a key the program turns
    into arguments itself; only such a key has an ``own_default``.
    """

    name: str
    field: str | None
    kind: type
    description: str
    own_default: Any = None
    # The docs/deploy.md table's text (Markdown, may link), when it says more
    # than ``description`` (Pulumi.yaml's plain text).
    docs: str = ""

    @property
    def default(self) -> Any:
        """The value that applies when the stack does not set the key."""
        if self.field is None:
            return self.own_default
        if self.field.startswith(WAIT_PREFIX):
            return _field_defaults(WaitSettings)[self.field.removeprefix(WAIT_PREFIX)]
        return _field_defaults(CallbackBridgeArgs)[self.field]

    @property
    def yaml_type(self) -> str:
        """The Pulumi.yaml type; the project schema has no float, so floats are strings."""
        return {str: "string", int: "integer", bool: "boolean", float: "string"}[self.kind]


def _field_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


CONFIG_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("namePrefix", None, str,
              "Start of every resource name; the stack name follows it.",
              own_default="callbacks"),
    ConfigKey("functionSourceDir", None, str,
              "Folder holding the receiver function, relative to Pulumi.yaml.",
              own_default=DEFAULT_FUNCTION_SOURCE_DIR.relative_to(REPO_ROOT).as_posix()),
    ConfigKey("workflowFile", None, str,
              "Your workflow YAML (a map with main), relative to Pulumi.yaml; the callback "
              "subworkflows are appended. Empty: workflow/example.yaml.",
              own_default="",
              docs="Your workflow YAML (a map with `main`), relative to Pulumi.yaml; the "
                    "callback subworkflows are appended. Empty: `workflow/example.yaml`."),
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
    ConfigKey("functionConcurrency", "function_concurrency", int,
              "Requests one function instance serves at once (1-1000; above 1 needs "
              "functionCpu 1 or more); also its worker threads.",
              docs="Requests one instance serves at once (1-1000), and its functions-framework "
                    "threads. Above 1 needs `functionCpu` of at least 1. With 1, a burst above "
                    "`functionMaxInstances` callbacks gets 429s."),
    ConfigKey("functionCpu", "function_cpu", str,
              "vCPUs per function instance: 0.08 to 1, or 1, 2, 4, 6 or 8.",
              docs="vCPUs per instance: 0.08 to 1, or 1, 2, 4, 6 or 8. Memory over 512Mi, 1Gi, "
                    "4Gi, 8Gi, 16Gi or 24Gi needs at least 0.5, 1, 2, 4, 6 or 8 vCPUs; 4 vCPUs "
                    "need 2Gi and 6 or 8 need 4Gi."),
    ConfigKey("allowUnauthenticated", "allow_unauthenticated", bool,
              "Let anyone call the function URL (callbacks are guarded by their token)."),
    ConfigKey("allowUnregisteredCallbacks", "allow_unregistered_callbacks", bool,
              "Store callbacks nobody registered (no token check)."),
    ConfigKey("allowedOrigins", "allowed_origins", str,
              "Comma-separated browser origins whose pages may call the callback URLs (CORS). "
              "Empty: none.",
              docs="Comma-separated browser origins (`https://app.example.com`) whose pages may "
                    "call the callback URLs with `fetch` (CORS). Empty: none, as before."),
    ConfigKey("maxBodyBytes", "max_body_bytes", int,
              "Largest callback body the function accepts (at most 131072: a waiting workflow "
              "must hold the callback in Workflows' 512 KB of memory).",
              docs="Largest callback body the function accepts (at most 131072: a waiting "
                    "workflow must hold the callback in Workflows' 512 KB of memory; see [Size "
                    "limits](protocol.md#size-limits))."),
    ConfigKey("callbacksCollection", "callbacks_collection", str,
              "Firestore collection holding callback documents."),
    ConfigKey("firestoreDatabase", "existing_firestore_database", str,
              "Id of an existing Firestore database to use. Empty: create one for this stack.",
              docs="Id of an existing Firestore database to use, e.g. `(default)`. Empty: create "
                    "one for this stack."),
    ConfigKey("firestoreLocation", "firestore_location", str,
              "Location of the created database (region or multi-region). Empty: gcp:region.",
              docs="Location of the created database (region or multi-region such as `eur3`). "
                    "Empty: `gcp:region`."),
    ConfigKey("firestoreDeletionPolicy", "firestore_deletion_policy", str,
              "What pulumi destroy does to the created database: DELETE, ABANDON or PREVENT.",
              docs="What `pulumi destroy` does to the created database: `DELETE`, `ABANDON` "
                    "(leave it) or `PREVENT` (fail)."),
    ConfigKey("manageTtlOnExistingDatabase", "manage_ttl_on_existing_database", bool,
              "With firestoreDatabase set, create the TTL policy and index exemptions on it "
              "anyway (it is shared with every stack using that database).",
              docs="With `firestoreDatabase` set, create the TTL policy and the index exemptions "
                    "on that database anyway."),
    ConfigKey("firestoreDeleteProtection", "firestore_delete_protection", bool,
              "Turn on Firestore's own delete protection for the created database."),
    ConfigKey("restrictDataAccessToDatabase", "restrict_data_access_to_database", bool,
              "Limit the service accounts' Firestore role to this database (IAM condition)."),
    ConfigKey("pollInitialSeconds", "wait.poll_initial_seconds", float,
              "First wait between polls for a callback."),
    ConfigKey("pollMultiplier", "wait.poll_multiplier", float,
              "Factor applied to the poll interval after each poll."),
    ConfigKey("pollMaxSeconds", "wait.poll_max_seconds", float,
              "Longest wait between polls."),
    ConfigKey("delivery", "wait.delivery", str,
              "How a waiting workflow learns of its callback: push (the receiver forwards it to "
              "the execution's callback endpoint; resumes at once) or poll (reads Firestore).",
              docs="How a waiting workflow learns of its callback: `push` (the receiver forwards "
                    "it to the execution's callback endpoint; the wait resumes at once) or `poll` "
                    "(reads Firestore with backoff). Each call can override it. See [Push "
                    "delivery](protocol.md#push-delivery)."),
    ConfigKey("pushSliceSeconds", "wait.push_slice_seconds", int,
              "Push delivery: longest wait for a forwarded callback before reading Firestore "
              "once (recovers a failed forward).",
              docs="Push delivery: the longest wait for a forwarded callback before one more "
                    "Firestore read, which recovers a forward that failed."),
    ConfigKey("timeoutSeconds", "wait.timeout_seconds", int,
              "How long waitForResponse waits before raising TimeoutError.",
              docs="How long `waitForResponse` waits before raising `TimeoutError`."),
    ConfigKey("ttlSeconds", "wait.ttl_seconds", int,
              "Lifetime of a callback document before Firestore's TTL deletes it.",
              docs="Lifetime of a callback document before Firestore's TTL deletes it; at least "
                    "`timeoutSeconds`."),
    ConfigKey("callLogLevel", "call_log_level", str,
              "Workflows call logging: LOG_ALL_CALLS, LOG_ERRORS_ONLY, LOG_NONE or "
              "CALL_LOG_LEVEL_UNSPECIFIED. LOG_ALL_CALLS logs callback URLs with tokens.",
              docs="Workflows call logging: `LOG_ALL_CALLS`, `LOG_ERRORS_ONLY`, `LOG_NONE` or "
                    "`CALL_LOG_LEVEL_UNSPECIFIED`. `LOG_ALL_CALLS` logs callback URLs with their "
                    "tokens."),
    ConfigKey("workflowDeletionProtection", "workflow_deletion_protection", bool,
              "Refuse to delete the workflow on destroy or replace."),
    ConfigKey("sourceBucketForceDestroy", "source_bucket_force_destroy", bool,
              "Let destroy delete the source bucket with its objects."),
    ConfigKey("enableApis", "enable_apis", bool,
              "Enable the Google Cloud APIs the stack needs (never disabled on destroy)."),
    ConfigKey("iamPropagationSeconds", "iam_propagation_seconds", int,
              "Seconds to wait after the IAM grants before building the function and "
              "deploying the workflow, for the grants to take effect (0-600).",
              docs="Wait after the IAM grants before the function build and the workflow (0-600; "
                    "0: no wait). See [Waiting for IAM grants](#waiting-for-iam-grants)."),
    ConfigKey("monitoring", "monitoring", bool,
              "Create log-based metrics and a Cloud Monitoring dashboard (free within Cloud "
              "Monitoring's allotment), and alert policies (billed per condition) when "
              "alertEmails or alertNotificationChannels names someone to tell.",
              docs="Log-based metrics and a Cloud Monitoring dashboard, which cost nothing within "
                    "Cloud Monitoring's free allotment, and the alert policies (billed per "
                    "condition, about 1.50 USD a month each) once `alertEmails` or "
                    "`alertNotificationChannels` names someone to tell. See "
                    "[operations.md](operations.md)."),
    ConfigKey("alertNotificationChannels", "alert_notification_channels", str,
              "Comma-separated ids of existing notification channels "
              "(projects/P/notificationChannels/ID) the alerts notify. Empty: none.",
              docs="Comma-separated ids of existing Cloud Monitoring notification channels "
                    "(`projects/P/notificationChannels/ID`: `gcloud beta monitoring channels list` "
                    "lists them) the alerts notify. Empty: none."),
    ConfigKey("alertEmails", "alert_emails", str,
              "Comma-separated email addresses; each gets an email notification channel the "
              "alerts notify. Empty: none."),
)  # fmt: skip


_BY_NAME = {key.name: key for key in CONFIG_KEYS}


def defaults() -> dict[str, Any]:
    """Each config key's default, as the code applies it."""
    return {key.name: key.default for key in CONFIG_KEYS}


def build_args(
    project: str,
    region: str,
    stack: str,
    values: Mapping[str, Any] | None = None,
    problems: Sequence[str] = (),
) -> CallbackBridgeArgs:
    """The component arguments for one stack, checked.

    ``values`` maps config key names to typed values; a key left out takes
    its default. ``problems`` are those already found reading the config.
    Raises SettingsError listing every problem.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise KeyError(f"not config keys: {', '.join(unknown)}")
    setting = {key.name: values.get(key.name, key.default) for key in CONFIG_KEYS}
    problems = list(problems)
    prefix = setting["namePrefix"]
    if not slug(prefix)[0].isalpha():
        problems.append(f"namePrefix {prefix!r} must start with a letter")
    try:
        # Read here, once: the arguments carry the text from now on.
        workflow_source = (
            read_text(_resolve(setting["workflowFile"]), "workflowFile")
            if setting["workflowFile"]
            else None
        )
    except WorkflowSourceError as error:
        # Checking the arguments without the user's workflow would judge the
        # example workflow instead.
        raise SettingsError(stack, [*problems, str(error)]) from None
    filled = {key.field: setting[key.name] for key in CONFIG_KEYS if key.field}
    wait = {
        name.removeprefix(WAIT_PREFIX): value
        for name, value in filled.items()
        if name.startswith(WAIT_PREFIX)
    }
    args = CallbackBridgeArgs(
        project=project,
        region=region,
        # Prefix plus stack, so two stacks in one project never collide.
        name=f"{slug(prefix)}-{slug(stack)}",
        workflow_source=workflow_source,
        function_source_dir=_resolve(setting["functionSourceDir"]),
        wait=WaitSettings(**wait),
        labels={"stack": slug(stack)[:63]},
        **{name: value for name, value in filled.items() if not name.startswith(WAIT_PREFIX)},
    )
    problems += args.problems()
    if problems:
        raise SettingsError(stack, problems)
    return args


def load_args() -> CallbackBridgeArgs:
    """Read the stack config (the only place it is read) into checked component arguments.

    Raises SettingsError listing every problem.
    """
    gcp_config = pulumi.Config("gcp")
    config = pulumi.Config()
    problems = unknown_key_problems(pulumi.get_project(), stack_config_keys())
    values: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        raw = config.get(key.name)
        if raw is None:
            continue
        try:
            values[key.name] = _parse(raw, key.kind)
        except ValueError:
            problems.append(f"{key.name} {raw!r} is not {_KIND_NAMES[key.kind]}")
    return build_args(
        project=gcp_config.get("project") or "",
        region=gcp_config.get("region") or "",
        stack=pulumi.get_stack(),
        values=values,
        problems=problems,
    )


def stack_config_keys() -> set[str]:
    """Every config key the running program was given, namespaced ("gcp:region").

    pulumi.Config reads one key at a time and cannot list them. The pulumi
    CLI's Python language host hands the program the stack's whole config as
    the JSON environment variable PULUMI_CONFIG (pulumi.runtime.get_config_env);
    Automation API inline programs and Pulumi's test mocks set the runtime's
    config map instead (pulumi.runtime.set_all_config, held in
    pulumi.runtime.config.CONFIG). pulumi.runtime.get_config looks in the same
    two places, so these are the keys the program can read.
    """
    return set(pulumi.runtime.get_config_env()) | set(pulumi.runtime.config.CONFIG.get())


def unknown_key_problems(namespace: str, keys: Iterable[str]) -> list[str]:
    """A problem for each key in the project's namespace that is not a config key.

    The pulumi CLI checks stack values against the types Pulumi.yaml declares,
    but not that each key in the project's namespace is declared, so a
    misspelled key would be ignored and its setting silently take the default.
    """
    problems: list[str] = []
    for key in sorted(keys):
        key_namespace, _, name = key.partition(":")
        if key_namespace == namespace and name not in _BY_NAME:
            problems.append(_unknown_key_problem(namespace, name))
    return problems


def _unknown_key_problem(namespace: str, name: str) -> str:
    close = difflib.get_close_matches(name, _BY_NAME, n=1)
    removal = f"remove it with `pulumi config rm {namespace}:{name}`"
    if close:
        return (
            f"{namespace}:{name} is not a setting of this project; did you mean "
            f"{namespace}:{close[0]}? ({removal} and set that key instead)"
        )
    return (
        f"{namespace}:{name} is not a setting of this project ({removal}; Pulumi.yaml "
        "and docs/deploy.md list the settings)"
    )


def _resolve(path: str) -> Path:
    """Paths in config are relative to the project folder (where Pulumi.yaml is)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate


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
