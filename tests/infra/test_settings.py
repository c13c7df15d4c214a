"""Stack settings: Pulumi.yaml and the code agree, the example stacks are valid."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.args import CallbackBridgeArgs
from infra.settings import CONFIG_KEYS, WAIT_PREFIX, SettingsError, build_args, defaults
from infra.workflow_env import WaitSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILE = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
NAMESPACE = "workflow-callbacks"


def _as_code_value(declared: object, kind: type) -> object:
    # Floats are declared as strings (the project schema has no float type).
    return float(declared) if kind is float else declared  # type: ignore[arg-type]


def test_project_file_names_the_project_and_its_python_toolchain() -> None:
    assert PROJECT_FILE["name"] == NAMESPACE
    assert PROJECT_FILE["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }


def test_project_file_declares_exactly_the_keys_the_code_reads() -> None:
    assert list(PROJECT_FILE["config"]) == [key.name for key in CONFIG_KEYS]


@pytest.mark.parametrize("key", CONFIG_KEYS, ids=lambda key: key.name)
def test_declared_type_default_and_description_match_the_code(key) -> None:
    declared = PROJECT_FILE["config"][key.name]

    assert declared["type"] == key.yaml_type
    assert _as_code_value(declared["default"], key.kind) == defaults()[key.name]
    assert type(_as_code_value(declared["default"], key.kind)) is key.kind
    assert declared["description"] == key.description


# Arguments the program fills itself: from gcp config and the stack name
# (project, region, name, labels), from the three keys without a field
# (workflow_source, function_source_dir), the WaitSettings as a whole, and
# paths that only another Pulumi program would change.
FILLED_BY_THE_PROGRAM = {
    "project",
    "region",
    "name",
    "labels",
    "workflow_source",
    "function_source_dir",
    "wait",
    "callbacks_workflow_path",
    "example_workflow_path",
}


def test_every_component_argument_is_a_config_key_or_filled_by_the_program() -> None:
    # A new CallbackBridgeArgs or WaitSettings field fails here until it gets a
    # config key (and so a Pulumi.yaml entry) or is added to the list above.
    keyed = {key.field for key in CONFIG_KEYS if key.field}
    arguments = {f.name for f in fields(CallbackBridgeArgs)} - FILLED_BY_THE_PROGRAM
    wait_arguments = {WAIT_PREFIX + f.name for f in fields(WaitSettings)}

    assert keyed == arguments | wait_arguments
    assert {f.name for f in fields(CallbackBridgeArgs)} >= FILLED_BY_THE_PROGRAM


def _args(**values: Any) -> CallbackBridgeArgs:
    return build_args("my-project", "europe-west1", "dev", values)


def test_a_stack_that_sets_nothing_gets_the_component_defaults() -> None:
    assert _args() == CallbackBridgeArgs(
        project="my-project",
        region="europe-west1",
        name="callbacks-dev",
        labels={"stack": "dev"},
    )


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("maxBodyBytes", 1024, lambda args: args.max_body_bytes),
        ("firestoreDatabase", "(default)", lambda args: args.existing_firestore_database),
        ("pollMultiplier", 1.5, lambda args: args.wait.poll_multiplier),
        ("ttlSeconds", 999_999, lambda args: args.wait.ttl_seconds),
        ("allowUnregisteredCallbacks", True, lambda args: args.allow_unregistered_callbacks),
    ],
)
def test_a_set_key_reaches_its_argument(key: str, value: Any, read) -> None:
    assert read(_args()) != value
    assert read(_args(**{key: value})) == value


def test_the_workflow_file_is_read_once_into_the_arguments(tmp_path: Path) -> None:
    source = "main:\n  steps:\n    - done:\n        return: 1\n"
    workflow = tmp_path / "mine.yaml"
    workflow.write_text(source, encoding="utf-8")

    args = _args(workflowFile=str(workflow))
    workflow.unlink()

    # The arguments hold the text: checking or deploying them reads no file again.
    assert args.workflow_source == source
    assert args.problems() == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stack_files_are_valid(stack: str) -> None:
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    by_name = {key.name: key for key in CONFIG_KEYS}
    values = {}
    for name, value in config.items():
        namespace, _, key = name.partition(":")
        assert namespace in (NAMESPACE, "gcp"), name
        if namespace == NAMESPACE:
            assert key in by_name, f"{name} is not a declared key"
            # Stack values must carry the declared type, or the CLI rejects them.
            assert isinstance(
                value, {"string": str, "integer": int, "boolean": bool}[by_name[key].yaml_type]
            ), name
            values[key] = _as_code_value(value, by_name[key].kind)

    build_args("my-project", config["gcp:region"], stack, values)  # raises on any problem


def test_prod_example_protects_data_and_dev_example_does_not() -> None:
    prod = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
    dev = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())["config"]

    assert prod[f"{NAMESPACE}:firestoreDeleteProtection"] is True
    assert prod[f"{NAMESPACE}:workflowDeletionProtection"] is True
    assert prod[f"{NAMESPACE}:functionMinInstances"] >= 1
    assert dev[f"{NAMESPACE}:firestoreDeleteProtection"] is False


def test_settings_problems_name_the_config_keys() -> None:
    with pytest.raises(SettingsError) as raised:
        _args(
            functionTimeoutSeconds=0,
            functionMinInstances=5,
            functionMaxInstances=2,
            functionMemory="lots",
            functionRuntime="nodejs22",
            callbacksCollection="a/b",
            ttlSeconds=10,
            namePrefix="9lives",
        )

    problems = "\n".join(raised.value.problems)
    for expected in (
        "functionTimeoutSeconds must be between 1 and 3600",
        "functionMinInstances must not exceed functionMaxInstances",
        "functionMemory 'lots'",
        "functionRuntime 'nodejs22'",
        "callbacksCollection 'a/b'",
        "ttlSeconds must be at least timeoutSeconds",
        "namePrefix '9lives' must start with a letter",
    ):
        assert expected in problems


def test_name_base_is_prefix_and_stack() -> None:
    args = build_args("my-project", "europe-west1", "prod", {"namePrefix": "Orders"})

    assert args.name.startswith("orders-")
    assert args.name.endswith("-prod")


@pytest.mark.parametrize(("max_body_bytes", "accepted"), [(131_072, True), (131_073, False)])
def test_max_body_bytes_stops_at_what_a_workflow_can_hold(
    max_body_bytes: int, accepted: bool
) -> None:
    if accepted:
        assert _args(maxBodyBytes=max_body_bytes).max_body_bytes == max_body_bytes
        return
    with pytest.raises(SettingsError, match="Workflows' 512 KB memory limit"):
        _args(maxBodyBytes=max_body_bytes)


def test_a_wait_that_would_outrun_workflows_steps_limit_is_refused() -> None:
    week = {"timeoutSeconds": 604_800, "ttlSeconds": 604_800}
    # A week at a steady 60 s: about 10,080 polls, 50,400 steps. Fine.
    assert _args(**week).wait.poll_steps() < 90_000
    # The same week at 10 s polls 60,480 times.
    with pytest.raises(SettingsError) as raised:
        _args(pollMaxSeconds=10.0, **week)

    (problem,) = raised.value.problems
    assert problem == (
        "timeoutSeconds 604800 with pollInitialSeconds 2, pollMultiplier 2 and pollMaxSeconds "
        "10 polls more than 18000 times (up to 5 steps each): Workflows stops an execution "
        "after 100000 steps and a wait may use at most 90000; raise pollMaxSeconds to at "
        "least 34 or lower timeoutSeconds"
    )
    assert _args(pollMaxSeconds=34.0, **week).wait.poll_steps() <= 90_000


def test_a_multiplier_of_one_is_judged_by_its_first_interval() -> None:
    with pytest.raises(SettingsError, match="raise pollInitialSeconds to at least 5 or lower"):
        _args(pollMultiplier=1.0, pollInitialSeconds=2.0, pollMaxSeconds=60.0)


def test_concurrency_and_cpu_come_from_config() -> None:
    args = _args(functionConcurrency=40, functionCpu="2", functionMemory="1Gi")

    assert (args.function_concurrency, args.function_cpu) == (40, "2")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"functionConcurrency": 0}, "functionConcurrency must be between 1 and 1000"),
        ({"functionConcurrency": 1001}, "functionConcurrency must be between 1 and 1000"),
        ({"functionCpu": "3"}, "functionCpu '3' is not a vCPU count"),
        ({"functionCpu": "0.05"}, "functionCpu '0.05' is not a vCPU count"),
        (
            {"functionCpu": "0.5", "functionConcurrency": 8},
            "functionConcurrency 8 needs functionCpu of at least 1",
        ),
        (
            {"functionCpu": "1", "functionMemory": "8Gi"},
            "functionMemory 8Gi needs functionCpu of at least 2",
        ),
        (
            {"functionCpu": "0.5", "functionConcurrency": 1, "functionMemory": "2Gi"},
            "functionMemory 2Gi needs functionCpu of at least 1",
        ),
        ({"functionCpu": "4"}, "functionCpu 4 needs functionMemory of at least 2Gi"),
    ],
)
def test_instance_shapes_cloud_run_refuses_are_refused(values: dict, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        _args(**values)

    assert problem in "\n".join(raised.value.problems)


def test_one_request_at_a_time_runs_on_a_fraction_of_a_cpu() -> None:
    args = _args(functionCpu="0.5", functionConcurrency=1, functionMemory="512Mi")

    assert (args.function_cpu, args.function_concurrency) == ("0.5", 1)


def test_a_service_account_display_name_over_100_bytes_is_refused() -> None:
    long_prefix = "callbacks-for-the-order-fulfilment-and-invoicing-approval-flows-in-the-eu-region"
    with pytest.raises(SettingsError) as raised:
        _args(namePrefix=long_prefix)

    problems = "\n".join(raised.value.problems)
    assert "display name 'Callback receiver function (" in problems
    assert "is over 100 bytes: shorten namePrefix or the stack name" in problems
    assert len(_args(namePrefix=long_prefix[:40]).name) < 60


@pytest.mark.parametrize("prefix", ["google-hooks", "g00gle", "callbacks-googler"])
def test_a_bucket_name_cloud_storage_refuses_is_refused(prefix: str) -> None:
    with pytest.raises(SettingsError, match="contains 'google'"):
        _args(namePrefix=prefix)


def test_a_project_id_starting_with_goog_is_refused_for_the_bucket() -> None:
    assert build_args("goodwill-goog", "europe-west1", "dev", {}).project == "goodwill-goog"
    with pytest.raises(SettingsError, match="starts with 'goog'"):
        build_args("goog-analytics", "europe-west1", "dev", {})


def test_allowed_origins_reach_the_receiver_and_bad_ones_are_refused() -> None:
    args = _args(allowedOrigins="https://app.example.com, http://127.0.0.1:8080")
    assert args.origins == ["https://app.example.com", "http://127.0.0.1:8080"]

    with pytest.raises(SettingsError, match=re.escape("allowedOrigins 'https://app.example.com/")):
        _args(allowedOrigins="https://app.example.com/path")
    with pytest.raises(SettingsError, match=re.escape("allowedOrigins '*'")):
        _args(allowedOrigins="*")
