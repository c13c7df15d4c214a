"""What an on-call engineer watches: log-based metrics, a dashboard and alert policies.

The CallbackBridge component builds them as its children when ``monitoring``
is on (the default), named after the stack like everything else, so every
environment gets the same view from the same program. docs/operations.md
says what each chart and alert means and what to do first.

The default is on because, with nobody to notify, what it creates costs
nothing (Google Cloud Observability pricing,
https://cloud.google.com/stackdriver/pricing):

- the log-based metrics are user-defined metrics, billed by the bytes of
  metric data ingested beyond the first 150 MiB a month per billing
  account; they write points only for minutes in which a matching line
  came, a few MiB a month at most for this stack's few series;
- dashboards have no charge.

Alerting is billed per condition, 1.50 USD a month, plus 0.35 USD per
million time series its evaluations return ("Manage alerting costs",
https://cloud.google.com/monitoring/alerts/cost-control): about 4.50 USD a
month for the three below. So the alert policies are created only once the
stack names someone to tell (``alertEmails``, ``alertNotificationChannels``):
an alert nobody receives would cost money and tell nobody.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.args import CallbackBridgeArgs
from infra.names import ResourceNames, fit, slug

MONITORING_API = "monitoring.googleapis.com"

# LogMetric.name: at most 100 characters of A-Za-z0-9 and _-.,+!*',()%/, "/"
# making a hierarchy (https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.metrics).
MAX_METRIC_NAME = 100
# AlertPolicy and NotificationChannel display names: at most 512 Unicode
# characters (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies,
# .../projects.notificationChannels).
MAX_DISPLAY_NAME = 512
# AlertPolicy.Documentation.content: at most 8,192 Unicode characters and
# 10,240 UTF-8 bytes.
MAX_DOCUMENTATION_CHARS = 8192
MAX_DOCUMENTATION_BYTES = 10240

# A gen2 function is a Cloud Run service of the same name; the receiver's
# JSON lines on stdout become structured entries of that service's revisions,
# the JSON in jsonPayload ("Structured logging",
# https://cloud.google.com/logging/docs/structured-logging).
RECEIVER_RESOURCE = "cloud_run_revision"
# What Cloud Run itself logs for every request: method, URL (query string
# included) and status in httpRequest (https://cloud.google.com/run/docs/logging).
CLOUD_RUN_REQUEST_LOG = "run.googleapis.com%2Frequests"
# sys.log writes with this resource and under this log name
# (https://cloud.google.com/workflows/docs/reference/stdlib/sys/log).
WORKFLOW_RESOURCE = "workflows.googleapis.com/Workflow"
WORKFLOW_LOG = "Workflows"

# The receiver's request line (function/request_log.py; docs/protocol.md,
# "Logs"): `forward` says what became of a push; these two mean the waiting
# workflow was not told and learns of the callback only at the end of its slice.
FAILED_FORWARDS = ("failed", "refused")
# The line waitForResponse writes when a wait times out (docs/operations.md,
# "Log lines the metrics count"): the event, and the fields on-call reads.
WAIT_TIMED_OUT_EVENT = "callback_wait_timed_out"
WAIT_TIMED_OUT_FIELDS = ("event", "runID", "step", "timeoutSeconds", "delivery")

# The four log-based metrics, by key; their names are "<base>/<key>".
REQUESTS = "requests"
FORWARD_FAILURES = "forward-failures"
PAGE_ANSWERS = "page-answers"
REGISTRATIONS_EXPIRED = "registrations-expired"
LOG_METRICS = (REQUESTS, FORWARD_FAILURES, PAGE_ANSWERS, REGISTRATIONS_EXPIRED)

# Alert thresholds (docs/operations.md, "Alerts", says why each).
# Cloud Run's own request count, not the receiver's log line: a crash, a
# timeout or an instance that does not start answers 5xx without any line.
RECEIVER_5XX_SHARE = 0.05
RECEIVER_5XX_SECONDS = 300
# Forwards happen only when callbacks come: a failure in every 5-minute
# window for 10 minutes is a push path that keeps failing, however few
# callbacks come; a single failure is recovered at the end of its slice.
FORWARD_FAILURE_WINDOW_SECONDS = 300
FORWARD_FAILURE_SECONDS = 600
# Every failed execution of the stack's workflow, at once.
FAILED_EXECUTION_SECONDS = 0
ALIGNMENT_SECONDS = 60


@dataclass(frozen=True)
class Watched:
    """What the monitoring watches, by the plain names known before anything is created."""

    project: str
    region: str
    # The stack's name base, as every other name starts with.
    base: str
    # The receiver's Cloud Run service: a gen2 function's service has its name.
    service: str
    workflow: str
    verify_workflow: str

    @classmethod
    def of(cls, args: CallbackBridgeArgs, names: ResourceNames) -> Watched:
        return cls(
            project=args.project,
            region=args.region,
            base=slug(args.name),
            service=names.function,
            workflow=names.workflow,
            verify_workflow=names.verify_workflow,
        )

    def metric_name(self, key: str) -> str:
        """A log metric's name: the stack's base (cut to fit, with a hash), then ``key``."""
        return f"{fit(self.base, MAX_METRIC_NAME - len(key) - 1)}/{key}"

    def metric_type(self, key: str) -> str:
        return f"logging.googleapis.com/user/{self.metric_name(key)}"

    def display_name(self, what: str) -> str:
        return f"{what} ({fit(self.base, 100)})"


# --- log filters (Logging query language: terms on separate lines are ANDed) ----------
def _receiver_terms(watched: Watched) -> list[str]:
    return [
        f'resource.type="{RECEIVER_RESOURCE}"',
        f'resource.labels.service_name="{watched.service}"',
        f'resource.labels.location="{watched.region}"',
    ]


def requests_filter(watched: Watched) -> str:
    """Every request line of the receiver (each has an outcome)."""
    return "\n".join([*_receiver_terms(watched), "jsonPayload.outcome:*"])


def forward_failures_filter(watched: Watched) -> str:
    """Request lines whose push did not reach the waiting execution."""
    either = " OR ".join(f'jsonPayload.forward="{outcome}"' for outcome in FAILED_FORWARDS)
    return "\n".join([*_receiver_terms(watched), f"({either})"])


def page_answers_filter(watched: Watched) -> str:
    """Cloud Run's request log of each POST to a page URL: a person's answer.

    The receiver's own line does not say whether a POST came from the page,
    but the page posts to its own URL, which carries view=page
    (function/approval_page.py is_page_request).
    """
    return "\n".join(
        [
            *_receiver_terms(watched),
            f'logName="projects/{watched.project}/logs/{CLOUD_RUN_REQUEST_LOG}"',
            'httpRequest.requestMethod="POST"',
            'httpRequest.requestUrl=~"[?&]view=page(&|$)"',
        ]
    )


def registrations_expired_filter(watched: Watched) -> str:
    """The workflow's line for a wait that timed out, in either of the stack's workflows."""
    workflows = " OR ".join(
        f'resource.labels.workflow_id="{name}"'
        for name in (watched.workflow, watched.verify_workflow)
    )
    return "\n".join(
        [
            f'resource.type="{WORKFLOW_RESOURCE}"',
            f'resource.labels.location="{watched.region}"',
            f"({workflows})",
            f'logName="projects/{watched.project}/logs/{WORKFLOW_LOG}"',
            f'jsonPayload.event="{WAIT_TIMED_OUT_EVENT}"',
        ]
    )


@dataclass(frozen=True)
class LogMetricSpec:
    """One counter: what it counts, and the labels it extracts (name -> (extractor, meaning))."""

    display_name: str
    description: str
    filter: str
    labels: Mapping[str, tuple[str, str]]


def log_metric_specs(watched: Watched) -> dict[str, LogMetricSpec]:
    return {
        REQUESTS: LogMetricSpec(
            "Callback receiver requests",
            "Requests the callback receiver answered, by status class and outcome "
            "(workflow-callbacks).",
            requests_filter(watched),
            {
                # The field is a number; the extractor sees it as text, so
                # its first digit is the class whatever the number's format.
                "status_class": (
                    'REGEXP_EXTRACT(jsonPayload.status, "^([1-5])")',
                    "First digit of the HTTP status: 2, 4 or 5 (2xx, 4xx, 5xx).",
                ),
                "outcome": (
                    "EXTRACT(jsonPayload.outcome)",
                    "The receiver's outcome: stored, forbidden, unavailable... (docs/protocol.md).",
                ),
            },
        ),
        FORWARD_FAILURES: LogMetricSpec(
            "Callback forward failures",
            "Stored callbacks whose push to the waiting execution failed or was refused "
            "(workflow-callbacks).",
            forward_failures_filter(watched),
            {
                "forward": ("EXTRACT(jsonPayload.forward)", "failed or refused."),
                "forward_status": (
                    "EXTRACT(jsonPayload.forwardStatus)",
                    "The callback endpoint's last HTTP status; empty if none answered.",
                ),
            },
        ),
        PAGE_ANSWERS: LogMetricSpec(
            "Callback page answers",
            "Answers posted from the page for people, by HTTP status (workflow-callbacks).",
            page_answers_filter(watched),
            {"status": ("EXTRACT(httpRequest.status)", "The HTTP status of the answer.")},
        ),
        REGISTRATIONS_EXPIRED: LogMetricSpec(
            "Callback waits timed out",
            "waitForResponse calls that timed out: registrations that expired unanswered "
            "(workflow-callbacks).",
            registrations_expired_filter(watched),
            {"workflow": ("EXTRACT(resource.labels.workflow_id)", "The workflow that waited.")},
        ),
    }


# --- alert conditions (Monitoring filters) ---------------------------------------------
def _receiver_requests(watched: Watched) -> str:
    return (
        f'resource.type="{RECEIVER_RESOURCE}" AND '
        f'resource.labels.service_name="{watched.service}" AND '
        f'resource.labels.location="{watched.region}" AND '
        'metric.type="run.googleapis.com/request_count"'
    )


def receiver_5xx_filters(watched: Watched) -> tuple[str, str]:
    """(5xx answers, all answers) of the receiver's service, as Cloud Run counts them."""
    all_answers = _receiver_requests(watched)
    return f'{all_answers} AND metric.labels.response_code_class="5xx"', all_answers


