"""Monitoring under Pulumi mocks: which resources a stack gets, with which arguments.

The filters' match against the log lines the receiver really writes is
tests/infra/test_monitoring_log_lines.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from infra.component import TYPE_TOKEN
from infra.monitoring import (
    FORWARD_FAILURE_SECONDS,
    FORWARD_FAILURE_WINDOW_SECONDS,
    LOG_METRICS,
    MAX_DISPLAY_NAME,
    MAX_DOCUMENTATION_BYTES,
    MAX_DOCUMENTATION_CHARS,
    MAX_METRIC_NAME,
    RECEIVER_5XX_SECONDS,
    RECEIVER_5XX_SHARE,
    Watched,
    dashboard_url,
)
from infra.settings import SettingsError, build_args

METRIC = "gcp:logging/metric:Metric"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
SERVICE = "gcp:projects/service:Service"
MONITORING_TYPES = (METRIC, DASHBOARD, POLICY, CHANNEL)

CHANNEL_IDS = "projects/my-project/notificationChannels/111, projects/123/notificationChannels/222"
EMAILS = "oncall@example.com,Second.Person@Example.org"
# LogMetric.name's alphabet ("/" separates a hierarchy, never first).
METRIC_NAME = re.compile(r"[A-Za-z0-9_\-.,+!*'()%][A-Za-z0-9_\-.,+!*'()%/]*")


class NamedByGoogle(pulumi.runtime.Mocks):
    """The conftest's cloud, plus the names Google gives channels and dashboards."""

    def __init__(self, cloud: pulumi.runtime.Mocks) -> None:
        self.cloud = cloud
        self.created = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        resource_id, state = self.cloud.new_resource(args)
        project = args.inputs.get("project", "mock-project")
        self.created += 1
        if args.typ == CHANNEL:
            resource_id = f"projects/{project}/notificationChannels/{9000 + self.created}"
            state = {**state, "name": resource_id}
        elif args.typ == DASHBOARD:
            # Google names a dashboard by the project's number and a UUID.
            resource_id = f"projects/123456789012/dashboards/uuid-{self.created}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        return self.cloud.call(args)


@pytest.fixture
def monitored(deploy, remembering_cloud):
    """deploy(config) with notification channels and dashboards named as Google names them."""

    def run(config: dict[str, Any] | None = None, stack: str = "dev"):
        return deploy(stack, config, cloud=NamedByGoogle(remembering_cloud))

    return run


@pytest.fixture
def alerting(monitored):
    return monitored({"alertEmails": EMAILS, "alertNotificationChannels": CHANNEL_IDS})


def policies(deployment) -> dict[str, Any]:
    """Alert policies by their key (the resource name after "-alert-")."""
    return {p.name.split("-alert-", 1)[1]: p for p in deployment.of_type(POLICY)}


def condition(policy) -> dict[str, Any]:
    [only] = policy.inputs["conditions"]
    return only["conditionThreshold"]


def monitoring_service(deployment) -> list[Any]:
    return [
        s for s in deployment.of_type(SERVICE) if s.inputs["service"] == "monitoring.googleapis.com"
    ]


# --- what a stack gets -----------------------------------------------------------------
def test_a_default_stack_gets_the_free_part_metrics_and_dashboard_and_no_paid_alerts(
    monitored,
) -> None:
    deployment = monitored()

    assert len(deployment.of_type(METRIC)) == 4
    assert len(deployment.of_type(DASHBOARD)) == 1
    # Alerting is billed per condition: nobody to tell, no policy.
    assert deployment.of_type(POLICY) == []
    assert deployment.of_type(CHANNEL) == []
    [service] = monitoring_service(deployment)
    assert service.inputs["disableOnDestroy"] is False


def test_every_monitoring_resource_is_a_child_of_the_component(alerting) -> None:
    [component] = alerting.of_type(TYPE_TOKEN)
    children = [r for t in MONITORING_TYPES for r in alerting.of_type(t)]

    assert len(children) == 4 + 1 + 3 + 2
    assert {r.parent for r in children} == {component.urn}
    assert monitoring_service(alerting)[0].parent == component.urn


