"""The Pulumi program under mocks: what it registers, how, and what it exports."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from infra.args import compose_workflow_source
from infra.component import TYPE_TOKEN, CallbackBridge
from infra.settings import SettingsError
from infra.workflow_env import WaitSettings, workflow_env_vars

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_NUMBER = "123456789012"

FUNCTION = "gcp:cloudfunctionsv2/function:Function"
WORKFLOW = "gcp:workflows/workflow:Workflow"
DATABASE = "gcp:firestore/database:Database"
FIELD = "gcp:firestore/field:Field"
BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
SERVICE = "gcp:projects/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
SLEEP = "time:index/sleep:Sleep"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"

FUNCTION_SA = "serviceAccount:callbacks-dev-fn@my-project.iam.gserviceaccount.com"
WORKFLOW_SA = "serviceAccount:callbacks-dev-wf@my-project.iam.gserviceaccount.com"
BUILD_SA = "serviceAccount:callbacks-dev-build@my-project.iam.gserviceaccount.com"
FUNCTION_URL = "https://europe-west1-my-project.cloudfunctions.net/callbacks-dev"


def main_workflow(deployment):
    """The user's workflow (the verification workflow is the other one)."""
    return deployment.named("callbacks-workflow")


def test_runs_with_only_project_and_region(deploy_as_is) -> None:
    deployment = deploy_as_is()

    assert deployment.one(FUNCTION) and main_workflow(deployment) and deployment.one(DATABASE)
    assert set(deployment.outputs) >= {
        "functionUrl",
        "callbackUrlTemplate",
        "workflowName",
        "workflowId",
        "firestoreDatabase",
        "callbacksCollection",
        "gcloudRunCommand",
    }


def test_every_resource_is_a_child_of_the_component(deploy) -> None:
    deployment = deploy()

    component = deployment.one(TYPE_TOKEN)
    children = [r for r in deployment.resources if r is not component]
    assert len(children) > 20
    assert all(child.parent == component.urn for child in children), [
        c.name for c in children if c.parent != component.urn
    ]


def test_function_is_a_gen2_python_function_with_the_contract_environment(deploy) -> None:
    deployment = deploy()
    function = deployment.one(FUNCTION).inputs
    bucket = deployment.one(BUCKET).inputs
    source_object = deployment.one(OBJECT).inputs

    assert function["location"] == "europe-west1"
    assert function["buildConfig"]["runtime"] == "python313"
    assert function["buildConfig"]["entryPoint"] == "processEntry"
    assert function["buildConfig"]["serviceAccount"] == (
        "projects/my-project/serviceAccounts/callbacks-dev-build@my-project.iam.gserviceaccount.com"
    )
    assert function["buildConfig"]["source"]["storageSource"] == {
        "bucket": bucket["name"],
        "object": source_object["name"],
    }
    service = function["serviceConfig"]
    assert service["serviceAccountEmail"] == FUNCTION_SA.removeprefix("serviceAccount:")
    assert service["ingressSettings"] == "ALLOW_ALL"
    assert service["availableMemory"] == "256Mi"
    assert (service["minInstanceCount"], service["maxInstanceCount"]) == (0, 10)
    assert service["timeoutSeconds"] == 60
    assert service["environmentVariables"] == {
        "CALLBACKS_DATABASE": "callbacks-dev",
        "CALLBACKS_COLLECTION": "workflow_callbacks",
        "CALLBACKS_ALLOW_UNREGISTERED": "false",
        "CALLBACKS_MAX_BODY_BYTES": "65536",
        "CALLBACKS_ALLOWED_ORIGINS": "",
        "CALLBACKS_TTL_SECONDS": "604800",
        "GOOGLE_CLOUD_PROJECT": "my-project",
        "CALLBACKS_REGION": "europe-west1",
        "CALLBACKS_PROJECT_NUMBER": PROJECT_NUMBER,
        "THREADS": "8",
        "LOG_EXECUTION_ID": "true",
    }
    # Eight requests at once per instance, on the whole vCPU that needs.
    assert (service["maxInstanceRequestConcurrency"], service["availableCpu"]) == (8, "1")


