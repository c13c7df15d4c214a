"""Pulumi.yaml's config schema and the docs' settings table are generated from CONFIG_KEYS."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from infra import config_reference
from infra.settings import CONFIG_KEYS


def test_the_committed_files_are_what_config_keys_generate() -> None:
    assert config_reference.stale_files() == []
    assert config_reference.main(["--check"]) == 0


def test_a_changed_setting_makes_both_files_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tuple(
        dataclasses.replace(key, description="A new meaning.", docs="")
        if key.name == "functionMemory"
        else key
        for key in CONFIG_KEYS
    )
    monkeypatch.setattr(config_reference, "CONFIG_KEYS", changed)
    assert config_reference.stale_files() == [
        config_reference.PROJECT_FILE,
        config_reference.DEPLOY_DOC,
    ]
    assert config_reference.main(["--check"]) == 1


def test_the_generated_schema_is_yaml_with_every_key_typed_and_defaulted() -> None:
    project = yaml.safe_load(
        config_reference.project_file(config_reference.PROJECT_FILE.read_text())
    )
    assert list(project["config"]) == [key.name for key in CONFIG_KEYS]
    assert project["name"] == "workflow-callbacks"  # the rest of the file is kept
    assert project["config"]["pollMultiplier"] == {
        "type": "string",
        "default": "2",
        "description": "Factor applied to the poll interval after each poll.",
    }


def test_the_docs_table_has_a_row_per_key_with_its_richer_text() -> None:
    doc = config_reference.deploy_doc(config_reference.DEPLOY_DOC.read_text())
    table = doc.split(config_reference.TABLE_BEGIN)[1].split(config_reference.TABLE_END)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(CONFIG_KEYS) + 2  # + gcp:project, gcp:region
    concurrency = next(row for row in rows if row.startswith("| `functionConcurrency`"))
    assert concurrency.startswith("| `functionConcurrency` | integer | `8` | Requests one")
    assert "429s" in concurrency  # the docs text, not Pulumi.yaml's shorter one
