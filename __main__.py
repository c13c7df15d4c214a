"""Deploy the callback system for the current stack: settings, one component, outputs."""

import pulumi

from infra import CallbackBridge
from infra.settings import load_args

bridge = CallbackBridge("callbacks", load_args())

pulumi.export("functionUrl", bridge.function_url)
pulumi.export("callbackUrlTemplate", bridge.callback_url_template)
pulumi.export("workflowName", bridge.workflow_name)
pulumi.export("workflowId", bridge.workflow_id)
pulumi.export("firestoreDatabase", bridge.firestore_database)
pulumi.export("callbacksCollection", bridge.callbacks_collection)
pulumi.export("gcloudRunCommand", bridge.gcloud_run_command)
pulumi.export("functionServiceAccount", bridge.function_service_account)
pulumi.export("workflowServiceAccount", bridge.workflow_service_account)
pulumi.export("buildServiceAccount", bridge.build_service_account)
pulumi.export("sourceObject", bridge.source_object)