def test_function_settings_come_from_stack_config(deploy) -> None:
    deployment = deploy(
        config={
            "functionMemory": "512Mi",
            "functionMinInstances": 1,
            "functionMaxInstances": 4,
            "functionTimeoutSeconds": 120,
            "functionRuntime": "python312",
            "allowUnregisteredCallbacks": True,
            "maxBodyBytes": 1024,
            "callbacksCollection": "approvals",
            "ttlSeconds": 90_000,
        }
    )
    function = deployment.one(FUNCTION).inputs
    service = function["serviceConfig"]

    assert function["buildConfig"]["runtime"] == "python312"
    assert service["availableMemory"] == "512Mi"
    assert (service["minInstanceCount"], service["maxInstanceCount"]) == (1, 4)
    assert service["timeoutSeconds"] == 120
    env = service["environmentVariables"]
    assert env["CALLBACKS_ALLOW_UNREGISTERED"] == "true"
    assert env["CALLBACKS_MAX_BODY_BYTES"] == "1024"
    assert env["CALLBACKS_COLLECTION"] == "approvals"
    assert env["CALLBACKS_TTL_SECONDS"] == "90000"


def test_allowed_origins_reach_the_function(deploy) -> None:
    service = (
        deploy(config={"allowedOrigins": "https://a.example, https://b.example"})
        .one(FUNCTION)
        .inputs["serviceConfig"]
    )

    assert service["environmentVariables"]["CALLBACKS_ALLOWED_ORIGINS"] == (
        "https://a.example,https://b.example"
    )


def test_apis_are_enabled_and_left_enabled_on_destroy(deploy) -> None:
    services = deploy().of_type(SERVICE)

    assert {s.inputs["service"] for s in services} >= {
        f"{api}.googleapis.com"
        for api in (
            "cloudfunctions",
            "run",
            "cloudbuild",
            "artifactregistry",
            "storage",
            "firestore",
            "workflows",
            "logging",
            "iam",
            "cloudresourcemanager",
        )
    }
    assert all(s.inputs["disableOnDestroy"] is False for s in services)


def test_resources_wait_for_the_apis_they_use(deploy) -> None:
    deployment = deploy()

    def apis_of(resource_type: str) -> set[str]:
        deps = deployment.dependency_types(deployment.of_type(resource_type)[0])
        return {name.removeprefix("callbacks-api-") for type_, name in deps if type_ == SERVICE}

    assert apis_of(FUNCTION) >= {"cloudfunctions", "run", "cloudbuild", "artifactregistry"}
    assert apis_of(WORKFLOW) >= {"workflows"}
    assert apis_of(DATABASE) == {"firestore"}
    assert apis_of(FIELD) == {"firestore"}
    assert apis_of(BUCKET) == {"storage"}
    assert apis_of(OBJECT) == {"storage"}
    assert apis_of(ACCOUNT) == {"iam"}
    assert apis_of(INVOKER) == {"run"}
    assert apis_of("gcp:projects/iAMMember:IAMMember") == {"cloudresourcemanager", "iam"}


GRANTS = {
    "callbacks-function-callback-sender",
    "callbacks-build-logwriter",
    "callbacks-build-image-writer",
    "callbacks-build-staged-source",
    "callbacks-build-source-reader",
    "callbacks-function-data",
    "callbacks-workflow-data",
    "callbacks-workflow-logwriter",
}


def test_function_and_workflow_wait_for_the_grants_to_take_effect(deploy) -> None:
    deployment = deploy()
    sleep = deployment.one(SLEEP)

    # The wait starts once every grant has been made, and is made again when one is replaced.
    assert {name for _, name in deployment.dependency_types(sleep)} == GRANTS
    # Google: grants take about 2 minutes to take effect (iamPropagationSeconds).
    assert sleep.inputs["createDuration"] == "120s"
    assert len(sleep.inputs["triggers"]) == len(GRANTS)
    for resource in (deployment.one(FUNCTION), *deployment.of_type(WORKFLOW)):
        deps = {name for _, name in deployment.dependency_types(resource)}
        assert "callbacks-iam-propagation" in deps, resource.name
    function_deps = {name for _, name in deployment.dependency_types(deployment.one(FUNCTION))}
    assert {"callbacks-source-archive", "callbacks-database"} <= function_deps


def test_the_propagation_wait_is_a_setting_and_zero_depends_on_the_grants_directly(deploy):
    assert (
        deploy(config={"iamPropagationSeconds": 300}).one(SLEEP).inputs["createDuration"] == "300s"
    )

    deployment = deploy(config={"iamPropagationSeconds": 0})
    assert deployment.of_type(SLEEP) == []
    function_deps = {name for _, name in deployment.dependency_types(deployment.one(FUNCTION))}
    assert GRANTS - {"callbacks-workflow-logwriter", "callbacks-workflow-data"} <= (function_deps)