def forward_failures_condition_filter(watched: Watched) -> str:
    return (
        f'resource.type="{RECEIVER_RESOURCE}" AND '
        f'metric.type="{watched.metric_type(FORWARD_FAILURES)}"'
    )


def failed_executions_filter(watched: Watched) -> str:
    """Finished executions of the stack's workflow (not the verification one) that FAILED."""
    return (
        f'resource.type="{WORKFLOW_RESOURCE}" AND '
        f'resource.labels.workflow_id="{watched.workflow}" AND '
        f'resource.labels.location="{watched.region}" AND '
        'metric.type="workflows.googleapis.com/finished_execution_count" AND '
        'metric.labels.status="FAILED"'
    )


def _sum_every(seconds: int) -> list[dict[str, str]]:
    """One series: the count in each window of ``seconds``, summed over revisions.

    One series per condition is also what alerting bills least for.
    """
    return [
        {
            "alignment_period": f"{seconds}s",
            "per_series_aligner": "ALIGN_SUM",
            "cross_series_reducer": "REDUCE_SUM",
        }
    ]


def _aggregations(
    aggregations: Sequence[Mapping[str, str]],
) -> list[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs]:
    return [
        gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(**aggregation)
        for aggregation in aggregations
    ]


@dataclass(frozen=True)
class AlertSpec:
    """One alert policy with one threshold condition."""

    key: str
    display_name: str
    severity: str
    condition: dict[str, Any]
    subject: str
    documentation: str


