"""IAM under mocks: custom role ids that survive a destroy and re-create, least privilege.

Each identity's grants are derived from the calls its code makes; the tests
here check the derivation against the code (function/, workflow/callbacks.yaml)
as well as what the program registers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from infra.component import (
    FUNCTION_FIRESTORE_CALLS,
    WORKFLOW_FIRESTORE_CALLS,
    permissions_of,
)
from infra.names import CUSTOM_ROLES

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_NUMBER = "123456789012"
RANDOM_ID = "random:index/randomId:RandomId"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"
FUNCTION_SA = "serviceAccount:callbacks-dev-fn@my-project.iam.gserviceaccount.com"
WORKFLOW_SA = "serviceAccount:callbacks-dev-wf@my-project.iam.gserviceaccount.com"
BUILD_SA = "serviceAccount:callbacks-dev-build@my-project.iam.gserviceaccount.com"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
REPOSITORY_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
DATABASE_ONLY = 'resource.name == "projects/my-project/databases/callbacks-dev"'


def role_ids(deployment) -> dict[str, str]:
    return {key: deployment.custom_role(key).inputs["roleId"] for key in CUSTOM_ROLES}


def binding_of(deployment, key: str) -> tuple[str, str | None]:
    """(member, condition expression) of the one project grant of custom role ``key``."""
    role_name = deployment.custom_role(key).outputs["name"]
    [binding] = [(m, c) for m, r, c in deployment.project_roles() if r == role_name]
    return binding


# --- custom role ids -------------------------------------------------------
def test_every_creation_of_a_stack_gets_new_role_ids(deploy) -> None:
    # `pulumi destroy` then `pulumi up` of the same stack: every resource is
    # created again, RandomIds included. Google refuses a deleted role's id
    # for 7 to 37 days, so the new roles must not reuse it.
    first, second = role_ids(deploy()), role_ids(deploy())

    assert set(first) == {"callback-sender", "function-data", "workflow-data"}
    for key in CUSTOM_ROLES:
        assert first[key] != second[key], key
        assert first[key].startswith(f"callbacks_dev_{key.replace('-', '_')}_"), first[key]


def test_a_role_id_is_its_prefix_and_the_hex_of_its_own_random_id(deploy) -> None:
    deployment = deploy()

    for key in CUSTOM_ROLES:
        suffix = deployment.named(f"callbacks-{key}-role-suffix")
        assert suffix.type == RANDOM_ID
        assert suffix.inputs["byteLength"] == 4
        # Stable inputs only: nothing in them changes from one `up` to the next.
        assert suffix.inputs["keepers"] == {
            "project": "my-project",
            "rolePrefix": f"callbacks_dev_{key.replace('-', '_')}",
        }
        role_id = deployment.custom_role(key).inputs["roleId"]
        assert role_id == f"callbacks_dev_{key.replace('-', '_')}_{suffix.outputs['hex']}"
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role_id)


def test_an_up_without_changes_keeps_every_role_id(deploy, remembering_cloud) -> None:
    # One stack's state across several `pulumi up`s: the engine keeps a
    # RandomId's bytes until one of its inputs changes.
    stack = remembering_cloud
    first = role_ids(deploy(cloud=stack))

    assert role_ids(deploy(cloud=stack)) == first
    # Other settings change other resources, never the roles' ids.
    assert role_ids(deploy(config={"functionMemory": "512Mi"}, cloud=stack)) == first
    # A new project replaces the roles (their project is part of their
    # identity): they get new suffixes there as well.
    moved = role_ids(deploy(project="other-project", cloud=stack))
    assert all(moved[key] != first[key] for key in CUSTOM_ROLES)


def test_role_ids_of_long_stack_names_fit_googles_limit(deploy) -> None:
    deployment = deploy(
        stack="Feature_Branch.with-a-very-long-name-for-review-apps",
        config={"namePrefix": "approvals"},
    )

    ids = [role.inputs["roleId"] for role in deployment.of_type(CUSTOM_ROLE)]
    assert len(ids) == 3 and len(set(ids)) == 3
    for role_id in ids:
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role_id), role_id
        assert re.search(r"_[0-9a-f]{8}$", role_id), "the random suffix survives the cut"


# --- the receiver function -------------------------------------------------
def test_the_receiver_holds_exactly_the_firestore_permissions_of_its_calls(deploy) -> None:
    deployment = deploy()
    role = deployment.custom_role("function-data")

    assert role.inputs["permissions"] == [
        "datastore.entities.create",
        "datastore.entities.delete",
        "datastore.entities.get",
        "datastore.entities.update",
    ]
    # roles/datastore.user would add list (every pending registration, tokens
    # included), transactions, indexes...
    assert role.inputs["permissions"] == permissions_of(FUNCTION_FIRESTORE_CALLS)
    assert binding_of(deployment, "function-data") == (FUNCTION_SA, DATABASE_ONLY)
    assert not any(role.startswith("roles/datastore.") for _, role, _ in deployment.project_roles())


def test_the_receivers_permission_list_names_each_firestore_call_it_makes() -> None:
    # The calls in function/: reads are DocumentReference.get, writes are
    # built by firestore_commit. A new kind of call must get its permission here.
    code = "\n".join(path.read_text() for path in sorted((REPO_ROOT / "function").glob("*.py")))
    writes = {
        f"firestore_commit.{kind}"
        for kind in re.findall(r"\bfirestore_commit\.(create|update|delete|set|\w+_write)\(", code)
    }
    assert not re.search(r"\bbatch\.\w+\(", code), "writes go through firestore_commit"
    reads = {"DocumentReference.get"} if re.search(r"\.get\(retry=RPC_RETRY", code) else set()
    if re.search(r"\bclient\.get_all\(", code):
        reads.add("Client.get_all")

    assert writes | reads == set(FUNCTION_FIRESTORE_CALLS)
    # No queries, no transactions: nothing that would need list or databases.get.
    assert not re.search(r"\.(stream|where|list_documents|transaction)\(", code)


def test_the_receiver_may_send_callbacks_and_nothing_more(deploy) -> None:
    # Push delivery: workflows.callbacks.send alone, through a custom role
    # (Workflows Invoker would also let it start executions). Project-wide,
    # unconditioned: Workflows roles are granted on projects only, and IAM
    # conditions on resource names do not reach Workflows (a condition would
    # deny every forward). docs/deploy.md lists it as a residual risk.
    deployment = deploy()

    assert deployment.custom_role("callback-sender").inputs["permissions"] == [
        "workflows.callbacks.send"
    ]
    assert binding_of(deployment, "callback-sender") == (FUNCTION_SA, None)
    assert (CUSTOM_ROLE, "callbacks-callback-sender-role") in deployment.dependency_types(
        deployment.named("callbacks-function-callback-sender")
    )


# --- the workflow ----------------------------------------------------------
def _connector_calls(node: Any) -> list[dict]:
    """Every step body of workflow/callbacks.yaml that calls a googleapis connector."""
    found: list[dict] = []
    if isinstance(node, dict):
        if str(node.get("call", "")).startswith("googleapis."):
            found.append(node)
        for value in node.values():
            found += _connector_calls(value)
    elif isinstance(node, list):
        for value in node:
            found += _connector_calls(value)
    return found


def _assign_entries(node: Any) -> list[dict]:
    """Every assign entry (a one-key map) anywhere under ``node``, switch conditions included."""
    found: list[dict] = []
    if isinstance(node, dict):
        for entry in node.get("assign") or []:
            if isinstance(entry, dict):
                found.append(entry)
        for value in node.values():
            found += _assign_entries(value)
    elif isinstance(node, list):
        for value in node:
            found += _assign_entries(value)
    return found


def test_the_workflows_permission_list_names_each_connector_call_it_makes() -> None:
    source = yaml.safe_load((REPO_ROOT / "workflow" / "callbacks.yaml").read_text())
    calls = _connector_calls(source)

    assert {call["call"] for call in calls} == set(WORKFLOW_FIRESTORE_CALLS)
    # The commit creates (Google: "exists precondition set to false",
    # datastore.entities.create), and updates only the callback document,
    # over a tombstone, under the precondition callbackCondition names
    # (exists: false, or the tombstone's updateTime): never a write without
    # a precondition, which could create or update anything.
    commits = _connector_calls(source["getCallbackURL"])
    commits = [c for c in commits if c["call"].endswith(".documents.commit")]
    writes = [write for commit in commits for write in commit["args"]["body"]["writes"]]
    assert len(writes) == 2 and all(set(write) == {"update", "currentDocument"} for write in writes)
    key, callback = writes
    assert key["currentDocument"] == {"exists": False}
    assert callback["currentDocument"] == "${callbackCondition}"
    conditions = [
        entry["callbackCondition"]
        for entry in _assign_entries(source["getCallbackURL"])
        if "callbackCondition" in entry
    ]
    assert conditions and all(set(c) in ({"exists"}, {"updateTime"}) for c in conditions)
    assert {"exists": False} in conditions
    # The patches only update: each requires the version it replaces
    # (currentDocument.updateTime), or the document (exists: true, the start
    # of an approval's wait), so none can create a document (an upsert would
    # need datastore.entities.create as well).
    patches = [c for c in calls if c["call"].endswith(".documents.patch")]
    assert patches and all(
        set(p["args"]["currentDocument"]) == {"updateTime"}
        or p["args"]["currentDocument"] == {"exists": True}
        for p in patches
    )


def test_an_approvals_commit_writes_only_under_a_precondition() -> None:
    # getApprovalURLs builds its writes in a loop (the Commit's writes are an
    # expression): every write map it assigns carries a currentDocument, and
    # each of those is exists: false or an update time read, never absent.
    source = yaml.safe_load((REPO_ROOT / "workflow" / "callbacks.yaml").read_text())
    entries = _assign_entries(source["getApprovalURLs"])
    writes = [value for entry in entries for value in entry.values()
              if isinstance(value, dict) and "update" in value]  # fmt: skip
    assert len(writes) == 3  # a link, its key document, the group
    assert all(set(write) == {"update", "currentDocument"} for write in writes)
    conditions = {
        name: value
        for entry in entries
        for name, value in entry.items()
        if name in ("absent", "versionCondition", "groupCondition")
    }
    assert conditions["absent"] == {"exists": False}
    assert set(conditions["versionCondition"]) == {"updateTime"}
    assert {write["currentDocument"] for write in writes} == {
        "${linkCondition}",
        "${absent}",
        "${groupCondition}",
    }
    group_conditions = [e["groupCondition"] for e in entries if "groupCondition" in e]
    assert all(
        c in ("${absent}", {"exists": False}) or set(c) == {"updateTime"} for c in group_conditions
    )
    [link_condition] = [e["linkCondition"] for e in entries if "linkCondition" in e]
    assert link_condition.endswith(", versionCondition, absent)}")


def test_the_workflow_gets_create_get_and_update_on_its_database_only(deploy) -> None:
    deployment = deploy()

    assert deployment.custom_role("workflow-data").inputs["permissions"] == [
        "datastore.entities.create",
        "datastore.entities.get",
        "datastore.entities.update",
    ]
    assert binding_of(deployment, "workflow-data") == (WORKFLOW_SA, DATABASE_ONLY)
    assert (WORKFLOW_SA, "roles/logging.logWriter", None) in deployment.project_roles()


def test_the_database_condition_is_googles_documented_form_for_any_database(deploy) -> None:
    # projects/P/databases/DATABASE_ID, as in Firestore's "Configure
    # per-database access permissions" and IAM's resource attributes table.
    deployment = deploy(config={"firestoreDatabase": "(default)"})

    expected = 'resource.name == "projects/my-project/databases/(default)"'
    assert binding_of(deployment, "function-data")[1] == expected
    assert binding_of(deployment, "workflow-data")[1] == expected


# --- the build -------------------------------------------------------------
def test_the_build_writes_images_to_the_stacks_own_repository_only(deploy) -> None:
    deployment = deploy()
    repository = deployment.one(REPOSITORY)
    writer = deployment.one(REPOSITORY_MEMBER).inputs

    assert repository.inputs["repositoryId"] == "callbacks-dev-images"
    assert (repository.inputs["format"], repository.inputs["location"]) == (
        "DOCKER",
        "europe-west1",
    )
    assert writer == {
        "project": "my-project",
        "location": "europe-west1",
        "repository": "callbacks-dev-images",
        "role": "roles/artifactregistry.writer",
        "member": BUILD_SA,
    }
    build = deployment.one(FUNCTION).inputs["buildConfig"]
    assert build["dockerRepository"] == (
        "projects/my-project/locations/europe-west1/repositories/callbacks-dev-images"
    )
    assert not any("artifactregistry" in role for _, role, _ in deployment.project_roles())
    # The first build waits for the grant to take effect, like the others.
    assert "callbacks-build-image-writer" in {
        name
        for _, name in deployment.dependency_types(deployment.named("callbacks-iam-propagation"))
    }


def test_the_build_reads_only_the_staged_copy_of_this_functions_source(deploy) -> None:
    deployment = deploy()

    [condition] = [
        c
        for m, r, c in deployment.project_roles()
        if (m, r) == (BUILD_SA, "roles/storage.objectViewer")
    ]
    assert condition == (
        'resource.type == "storage.googleapis.com/Object" && resource.name.startsWith('
        f'"projects/_/buckets/gcf-v2-sources-{PROJECT_NUMBER}-europe-west1/objects/")'
    )