def test_service_accounts_get_only_the_roles_they_need(deploy) -> None:
    # What each custom role holds, and each condition: tests/infra/test_iam.py.
    deployment = deploy()
    roles = {(member, role) for member, role, _ in deployment.project_roles()}

    def custom(key: str) -> str:
        return deployment.custom_role(key).outputs["name"]

    assert roles == {
        (FUNCTION_SA, custom("function-data")),
        (FUNCTION_SA, custom("callback-sender")),
        (WORKFLOW_SA, custom("workflow-data")),
        (WORKFLOW_SA, "roles/logging.logWriter"),
        (BUILD_SA, "roles/logging.logWriter"),
        (BUILD_SA, "roles/storage.objectViewer"),
    }

    reader = deployment.one(BUCKET_MEMBER).inputs
    assert reader == {
        "bucket": deployment.one(BUCKET).inputs["name"],
        "role": "roles/storage.objectViewer",
        "member": BUILD_SA,
    }


def test_database_condition_can_be_turned_off(deploy) -> None:
    deployment = deploy(config={"restrictDataAccessToDatabase": False})
    data_roles = {
        deployment.custom_role(key).outputs["name"] for key in ("function-data", "workflow-data")
    }

    assert len(data_roles) == 2
    assert [
        condition for _, role, condition in deployment.project_roles() if role in data_roles
    ] == [None, None]


def test_public_invocation_is_run_invoker_for_all_users(deploy) -> None:
    deployment = deploy()
    invoker = deployment.one(INVOKER).inputs

    assert invoker == {
        "project": "my-project",
        "location": "europe-west1",
        "name": "projects/my-project/locations/europe-west1/services/callbacks-dev",
        "role": "roles/run.invoker",
        "member": "allUsers",
    }


def test_private_function_has_no_public_binding(deploy) -> None:
    deployment = deploy(config={"allowUnauthenticated": False})

    assert deployment.of_type(INVOKER) == []
    assert deployment.one(FUNCTION)


