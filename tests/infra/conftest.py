"""Run the Pulumi program under mocks and hand back what it registered.

The program (__main__.py) runs as `pulumi up` would run it, through
runpy, against a mock engine that records every registration: type, name,
inputs (camelCase keys, as the engine sees them), parent and dependencies.
"""

from __future__ import annotations

import runpy
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as runtime_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM = REPO_ROOT / "__main__.py"
PROJECT_NAME = "workflow-callbacks"
PROJECT_NUMBER = "123456789012"
RANDOM_ID = "random:index/randomId:RandomId"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"

# __main__.py imports the infra package the way `pulumi up` does: from the
# project folder on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    urn: str
    parent: str
    dependencies: list[str]
    delete_before_replace: bool = False
    retain_on_delete: bool = False


@dataclass
class Deployment:
    resources: list[Registered]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Registered:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def dependency_types(self, resource: Registered) -> list[tuple[str, str]]:
        """(type, name) of what ``resource`` depends on."""
        return [(self.by_urn(u).type, self.by_urn(u).name) for u in resource.dependencies]

    def custom_role(self, key: str) -> Registered:
        """The custom role ``key`` (callback-sender, function-data, workflow-data)."""
        return next(r for r in self.of_type(CUSTOM_ROLE) if r.name.endswith(f"-{key}-role"))

    def project_roles(self) -> list[tuple[str, str, str | None]]:
        """(member, role, condition expression) for every project IAM member."""
        return [
            (
                r.inputs["member"],
                r.inputs["role"],
                (r.inputs.get("condition") or {}).get("expression"),
            )
            for r in self.of_type("gcp:projects/iAMMember:IAMMember")
        ]


class FakeCloud(pulumi.runtime.Mocks):
    """Fills in what Google Cloud would compute: emails, URLs, ids, service names.

    Every run creates every resource afresh, as a first `pulumi up` would:
    a RandomId gets new random bytes each time.
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        state = dict(inputs)
        project = inputs.get("project", "mock-project")
        resource_id = f"{args.name}_id"
        if args.typ == RANDOM_ID:
            # As pulumi-random does: byteLength random bytes, as hex and more.
            random_bytes = secrets.token_bytes(int(inputs["byteLength"]))
            state |= {"hex": random_bytes.hex(), "dec": str(int.from_bytes(random_bytes))}
            resource_id = random_bytes.hex()
        elif args.typ == "gcp:artifactregistry/repository:Repository":
            state["name"] = inputs["repositoryId"]
            resource_id = (
                f"projects/{project}/locations/{inputs['location']}"
                f"/repositories/{inputs['repositoryId']}"
            )
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            state |= {
                "email": email,
                "member": f"serviceAccount:{email}",
                "name": f"projects/{project}/serviceAccounts/{email}",
            }
            resource_id = state["name"]
        elif args.typ == "gcp:cloudfunctionsv2/function:Function":
            location, name = inputs["location"], inputs["name"]
            service = f"projects/{project}/locations/{location}/services/{name}"
            state["url"] = f"https://{location}-{project}.cloudfunctions.net/{name}"
            state["serviceConfig"] = {**inputs.get("serviceConfig", {}), "service": service}
            resource_id = f"projects/{project}/locations/{location}/functions/{name}"
        elif args.typ == "gcp:workflows/workflow:Workflow":
            resource_id = (
                f"projects/{project}/locations/{inputs['region']}/workflows/{inputs['name']}"
            )
        elif args.typ == CUSTOM_ROLE:
            state["name"] = f"projects/{project}/roles/{inputs['roleId']}"
            resource_id = state["name"]
        elif args.typ == "gcp:firestore/database:Database":
            resource_id = f"projects/{project}/databases/{inputs['name']}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId", "mock-project")
            return {"projectId": project, "number": PROJECT_NUMBER, "name": project}
        return {}


class RememberingCloud(FakeCloud):
    """FakeCloud across several `pulumi up`s of one stack, for what the engine keeps.

    The engine creates a RandomId once and keeps its outputs for as long as
    its inputs (byteLength, keepers) stay the same; a change to any of them
    replaces it with new random bytes. The resources are remembered by type
    and name, as the engine does by URN within a stack.
    """

    def __init__(self) -> None:
        self.remembered: dict[tuple[str, str], tuple[dict, tuple[str, dict]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ != RANDOM_ID:
            return super().new_resource(args)
        key, inputs = (args.typ, args.name), dict(args.inputs)
        if key in self.remembered and self.remembered[key][0] == inputs:
            return self.remembered[key][1]
        created = super().new_resource(args)
        self.remembered[key] = (inputs, created)
        return created


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """Keeps what the plain mock monitor drops: inputs, parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.requests: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.requests[response.urn] = request
        return response


