"""CallbackBridge: the receiver function, its Firestore database and the workflow.

One component so another Pulumi program can add the whole callback system
with one resource, and so every child shows up under it in `pulumi stack`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_gcp as gcp
from pulumi_random import RandomId
from pulumiverse_time import Sleep

from infra.args import REPO_ROOT, CallbackBridgeArgs, compose_workflow_source, read_text
from infra.function_contract import ENTRY_POINT
from infra.monitoring import add_monitoring
from infra.names import ROLE_SUFFIX_BYTES, ResourceNames, custom_role_id
from infra.source_archive import SourceArchive, build_source_archive
from infra.workflow_env import workflow_env_vars

TYPE_TOKEN = "workflow-callbacks:index:CallbackBridge"
TTL_FIELD = "expireAt"
# Timestamps that only grow, written with every registration and callback.
# Nothing queries them; indexed, they would cap the collection's writes at
# about 500 per second (Firestore's limit for sequential index values).
UNINDEXED_TIMESTAMPS = ("createdAt", "receivedAt", "answeredAt")

# Services the stack uses; cloudresourcemanager serves project IAM policy
# reads and writes, workflowexecutions serves `gcloud workflows run`.
APIS = (
    "artifactregistry",
    "cloudbuild",
    "cloudfunctions",
    "cloudresourcemanager",
    "firestore",
    "iam",
    "logging",
    "run",
    "storage",
    "workflowexecutions",
    "workflows",
)

# The verification workflow `python -m ops verify` starts, deployed beside
# the user's workflow with the same callback subworkflows appended.
VERIFY_WORKFLOW = REPO_ROOT / "workflow" / "verify.yaml"

LOG_WRITER = "roles/logging.logWriter"
SEND_CALLBACKS = "workflows.callbacks.send"

# Each identity's Firestore permissions, derived from the calls it makes,
# by Google's table of the permissions each Firestore method needs
# (https://cloud.google.com/firestore/docs/security/iam, "Required
# permissions for API methods"). Neither runs queries (datastore.entities.list)
# nor transactions (datastore.databases.get), so roles/datastore.user would
# grant more than they use: listing every pending registration, tokens
# included, in a database that may be shared.
FUNCTION_FIRESTORE_CALLS: dict[str, tuple[str, ...]] = {
    # function/callback_store.py read() and _read_decide_write():
    # DocumentReference.get is a BatchGetDocuments ("batchGet").
    "DocumentReference.get": ("datastore.entities.get",),
    # function/approval_links.py: an approval link with its group, and the
    # group's links for its page, each one batch get ("batchGet").
    "Client.get_all": ("datastore.entities.get",),
    # The Commits' writes, built in function/firestore_commit.py: create
    # carries the precondition exists: false ("commit update ... exists
    # precondition set to false").
    "firestore_commit.create": ("datastore.entities.create",),
    # update of the version read or registered (an update_time precondition:
    # the document exists), "commit update ... set to true".
    "firestore_commit.update": ("datastore.entities.update",),
    # delete of the key document ("commit delete").
    "firestore_commit.delete": ("datastore.entities.delete",),
}
WORKFLOW_FIRESTORE_CALLS: dict[str, tuple[str, ...]] = {
    # getCallbackURL's and getApprovalURLs' register: every write is an
    # update with currentDocument.exists: false (a create), except those over
    # the ended registration of an earlier wait of the step, which require
    # its update time (an update).
    "googleapis.firestore.v1.projects.databases.documents.commit": (
        "datastore.entities.create",
        "datastore.entities.update",
    ),
    # getCallbackURL's getExisting, waitForResponse's poll and sliceRead,
    # waitForApprovals' peek ("get").
    "googleapis.firestore.v1.projects.databases.documents.get": ("datastore.entities.get",),
    # getApprovalURLs' getExisting and waitForApprovals' read: a group and its
    # links in one call ("batchGet": get).
    "googleapis.firestore.v1.projects.databases.documents.batchGet": ("datastore.entities.get",),
    # waitForResponse's tombstones (takeForwarded, markConsumed, markExpired)
    # and waitForApprovals' writes (start, take, decide, expire): each carries
    # a currentDocument precondition (updateTime, or exists: true for start),
    # so the document must exist and the patch only ever updates ("patch": update).
    "googleapis.firestore.v1.projects.databases.documents.patch": ("datastore.entities.update",),
}


def permissions_of(calls: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every permission ``calls`` need, once each, sorted."""
    return sorted({permission for needed in calls.values() for permission in needed})


