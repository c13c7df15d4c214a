"""Stack settings: Pulumi.yaml and the code agree, the example stacks are valid."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest
import yaml

from infra.settings import CONFIG_KEYS, Settings, defaults
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


def test_every_settings_field_but_the_gcp_ones_is_a_config_key() -> None:
    config_fields = {key.field for key in CONFIG_KEYS}
    setting_fields = {f.name for f in fields(Settings)} - {"project", "region", "stack"}

    assert config_fields == setting_fields


def test_wait_defaults_are_the_shared_ones() -> None:
    settings = Settings(project="p", region="europe-west1", stack="dev")

    assert settings.wait == WaitSettings()


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
            values[by_name[key].field] = _as_code_value(value, by_name[key].kind)

    settings = Settings(project="my-project", region=config["gcp:region"], stack=stack, **values)
    assert settings.problems() == []


def test_prod_example_protects_data_and_dev_example_does_not() -> None:
    prod = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
    dev = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())["config"]

    assert prod[f"{NAMESPACE}:firestoreDeleteProtection"] is True
    assert prod[f"{NAMESPACE}:workflowDeletionProtection"] is True
    assert prod[f"{NAMESPACE}:functionMinInstances"] >= 1
    assert dev[f"{NAMESPACE}:firestoreDeleteProtection"] is False


def test_settings_problems_name_the_config_keys() -> None:
    base = Settings(project="my-project", region="europe-west1", stack="dev")
    broken = replace(
        base,
        function_timeout_seconds=0,
        function_min_instances=5,
        function_max_instances=2,
        function_memory="lots",
        function_runtime="nodejs22",
        callbacks_collection="a/b",
        ttl_seconds=10,
    )

    problems = "\n".join(broken.problems())

    for expected in (
        "functionTimeoutSeconds must be between 1 and 3600",
        "functionMinInstances must not exceed functionMaxInstances",
        "functionMemory 'lots'",
        "functionRuntime 'nodejs22'",
        "callbacksCollection 'a/b'",
        "ttlSeconds must be at least timeoutSeconds",
    ):
        assert expected in problems
    assert base.problems() == []


def test_name_base_is_prefix_and_stack() -> None:
    settings = Settings(project="p", region="europe-west1", stack="prod", name_prefix="Orders")

    assert settings.name_base.startswith("orders-")
    assert settings.name_base.endswith("-prod")


@pytest.mark.parametrize(("max_body_bytes", "accepted"), [(131_072, True), (131_073, False)])
def test_max_body_bytes_stops_at_what_a_workflow_can_hold(
    max_body_bytes: int, accepted: bool
) -> None:
    settings = Settings(
        project="p", region="europe-west1", stack="dev", max_body_bytes=max_body_bytes
    )

    problems = settings.problems()

    assert (problems == []) is accepted
    if not accepted:
        assert "Workflows' 512 KB memory limit" in "\n".join(problems)