def alert_specs(watched: Watched) -> list[AlertSpec]:
    five_xx, all_answers = receiver_5xx_filters(watched)
    logs = (
        "https://console.cloud.google.com/logs/query"
        f"?project={watched.project}"  # the query itself is in the text: it is long
    )
    return [
        AlertSpec(
            "receiver-5xx",
            watched.display_name("Callback receiver answers 5xx"),
            "ERROR",
            {
                "filter": five_xx,
                "denominator_filter": all_answers,
                "aggregations": _sum_every(ALIGNMENT_SECONDS),
                "denominator_aggregations": _sum_every(ALIGNMENT_SECONDS),
                "comparison": "COMPARISON_GT",
                "threshold_value": RECEIVER_5XX_SHARE,
                "duration": f"{RECEIVER_5XX_SECONDS}s",
            },
            f"[{watched.base}] callback receiver answers 5xx",
            _receiver_5xx_text(watched, logs),
        ),
        AlertSpec(
            "forward-failures",
            watched.display_name("Callback forwards keep failing"),
            "WARNING",
            {
                "filter": forward_failures_condition_filter(watched),
                "aggregations": _sum_every(FORWARD_FAILURE_WINDOW_SECONDS),
                "comparison": "COMPARISON_GT",
                "threshold_value": 0,
                "duration": f"{FORWARD_FAILURE_SECONDS}s",
            },
            f"[{watched.base}] callback forwards keep failing",
            _forward_failures_text(watched, logs),
        ),
        AlertSpec(
            "failed-executions",
            watched.display_name("Workflow executions fail"),
            "ERROR",
            {
                "filter": failed_executions_filter(watched),
                "aggregations": _sum_every(ALIGNMENT_SECONDS),
                "comparison": "COMPARISON_GT",
                "threshold_value": 0,
                "duration": f"{FAILED_EXECUTION_SECONDS}s",
            },
            f"[{watched.base}] workflow {watched.workflow} executions fail",
            _failed_executions_text(watched),
        ),
    ]