@dataclass(frozen=True)
class RoleSpec:
    """A custom role's content; its id is the stack's prefix plus a random suffix."""

    title: str
    description: str
    permissions: list[str]


# Keys as in infra.names.CUSTOM_ROLES.
CUSTOM_ROLE_SPECS: dict[str, RoleSpec] = {
    # Push delivery. No predefined role holds workflows.callbacks.send alone
    # (Workflows Invoker, say, also starts executions).
    "callback-sender": RoleSpec(
        "Callback sender",
        "Send HTTP callbacks to workflow executions (workflow-callbacks push).",
        [SEND_CALLBACKS],
    ),
    "function-data": RoleSpec(
        "Callback receiver data",
        "Get, create, update and delete callback documents by name (workflow-callbacks).",
        permissions_of(FUNCTION_FIRESTORE_CALLS),
    ),
    "workflow-data": RoleSpec(
        "Callback workflow data",
        "Get, create and update callback documents by name (workflow-callbacks).",
        permissions_of(WORKFLOW_FIRESTORE_CALLS),
    ),
}


def database_condition_expression(project: str, database_id: str) -> str:
    """Firestore access on one database only.

    The form Google documents for per-database access ("Create and manage
    databases", Configure per-database access permissions,
    https://cloud.google.com/firestore/native/docs/manage-databases), and
    the resource name format of a Firestore database in "Resource attributes
    for IAM Conditions"
    (https://cloud.google.com/iam/docs/conditions-resource-attributes).
    """
    return f'resource.name == "projects/{project}/databases/{database_id}"'


def staged_source_condition_expression(project_number: str, region: str) -> str:
    """Reading the copy of the source Cloud Functions stages for the build, nothing else.

    Google's "Build process overview"
    (https://cloud.google.com/functions/docs/building) names the bucket
    gcf-v2-sources-PROJECT_NUMBER-REGION, and documents the condition for a
    custom build service account in this form, there with a prefix that
    matches the bucket of every region (and the upload and Cloud Run source
    buckets, which a function deployed from its own bucket does not use).
    The exact bucket name, ended by "/objects/", also keeps out
    europe-west10's bucket from europe-west1's grant.
    """
    bucket = f"gcf-v2-sources-{project_number}-{region}"
    return (
        'resource.type == "storage.googleapis.com/Object" && '
        f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/")'
    )


@dataclass(frozen=True)
class _Identities:
    """One service account per job, so each gets only the roles that job needs."""

    function: gcp.serviceaccount.Account
    workflow: gcp.serviceaccount.Account
    build: gcp.serviceaccount.Account


@dataclass(frozen=True)
class _Data:
    """Where callbacks live, and what must exist before anything uses it."""

    database_id: pulumi.Input[str]
    ready: list[pulumi.Resource]


@dataclass(frozen=True)
class _Source:
    """The function's source archive in its bucket, and the build's grant to read it."""

    bucket: gcp.storage.Bucket
    archive: gcp.storage.BucketObject
    reader: gcp.storage.BucketIAMMember


@dataclass(frozen=True)
class _Images:
    """Where the function build pushes its image, and the build's grant to push there."""

    repository: gcp.artifactregistry.Repository
    writer: gcp.artifactregistry.RepositoryIamMember


@dataclass(frozen=True)
class _WorkflowSources:
    """The deployed sources: the user's workflow and the verification workflow."""

    main: str
    verify: str


@dataclass(frozen=True)
class _Workflows:
    main: gcp.workflows.Workflow
    verify: gcp.workflows.Workflow


