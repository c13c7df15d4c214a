"""CallbackBridge: the receiver function, its Firestore database and the workflow.

One component so another Pulumi program can add the whole callback system
with one resource, and so every child shows up under it in `pulumi stack`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp
from pulumiverse_time import Sleep

from infra.args import CallbackBridgeArgs
from infra.names import ResourceNames
from infra.source_archive import build_source_archive
from infra.workflow_env import workflow_env_vars

TYPE_TOKEN = "workflow-callbacks:index:CallbackBridge"
ENTRY_POINT = "processEntry"
TTL_FIELD = "expireAt"

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

# What a custom Cloud Build service account needs to build a gen2 function
# (Google's "Custom Service Account for Cloud Build"): write build logs, push
# the image to the gcf-artifacts repository, read the source. Reading the
# source is granted on our bucket and, under a condition, on the
# gcf-v2-sources-* buckets Cloud Functions stages a copy of it in.
BUILD_PROJECT_ROLES = {
    "build-logwriter": "roles/logging.logWriter",
    "build-artifactwriter": "roles/artifactregistry.writer",
}
STAGED_SOURCE_CONDITION = 'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")'


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
    """

    function_url: pulumi.Output[str]
    callback_url_template: pulumi.Output[str]
    workflow_name: pulumi.Output[str]
    workflow_id: pulumi.Output[str]
    firestore_database: pulumi.Output[str]
    callbacks_collection: pulumi.Output[str]
    function_service_account: pulumi.Output[str]
    workflow_service_account: pulumi.Output[str]
    build_service_account: pulumi.Output[str]
    source_object: pulumi.Output[str]
    gcloud_run_command: pulumi.Output[str]

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
        workflow_source = args.workflow_source_contents()
        archive = build_source_archive(args.function_source_dir)
        super().__init__(TYPE_TOKEN, name, None, opts)

        self._name = name
        self._args = args
        names = ResourceNames.derive(args.project, args.name)
        self.names = names
        project = args.project
        region = args.region
        labels = {"app": "workflow-callbacks", **args.labels}

        apis = self._enable_apis()

        # --- identities -------------------------------------------------
        function_sa = self._service_account(
            "function",
            names.function_account,
            "Runs the callback receiver; reads and writes callback documents.",
            apis,
        )
        workflow_sa = self._service_account(
            "workflow",
            names.workflow_account,
            "Runs the workflow; registers and reads callback documents.",
            apis,
        )
        build_sa = self._service_account(
            "build",
            names.build_account,
            "Builds the receiver function's container image in Cloud Build.",
            apis,
        )

        # --- Firestore --------------------------------------------------
        database_id: pulumi.Input[str]
        database_deps: list[pulumi.Resource] = [*self._apis(apis, "firestore")]
        owns_database = not args.existing_firestore_database
        if not owns_database:
            database_id = args.existing_firestore_database
        else:
            database = gcp.firestore.Database(
                f"{name}-database",
                project=project,
                name=names.database,
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
                opts=self._child(*database_deps).merge(
                    pulumi.ResourceOptions(delete_before_replace=True)
                ),
            )
            database_id = database.name
            database_deps.append(database)

        if owns_database or args.manage_ttl_on_existing_database:
            # Firestore deletes a callback document once expireAt has passed.
            # The empty index_config exempts the field from indexing: nothing
            # queries it, and indexing a timestamp that only grows hotspots
            # writes. The policy is a setting of the database's collection
            # group, so it is created only on a database this stack owns
            # unless asked: on a shared one, destroying this stack would
            # remove it for every other user.
            gcp.firestore.Field(
                f"{name}-ttl",
                project=project,
                database=database_id,
                collection=args.callbacks_collection,
                field=TTL_FIELD,
                ttl_config={},
                index_config={},
                opts=self._child(*database_deps).merge(
                    pulumi.ResourceOptions(
                        # One policy per database and field path: the new one
                        # must not be created before the old one is removed,
                        # or removing the old one would remove the new one.
                        delete_before_replace=True,
                        # An abandoned database keeps its data; the data keeps its TTL.
                        retain_on_delete=owns_database
                        and args.firestore_deletion_policy == "ABANDON",
                    )
                ),
            )
        else:
            pulumi.log.warn(
                f"Firestore database {args.existing_firestore_database!r} is not managed by "
                f"this stack, so neither is the TTL policy on {args.callbacks_collection}."
                f"{TTL_FIELD}: without it, callback documents are never deleted. Create it "
                "once (docs/deploy.md) or set manageTtlOnExistingDatabase.",
                resource=self,
            )

        # --- IAM: least privilege ---------------------------------------
        iam_deps = self._apis(apis, "cloudresourcemanager", "iam")
        data_condition = self._database_condition(database_id)
        function_data = self._project_role(
            "function-datastore", function_sa, "roles/datastore.user", iam_deps, data_condition
        )
        workflow_data = self._project_role(
            "workflow-datastore", workflow_sa, "roles/datastore.user", iam_deps, data_condition
        )
        workflow_logs = self._project_role(
            "workflow-logwriter", workflow_sa, "roles/logging.logWriter", iam_deps
        )
        build_roles = [
            self._project_role(suffix, build_sa, role, iam_deps)
            for suffix, role in BUILD_PROJECT_ROLES.items()
        ]
        build_roles.append(
            self._project_role(
                "build-staged-source",
                build_sa,
                "roles/storage.objectViewer",
                iam_deps,
                gcp.projects.IAMMemberConditionArgs(
                    title="function-source-buckets-only",
                    description="Source copies Cloud Functions stages for the build",
                    expression=STAGED_SOURCE_CONDITION,
                ),
            )
        )

        # --- function source --------------------------------------------
        bucket = gcp.storage.Bucket(
            f"{name}-source",
            project=project,
            name=names.bucket,
            location=region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=args.source_bucket_force_destroy,
            labels=labels,
            # A fixed, globally unique name: a replacement (a new region)
            # must delete the old bucket first, or the create fails.
            opts=self._child(*self._apis(apis, "storage")).merge(
                pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        build_roles.append(
            gcp.storage.BucketIAMMember(
                f"{name}-build-source-reader",
                bucket=bucket.name,
                role="roles/storage.objectViewer",
                member=build_sa.member,
                opts=self._child(*self._apis(apis, "storage")),
            )
        )
        source_object = gcp.storage.BucketObject(
            f"{name}-source-archive",
            bucket=bucket.name,
            name=archive.object_name,
            source=archive.archive,
            content_type="application/zip",
            opts=self._child(*self._apis(apis, "storage")),
        )

        # depends_on waits for the IAM calls to return, not for the grants to
        # take effect: the first gen2 build would then fail to read its source
        # and the first execution to reach Firestore. Wait for propagation,
        # again whenever a grant is replaced (the triggers).
        grants = [*build_roles, function_data, workflow_data, workflow_logs]
        iam_ready = self._iam_propagation(grants)

        # --- the receiver function --------------------------------------
        function = gcp.cloudfunctionsv2.Function(
            f"{name}-function",
            project=project,
            location=region,
            name=names.function,
            description="Stores workflow callbacks in Firestore (workflow-callbacks).",
            labels=labels,
            build_config=gcp.cloudfunctionsv2.FunctionBuildConfigArgs(
                runtime=args.function_runtime,
                entry_point=ENTRY_POINT,
                service_account=build_sa.name,
                source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceArgs(
                    storage_source=gcp.cloudfunctionsv2.FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=bucket.name,
                        object=source_object.name,
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
                service_account_email=function_sa.email,
                environment_variables={
                    "CALLBACKS_DATABASE": database_id,
                    "CALLBACKS_COLLECTION": args.callbacks_collection,
                    "CALLBACKS_ALLOW_UNREGISTERED": str(args.allow_unregistered_callbacks).lower(),
                    "CALLBACKS_MAX_BODY_BYTES": str(args.max_body_bytes),
                    "CALLBACKS_TTL_SECONDS": str(args.wait.ttl_seconds),
                    "GOOGLE_CLOUD_PROJECT": project,
                    # functions-framework's gunicorn threads: one per
                    # concurrent request, as Google recommends for Python.
                    "THREADS": str(args.function_concurrency),
                    # Cloud Functions adds this itself; declaring it avoids a
                    # permanent diff on every `pulumi up`.
                    "LOG_EXECUTION_ID": "true",
                },
            ),
            opts=self._child(
                *self._apis(
                    apis, "cloudfunctions", "run", "cloudbuild", "artifactregistry", "logging"
                ),
                *iam_ready,
                source_object,
                *database_deps,
            ),
        )

        if args.allow_unauthenticated:
            # Gen2 functions are Cloud Run services: invocation is run.invoker
            # on the service, not cloudfunctions.invoker on the function.
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-public-invoker",
                project=project,
                location=region,
                name=function.service_config.apply(lambda config: config.service if config else ""),
                role="roles/run.invoker",
                member="allUsers",
                opts=self._child(*self._apis(apis, "run"), function),
            )

        # --- the workflow -----------------------------------------------
        env_vars = pulumi.Output.all(function.url, database_id).apply(
            lambda values: workflow_env_vars(
                values[0], values[1], args.callbacks_collection, args.wait
            )
        )
        workflow = gcp.workflows.Workflow(
            f"{name}-workflow",
            project=project,
            region=region,
            name=names.workflow,
            description="Workflow with callback subworkflows (workflow-callbacks).",
            labels=labels,
            service_account=workflow_sa.name,
            source_contents=workflow_source,
            user_env_vars=env_vars,
            call_log_level=args.call_log_level,
            deletion_protection=args.workflow_deletion_protection,
            opts=self._child(
                *self._apis(apis, "workflows", "workflowexecutions"),
                *iam_ready,
                *database_deps,
            ),
        )

        # --- outputs ----------------------------------------------------
        self.function_url = function.url
        self.callback_url_template = function.url.apply(
            lambda url: f"{url}?runID={{runID}}&step={{step}}&token={{token}}"
        )
        self.workflow_name = workflow.name
        self.workflow_id = workflow.id
        self.firestore_database = pulumi.Output.from_input(database_id)
        self.callbacks_collection = pulumi.Output.from_input(args.callbacks_collection)
        self.function_service_account = function_sa.email
        self.workflow_service_account = workflow_sa.email
        self.build_service_account = build_sa.email
        self.source_object = source_object.name
        self.gcloud_run_command = workflow.name.apply(
            lambda workflow_name: (
                f"gcloud workflows run {workflow_name} "
                f"--location={region} --project={project} --data='{{}}'"
            )
        )
        self.register_outputs(
            {
                "functionUrl": self.function_url,
                "callbackUrlTemplate": self.callback_url_template,
                "workflowName": self.workflow_name,
                "workflowId": self.workflow_id,
                "firestoreDatabase": self.firestore_database,
                "callbacksCollection": self.callbacks_collection,
                "functionServiceAccount": self.function_service_account,
                "workflowServiceAccount": self.workflow_service_account,
                "buildServiceAccount": self.build_service_account,
                "sourceObject": self.source_object,
                "gcloudRunCommand": self.gcloud_run_command,
            }
        )

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

    def _service_account(
        self,
        role: str,
        account_id: str,
        description: str,
        apis: dict[str, pulumi.Resource],
    ) -> gcp.serviceaccount.Account:
        """One identity per job, so each gets only the roles that job needs."""
        return gcp.serviceaccount.Account(
            f"{self._name}-{role}-sa",
            project=self._args.project,
            account_id=account_id,
            display_name=self.names.account_titles[role],
            description=description,
            opts=self._child(*self._apis(apis, "iam")),
        )

    def _iam_propagation(self, grants: list[pulumi.Resource]) -> list[pulumi.Resource]:
        """What to depend on for ``grants`` to be in effect: a wait after them, or them."""
        seconds = self._args.iam_propagation_seconds
        if seconds == 0:
            return grants
        return [
            Sleep(
                f"{self._name}-iam-propagation",
                create_duration=f"{seconds}s",
                triggers={f"grant-{index}": grant.id for index, grant in enumerate(grants)},
                opts=self._child(*grants),
            )
        ]

    @staticmethod
    def _apis(apis: dict[str, pulumi.Resource], *names: str) -> list[pulumi.Resource]:
        return [apis[api] for api in names if api in apis]

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
                lambda db: f'resource.name == "projects/{project}/databases/{db}"'
            ),
        )

    def _project_role(
        self,
        suffix: str,
        account: gcp.serviceaccount.Account,
        role: str,
        depends_on: Sequence[pulumi.Resource],
        condition: gcp.projects.IAMMemberConditionArgs | None = None,
    ) -> gcp.projects.IAMMember:
        return gcp.projects.IAMMember(
            f"{self._name}-{suffix}",
            project=self._args.project,
            role=role,
            member=account.member,
            condition=condition,
            opts=self._child(*depends_on, account),
        )