def _receiver_5xx_text(watched: Watched, logs: str) -> str:
    return f"""\
More than {RECEIVER_5XX_SHARE:.0%} of the answers of the callback receiver \
`{watched.service}` (stack `{watched.base}`, {watched.region}) were 5xx, in every \
minute for {RECEIVER_5XX_SECONDS // 60} minutes. Callers are being turned away: \
most retry, some give up, and their workflows then wait until they time out.

**Check first**

1. The receiver's error lines ([Logs Explorer]({logs})):
   `resource.type="cloud_run_revision" resource.labels.service_name="{watched.service}" \
jsonPayload.status>=500`.
   `outcome` `unavailable` (503) is Firestore refusing or unreachable: check the \
database and Firestore's status. `outcome` `error` (500) carries `error` and \
`stack_trace`: on every request right after a deploy, it is usually a setting the \
receiver refuses; roll back or fix the stack config and `pulumi up`.
2. No receiver line for the failing requests: the instance crashed, timed out \
or did not start. Cloud Run's own logs of the service say which (memory limit, \
startup failure); `functionMemory`, `functionTimeoutSeconds`.
3. 429s are not counted here: too many requests at once is `functionMaxInstances` \
and `functionConcurrency`.

docs/operations.md, "Receiver answers 5xx", has the rest.
"""