class CallbackBridge(pulumi.ComponentResource):
    """A public callback receiver plus a workflow that can wait for callbacks.

    Usage from any Pulumi program::

        from infra import CallbackBridge, CallbackBridgeArgs

        bridge = CallbackBridge(
            "callbacks",
            CallbackBridgeArgs(project="my-project", region="europe-west1",
                               name="orders-prod", workflow_source=my_yaml),
        )
        pulumi.export("url", bridge.function_url)

    ``OUTPUTS`` names every output (as exported) and the attribute holding
    it; ``register_outputs`` and ``__main__.py``'s exports both come from it.
    """

    OUTPUTS: ClassVar[dict[str, str]] = {
        "functionUrl": "function_url",
        "callbackUrlTemplate": "callback_url_template",
        "workflowName": "workflow_name",
        "workflowId": "workflow_id",
        "firestoreDatabase": "firestore_database",
        "callbacksCollection": "callbacks_collection",
        "gcloudRunCommand": "gcloud_run_command",
        "functionServiceAccount": "function_service_account",
        "workflowServiceAccount": "workflow_service_account",
        "buildServiceAccount": "build_service_account",
        "sourceObject": "source_object",
        # What `python -m ops verify` reads: the workflow it starts, and where.
        "verifyWorkflowName": "verify_workflow_name",
        "region": "region",
        "project": "project",
        # The stack's Cloud Monitoring dashboard; empty with monitoring off.
        "dashboardUrl": "dashboard_url",
    }

    function_url: pulumi.Output[str]
    callback_url_template: pulumi.Output[str]
    workflow_name: pulumi.Output[str]
    workflow_id: pulumi.Output[str]
    firestore_database: pulumi.Output[str]
    callbacks_collection: pulumi.Output[str]
    gcloud_run_command: pulumi.Output[str]
    function_service_account: pulumi.Output[str]
    workflow_service_account: pulumi.Output[str]
    build_service_account: pulumi.Output[str]
    source_object: pulumi.Output[str]
    verify_workflow_name: pulumi.Output[str]
    region: pulumi.Output[str]
    project: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: CallbackBridgeArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        # Checked before registering anything: a half-created stack is worse
        # than a clear error.
        problems = args.problems()
        if problems:
            raise ValueError(
                f"CallbackBridge {name!r} has invalid arguments:\n"
                + "\n".join(f"  - {problem}" for problem in problems)
            )
        sources = _WorkflowSources(
            main=args.workflow_source_contents(),
            # Composed exactly as the user's workflow is, so it runs the same
            # callback subworkflows.
            verify=compose_workflow_source(
                read_text(VERIFY_WORKFLOW, "verification workflow"),
                read_text(args.callbacks_workflow_path, "callbacks workflow"),
            ),
        )
        archive = build_source_archive(args.function_source_dir)
        super().__init__(TYPE_TOKEN, name, None, opts)

        self._name = name
        self._args = args
        self.names = ResourceNames.derive(args.project, args.name)
        self._labels = {"app": "workflow-callbacks", **args.labels}
        self._services = self._enable_apis()
        self._project_number = gcp.organizations.get_project_output(project_id=args.project).number

        identities = self._identities()
        data = self._data()
        source = self._function_source(archive, identities)
        images = self._images(identities)
        # depends_on waits for the IAM calls to return, not for the grants to
        # take effect: the first gen2 build would then fail to read its source
        # and the first execution to reach Firestore. Wait for propagation,
        # again whenever a grant is replaced (the triggers).
        iam_ready = self._iam_propagation(
            [*self._grants(identities, data), source.reader, images.writer]
        )
        function = self._function(identities, data, source, images, iam_ready)
        workflows = self._workflows(identities, data, function, iam_ready, sources)
        # Metrics, dashboard and alerts (infra/monitoring.py), before the
        # outputs are registered.
        self.dashboard_url = add_monitoring(
            self, name, args, self.names, self._labels, self._apis("logging")
        )
        self._set_outputs(identities, data, source, function, workflows)

    def outputs(self) -> dict[str, pulumi.Output[str]]:
        """Every output by its exported name."""
        return {name: getattr(self, attribute) for name, attribute in self.OUTPUTS.items()}

    # --- identities ----------------------------------------------------
    def _identities(self) -> _Identities:
        return _Identities(
            function=self._service_account(
                "function",
                self.names.function_account,
                "Runs the callback receiver; reads and writes callback documents.",
            ),
            workflow=self._service_account(
                "workflow",
                self.names.workflow_account,
                "Runs the workflow; registers and reads callback documents.",
            ),
            build=self._service_account(
                "build",
                self.names.build_account,
                "Builds the receiver function's container image in Cloud Build.",
            ),
        )

    def _service_account(
        self, role: str, account_id: str, description: str
    ) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            f"{self._name}-{role}-sa",
            project=self._args.project,
            account_id=account_id,
            display_name=self.names.account_titles[role],
            description=description,
            opts=self._child(*self._apis("iam")),
        )

    def _grants(self, identities: _Identities, data: _Data) -> list[pulumi.CustomResource]:
        """Least privilege: custom roles of exactly the calls made, Firestore on this database.

        The project-level grants; the build's other two are on the source
        bucket (_function_source) and the image repository (_images).
        workflows.callbacks.send stays project-wide: Workflows roles can be
        granted on the project only, and IAM conditions on resource names do
        not reach Workflows (docs/deploy.md, "Residual risks").
        """
        database_only = self._database_condition(data.database_id)
        role = self._custom_role
        return [
            self._project_role(
                "function-data", identities.function, role("function-data").name, database_only
            ),
            self._project_role(
                "function-callback-sender", identities.function, role("callback-sender").name
            ),
            self._project_role(
                "workflow-data", identities.workflow, role("workflow-data").name, database_only
            ),
            # sys.log in the user's workflow.
            self._project_role("workflow-logwriter", identities.workflow, LOG_WRITER),
            # Build logs; Cloud Logging takes log writes per project.
            self._project_role("build-logwriter", identities.build, LOG_WRITER),
            self._project_role(
                "build-staged-source",
                identities.build,
                "roles/storage.objectViewer",
                gcp.projects.IAMMemberConditionArgs(
                    title="staged-function-source-only",
                    description="The copy of the source Cloud Functions stages for the build",
                    expression=self._project_number.apply(
                        lambda number: staged_source_condition_expression(number, self._args.region)
                    ),
                ),
            ),
        ]

    def _custom_role(self, key: str) -> gcp.projects.IAMCustomRole:
        """The custom role ``key`` (CUSTOM_ROLE_SPECS), its id new with every creation.

        The suffix is a RandomId's hex, and the role id is made of it and of
        nothing else that varies: an `up` without changes keeps both. The
        RandomId's keepers are the project and the id prefix, so a new
        project (which replaces the role) also gets a new suffix.
        """
        spec = CUSTOM_ROLE_SPECS[key]
        prefix = self.names.role_id_prefixes[key]
        suffix = RandomId(
            f"{self._name}-{key}-role-suffix",
            byte_length=ROLE_SUFFIX_BYTES,
            keepers={"project": self._args.project, "rolePrefix": prefix},
            opts=self._child(),
        )
        return gcp.projects.IAMCustomRole(
            f"{self._name}-{key}-role",
            project=self._args.project,
            role_id=suffix.hex.apply(lambda hex_suffix: custom_role_id(prefix, hex_suffix)),
            title=f"{spec.title} ({self.names.function})"[:100],
            description=spec.description,
            permissions=spec.permissions,
            opts=self._child(*self._apis("iam")),
        )

    # --- data ----------------------------------------------------------
    def _data(self) -> _Data:
        args = self._args
        ready: list[pulumi.Resource] = [*self._apis("firestore")]
        owns_database = not args.existing_firestore_database
        database_id: pulumi.Input[str]
        if owns_database:
            database = gcp.firestore.Database(
                f"{self._name}-database",
                project=args.project,
                name=self.names.database,
                location_id=args.firestore_location_or_region,
                type="FIRESTORE_NATIVE",
                deletion_policy=args.firestore_deletion_policy,
                delete_protection_state=(
                    "DELETE_PROTECTION_ENABLED"
                    if args.firestore_delete_protection
                    else "DELETE_PROTECTION_DISABLED"
                ),
                # Its name is fixed per stack, so a replacement (a new
                # location) must delete the old database before creating the
                # new one; the default create-first order fails with
                # ALREADY_EXISTS. With ABANDON the old one stays and the
                # create fails all the same: see docs/deploy.md.
                opts=self._child(*ready).merge(pulumi.ResourceOptions(delete_before_replace=True)),
            )
            database_id = database.name
            ready.append(database)
        else:
            database_id = args.existing_firestore_database
        if owns_database or args.manage_ttl_on_existing_database:
            self._ttl_policy(database_id, ready, retain=owns_database)
        else:
            pulumi.log.warn(
                f"Firestore database {args.existing_firestore_database!r} is not managed by "
                f"this stack, so neither is the TTL policy on {args.callbacks_collection}."
                f"{TTL_FIELD} (nor its index exemptions): without the policy, callback "
                "documents are never deleted. Create them once (docs/deploy.md) or set "
                "manageTtlOnExistingDatabase.",
                resource=self,
            )
        return _Data(database_id, ready)

    def _ttl_policy(
        self, database_id: pulumi.Input[str], ready: list[pulumi.Resource], retain: bool
    ) -> None:
        """Firestore deletes a callback document once expireAt has passed.

        The empty index_config exempts the field from indexing: nothing
        queries it, and indexing a timestamp that only grows hotspots writes
        (see docs/scale.md); the other growing timestamps are exempted too.
        The policy is a setting of the database's collection group, so it is
        created only on a database this stack owns unless asked: on a shared
        one, destroying this stack would remove it for every other user.
        """
        options = pulumi.ResourceOptions(
            # One policy per database and field path: the new one must not be
            # created before the old one is removed, or removing the old one
            # would remove the new one.
            delete_before_replace=True,
            # An abandoned database keeps its data; the data keeps its TTL.
            retain_on_delete=retain and self._args.firestore_deletion_policy == "ABANDON",
        )

        def field_settings(
            name: str, field: str, after: list[pulumi.Resource], **config: Any
        ) -> pulumi.Resource:
            return gcp.firestore.Field(
                f"{self._name}-{name}",
                project=self._args.project,
                database=database_id,
                collection=self._args.callbacks_collection,
                field=field,
                index_config={},
                opts=self._child(*after).merge(options),
                **config,
            )

        previous = field_settings("ttl", TTL_FIELD, ready, ttl_config={})
        for field in UNINDEXED_TIMESTAMPS:
            # One after the other: Firestore refuses concurrent changes to
            # one collection group's fields (409, "underlying data changed").
            previous = field_settings(f"noindex-{field}", field, [*ready, previous])

    # --- the receiver function -----------------------------------------
    def _function_source(self, archive: SourceArchive, identities: _Identities) -> _Source:
        storage = self._apis("storage")
        bucket = gcp.storage.Bucket(
            f"{self._name}-source",
            project=self._args.project,
            name=self.names.bucket,
            location=self._args.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=self._args.source_bucket_force_destroy,
            labels=self._labels,
            # A fixed, globally unique name: a replacement (a new region)
            # must delete the old bucket first, or the create fails.
            opts=self._child(*storage).merge(pulumi.ResourceOptions(delete_before_replace=True)),
        )
        reader = gcp.storage.BucketIAMMember(
            f"{self._name}-build-source-reader",
            bucket=bucket.name,
            role="roles/storage.objectViewer",
            member=identities.build.member,
            opts=self._child(*storage),
        )
        source_object = gcp.storage.BucketObject(
            f"{self._name}-source-archive",
            bucket=bucket.name,
            name=archive.object_name,
            source=archive.archive,
            content_type="application/zip",
            opts=self._child(*storage),
        )
        return _Source(bucket, source_object, reader)

    def _images(self, identities: _Identities) -> _Images:
        """The stack's own repository for the function's image, writable by its build only.

        By default a build pushes to gcf-artifacts, a repository Cloud
        Functions creates on the project's first deploy in a region, so the
        writer role could only be granted project-wide, on every repository.
        Google's "Custom Service Account for Cloud Build"
        (https://cloud.google.com/functions/docs/securing/build-custom-sa)
        lets a build push to a repository of one's own instead
        (dockerRepository), which this stack creates before the build, grants
        on, and deletes with the stack, images included.
        """
        args = self._args
        repository = gcp.artifactregistry.Repository(
            f"{self._name}-images",
            project=args.project,
            location=args.region,
            repository_id=self.names.image_repository,
            format="DOCKER",
            description="Container images of the callback receiver function (workflow-callbacks).",
            labels=self._labels,
            opts=self._child(*self._apis("artifactregistry")),
        )
        writer = gcp.artifactregistry.RepositoryIamMember(
            f"{self._name}-build-image-writer",
            project=args.project,
            location=args.region,
            repository=repository.name,
            role="roles/artifactregistry.writer",
            member=identities.build.member,
            opts=self._child(*self._apis("artifactregistry")),
        )
        return _Images(repository, writer)

    def _function(
        self,
        identities: _Identities,
        data: _Data,
        source: _Source,
        images: _Images,
        iam_ready: list[pulumi.Resource],
    ) -> gcp.cloudfunctionsv2.Function:
        args = self._args
        function = gcp.cloudfunctionsv2.Function(
            f"{self._name}-function",
            project=args.project,
            location=args.region,
            name=self.names.function,
            description="Stores workflow callbacks in Firestore (workflow-callbacks).",
            labels=self._labels,
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime=args.function_runtime,
                entry_point=ENTRY_POINT,
                service_account=identities.build.name,
                docker_repository=images.repository.id,
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=source.bucket.name,
                        object=source.archive.name,
                    ),
                ),
            ),
            service_config=gcp.cloudfunctionsv2.FunctionServiceConfigArgs(
                available_memory=args.function_memory,
                timeout_seconds=args.function_timeout_seconds,
                min_instance_count=args.function_min_instances,
                max_instance_count=args.function_max_instances,
                max_instance_request_concurrency=args.function_concurrency,
                available_cpu=args.function_cpu,
                ingress_settings="ALLOW_ALL",
                all_traffic_on_latest_revision=True,
                service_account_email=identities.function.email,
                environment_variables={
                    "CALLBACKS_DATABASE": data.database_id,
                    "CALLBACKS_COLLECTION": args.callbacks_collection,
                    "CALLBACKS_ALLOW_UNREGISTERED": str(args.allow_unregistered_callbacks).lower(),
                    "CALLBACKS_MAX_BODY_BYTES": str(args.max_body_bytes),
                    "CALLBACKS_ALLOWED_ORIGINS": ",".join(args.origins),
                    "CALLBACKS_TTL_SECONDS": str(args.wait.ttl_seconds),
                    "GOOGLE_CLOUD_PROJECT": args.project,
                    # Push delivery: the receiver forwards only to callback
                    # endpoints of this project (by id or number) and region.
                    "CALLBACKS_REGION": args.region,
                    "CALLBACKS_PROJECT_NUMBER": self._project_number,
                    # functions-framework's gunicorn threads: one per
                    # concurrent request, as Google recommends for Python.
                    "THREADS": str(args.function_concurrency),
                    # Cloud Functions adds this itself; declaring it avoids a
                    # permanent diff on every `pulumi up`.
                    "LOG_EXECUTION_ID": "true",
                },
            ),
            opts=self._child(
                *self._apis("cloudfunctions", "run", "cloudbuild", "artifactregistry", "logging"),
                *iam_ready,
                source.archive,
                *data.ready,
            ),
        )
        if args.allow_unauthenticated:
            # Gen2 functions are Cloud Run services: invocation is run.invoker
            # on the service, not cloudfunctions.invoker on the function.
            gcp.cloudrunv2.ServiceIamMember(
                f"{self._name}-public-invoker",
                project=args.project,
                location=args.region,
                name=function.service_config.apply(lambda config: config.service if config else ""),
                role="roles/run.invoker",
                member="allUsers",
                opts=self._child(*self._apis("run"), function),
            )
        return function

    # --- the workflows -------------------------------------------------
    def _workflows(
        self,
        identities: _Identities,
        data: _Data,
        function: gcp.cloudfunctionsv2.Function,
        iam_ready: list[pulumi.Resource],
        sources: _WorkflowSources,
    ) -> _Workflows:
        """The user's workflow, and the verification workflow beside it.

        Both run as the workflow account with the same environment, after the
        same grants and data, so a verification run proves what the user's
        workflow relies on. The verification workflow keeps no state, so it
        never has deletion protection.
        """
        args = self._args
        env_vars = pulumi.Output.all(function.url, data.database_id).apply(
            lambda values: workflow_env_vars(
                values[0], values[1], args.callbacks_collection, args.wait
            )
        )

        def workflow(
            suffix: str, name: str, description: str, source: str, protected: bool
        ) -> gcp.workflows.Workflow:
            return gcp.workflows.Workflow(
                f"{self._name}-{suffix}",
                project=args.project,
                region=args.region,
                name=name,
                description=description,
                labels=self._labels,
                service_account=identities.workflow.name,
                source_contents=source,
                user_env_vars=env_vars,
                call_log_level=args.call_log_level,
                deletion_protection=protected,
                opts=self._child(
                    *self._apis("workflows", "workflowexecutions"), *iam_ready, *data.ready
                ),
            )

        return _Workflows(
            main=workflow(
                "workflow",
                self.names.workflow,
                "Workflow with callback subworkflows (workflow-callbacks).",
                sources.main,
                args.workflow_deletion_protection,
            ),
            verify=workflow(
                "verify-workflow",
                self.names.verify_workflow,
                "One callback round trip, started by `python -m ops verify` (workflow-callbacks).",
                sources.verify,
                False,
            ),
        )

    # --- outputs -------------------------------------------------------
    def _set_outputs(
        self,
        identities: _Identities,
        data: _Data,
        source: _Source,
        function: gcp.cloudfunctionsv2.Function,
        workflows: _Workflows,
    ) -> None:
        project, region = self._args.project, self._args.region
        workflow = workflows.main
        self.function_url = function.url
        self.callback_url_template = function.url.apply(
            lambda url: f"{url}?runID={{runID}}&step={{step}}&token={{token}}"
        )
        self.workflow_name = workflow.name
        self.workflow_id = workflow.id
        self.firestore_database = pulumi.Output.from_input(data.database_id)
        self.callbacks_collection = pulumi.Output.from_input(self._args.callbacks_collection)
        self.function_service_account = identities.function.email
        self.workflow_service_account = identities.workflow.email
        self.build_service_account = identities.build.email
        self.source_object = source.archive.name
        self.verify_workflow_name = workflows.verify.name
        self.region = pulumi.Output.from_input(region)
        self.project = pulumi.Output.from_input(project)
        self.gcloud_run_command = workflow.name.apply(
            lambda workflow_name: (
                f"gcloud workflows run {workflow_name} "
                f"--location={region} --project={project} --data='{{}}'"
            )
        )
        self.register_outputs(self.outputs())

    # --- helpers -------------------------------------------------------
    def _child(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(depends_on))

    def _enable_apis(self) -> dict[str, pulumi.Resource]:
        if not self._args.enable_apis:
            return {}
        # disable_on_destroy=False: other stacks and workloads in the project
        # may use the same services; destroying one stack must not cut them off.
        return {
            api: gcp.projects.Service(
                f"{self._name}-api-{api}",
                project=self._args.project,
                service=f"{api}.googleapis.com",
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in APIS
        }

    def _iam_propagation(self, grants: list[pulumi.CustomResource]) -> list[pulumi.Resource]:
        """What to depend on for ``grants`` to be in effect: a wait after them, or them."""
        seconds = self._args.iam_propagation_seconds
        if seconds == 0:
            return list(grants)
        return [
            Sleep(
                f"{self._name}-iam-propagation",
                create_duration=f"{seconds}s",
                triggers={f"grant-{index}": grant.id for index, grant in enumerate(grants)},
                opts=self._child(*grants),
            )
        ]

    def _apis(self, *names: str) -> list[pulumi.Resource]:
        """The enabled services among ``names`` (none when enable_apis is off)."""
        return [self._services[api] for api in names if api in self._services]

    def _database_condition(
        self, database_id: pulumi.Input[str]
    ) -> gcp.projects.IAMMemberConditionArgs | None:
        if not self._args.restrict_data_access_to_database:
            return None
        project = self._args.project
        return gcp.projects.IAMMemberConditionArgs(
            title="callbacks-database-only",
            description="Firestore access limited to the callbacks database",
            expression=pulumi.Output.from_input(database_id).apply(
                lambda db: database_condition_expression(project, db)
            ),
        )

    def _project_role(
        self,
        suffix: str,
        account: gcp.serviceaccount.Account,
        role: pulumi.Input[str],
        condition: gcp.projects.IAMMemberConditionArgs | None = None,
    ) -> gcp.projects.IAMMember:
        return gcp.projects.IAMMember(
            f"{self._name}-{suffix}",
            project=self._args.project,
            role=role,
            member=account.member,
            condition=condition,
            opts=self._child(*self._apis("cloudresourcemanager", "iam"), account),
        )