def test_the_dashboard_url_is_an_output_naming_the_dashboard_and_project(monitored) -> None:
    deployment = monitored()

    assert re.fullmatch(
        r"https://console\.cloud\.google\.com/monitoring/dashboards/builder/uuid-\d+"
        r"\?project=my-project",
        deployment.outputs["dashboardUrl"],
    )


def test_the_url_is_made_from_the_last_segment_of_the_dashboard_id() -> None:
    assert dashboard_url("projects/42/dashboards/a1-b2", "p-1") == (
        "https://console.cloud.google.com/monitoring/dashboards/builder/a1-b2?project=p-1"
    )


def test_monitoring_off_creates_no_monitoring_resource_even_with_channels(monitored) -> None:
    deployment = monitored(
        {"monitoring": False, "alertEmails": EMAILS, "alertNotificationChannels": CHANNEL_IDS}
    )

    for type_ in MONITORING_TYPES:
        assert deployment.of_type(type_) == [], type_
    assert monitoring_service(deployment) == []
    assert deployment.outputs["dashboardUrl"] == ""


# --- notification channels -------------------------------------------------------------
def test_each_email_gets_an_email_channel(alerting) -> None:
    channels = alerting.of_type(CHANNEL)

    assert sorted(c.inputs["labels"]["email_address"] for c in channels) == [
        "Second.Person@Example.org",
        "oncall@example.com",
    ]
    assert {c.inputs["type"] for c in channels} == {"email"}
    assert {c.inputs["project"] for c in channels} == {"my-project"}


def test_every_alert_notifies_the_given_channels_and_the_email_channels(alerting) -> None:
    created = sorted(c.outputs["name"] for c in alerting.of_type(CHANNEL))
    given = [
        "projects/my-project/notificationChannels/111",
        "projects/123/notificationChannels/222",
    ]

    for key, policy in policies(alerting).items():
        channels = policy.inputs["notificationChannels"]
        assert channels[:2] == given, key
        assert sorted(channels[2:]) == created, key


def test_reordering_the_emails_keeps_each_channels_resource(monitored) -> None:
    def names(emails: str) -> dict[str, str]:
        deployment = monitored({"alertEmails": emails})
        return {c.inputs["labels"]["email_address"]: c.name for c in deployment.of_type(CHANNEL)}

    assert names("a@example.com,b@example.com") == names("b@example.com, a@example.com")


def test_existing_channels_alone_turn_the_alerts_on(monitored) -> None:
    deployment = monitored({"alertNotificationChannels": CHANNEL_IDS})

    assert set(policies(deployment)) == {"receiver-5xx", "forward-failures", "failed-executions"}
    assert deployment.of_type(CHANNEL) == []


# --- the alert conditions --------------------------------------------------------------
def _aggregation(seconds: int) -> list[dict[str, str]]:
    return [
        {
            "alignmentPeriod": f"{seconds}s",
            "perSeriesAligner": "ALIGN_SUM",
            "crossSeriesReducer": "REDUCE_SUM",
        }
    ]


def test_receiver_5xx_is_a_share_of_cloud_runs_count_for_this_service_held_5_minutes(
    alerting,
) -> None:
    threshold = condition(policies(alerting)["receiver-5xx"])
    this_service = (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="callbacks-dev" '
        'AND resource.labels.location="europe-west1" '
        'AND metric.type="run.googleapis.com/request_count"'
    )

    assert threshold["filter"] == this_service + ' AND metric.labels.response_code_class="5xx"'
    assert threshold["denominatorFilter"] == this_service
    assert threshold["aggregations"] == threshold["denominatorAggregations"] == _aggregation(60)
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0.05)
    assert threshold["duration"] == "300s"
    assert (RECEIVER_5XX_SHARE, RECEIVER_5XX_SECONDS) == (0.05, 300)