def _forward_failures_text(watched: Watched, logs: str) -> str:
    return f"""\
The callback receiver `{watched.service}` (stack `{watched.base}`) stored callbacks \
but could not push them to the waiting executions, in every \
{FORWARD_FAILURE_WINDOW_SECONDS // 60}-minute window for \
{FORWARD_FAILURE_SECONDS // 60} minutes. No callback is lost: each waiting \
execution reads Firestore at the end of its slice (`pushSliceSeconds`, an hour by \
default) and resumes then. Until it is fixed, push delivery is as slow as that.

**Check first**

1. The failing lines ([Logs Explorer]({logs})):
   `resource.type="cloud_run_revision" resource.labels.service_name="{watched.service}" \
(jsonPayload.forward="failed" OR jsonPayload.forward="refused")`.
2. `forward` `refused`: the registration's endpoint is not this project's and \
region's Workflows callback endpoint; a workflow from another project or region \
registers callbacks here.
3. `forward` `failed` with `forwardStatus` 403: the receiver's account lost \
`workflows.callbacks.send` (its custom role, `pulumi up` restores it). 5xx or no \
status (`forwardDetail`): Workflows is unreachable; check its status page.

docs/operations.md, "Forwards keep failing", has the rest.
"""


def _failed_executions_text(watched: Watched) -> str:
    executions = (
        "https://console.cloud.google.com/workflows/workflow/"
        f"{watched.region}/{watched.workflow}/executions?project={watched.project}"
    )
    return f"""\
An execution of the workflow `{watched.workflow}` (stack `{watched.base}`, \
{watched.region}) failed.

**Check first**

1. The failed execution's error ([executions]({executions}), or \
`gcloud workflows executions list {watched.workflow} --location={watched.region} \
--project={watched.project} --filter=state=FAILED --limit=5`, then `describe`).
2. `TimeoutError` from `waitForResponse`: nobody called back in time. Was the \
callback URL sent, and did the caller get an answer (the receiver's line for that \
`runID` and `step`)? The dashboard's "waits timed out" chart shows whether it is \
one wait or many.
3. Any other error: the workflow's own steps; `callLogLevel` `LOG_ERRORS_ONLY` \
logs the failing call.

docs/operations.md, "Executions fail", has the rest.
"""


# --- dashboard -------------------------------------------------------------------------
DASHBOARD_COLUMNS = 12
TILE_WIDTH = 6
TILE_HEIGHT = 4


def _series(
    filter_: str,
    seconds: int,
    group_by: Sequence[str] = (),
    aligner: str = "ALIGN_SUM",
    reducer: str = "REDUCE_SUM",
    legend: str = "",
    plot: str = "STACKED_BAR",
) -> dict[str, Any]:
    data_set: dict[str, Any] = {
        "timeSeriesQuery": {
            "timeSeriesFilter": {
                "filter": filter_,
                "aggregation": {
                    "alignmentPeriod": f"{seconds}s",
                    "perSeriesAligner": aligner,
                    "crossSeriesReducer": reducer,
                    "groupByFields": list(group_by),
                },
            }
        },
        "plotType": plot,
    }
    if legend:
        data_set["legendTemplate"] = legend
    return data_set


def _chart(title: str, y_label: str, *data_sets: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": title,
        "xyChart": {
            "dataSets": list(data_sets),
            "yAxis": {"label": y_label, "scale": "LINEAR"},
        },
    }


