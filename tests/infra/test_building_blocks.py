"""Names, the function source archive and the joined workflow source."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.args import (
    MAX_WORKFLOW_SOURCE_BYTES,
    WorkflowSourceError,
    compose_workflow_source,
)
from infra.names import ResourceNames, fit, slug
from infra.source_archive import build_source_archive, content_hash

REPO_ROOT = Path(__file__).resolve().parents[2]
CALLBACKS = "getCallbackURL:\n  params: [step]\n  steps:\n    - r:\n        return: 1\n"
USER = "main:\n  steps:\n    - done:\n        return: 1\n"


# --- names ----------------------------------------------------------------
def test_slug_marks_lossy_changes_so_different_stacks_stay_different() -> None:
    assert slug("dev") == "dev"
    assert slug("my_stack") != slug("my-stack")
    assert re.fullmatch(r"[a-z0-9-]+", slug("Team.A/β"))


def test_fit_keeps_short_names_and_hashes_long_ones() -> None:
    assert fit("short", 10) == "short"
    long_a, long_b = "x" * 40 + "a", "x" * 40 + "b"
    assert len(fit(long_a, 30)) == 30
    assert fit(long_a, 30) != fit(long_b, 30)


@pytest.mark.parametrize("base", ["callbacks-dev", "9lives", "a", "callbacks-" + "z" * 80])
def test_derived_names_respect_google_cloud_rules(base: str) -> None:
    names = ResourceNames.derive("my-project", base)

    for account in (names.function_account, names.workflow_account, names.build_account):
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account), account
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", names.database), names.database
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", names.bucket), names.bucket
    assert len(names.function) <= 49 and len(names.workflow) <= 64
    assert len({names.function_account, names.workflow_account, names.build_account}) == 3


# --- source archive ---------------------------------------------------------
def _function_dir(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("def processEntry(request):\n    return 'ok'\n")
    (root / "requirements.txt").write_text("functions-framework==3.10.1\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    return root


def test_archive_holds_the_files_at_the_root_without_caches(tmp_path: Path) -> None:
    source = _function_dir(tmp_path / "fn")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "main.cpython-313.pyc").write_bytes(b"\0")
    (source / "stale.pyc").write_bytes(b"\0")

    archive = build_source_archive(source)

    assert archive.files == ("main.py", "pkg/util.py", "requirements.txt")
    assert set(archive.archive.assets) == set(archive.files)
    assert archive.object_name == f"function-source-{archive.content_hash[:20]}.zip"


def test_hash_is_deterministic_and_sees_content_and_renames(tmp_path: Path) -> None:
    one = _function_dir(tmp_path / "one")
    two = _function_dir(tmp_path / "two")
    assert content_hash(one) == content_hash(two), "same files in another place, same hash"

    (two / "pkg" / "util.py").write_text("X = 2\n")
    assert content_hash(one) != content_hash(two)

    (one / "pkg" / "util.py").rename(one / "pkg" / "helpers.py")
    assert content_hash(one) != content_hash(_function_dir(tmp_path / "three"))


def test_an_empty_source_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no files"):
        build_source_archive(tmp_path)


# --- workflow source ----------------------------------------------------------
def test_user_workflow_gets_the_callback_subworkflows_appended() -> None:
    combined = compose_workflow_source(USER, CALLBACKS)

    assert combined.startswith(USER)
    assert set(yaml.safe_load(combined)) == {"main", "getCallbackURL"}


SHIPPED_CALLBACKS = (REPO_ROOT / "workflow" / "callbacks.yaml").read_text()


@pytest.mark.parametrize("name", list(yaml.safe_load(SHIPPED_CALLBACKS)))
def test_a_user_workflow_defining_a_callback_subworkflow_is_refused(name: str) -> None:
    # Every subworkflow callbacks.yaml defines, its helpers too, not only the two users call.
    source = USER + f"{name}:\n  steps:\n    - r:\n        return: 1\n"

    with pytest.raises(WorkflowSourceError, match=f"defines {name} itself"):
        compose_workflow_source(source, SHIPPED_CALLBACKS)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("- step1:\n    return: 1\n", "must be a YAML map with a 'main' workflow"),
        ("helper:\n  steps: []\n", "must be a YAML map with a 'main' workflow"),
        ("main: [unclosed\n", "not valid YAML"),
    ],
)
def test_workflow_sources_that_cannot_be_joined_are_refused(source: str, message: str) -> None:
    with pytest.raises(WorkflowSourceError, match=re.escape(message)):
        compose_workflow_source(source, CALLBACKS)


def test_a_joined_source_over_the_workflows_limit_is_refused() -> None:
    padding = "# " + "x" * MAX_WORKFLOW_SOURCE_BYTES + "\n"

    with pytest.raises(WorkflowSourceError, match="at most"):
        compose_workflow_source(USER + padding, CALLBACKS)


def test_the_shipped_example_joins_with_the_shipped_subworkflows() -> None:
    combined = compose_workflow_source(
        (REPO_ROOT / "workflow" / "example.yaml").read_text(),
        (REPO_ROOT / "workflow" / "callbacks.yaml").read_text(),
    )

    assert {"main", "getCallbackURL", "waitForResponse"} <= set(yaml.safe_load(combined))


# --- packaging ----------------------------------------------------------------
def test_the_shared_workflow_env_imports_without_pulumi() -> None:
    # The local runner imports infra.workflow_env with no Pulumi engine around.
    code = (
        "import sys, infra.workflow_env; "
        "sys.exit(1 if {'pulumi', 'pulumi_gcp'} & set(sys.modules) else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False)

    assert result.returncode == 0


def test_the_package_exports_the_component() -> None:
    import infra

    assert infra.CallbackBridge.__name__ == "CallbackBridge"
    assert infra.TYPE_TOKEN == "workflow-callbacks:index:CallbackBridge"