def test_forward_failures_alert_when_they_go_on_for_10_minutes(alerting) -> None:
    threshold = condition(policies(alerting)["forward-failures"])

    assert threshold["filter"] == (
        'resource.type="cloud_run_revision" AND '
        'metric.type="logging.googleapis.com/user/callbacks-dev/forward-failures"'
    )
    # A failure in every 5-minute window, for 10 minutes.
    assert threshold["aggregations"] == _aggregation(300)
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0)
    assert threshold["duration"] == "600s"
    assert FORWARD_FAILURE_WINDOW_SECONDS < FORWARD_FAILURE_SECONDS


def test_failed_executions_alert_at_once_for_this_stacks_workflow_only(alerting) -> None:
    threshold = condition(policies(alerting)["failed-executions"])

    assert threshold["filter"] == (
        'resource.type="workflows.googleapis.com/Workflow" AND '
        'resource.labels.workflow_id="callbacks-dev" AND '
        'resource.labels.location="europe-west1" AND '
        'metric.type="workflows.googleapis.com/finished_execution_count" AND '
        'metric.labels.status="FAILED"'
    )
    assert "callbacks-dev-verify" not in threshold["filter"]
    assert threshold["aggregations"] == _aggregation(60)
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_GT", 0)
    assert threshold["duration"] == "0s"


def test_no_data_is_nothing_wrong_for_every_condition(alerting) -> None:
    for key, policy in policies(alerting).items():
        assert condition(policy)["evaluationMissingData"] == ("EVALUATION_MISSING_DATA_INACTIVE"), (
            key
        )


def test_severities_say_which_alert_loses_callbacks(alerting) -> None:
    severities = {key: policy.inputs["severity"] for key, policy in policies(alerting).items()}

    assert severities == {
        "receiver-5xx": "ERROR",
        "forward-failures": "WARNING",
        "failed-executions": "ERROR",
    }


def test_alert_policies_wait_for_the_log_metrics_they_read(alerting) -> None:
    metrics = {m.name for m in alerting.of_type(METRIC)}

    for key, policy in policies(alerting).items():
        depends = {name for type_, name in alerting.dependency_types(policy) if type_ == METRIC}
        assert depends == metrics, key


# --- documentation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("receiver-5xx", ['service_name="callbacks-dev"', "jsonPayload.status>=500"]),
        ("forward-failures", ["jsonPayload.forward", "workflows.callbacks.send"]),
        ("failed-executions", ["gcloud workflows executions list callbacks-dev", "TimeoutError"]),
    ],
)
def test_each_alert_says_in_markdown_what_to_check_first(alerting, key, names) -> None:
    documentation = policies(alerting)[key].inputs["documentation"]
    content = documentation["content"]

    assert documentation["mimeType"] == "text/markdown"
    assert "**Check first**" in content
    assert "docs/operations.md" in content
    for name in names:
        assert name in content, name
    assert len(content) <= MAX_DOCUMENTATION_CHARS
    assert len(content.encode()) <= MAX_DOCUMENTATION_BYTES
    assert documentation["subject"].startswith("[callbacks-dev] ")
    assert documentation["links"] == [
        {"displayName": "Dashboard", "url": alerting.outputs["dashboardUrl"]}
    ]


# --- log-based metrics -----------------------------------------------------------------
def test_log_metrics_are_named_by_the_stack_and_count_with_labels(monitored) -> None:
    metrics = {m.inputs["name"]: m.inputs for m in monitored().of_type(METRIC)}

    assert set(metrics) == {
        "callbacks-dev/requests",
        "callbacks-dev/forward-failures",
        "callbacks-dev/page-answers",
        "callbacks-dev/registrations-expired",
    }
    labels = {
        name: {label["key"] for label in metric["metricDescriptor"]["labels"]}
        for name, metric in metrics.items()
    }
    assert labels == {
        "callbacks-dev/requests": {"status_class", "outcome"},
        "callbacks-dev/forward-failures": {"forward", "forward_status"},
        "callbacks-dev/page-answers": {"status"},
        "callbacks-dev/registrations-expired": {"workflow"},
    }
    for name, metric in metrics.items():
        descriptor = metric["metricDescriptor"]
        assert (descriptor["metricKind"], descriptor["valueType"]) == ("DELTA", "INT64"), name
        # Every label has an extractor, and only they do (Google refuses either mismatch).
        assert set(metric["labelExtractors"]) == labels[name], name
    assert metrics["callbacks-dev/requests"]["labelExtractors"]["status_class"] == (
        'REGEXP_EXTRACT(jsonPayload.status, "^([1-5])")'
    )


