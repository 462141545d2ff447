"""CloudWatch dashboards, generated from the declarations: one per integration and one overview.

The metrics are the ones the functions emit (namespace ``Junction``, EMF) with exactly their
dimension sets (``{Integration, Target}`` for a processor's, ``{Integration}`` for the ingress's and
the poller's), and AWS's own (SQS and Lambda by physical name, API Gateway per route). The dashboards
are in the stage's nested stack (``infra/observability.py``). Panels drawn on a metric the
functions do not emit yet name it in ``PROPOSED``; they fill in once the functions emit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from infra import alarms
from infra.observability import lambda_metric, sqs_metric
from shared.declaration import function_name, queue_name

if TYPE_CHECKING:
    from infra.stack import JunctionStack
    from shared.declaration import Integration, Target

PERIOD = Duration.minutes(5)
# What a processor emits per batch (shared/processing.py ``_emit_metrics``), by outcome.
PROCESSOR_OUTCOMES = (
    "Message_delivered",
    "Message_duplicate",
    "Message_retry_scheduled",
    "Message_dead_lettered",
    "Message_rejected_item",
    "Item_stale",
)
# What an ingress emits per request (shared/ingress.py ``_outcome``): ``Webhook_<outcome>``.
INGRESS_OUTCOMES = (
    "Webhook_accepted",
    "Webhook_ping",
    "Webhook_bad_request",
    "Webhook_unauthorized",
    "Webhook_too_large",
    "Webhook_unavailable",
    "Webhook_error",
)
# What a poller emits per run (shared/polling.py).
POLLER_RUNS = ("Poll_run", "Poll_pages", "Poll_changes", "Poll_failed", "Poll_overlap")
# Metrics the dashboards draw that the processors do not emit yet; each with dimensions
# {Integration, Target}, in the batch's one EMF record (see docs/infra.md, Dashboards).
PROPOSED = {
    "Message_dead_lettered_business": "Count: dead-lettered by a PermanentError the data or the target caused "
    "(not ConfigurationError, MalformedEnvelope or a claim-check error), and rejected items",
    "Message_dead_lettered_system": "Count: dead-lettered by retries_exhausted, configuration, malformed_envelope "
    "or a claim-check error",
    "Target_latency_ms": "Milliseconds: one value per record that called the target (Flow.deliver), success or not",
    "Message_rate_limited": "Count: records whose attempt ended in RateLimited (a 429 or throttling answer)",
    "Breaker_open": "None (gauge): 1 if the target's breaker is open or half-open when the batch ends, else 0",
}


def _graph(
    title: str,
    left: Sequence[cloudwatch.IMetric],
    right: Sequence[cloudwatch.IMetric] = (),
    *,
    width: int = 8,
    height: int = 6,
    left_label: str | None = None,
    right_label: str | None = None,
    annotations: Sequence[cloudwatch.HorizontalAnnotation] = (),
    stacked: bool = False,
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title,
        left=list(left),
        right=list(right),
        width=width,
        height=height,
        left_y_axis=cloudwatch.YAxisProps(label=left_label, show_units=False, min=0) if left_label else None,
        right_y_axis=cloudwatch.YAxisProps(label=right_label, show_units=False, min=0) if right_label else None,
        left_annotations=list(annotations) or None,
        stacked=stacked,
        period=PERIOD,
    )


def _m(
    stack: JunctionStack,
    i: Integration,
    name: str,
    *,
    target: Target | None = None,
    statistic: str = "Sum",
    label: str | None = None,
) -> cloudwatch.Metric:
    metric = stack.junction_metric(i, name, PERIOD, target=target, statistic=statistic)
    return metric.with_(label=label) if label else metric


def _alarm_widgets(title: str, found: Sequence[cloudwatch.IAlarm], width: int = 24) -> list[cloudwatch.IWidget]:
    """Alarm status widgets, at most 100 alarms each (CloudWatch's limit)."""
    return [
        cloudwatch.AlarmStatusWidget(
            title=title if n == 0 else f"{title} ({n + 1})",
            alarms=list(found[start : start + 100]),
            width=width,
            height=max(2, min(6, 1 + (len(found[start : start + 100]) + 3) // 4)),
            sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
        )
        for n, start in enumerate(range(0, len(found), 100))
    ]


def dashboard_name(stage: str, integration: Integration | None = None) -> str:
    """``junction-<stage>`` (the overview) or ``junction-<stage>-<integration>``."""
    return f"junction-{stage}" + (f"-{integration.name}" if integration else "")


def _console_link(name: str) -> str:
    return (
        f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}#dashboards/dashboard/{name}"
    )


def _runbook(stack: JunctionStack, kind: alarms.AlarmKind) -> str:
    return alarms.runbook_url(stack.runbook_base_url, kind)


# ------------------------------------------------------------------------------ per integration
def _target_rows(stack: JunctionStack, i: Integration, t: Target) -> list[cloudwatch.IWidget]:
    from infra.stack import target_key

    key = target_key(i, t)
    queue, dlq = queue_name(stack.stage, i, t), queue_name(stack.stage, i, t, dead_letter=True)
    processor = function_name(stack.stage, i, f"{t.name}-processor")
    visible = sqs_metric(queue, "ApproximateNumberOfMessagesVisible", period=PERIOD, label="visible")
    age = sqs_metric(queue, "ApproximateAgeOfOldestMessage", period=PERIOD, label="oldest (s)")
    dlq_visible = sqs_metric(dlq, "ApproximateNumberOfMessagesVisible", period=PERIOD, label="DLQ visible")
    dlq_age = sqs_metric(dlq, "ApproximateAgeOfOldestMessage", period=PERIOD, label="DLQ oldest (s)")
    outcomes = [
        _m(stack, i, "Message_delivered", target=t, label="delivered"),
        _m(stack, i, "Message_duplicate", target=t, label="duplicate"),
        _m(stack, i, "Message_retry_scheduled", target=t, label="retried"),
        _m(stack, i, "Message_dead_lettered_business", target=t, label="dead-lettered: business"),
        _m(stack, i, "Message_dead_lettered_system", target=t, label="dead-lettered: system"),
        _m(stack, i, "Message_dead_lettered", target=t, label="dead-lettered (all)"),
        _m(stack, i, "Message_rejected_item", target=t, label="rejected items"),
        _m(stack, i, "Item_stale", target=t, label="stale items"),
    ]
    latency = [
        _m(stack, i, "Target_latency_ms", target=t, statistic="p50", label="target p50 (ms)"),
        _m(stack, i, "Target_latency_ms", target=t, statistic="p99", label="target p99 (ms)"),
    ]
    duration = [
        lambda_metric(processor, "Duration", period=PERIOD, statistic="p50", label="processor p50 (ms)"),
        lambda_metric(processor, "Duration", period=PERIOD, statistic="p99", label="processor p99 (ms)"),
    ]
    throttles = [
        lambda_metric(processor, "Throttles", period=PERIOD, label="Lambda throttles"),
        _m(stack, i, "Message_rate_limited", target=t, label="rate limited (429)"),
        _m(stack, i, "Message_waiting", target=t, label="waiting (breaker, not-before)"),
    ]
    breaker = [
        _m(stack, i, "Breaker_opened", target=t, label="breaker opened"),
        _m(stack, i, "Breaker_open", target=t, statistic="Maximum", label="breaker open (1) / closed (0)"),
    ]
    where = key
    return [
        cloudwatch.TextWidget(markdown=f"### {where}", width=24, height=1),
        _graph(
            f"{where}: queue depth and age",
            [visible],
            [age],
            left_label="messages",
            right_label="seconds",
        ),
        _graph(f"{where}: DLQ depth", [dlq_visible], [dlq_age], left_label="messages", right_label="seconds"),
        _graph(f"{where}: delivered, duplicate, retried, dead-lettered", outcomes, left_label="messages"),
        _graph(f"{where}: target latency", latency, duration, left_label="ms", right_label="ms"),
        _graph(f"{where}: throttles", throttles, left_label="count"),
        _graph(f"{where}: circuit breaker", breaker[:1], breaker[1:], left_label="openings", right_label="state"),
    ]


def _ingress_rows(stack: JunctionStack, i: Integration) -> list[cloudwatch.IWidget]:
    webhook = i.webhook
    assert webhook is not None
    ingress = function_name(stack.stage, i, "ingress")
    route = f"{webhook.method.upper()} {webhook.path}"
    gateway = [
        stack.api_metric(i, "Count").with_(label="requests"),
        stack.api_metric(i, "4xx").with_(label="4xx"),
        stack.api_metric(i, "5xx").with_(label="5xx"),
    ]
    latency = [
        stack.api_metric(i, "Latency", statistic="p50").with_(label="p50 (ms)"),
        stack.api_metric(i, "Latency", statistic="p99").with_(label="p99 (ms)"),
    ]
    outcomes = [_m(stack, i, name, label=name.removeprefix("Webhook_")) for name in INGRESS_OUTCOMES]
    function = [
        lambda_metric(ingress, "Errors", period=PERIOD, label="errors"),
        lambda_metric(ingress, "Throttles", period=PERIOD, label="throttles"),
    ]
    return [
        cloudwatch.TextWidget(markdown=f"### Ingress: {route}", width=24, height=1),
        _graph(f"{route}: requests, 4xx, 5xx (API Gateway)", gateway, left_label="requests", width=6),
        _graph(f"{route}: 2xx and refusals by reason (ingress)", outcomes, left_label="requests", width=6),
        _graph(f"{route}: latency (API Gateway)", latency, left_label="ms", width=6),
        _graph(f"{i.name} ingress function: errors and throttles", function, left_label="count", width=6),
    ]


def _poller_rows(stack: JunctionStack, i: Integration) -> list[cloudwatch.IWidget]:
    from infra.stack import poll_lag_threshold_seconds

    poller = function_name(stack.stage, i, "poller")
    threshold = poll_lag_threshold_seconds(i)
    lag = _m(stack, i, "Poll_lag_seconds", statistic="Maximum", label="cursor lag (s)")
    runs = [_m(stack, i, name, label=name.removeprefix("Poll_")) for name in POLLER_RUNS]
    function = [
        lambda_metric(poller, "Errors", period=PERIOD, label="errors"),
        lambda_metric(poller, "Throttles", period=PERIOD, label="throttles"),
        lambda_metric(poller, "Duration", period=PERIOD, statistic="Maximum", label="longest run (ms)"),
    ]
    return [
        cloudwatch.TextWidget(
            markdown=f"### Poller: {i.schedule.expression if i.schedule else ''}", width=24, height=1
        ),
        _graph(
            f"{i.name}: poller cursor lag",
            [lag],
            left_label="seconds",
            annotations=[cloudwatch.HorizontalAnnotation(value=threshold, label="alarm")],
        ),
        _graph(f"{i.name}: poller runs, pages, changes, failures", runs, left_label="count"),
        _graph(f"{i.name} poller function", function[:2], function[2:], left_label="count", right_label="ms"),
    ]


def integration_dashboard(stack: JunctionStack, i: Integration) -> cloudwatch.Dashboard:
    from infra.stack import construct_id

    trigger = (
        f"webhook `{i.webhook.method.upper()} {i.webhook.path}`"
        if i.webhook
        else f"schedule `{i.schedule.expression}`"
        if i.schedule
        else ""
    )
    header = (
        f"## {i.name}\n{i.description}. Source **{i.source}** by {trigger}; targets "
        + ", ".join(f"**{t.name}**" + (f" (after {t.after})" if t.after else "") for t in i.targets)
        + f". [Overview]({_console_link(dashboard_name(stack.stage))}) · "
        f"[Runbook]({alarms.runbook_url(stack.runbook_base_url, alarms.DLQ_DEPTH).split('#')[0]})"
    )
    dashboard = cloudwatch.Dashboard(
        stack.observability,
        f"{construct_id(i.name)}Dashboard",
        dashboard_name=dashboard_name(stack.stage, i),
        default_interval=Duration.hours(6),
    )
    dashboard.add_widgets(cloudwatch.TextWidget(markdown=header, width=24, height=2))
    mine = [a for name, a in stack.alarms.items() if name.startswith(f"junction-{stack.stage}-{i.name}-")]
    for widget in _alarm_widgets(f"{i.name}: alarms", mine):
        dashboard.add_widgets(widget)
    if i.webhook:
        dashboard.add_widgets(*_ingress_rows(stack, i))
    if i.schedule:
        dashboard.add_widgets(*_poller_rows(stack, i))
    for t in i.targets:
        rows = _target_rows(stack, i, t)
        dashboard.add_widgets(*rows)
    return dashboard


# ----------------------------------------------------------------------------------- overview
def overview_dashboard(stack: JunctionStack) -> cloudwatch.Dashboard:
    from infra.history import function_name as history_function_name
    from infra.stack import target_key

    history_function = history_function_name(stack.stage)
    stage = stack.stage
    links = " · ".join(f"[{i.name}]({_console_link(dashboard_name(stage, i))})" for i in stack.integrations)
    dashboard = cloudwatch.Dashboard(
        stack.observability,
        "OverviewDashboard",
        dashboard_name=dashboard_name(stage),
        default_interval=Duration.hours(6),
    )
    dashboard.add_widgets(
        cloudwatch.TextWidget(markdown=f"## Junction {stage}\nIntegrations: {links}", width=24, height=2)
    )
    for widget in _alarm_widgets(f"Junction {stage}: every alarm", list(stack.alarms.values())):
        dashboard.add_widgets(widget)

    pairs = [(i, t) for i in stack.integrations for t in i.targets]
    dlq = [
        sqs_metric(
            queue_name(stack.stage, i, t, dead_letter=True),
            "ApproximateNumberOfMessagesVisible",
            period=PERIOD,
            label=target_key(i, t),
        )
        for i, t in pairs
    ]
    age = [
        sqs_metric(
            queue_name(stack.stage, i, t), "ApproximateAgeOfOldestMessage", period=PERIOD, label=target_key(i, t)
        )
        for i, t in pairs
    ]
    delivered = [_m(stack, i, "Message_delivered", target=t, label=target_key(i, t)) for i, t in pairs]
    business = [
        _m(stack, i, "Message_dead_lettered_business", target=t, label=f"{target_key(i, t)} business") for i, t in pairs
    ]
    system = [
        _m(stack, i, "Message_dead_lettered_system", target=t, label=f"{target_key(i, t)} system") for i, t in pairs
    ]
    retried = [_m(stack, i, "Message_retry_scheduled", target=t, label=target_key(i, t)) for i, t in pairs]
    breakers = [_m(stack, i, "Breaker_open", target=t, statistic="Maximum", label=target_key(i, t)) for i, t in pairs]
    widgets: list[cloudwatch.IWidget] = [
        _graph("DLQ depth, every target", dlq, left_label="messages"),
        _graph("Oldest message age, every target", age, left_label="seconds"),
        _graph("Delivered, every target", delivered, left_label="messages", stacked=True),
        _graph("Retried, every target", retried, left_label="messages"),
        _graph("Dead-lettered: business | system", business, system, left_label="business", right_label="system"),
        _graph("Circuit breakers open (1)", breakers, left_label="state"),
    ]
    webhooks = [i for i in stack.integrations if i.webhook]
    if webhooks:
        widgets.append(
            _graph(
                "Ingress 2xx | 4xx | 5xx, every route",
                [_m(stack, i, "Webhook_accepted", label=f"{i.name} 2xx") for i in webhooks]
                + [stack.api_metric(i, "4xx").with_(label=f"{i.name} 4xx") for i in webhooks],
                [stack.api_metric(i, "5xx").with_(label=f"{i.name} 5xx") for i in webhooks],
                left_label="2xx, 4xx",
                right_label="5xx",
            )
        )
    schedules = [i for i in stack.integrations if i.schedule]
    if schedules:
        widgets.append(
            _graph(
                "Poller cursor lag, every poller",
                [_m(stack, i, "Poll_lag_seconds", statistic="Maximum", label=i.name) for i in schedules],
                left_label="seconds",
            )
        )
    widgets.append(
        _graph(
            "History export",
            [
                lambda_metric(history_function, "Invocations", period=Duration.hours(1), label="runs"),
                lambda_metric(history_function, "Errors", period=Duration.hours(1), label="errors"),
            ],
            left_label="count",
        )
    )
    dashboard.add_widgets(*widgets)
    return dashboard


def build(stack: JunctionStack) -> dict[str, cloudwatch.Dashboard]:
    """Every dashboard of the stage, keyed by its name."""
    built = {dashboard_name(stack.stage): overview_dashboard(stack)}
    for i in stack.integrations:
        built[dashboard_name(stack.stage, i)] = integration_dashboard(stack, i)
    return built