def test_a_database_is_created_per_stack_with_deletion_settings_from_config(deploy) -> None:
    default = deploy().one(DATABASE).inputs
    assert default["name"] == "callbacks-dev"
    assert default["type"] == "FIRESTORE_NATIVE"
    assert default["locationId"] == "europe-west1"
    assert default["deletionPolicy"] == "DELETE"
    assert default["deleteProtectionState"] == "DELETE_PROTECTION_DISABLED"

    protected = deploy(
        config={
            "firestoreLocation": "eur3",
            "firestoreDeletionPolicy": "ABANDON",
            "firestoreDeleteProtection": True,
        }
    ).one(DATABASE)
    assert protected.inputs["locationId"] == "eur3"
    assert protected.inputs["deletionPolicy"] == "ABANDON"
    assert protected.inputs["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"


def test_an_existing_database_is_used_instead_of_creating_one(deploy) -> None:
    deployment = deploy(config={"firestoreDatabase": "(default)"})

    assert deployment.of_type(DATABASE) == []
    env = deployment.one(FUNCTION).inputs["serviceConfig"]["environmentVariables"]
    assert env["CALLBACKS_DATABASE"] == "(default)"
    assert main_workflow(deployment).inputs["userEnvVars"]["CALLBACKS_DATABASE"] == "(default)"
    assert deployment.outputs["firestoreDatabase"] == "(default)"


def test_the_ttl_policy_of_a_database_the_stack_does_not_own_is_left_alone(deploy) -> None:
    # It is a setting of that database's collection group: another stack may
    # rely on it, and destroying this stack would remove it.
    assert deploy(config={"firestoreDatabase": "shared-db"}).of_type(FIELD) == []

    managed = ttl_field(
        deploy(config={"firestoreDatabase": "shared-db", "manageTtlOnExistingDatabase": True})
    )
    assert managed.inputs["database"] == "shared-db"
    assert not managed.retain_on_delete


def test_fixed_names_are_deleted_before_they_are_replaced(deploy) -> None:
    # A new location replaces the database and the bucket under the same
    # name: creating first would fail with ALREADY_EXISTS.
    deployment = deploy()

    assert deployment.one(DATABASE).delete_before_replace
    assert deployment.one(BUCKET).delete_before_replace
    # One TTL policy per database and field path: never two at once.
    assert all(field.delete_before_replace for field in deployment.of_type(FIELD))
    assert not deployment.one(FUNCTION).delete_before_replace


@pytest.mark.parametrize(("policy", "kept"), [("DELETE", False), ("ABANDON", True)])
def test_an_abandoned_database_keeps_its_ttl_policy(deploy, policy, kept) -> None:
    fields = deploy(config={"firestoreDeletionPolicy": policy}).of_type(FIELD)

    assert [field.retain_on_delete for field in fields] == [kept] * 4


def test_ttl_policy_on_expire_at_of_the_callbacks_collection(deploy) -> None:
    field = ttl_field(deploy(config={"callbacksCollection": "approvals"})).inputs

    assert field == {
        "project": "my-project",
        "database": "callbacks-dev",
        "collection": "approvals",
        "field": "expireAt",
        "ttlConfig": {},
        "indexConfig": {},
    }


def test_growing_timestamps_are_not_indexed_one_field_change_at_a_time(deploy) -> None:
    deployment = deploy()
    fields = {f.inputs["field"]: f for f in deployment.of_type(FIELD)}

    assert set(fields) == {"expireAt", "createdAt", "receivedAt", "answeredAt"}
    for name in ("createdAt", "receivedAt", "answeredAt"):
        assert fields[name].inputs["indexConfig"] == {}
        assert "ttlConfig" not in fields[name].inputs
    # A chain: each field change waits for the one before.
    chain = ["expireAt", "createdAt", "receivedAt", "answeredAt"]
    for before, after in itertools.pairwise(chain):
        assert fields[before].urn in fields[after].dependencies, after


def ttl_field(deployment):
    [field] = [f for f in deployment.of_type(FIELD) if "ttlConfig" in f.inputs]
    return field


def test_workflow_gets_the_shared_environment_and_its_own_account(deploy) -> None:
    workflow = main_workflow(deploy()).inputs

    assert workflow["name"] == "callbacks-dev"
    assert workflow["region"] == "europe-west1"
    assert workflow["serviceAccount"] == (
        "projects/my-project/serviceAccounts/callbacks-dev-wf@my-project.iam.gserviceaccount.com"
    )
    assert workflow["userEnvVars"] == workflow_env_vars(
        FUNCTION_URL, "callbacks-dev", "workflow_callbacks", WaitSettings()
    )
    assert workflow["callLogLevel"] == "LOG_ERRORS_ONLY"
    assert workflow["deletionProtection"] is False


def test_wait_settings_and_workflow_options_come_from_config(deploy) -> None:
    workflow = main_workflow(
        deploy(
            config={
                "pollInitialSeconds": "0.5",
                "pollMultiplier": "1.5",
                "pollMaxSeconds": "30",
                "timeoutSeconds": 600,
                "ttlSeconds": 3600,
                "callLogLevel": "LOG_NONE",
                "workflowDeletionProtection": True,
            }
        )
    )

    assert workflow.inputs["userEnvVars"] == workflow_env_vars(
        FUNCTION_URL, "callbacks-dev", "workflow_callbacks", WaitSettings(0.5, 1.5, 30, 600, 3600)
    )
    assert workflow.inputs["callLogLevel"] == "LOG_NONE"
    assert workflow.inputs["deletionProtection"] is True


def test_default_workflow_is_the_example_with_the_callback_subworkflows(deploy_as_is) -> None:
    source = main_workflow(deploy_as_is()).inputs["sourceContents"]
    example = (REPO_ROOT / "workflow" / "example.yaml").read_text()
    callbacks = (REPO_ROOT / "workflow" / "callbacks.yaml").read_text()

    assert source.startswith(example.rstrip("\n"))
    assert source.rstrip("\n").endswith(callbacks.rstrip("\n"))


def test_the_verification_workflow_is_deployed_beside_the_users_workflow(deploy) -> None:
    deployment = deploy(
        config={"callLogLevel": "LOG_ALL_CALLS", "workflowDeletionProtection": True}
    )
    main = main_workflow(deployment)
    verify = deployment.named("callbacks-verify-workflow")

    assert verify.inputs["name"] == "callbacks-dev-verify"
    # workflow/verify.yaml with the callback subworkflows, joined as the
    # user's workflow is.
    verify_yaml = (REPO_ROOT / "workflow" / "verify.yaml").read_text()
    callbacks = (REPO_ROOT / "workflow" / "callbacks.yaml").read_text()
    assert verify.inputs["sourceContents"] == compose_workflow_source(verify_yaml, callbacks)
    # Same identity, environment, region, logging and readiness as the user's.
    for key in ("serviceAccount", "userEnvVars", "region", "project", "callLogLevel", "labels"):
        assert verify.inputs[key] == main.inputs[key], key
    assert set(verify.dependencies) == set(main.dependencies)
    # It keeps nothing worth protecting.
    assert (main.inputs["deletionProtection"], verify.inputs["deletionProtection"]) == (True, False)


def test_a_users_workflow_file_is_deployed_with_the_callback_subworkflows(deploy, tmp_path) -> None:
    mine = tmp_path / "approval.yaml"
    mine.write_text("main:\n  steps:\n    - done:\n        return: 42\n")

    deployment = deploy(config={"workflowFile": str(mine)})
    source = main_workflow(deployment).inputs["sourceContents"]

    assert source.startswith(mine.read_text())
    assert "getCallbackURL:" in source and "waitForResponse:" in source


def test_the_workflow_file_is_read_once_per_run(deploy, tmp_path, monkeypatch) -> None:
    mine = tmp_path / "approval.yaml"
    mine.write_text("main:\n  steps:\n    - done:\n        return: 42\n")
    reads: list[Path] = []
    real_read_text = Path.read_text

    def counting_read_text(path: Path, *args, **kwargs) -> str:
        if path == mine:
            reads.append(path)
        return real_read_text(path, *args, **kwargs)

    # Counts every read of the file, whichever code does it.
    monkeypatch.setattr(Path, "read_text", counting_read_text)

    deploy(config={"workflowFile": str(mine)})

    assert reads == [mine]


def test_outputs(deploy) -> None:
    outputs = deploy().outputs

    # Exactly the component's outputs, named once (CallbackBridge.OUTPUTS).
    assert set(outputs) == set(CallbackBridge.OUTPUTS)
    assert set(CallbackBridge.OUTPUTS.values()) <= set(CallbackBridge.__annotations__)

    assert outputs["functionUrl"] == FUNCTION_URL
    assert outputs["callbackUrlTemplate"] == (
        f"{FUNCTION_URL}?runID={{runID}}&step={{step}}&token={{token}}"
    )
    assert outputs["workflowName"] == "callbacks-dev"
    assert outputs["workflowId"] == (
        "projects/my-project/locations/europe-west1/workflows/callbacks-dev"
    )
    assert outputs["firestoreDatabase"] == "callbacks-dev"
    assert outputs["callbacksCollection"] == "workflow_callbacks"
    assert outputs["gcloudRunCommand"] == (
        "gcloud workflows run callbacks-dev --location=europe-west1 --project=my-project "
        "--data='{}'"
    )
    assert outputs["functionServiceAccount"] == FUNCTION_SA.removeprefix("serviceAccount:")
    assert outputs["workflowServiceAccount"] == WORKFLOW_SA.removeprefix("serviceAccount:")
    assert outputs["buildServiceAccount"] == BUILD_SA.removeprefix("serviceAccount:")
    assert re.fullmatch(r"function-source-[0-9a-f]{20}\.zip", outputs["sourceObject"])
    # What `python -m ops verify` needs to start the verification workflow.
    assert outputs["verifyWorkflowName"] == "callbacks-dev-verify"
    assert (outputs["project"], outputs["region"]) == ("my-project", "europe-west1")


def _physical_names(deployment) -> set[tuple[str, str]]:
    names = {(ACCOUNT, r.inputs["accountId"]) for r in deployment.of_type(ACCOUNT)}
    for type_ in (FUNCTION, WORKFLOW, DATABASE, BUCKET):
        names |= {(type_, r.inputs["name"]) for r in deployment.of_type(type_)}
    names |= {(REPOSITORY, r.inputs["repositoryId"]) for r in deployment.of_type(REPOSITORY)}
    names |= {(CUSTOM_ROLE, r.inputs["roleId"]) for r in deployment.of_type(CUSTOM_ROLE)}
    return names


def test_two_stacks_in_one_project_never_share_a_name(deploy) -> None:
    dev = _physical_names(deploy(stack="dev"))
    prod = _physical_names(deploy(stack="prod"))

    # 3 accounts, function, 2 workflows, database, bucket, repository, 3 roles.
    assert len(dev) == len(prod) == 12
    assert {name for _, name in dev}.isdisjoint({name for _, name in prod})


def test_stack_names_that_differ_only_in_punctuation_do_not_collide(deploy) -> None:
    dotted = _physical_names(deploy(stack="team.a"))
    dashed = _physical_names(deploy(stack="team-a"))

    assert {name for _, name in dotted}.isdisjoint({name for _, name in dashed})


def test_long_stack_names_still_fit_google_cloud_limits(deploy) -> None:
    deployment = deploy(stack="Feature_Branch.with-a-very-long-name-for-review-apps")

    for account in deployment.of_type(ACCOUNT):
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account.inputs["accountId"])
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", deployment.one(DATABASE).inputs["name"])
    assert len(deployment.one(BUCKET).inputs["name"]) <= 63
    assert len(deployment.one(FUNCTION).inputs["name"]) <= 49
    assert all(len(w.inputs["name"]) <= 64 for w in deployment.of_type(WORKFLOW))
    assert re.fullmatch(
        r"[a-z][a-z0-9-]{0,61}[a-z0-9]", deployment.one(REPOSITORY).inputs["repositoryId"]
    )
    # IAM: 3 to 64 of [a-zA-Z0-9_.], the random suffix included.
    for role in deployment.of_type(CUSTOM_ROLE):
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", role.inputs["roleId"]), role.inputs["roleId"]