def test_two_stacks_never_share_a_metric_or_a_dashboard_title(monitored) -> None:
    def names(stack: str) -> tuple[set[str], str]:
        deployment = monitored(stack=stack)
        [dashboard] = deployment.of_type(DASHBOARD)
        title = json.loads(dashboard.inputs["dashboardJson"])["displayName"]
        return {m.inputs["name"] for m in deployment.of_type(METRIC)}, title

    dev, prod = names("dev"), names("prod")

    assert not dev[0] & prod[0]
    assert dev[1] != prod[1]


# The longest stack name the settings accept with the default namePrefix: a
# service account's display name holds the base in at most 100 bytes.
LONG_STACK = "feature-" + "long-branch-name-" * 3 + "ab"


def test_names_fit_googles_limits_for_the_longest_stack_name(monitored) -> None:
    deployment = monitored(
        {"alertEmails": "someone.with.a.long.address@example.com"}, stack=LONG_STACK
    )
    metric_names = [m.inputs["name"] for m in deployment.of_type(METRIC)]

    assert len(LONG_STACK) == 61
    assert len(set(metric_names)) == 4
    for name in metric_names:
        assert len(name) <= MAX_METRIC_NAME, name
        assert METRIC_NAME.fullmatch(name), name
    titles = [p.inputs["displayName"] for p in deployment.of_type(POLICY)]
    titles += [c["displayName"] for p in deployment.of_type(POLICY) for c in p.inputs["conditions"]]
    titles += [c.inputs["displayName"] for c in deployment.of_type(CHANNEL)]
    assert len(titles) == 3 + 3 + 1
    for title in titles:
        assert 0 < len(title) <= MAX_DISPLAY_NAME, title


def test_a_base_too_long_for_a_metric_name_is_cut_and_stays_distinct() -> None:
    # Only another Pulumi program's own names could be this long; the cut
    # keeps a hash of the whole base, so two of them never share a metric.
    def watched(base: str) -> Watched:
        return Watched("my-project", "europe-west1", base, base[:49], base[:64], base[:64])

    first, second = watched("x" * 150 + "-a"), watched("x" * 150 + "-b")

    for key in LOG_METRICS:
        for name in (first.metric_name(key), second.metric_name(key)):
            assert len(name) <= MAX_METRIC_NAME, name
            assert METRIC_NAME.fullmatch(name), name
            assert name.endswith("/" + key)
        assert first.metric_name(key) != second.metric_name(key)
    assert len(first.display_name("Workflow executions fail")) <= MAX_DISPLAY_NAME


# --- the dashboard ---------------------------------------------------------------------
def dashboard_of(deployment) -> dict[str, Any]:
    [dashboard] = deployment.of_type(DASHBOARD)
    return json.loads(dashboard.inputs["dashboardJson"])