def run_program(
    stack: str = "dev",
    config: dict[str, Any] | None = None,
    project: str | None = "my-project",
    region: str | None = "europe-west1",
    cloud: FakeCloud | None = None,
) -> Deployment:
    """Run __main__.py for ``stack`` with project config ``config`` (keys without namespace)."""
    deployment, error = run_program_catching(stack, config, project, region, cloud=cloud)
    if error is not None:
        raise error
    return deployment


def run_program_catching(
    stack: str = "dev",
    config: dict[str, Any] | None = None,
    project: str | None = "my-project",
    region: str | None = "europe-west1",
    program: Callable[[], None] | None = None,
    cloud: FakeCloud | None = None,
) -> tuple[Deployment, Exception | None]:
    """Like run_program, but hands back the program's exception with what got registered.

    ``program`` replaces __main__.py, to drive the component the way another
    Pulumi program would. ``cloud`` (a fresh FakeCloud by default) may be
    shared by several runs, as one stack's state is by several `pulumi up`s.
    """
    all_config = {
        f"{PROJECT_NAME}:{key}": _config_text(value) for key, value in (config or {}).items()
    }
    if project is not None:
        all_config["gcp:project"] = project
    if region is not None:
        all_config["gcp:region"] = region
    pulumi.runtime.set_all_config(all_config)

    monitor = RecordingMonitor(cloud or FakeCloud())
    # A fresh root stack per run, so one test's outputs never leak into another's.
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT_NAME, stack=stack, monitor=monitor)
    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any] | None:
        if program is None:
            runpy.run_path(str(PROGRAM), run_name="__main__")
        else:
            program()
        root = runtime_settings.get_root_resource()
        outputs = dict(root.outputs) if root is not None else {}  # type: ignore[attr-defined]
        return pulumi.Output.all(**outputs).apply(captured.update) if outputs else None

    error: Exception | None = None
    try:
        run()
    except Exception as raised:
        error = raised
    resources = [_registered(monitor, urn, request) for urn, request in monitor.requests.items()]
    return Deployment(resources=resources, outputs=captured), error


def _registered(monitor: RecordingMonitor, urn: str, request: Any) -> Registered:
    inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
    registration = monitor.resources.get(urn)
    return Registered(
        type=request.type,
        name=request.name,
        inputs=_plain(inputs),
        outputs=_plain(registration.state) if registration else {},
        urn=urn,
        parent=request.parent,
        dependencies=list(request.dependencies),
        delete_before_replace=request.deleteBeforeReplace,
        retain_on_delete=request.retainOnDelete,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _config_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


MINIMAL_WORKFLOW = "main:\n  steps:\n    - done:\n        return: ok\n"


@pytest.fixture
def own_workflow(tmp_path: Path) -> Path:
    """A small user workflow, so most tests do not depend on workflow/example.yaml's content."""
    path = tmp_path / "own-workflow.yaml"
    path.write_text(MINIMAL_WORKFLOW, encoding="utf-8")
    return path


@pytest.fixture
def remembering_cloud() -> RememberingCloud:
    """One stack's cloud across several runs (pass it as ``cloud=``)."""
    return RememberingCloud()


@pytest.fixture
def deploy_as_is() -> Callable[..., Deployment]:
    """Run the program with exactly the given config (the example workflow by default)."""
    return run_program


@pytest.fixture
def deploy(own_workflow: Path) -> Callable[..., Deployment]:
    """Run the program with the small user workflow unless the config names another."""

    def run(stack: str = "dev", config: dict[str, Any] | None = None, **kwargs: Any) -> Deployment:
        return run_program(stack, {"workflowFile": str(own_workflow), **(config or {})}, **kwargs)

    return run


@pytest.fixture
def deploy_catching(own_workflow: Path) -> Callable[..., tuple[Deployment, Exception | None]]:
    def run(
        stack: str = "dev", config: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[Deployment, Exception | None]:
        config = {"workflowFile": str(own_workflow), **(config or {})}
        return run_program_catching(stack, config, **kwargs)

    return run


@pytest.fixture
def function_copy(tmp_path: Path) -> Path:
    """A private copy of function/, so tests can change files without touching the real one."""
    target = tmp_path / "function"
    source = REPO_ROOT / "function"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