def test_source_object_follows_the_function_code(deploy, function_copy) -> None:
    config = {"functionSourceDir": str(function_copy)}

    def object_name() -> str:
        return deploy(config=config).one(OBJECT).inputs["name"]

    first = object_name()
    assert object_name() == first, "an unchanged folder must not redeploy"

    (function_copy / "__pycache__").mkdir(exist_ok=True)
    (function_copy / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00cache")
    assert object_name() == first, "byte-code caches must not redeploy"

    (function_copy / "main.py").write_text("# changed\n", encoding="utf-8")
    changed = object_name()
    assert changed != first

    function = deploy(config=config).one(FUNCTION).inputs
    assert function["buildConfig"]["source"]["storageSource"]["object"] == changed


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"callLogLevel": "LOG_SOME"}, "callLogLevel 'LOG_SOME' is not one of"),
        ({"firestoreDeletionPolicy": "KEEP"}, "firestoreDeletionPolicy 'KEEP' is not one of"),
        ({"functionMinInstances": -1}, "functionMinInstances must not be negative"),
        ({"maxBodyBytes": -5}, "maxBodyBytes must be greater than 0"),
        ({"maxBodyBytes": 131_073}, "maxBodyBytes 131073 is over 131072: a waiting workflow"),
        ({"pollInitialSeconds": "-1"}, "pollInitialSeconds must be greater than 0"),
        (
            {"pollInitialSeconds": "30", "pollMaxSeconds": "10"},
            "pollMaxSeconds must not be below pollInitialSeconds",
        ),
        ({"functionMaxInstances": "many"}, "functionMaxInstances 'many' is not a whole number"),
        ({"allowUnauthenticated": "yes"}, "allowUnauthenticated 'yes' is not true or false"),
        ({"firestoreLocation": "Mars"}, "firestoreLocation 'Mars' is not a Firestore location"),
        ({"workflowFile": "no/such/file.yaml"}, "cannot read the workflowFile"),
    ],
)
def test_bad_config_fails_clearly_before_anything_is_created(
    deploy_catching, config, message
) -> None:
    deployment, error = deploy_catching(config=config)

    assert isinstance(error, SettingsError)
    assert message in str(error)
    assert "stack 'dev' has invalid configuration" in str(error)
    assert deployment.resources == []


def test_every_problem_is_reported_at_once(deploy_catching) -> None:
    deployment, error = deploy_catching(
        config={"callLogLevel": "VERBOSE", "functionMinInstances": -2, "pollMultiplier": "0.5"},
        project=None,
    )

    assert isinstance(error, SettingsError)
    for expected in (
        "gcp:project is not set",
        "callLogLevel 'VERBOSE'",
        "functionMinInstances must not be negative",
        "pollMultiplier must be at least 1",
    ):
        assert expected in str(error)
    assert deployment.resources == []