def dashboard_widgets(watched: Watched) -> list[dict[str, Any]]:
    """The dashboard's charts, in reading order."""
    log_metric = {
        key: f'resource.type="{RECEIVER_RESOURCE}" AND metric.type="{watched.metric_type(key)}"'
        for key in (REQUESTS, FORWARD_FAILURES, PAGE_ANSWERS)
    }
    expired = (
        f'resource.type="{WORKFLOW_RESOURCE}" AND '
        f'metric.type="{watched.metric_type(REGISTRATIONS_EXPIRED)}"'
    )
    latency = (
        f'resource.type="{RECEIVER_RESOURCE}" AND '
        f'resource.labels.service_name="{watched.service}" AND '
        f'resource.labels.location="{watched.region}" AND '
        'metric.type="run.googleapis.com/request_latencies"'
    )
    executions = (
        f'resource.type="{WORKFLOW_RESOURCE}" AND '
        f'resource.labels.workflow_id="{watched.workflow}" AND '
        f'resource.labels.location="{watched.region}" AND '
        'metric.type="workflows.googleapis.com/finished_execution_count"'
    )
    minute = ALIGNMENT_SECONDS
    return [
        _chart(
            "Callbacks per minute by status",
            "requests / min",
            _series(
                log_metric[REQUESTS],
                minute,
                ["metric.label.status_class"],
                legend="${metric.labels.status_class}xx",
            ),
        ),
        _chart(
            "Callbacks per minute by outcome",
            "requests / min",
            _series(log_metric[REQUESTS], minute, ["metric.label.outcome"]),
        ),
        _chart(
            "Receiver latency p50 / p95 (Cloud Run)",
            "ms",
            *(
                _series(
                    latency,
                    minute,
                    aligner="ALIGN_DELTA",
                    reducer=f"REDUCE_PERCENTILE_{percentile}",
                    legend=f"p{percentile}",
                    plot="LINE",
                )
                for percentile in (50, 95)
            ),
        ),
        _chart(
            "Forward failures per minute",
            "forwards / min",
            _series(log_metric[FORWARD_FAILURES], minute, ["metric.label.forward"]),
        ),
        _chart(
            f"Executions of {watched.workflow} by state (per 5 min)",
            "executions",
            _series(executions, 300, ["metric.label.status"]),
        ),
        _chart(
            "Waits timed out: registrations expired (per 5 min)",
            "waits",
            _series(expired, 300, ["metric.label.workflow"]),
        ),
        _chart(
            "Page answers per minute by status",
            "answers / min",
            _series(log_metric[PAGE_ANSWERS], minute, ["metric.label.status"]),
        ),
        {
            "title": "About this dashboard",
            "text": {
                "content": (
                    f"Stack `{watched.base}`: receiver `{watched.service}`, workflow "
                    f"`{watched.workflow}` in {watched.region}. What each chart and alert "
                    "means, and what to do first: docs/operations.md in the "
                    "workflow-callbacks repository."
                ),
                "format": "MARKDOWN",
            },
        },
    ]


def dashboard_json(watched: Watched) -> str:
    per_row = DASHBOARD_COLUMNS // TILE_WIDTH
    tiles = [
        {
            "xPos": (index % per_row) * TILE_WIDTH,
            "yPos": (index // per_row) * TILE_HEIGHT,
            "width": TILE_WIDTH,
            "height": TILE_HEIGHT,
            "widget": widget,
        }
        for index, widget in enumerate(dashboard_widgets(watched))
    ]
    return json.dumps(
        {
            "displayName": watched.display_name("Workflow callbacks"),
            "mosaicLayout": {"columns": DASHBOARD_COLUMNS, "tiles": tiles},
        },
        indent=2,
    )


def dashboard_url(dashboard_id: str, project: str) -> str:
    """The console page of a dashboard, from its id (projects/P/dashboards/ID)."""
    return (
        "https://console.cloud.google.com/monitoring/dashboards/builder/"
        f"{dashboard_id.rsplit('/', 1)[-1]}?project={project}"
    )


# --- the resources ---------------------------------------------------------------------
def add_monitoring(
    bridge: pulumi.ComponentResource,
    name: str,
    args: CallbackBridgeArgs,
    names: ResourceNames,
    labels: Mapping[str, str],
    logging_api: Sequence[pulumi.Resource],
) -> pulumi.Output[str]:
    """Every monitoring resource of the stack, children of ``bridge``; the dashboard's URL.

    Nothing (and an empty URL) when ``args.monitoring`` is off.
    """
    if not args.monitoring:
        if args.notification_channel_ids or args.alert_email_addresses:
            pulumi.log.warn(
                "alertEmails or alertNotificationChannels is set but monitoring is false: "
                "no alert will be created, so nobody will be notified.",
                resource=bridge,
            )
        return pulumi.Output.from_input("")
    watched = Watched.of(args, names)

    def child(*depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=bridge, depends_on=list(depends_on))

    monitoring_api: list[pulumi.Resource] = []
    if args.enable_apis:
        # Left enabled on destroy, like the stack's other services.
        monitoring_api.append(
            gcp.projects.Service(
                f"{name}-api-monitoring",
                project=args.project,
                service=MONITORING_API,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=bridge),
            )
        )
    metrics = [
        _log_metric(name, key, spec, watched, child(*logging_api))
        for key, spec in log_metric_specs(watched).items()
    ]
    dashboard = gcp.monitoring.Dashboard(
        f"{name}-dashboard",
        project=args.project,
        dashboard_json=dashboard_json(watched),
        opts=child(*monitoring_api, *metrics),
    )
    url = dashboard.id.apply(lambda dashboard_id: dashboard_url(dashboard_id, args.project))
    channels: list[pulumi.Input[str]] = [
        *args.notification_channel_ids,
        *(
            _email_channel(name, email, watched, labels, child(*monitoring_api)).name
            for email in args.alert_email_addresses
        ),
    ]
    if channels:
        for spec in alert_specs(watched):
            _alert_policy(
                name, spec, channels, url, labels, args.project, child(*monitoring_api, *metrics)
            )
    return url