def charts(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each chart's title -> its data sets' filter and aggregation."""
    return {
        tile["widget"]["title"]: [
            data_set["timeSeriesQuery"]["timeSeriesFilter"]
            for data_set in tile["widget"]["xyChart"]["dataSets"]
        ]
        for tile in dashboard["mosaicLayout"]["tiles"]
        if "xyChart" in tile["widget"]
    }


def test_the_dashboard_has_the_charts_on_call_needs(monitored) -> None:
    deployment = monitored()
    shown = charts(dashboard_of(deployment))
    metric_types = {
        f"logging.googleapis.com/user/{m.inputs['name']}" for m in deployment.of_type(METRIC)
    }

    by_status = shown["Callbacks per minute by status"][0]
    assert by_status["aggregation"]["groupByFields"] == ["metric.label.status_class"]
    latency = shown["Receiver latency p50 / p95 (Cloud Run)"]
    assert [s["aggregation"]["crossSeriesReducer"] for s in latency] == [
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_95",
    ]
    assert all('metric.type="run.googleapis.com/request_latencies"' in s["filter"] for s in latency)
    assert all('service_name="callbacks-dev"' in s["filter"] for s in latency)
    executions = shown["Executions of callbacks-dev by state (per 5 min)"][0]
    assert "workflows.googleapis.com/finished_execution_count" in executions["filter"]
    assert 'workflow_id="callbacks-dev"' in executions["filter"]
    assert executions["aggregation"]["groupByFields"] == ["metric.label.status"]
    assert "Forward failures per minute" in shown
    assert "Waits timed out: registrations expired (per 5 min)" in shown
    # Every log-based metric is on a chart, and every chart's metric exists.
    read = {
        match
        for data_sets in shown.values()
        for data_set in data_sets
        for match in re.findall(
            r'metric\.type="(logging\.googleapis\.com/user/[^"]+)"', data_set["filter"]
        )
    }
    assert read == metric_types


def test_dashboard_tiles_fit_the_grid_without_overlapping(monitored) -> None:
    layout = dashboard_of(monitored())["mosaicLayout"]
    taken: set[tuple[int, int]] = set()

    for tile in layout["tiles"]:
        assert tile["xPos"] + tile["width"] <= layout["columns"]
        cells = {
            (x, y)
            for x in range(tile["xPos"], tile["xPos"] + tile["width"])
            for y in range(tile["yPos"], tile["yPos"] + tile["height"])
        }
        assert not cells & taken, tile["widget"].get("title")
        taken |= cells


# --- settings --------------------------------------------------------------------------
def _problems(**values: Any) -> list[str]:
    try:
        build_args("my-project", "europe-west1", "dev", values)
    except SettingsError as error:
        return error.problems
    return []


def test_good_channels_and_emails_are_accepted_and_reach_the_arguments() -> None:
    args = build_args(
        "my-project",
        "europe-west1",
        "dev",
        {"alertEmails": EMAILS, "alertNotificationChannels": CHANNEL_IDS, "monitoring": False},
    )

    assert args.alert_email_addresses == ["oncall@example.com", "Second.Person@Example.org"]
    assert args.notification_channel_ids == [
        "projects/my-project/notificationChannels/111",
        "projects/123/notificationChannels/222",
    ]
    assert args.monitoring is False
    assert build_args("my-project", "europe-west1", "dev").monitoring is True


@pytest.mark.parametrize(
    "channel",
    [
        "1234567890",  # the id alone
        "Oncall email",  # a display name
        "projects/my-project/notificationChannels/",
        "projects/my-project/alertPolicies/123",
        "projects/My_Project/notificationChannels/123",
        "oncall@example.com",
    ],
)
def test_a_channel_that_is_not_a_channel_id_is_refused_with_the_form(channel: str) -> None:
    [problem] = _problems(alertNotificationChannels=channel)

    assert problem.startswith(f"alertNotificationChannels {channel!r} is not a notification")
    assert "projects/my-project/notificationChannels/1234567890" in problem


@pytest.mark.parametrize(
    "email", ["oncall", "oncall@example", "on call@example.com", "a@b@example.com", "<a@b.com>"]
)
def test_an_email_that_is_not_an_address_is_refused(email: str) -> None:
    [problem] = _problems(alertEmails=email)

    assert problem == f"alertEmails {email!r} is not an email address like oncall@example.com"


def test_an_address_or_channel_listed_twice_is_refused() -> None:
    problems = _problems(
        alertEmails="a@example.com, A@Example.com",
        alertNotificationChannels=(
            "projects/p-1234/notificationChannels/1,projects/p-1234/notificationChannels/1"
        ),
    )

    assert problems == [
        "alertNotificationChannels lists 'projects/p-1234/notificationChannels/1' more than once",
        "alertEmails lists 'a@example.com' more than once",
    ]