def _log_metric(
    name: str, key: str, spec: LogMetricSpec, watched: Watched, opts: pulumi.ResourceOptions
) -> gcp.logging.Metric:
    return gcp.logging.Metric(
        f"{name}-metric-{key}",
        project=watched.project,
        name=watched.metric_name(key),
        description=spec.description,
        filter=spec.filter,
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA",
            value_type="INT64",
            unit="1",
            display_name=spec.display_name,
            labels=[
                gcp.logging.MetricMetricDescriptorLabelArgs(
                    key=label, value_type="STRING", description=meaning
                )
                for label, (_, meaning) in spec.labels.items()
            ],
        ),
        label_extractors={label: extractor for label, (extractor, _) in spec.labels.items()},
        opts=opts,
    )


def _email_channel(
    name: str,
    email: str,
    watched: Watched,
    labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> gcp.monitoring.NotificationChannel:
    # Named by a hash of the address, so reordering alertEmails replaces nothing.
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:8]
    return gcp.monitoring.NotificationChannel(
        f"{name}-alert-email-{digest}",
        project=watched.project,
        type="email",
        display_name=watched.display_name(email),
        description=f"Alerts of the workflow-callbacks stack {watched.base}.",
        labels={"email_address": email},
        user_labels=dict(labels),
        opts=opts,
    )


def _alert_policy(
    name: str,
    spec: AlertSpec,
    channels: Sequence[pulumi.Input[str]],
    dashboard: pulumi.Output[str],
    labels: Mapping[str, str],
    project: str,
    opts: pulumi.ResourceOptions,
) -> gcp.monitoring.AlertPolicy:
    return gcp.monitoring.AlertPolicy(
        f"{name}-alert-{spec.key}",
        project=project,
        display_name=spec.display_name,
        combiner="OR",
        severity=spec.severity,
        conditions=[
            gcp.monitoring.AlertPolicyConditionArgs(
                display_name=spec.display_name,
                condition_threshold=_threshold(spec.condition),
            )
        ],
        notification_channels=list(channels),
        documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
            mime_type="text/markdown",
            subject=spec.subject,
            content=spec.documentation,
            links=[
                gcp.monitoring.AlertPolicyDocumentationLinkArgs(
                    display_name="Dashboard", url=dashboard
                )
            ],
        ),
        user_labels=dict(labels),
        opts=opts,
    )


def _threshold(
    condition: Mapping[str, Any],
) -> gcp.monitoring.AlertPolicyConditionConditionThresholdArgs:
    fields = dict(condition)
    denominator = fields.pop("denominator_aggregations", None)
    return gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
        aggregations=_aggregations(fields.pop("aggregations")),
        denominator_aggregations=(
            [
                gcp.monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
                    **aggregation
                )
                for aggregation in denominator
            ]
            if denominator
            else None
        ),
        # The counters write no point in a minute without a matching request
        # or line: no data is "nothing wrong", and an open incident closes
        # once the failures stop.
        evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
        **fields,
    )
