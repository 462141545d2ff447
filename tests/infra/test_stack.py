"""The synthesized CloudFormation, checked against every integration's declaration, target by target."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from functions.registry import INTEGRATIONS
from infra import bundling, history
from infra.stack import (
    POLL_RETRY_ATTEMPTS,
    JunctionStack,
    StageSettings,
    construct_id,
    http_route_key,
    poll_event_age_seconds,
    rotating_secrets,
    schedule_interval_seconds,
    serves_over_rest,
    target_key,
)
from shared.declaration import (
    FOLLOWER_QUEUES_ENV,
    POLLER_HANDLER,
    PROCESSOR_HANDLER,
    TTL_ATTRIBUTE,
    Integration,
    ScheduleTrigger,
    Target,
    function_name,
    idempotency_table_name,
    queue_name,
    secret_id,
    state_table_name,
    visibility_timeout_seconds,
)
from tests.infra.conftest import (
    SCHEDULES,
    TARGET_IDS,
    TARGETS,
    WEBHOOKS,
    WIDE,
    alarm_topic_ref,
    cdk_context,
    names,
)
from tests.infra.samples import SCHEDULED, TWO_TARGET_WEBHOOK

pytestmark = pytest.mark.slow

NAG = Match.string_like_regexp("AwsSolutions-.*")


def logical_id(stack: JunctionStack, construct: Any) -> str:
    child = construct.node.default_child
    assert isinstance(child, cdk.CfnElement)
    return stack.get_logical_id(child)


def ref(stack: JunctionStack, construct: Any) -> dict[str, Any]:
    return {"Ref": logical_id(stack, construct)}


def arn(stack: JunctionStack, construct: Any) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id(stack, construct), "Arn"]}


def resources(template: Template, type_: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(template.find_resources(type_, {"Properties": Match.object_like(props or {})}))


def only(found: dict[str, Any]) -> dict[str, Any]:
    assert len(found) == 1, f"expected exactly one resource, found {list(found)}"
    resource: dict[str, Any] = next(iter(found.values()))
    return resource


def joined(value: Any) -> list[Any]:
    """The parts of a comma-joined template value (one part is not wrapped in Fn::Join)."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        assert separator == ","
        return list(parts)
    return [value]


def queue_refs(stack: JunctionStack, i: Integration) -> list[dict[str, Any]]:
    """JUNCTION_QUEUE_URLS as the template should have it: the queue of every target after no
    other, in declaration order (a target after another gets its messages from that one)."""
    return [ref(stack, stack.queues[target_key(i, t)]) for t in i.entry_targets]


def followers_env(stack: JunctionStack, i: Integration, t: Target) -> dict[str, Any]:
    """A processor's JUNCTION_FOLLOWER_QUEUE_URLS: the queues of the targets after it, if any."""
    followers = [ref(stack, stack.queues[target_key(i, f)]) for f in i.followers(t)]
    if not followers:
        return {}
    return {FOLLOWER_QUEUES_ENV: followers[0] if len(followers) == 1 else {"Fn::Join": [",", followers]}}


def function_props(template: Template, name: str) -> dict[str, Any]:
    props: dict[str, Any] = only(resources(template, "AWS::Lambda::Function", {"FunctionName": name}))["Properties"]
    return props


def function_id(template: Template, name: str) -> str:
    found = resources(template, "AWS::Lambda::Function", {"FunctionName": name})
    assert len(found) == 1, name
    return next(iter(found))


def _api_path(template: Template, resource_id: str) -> str:
    """A REST API resource's full path, from its parents' path parts."""
    all_resources = template.to_json()["Resources"]
    parts: list[str] = []
    while resource_id in all_resources and all_resources[resource_id]["Type"] == "AWS::ApiGateway::Resource":
        props = all_resources[resource_id]["Properties"]
        parts.insert(0, props["PathPart"])
        parent = props["ParentId"]
        resource_id = parent.get("Ref", "") if isinstance(parent, dict) else ""
    return "/" + "/".join(parts)


def http_routes(template: Template) -> dict[str, dict[str, Any]]:
    """The HTTP API's routes by route key (``POST /webhooks/...``): the integration each targets."""
    all_resources = template.to_json()["Resources"]
    out: dict[str, dict[str, Any]] = {}
    for route in resources(template, "AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        target = props["Target"]["Fn::Join"][1]
        assert target[0] == "integrations/", target
        out[props["RouteKey"]] = all_resources[target[1]["Ref"]]["Properties"]
    return out


def routes(template: Template) -> dict[tuple[str, str], dict[str, Any]]:
    """Every method of the API by (HTTP method, full path)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for method in resources(template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource = props["ResourceId"]
        key = (props["HttpMethod"], _api_path(template, resource["Ref"]) if "Ref" in resource else "/")
        assert key not in out, f"two methods for {key}"
        out[key] = props
    return out


# ------------------------------------------------------------------------------------ queues
@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_queue_and_dead_letter_queue(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    i, t = integration, target
    queue = only(resources(wide_template, "AWS::SQS::Queue", {"QueueName": queue_name("dev", i, t)}))["Properties"]
    dlq = only(resources(wide_template, "AWS::SQS::Queue", {"QueueName": queue_name("dev", i, t, dead_letter=True)}))[
        "Properties"
    ]
    key = target_key(i, t)

    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == arn(wide_stack, wide_stack.dead_letter_queues[key])
    assert redrive["maxReceiveCount"] == t.queue.max_receive_count >= 5
    assert "RedrivePolicy" not in dlq
    assert queue["MessageRetentionPeriod"] == t.queue.retention_days * 86_400
    assert dlq["MessageRetentionPeriod"] == t.queue.dlq_retention_days * 86_400
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["VisibilityTimeout"] == visibility_timeout_seconds(t) >= 6 * t.processor.timeout_seconds
    assert bool(queue.get("FifoQueue")) == bool(dlq.get("FifoQueue")) == t.queue.fifo
    for props in (queue, dlq):  # the stage's data key, not SQS-managed keys
        assert props["KmsMasterKeyId"] == arn(wide_stack, wide_stack.data_key)
        assert "SqsManagedSseEnabled" not in props


def test_every_target_queue_has_its_dlq_and_one_event_source(
    wide_stack: JunctionStack, wide_template: Template
) -> None:
    """Whatever is declared: no queue without a DLQ, no DLQ that is consumed, no queue without its
    processor's event source with partial batch responses."""
    queues = resources(wide_template, "AWS::SQS::Queue")
    mappings = [m["Properties"] for m in resources(wide_template, "AWS::Lambda::EventSourceMapping").values()]
    dlq_ids = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in queues.values()
        if "RedrivePolicy" in r["Properties"]
    }
    main_ids = [q for q, r in queues.items() if "RedrivePolicy" in r["Properties"]]
    assert len(main_ids) == len(dlq_ids) == len(TARGETS)
    assert set(queues) == set(main_ids) | dlq_ids
    for queue_id in main_ids:
        consuming = [m for m in mappings if m["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}]
        assert len(consuming) == 1, queue_id
        assert consuming[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for dlq_id in dlq_ids:  # dead letters wait for an operator's redrive
        assert not [m for m in mappings if m["EventSourceArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}]
    assert len(mappings) == len(TARGETS)


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_queues_deny_insecure_transport(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    key = target_key(integration, target)
    for queue in (wide_stack.queues[key], wide_stack.dead_letter_queues[key]):
        policy = only(resources(wide_template, "AWS::SQS::QueuePolicy", {"Queues": [ref(wide_stack, queue)]}))
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


# --------------------------------------------------------------------------------- processors
@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_processor_function(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    i, t = integration, target
    key = target_key(i, t)
    name = function_name("dev", i, f"{t.name}-processor")
    fn = function_props(wide_template, name)
    assert function_id(wide_template, name) == logical_id(wide_stack, wide_stack.processors[key])
    assert fn["Handler"] == PROCESSOR_HANDLER
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["MemorySize"] == t.processor.memory_mb
    assert fn["Timeout"] == t.processor.timeout_seconds
    assert "ReservedConcurrentExecutions" not in fn  # the event source's MaximumConcurrency bounds it
    assert fn["Environment"]["Variables"] == {
        "JUNCTION_STAGE": "dev",
        "JUNCTION_INTEGRATION": i.name,
        "JUNCTION_TARGET": t.name,
        "JUNCTION_QUEUE_URL": ref(wide_stack, wide_stack.queues[key]),
        "JUNCTION_DLQ_URL": ref(wide_stack, wide_stack.dead_letter_queues[key]),
        "JUNCTION_IDEMPOTENCY_TABLE": ref(wide_stack, wide_stack.idempotency_table),
        "JUNCTION_STATE_TABLE": ref(wide_stack, wide_stack.state_table),
        "JUNCTION_PAYLOAD_BUCKET": ref(wide_stack, wide_stack.payload_bucket),
        **followers_env(wide_stack, i, t),
    }


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_event_source_mapping(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    i, t = integration, target
    key = target_key(i, t)
    mapping = only(
        resources(
            wide_template,
            "AWS::Lambda::EventSourceMapping",
            {"EventSourceArn": arn(wide_stack, wide_stack.queues[key])},
        )
    )["Properties"]
    assert mapping["FunctionName"] == ref(wide_stack, wide_stack.processors[key])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": t.max_concurrency}
    assert mapping["BatchSize"] == t.queue.batch_size
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == t.queue.batching_window_seconds


# ------------------------------------------------------------------------------------ webhooks
@pytest.mark.parametrize("integration", WEBHOOKS, ids=names(WEBHOOKS))
def test_ingress_function_and_route(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    i = integration
    assert i.webhook is not None
    fn = function_props(wide_template, function_name("dev", i, "ingress"))
    assert function_id(wide_template, function_name("dev", i, "ingress")) == logical_id(
        wide_stack, wide_stack.ingress_functions[i.name]
    )
    assert fn["Handler"] == i.ingress_handler
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["MemorySize"] == i.ingress.memory_mb
    assert fn["Timeout"] == i.ingress.timeout_seconds
    env = fn["Environment"]["Variables"]
    assert joined(env.pop("JUNCTION_QUEUE_URLS")) == queue_refs(wide_stack, i)
    assert env == {
        "JUNCTION_STAGE": "dev",
        "JUNCTION_INTEGRATION": i.name,
        "JUNCTION_PAYLOAD_BUCKET": ref(wide_stack, wide_stack.payload_bucket),
    }

    ingress_id = logical_id(wide_stack, wide_stack.ingress_functions[i.name])
    assert any(k.endswith("WebhookUrl") and construct_id(i.name) in k for k in wide_template.find_outputs("*"))
    if not serves_over_rest(i.webhook):
        # A signed route: the HTTP API, payload format 2.0, its own throttling and route metrics.
        integration_props = http_routes(wide_template)[http_route_key(i.webhook)]
        assert integration_props["IntegrationType"] == "AWS_PROXY"
        assert integration_props["PayloadFormatVersion"] == "2.0"
        assert ingress_id in json.dumps(integration_props["IntegrationUri"])
        http_stage = only(resources(wide_template, "AWS::ApiGatewayV2::Stage"))["Properties"]
        assert http_stage["RouteSettings"][http_route_key(i.webhook)] == {
            "DetailedMetricsEnabled": True,
            "ThrottlingRateLimit": i.webhook.throttle_rate_per_second,
            "ThrottlingBurstLimit": i.webhook.throttle_burst,
        }
        assert (i.webhook.method.upper(), i.webhook.path) not in routes(wide_template)
        return
    method = routes(wide_template)[(i.webhook.method.upper(), i.webhook.path)]  # by full path: two end in /orders
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert ingress_id in json.dumps(method["Integration"]["Uri"])
    assert http_route_key(i.webhook) not in http_routes(wide_template)

    stage = only(resources(wide_template, "AWS::ApiGateway::Stage"))["Properties"]
    escaped = "/" + i.webhook.path.replace("/", "~1")  # the MethodSettings encoding of a resource path
    assert {
        "HttpMethod": i.webhook.method.upper(),
        "ResourcePath": escaped,
        "ThrottlingRateLimit": i.webhook.throttle_rate_per_second,
        "ThrottlingBurstLimit": i.webhook.throttle_burst,
    }.items() <= next(s for s in stage["MethodSettings"] if s["ResourcePath"] == escaped).items()


def test_two_target_webhook_gets_two_queues_two_processors_and_an_ingress_sending_to_both(
    wide_stack: JunctionStack, wide_template: Template
) -> None:
    i = TWO_TARGET_WEBHOOK
    prefix = f"junction-dev-{i.name}-"
    queues = sorted(
        q["Properties"]["QueueName"]
        for q in resources(wide_template, "AWS::SQS::Queue").values()
        if q["Properties"]["QueueName"].startswith(prefix)
    )
    assert queues == sorted(f"{prefix}{t}{dlq}" for t in ("erp", "warehouse") for dlq in ("", "-dlq"))
    functions = sorted(
        f["Properties"]["FunctionName"]
        for f in resources(wide_template, "AWS::Lambda::Function").values()
        if f["Properties"]["FunctionName"].startswith(prefix)
    )
    assert functions == [f"{prefix}erp-processor", f"{prefix}ingress", f"{prefix}warehouse-processor"]
    # Each processor is fed by its own queue only.
    for t in i.targets:
        key = target_key(i, t)
        mapping = only(
            resources(
                wide_template,
                "AWS::Lambda::EventSourceMapping",
                {"FunctionName": ref(wide_stack, wide_stack.processors[key])},
            )
        )
        assert mapping["Properties"]["EventSourceArn"] == arn(wide_stack, wide_stack.queues[key])
    # The ingress may send to both queues (the IAM statements are checked in test_data_and_alarms).
    env = function_props(wide_template, f"{prefix}ingress")["Environment"]["Variables"]
    assert joined(env["JUNCTION_QUEUE_URLS"]) == queue_refs(wide_stack, i)
    assert len(joined(env["JUNCTION_QUEUE_URLS"])) == 2


def test_api_stage_logs_and_throttles(dev_template: Template) -> None:
    stage = only(resources(dev_template, "AWS::ApiGateway::Stage"))["Properties"]
    assert stage["StageName"] == "dev"
    assert "DestinationArn" in stage["AccessLogSetting"]
    assert "Format" in stage["AccessLogSetting"]
    default = next(s for s in stage["MethodSettings"] if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*")
    assert default["LoggingLevel"] in {"ERROR", "INFO"}
    assert default["DataTraceEnabled"] is False  # webhook bodies carry personal data
    assert default["ThrottlingRateLimit"] > 0
    assert default["ThrottlingBurstLimit"] > 0
    assert "RestApiUrl" in dev_template.find_outputs("*")


def test_http_api_stage_logs_throttles_and_measures_every_route(
    dev_stack: JunctionStack, dev_template: Template
) -> None:
    signed = [i.webhook for i in INTEGRATIONS if i.webhook and not serves_over_rest(i.webhook)]
    assert signed
    api = only(resources(dev_template, "AWS::ApiGatewayV2::Api"))["Properties"]
    assert (api["Name"], api["ProtocolType"]) == ("junction-dev", "HTTP")
    stage = only(resources(dev_template, "AWS::ApiGatewayV2::Stage"))["Properties"]
    assert stage["StageName"] == "dev"
    assert stage["AutoDeploy"] is True
    access_logs = dev_stack.node.find_child("HttpApiAccessLogs")
    assert stage["AccessLogSettings"]["DestinationArn"] == arn(dev_stack, access_logs)
    # The REST API's access-log fields, from the HTTP API's context variables.
    fields = json.loads(stage["AccessLogSettings"]["Format"])
    assert {
        "requestId",
        "ip",
        "requestTime",
        "httpMethod",
        "resourcePath",
        "status",
        "protocol",
        "responseLength",
    } <= set(fields)
    assert all(v.startswith("$context.") for v in fields.values())
    default = stage["DefaultRouteSettings"]
    assert default["DetailedMetricsEnabled"] is True
    assert default["ThrottlingRateLimit"] > 0 and default["ThrottlingBurstLimit"] > 0
    assert set(stage["RouteSettings"]) == {http_route_key(w) for w in signed}
    assert set(http_routes(dev_template)) == {http_route_key(w) for w in signed}
    assert "ApiUrl" in dev_template.find_outputs("*")


def test_only_routes_open_to_their_senders_addresses_alone_are_on_the_rest_api(
    wide_template: Template, dev_template: Template
) -> None:
    for template, integrations in ((wide_template, WIDE), (dev_template, INTEGRATIONS)):
        rest = {(i.webhook.method.upper(), i.webhook.path) for i in integrations if i.webhook and i.webhook.source_ips}
        assert set(routes(template)) == rest
        http = {http_route_key(i.webhook) for i in integrations if i.webhook and not i.webhook.source_ips}
        assert set(http_routes(template)) == http


# ---------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_poller_function(wide_stack: JunctionStack, wide_template: Template, integration: Integration) -> None:
    i = integration
    assert i.schedule is not None
    fn = function_props(wide_template, function_name("dev", i, "poller"))
    assert function_id(wide_template, function_name("dev", i, "poller")) == logical_id(
        wide_stack, wide_stack.pollers[i.name]
    )
    assert fn["Handler"] == POLLER_HANDLER
    assert fn["Runtime"] == "python3.13"
    assert fn["MemorySize"] == i.schedule.function.memory_mb
    assert fn["Timeout"] == i.schedule.function.timeout_seconds
    assert "ReservedConcurrentExecutions" not in fn  # the lease prevents overlapping runs
    env = fn["Environment"]["Variables"]
    assert joined(env.pop("JUNCTION_QUEUE_URLS")) == queue_refs(wide_stack, i)
    assert env == {
        "JUNCTION_STAGE": "dev",
        "JUNCTION_INTEGRATION": i.name,
        "JUNCTION_STATE_TABLE": ref(wide_stack, wide_stack.state_table),
        "JUNCTION_PAYLOAD_BUCKET": ref(wide_stack, wide_stack.payload_bucket),
    }
    # A failed run is retried only while its tick is fresh.
    config = only(
        resources(
            wide_template,
            "AWS::Lambda::EventInvokeConfig",
            {"FunctionName": ref(wide_stack, wide_stack.pollers[i.name])},
        )
    )["Properties"]
    assert config["MaximumRetryAttempts"] == POLL_RETRY_ATTEMPTS
    assert config["MaximumEventAgeInSeconds"] == poll_event_age_seconds(i)


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_schedule_rule_targets_the_poller(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    i = integration
    assert i.schedule is not None
    rule = only(resources(wide_template, "AWS::Events::Rule", {"Name": f"junction-dev-{i.name}"}))["Properties"]
    assert rule["ScheduleExpression"] == i.schedule.expression
    assert rule["State"] == "ENABLED"
    [target] = rule["Targets"]
    assert target["Arn"] == arn(wide_stack, wide_stack.pollers[i.name])
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": POLL_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": poll_event_age_seconds(i),
    }
    assert 1 <= POLL_RETRY_ATTEMPTS <= 3
    assert 60 <= poll_event_age_seconds(i) <= 3600
    # EventBridge may invoke the poller, from this rule only.
    permission = only(
        resources(
            wide_template,
            "AWS::Lambda::Permission",
            {"FunctionName": arn(wide_stack, wide_stack.pollers[i.name]), "Principal": "events.amazonaws.com"},
        )
    )["Properties"]
    assert permission["SourceArn"] == arn(wide_stack, wide_stack.schedules[i.name])
    # Nothing else is started by the schedule; the only other rule is the stage's history export.
    rules = resources(wide_template, "AWS::Events::Rule")
    assert len(rules) == len(SCHEDULES) + 1


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_poller_has_no_sqs_event_source(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    poller = wide_stack.pollers[integration.name]
    for mapping in resources(wide_template, "AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["FunctionName"] != ref(wide_stack, poller)
    assert integration.name not in wide_stack.ingress_functions


def test_no_schedule_no_poller(wide_stack: JunctionStack) -> None:
    assert set(wide_stack.pollers) == set(wide_stack.schedules) == set(names(SCHEDULES))
    assert set(wide_stack.ingress_functions) == set(names(WEBHOOKS))


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 days)", 172_800),
        ("cron(0 3 * * ? *)", None),
        ("cron(0/15 8-18 ? * MON-FRI *)", None),
    ],
)
def test_schedule_interval(expression: str, seconds: int | None) -> None:
    assert schedule_interval_seconds(expression) == seconds


@pytest.mark.parametrize(
    "expression",
    ["rate(5 minute)", "rate(1 minutes)", "rate(0 minutes)", "rate(5 seconds)", "every 5 minutes", "cron(0 3 * * ?)"],
)
def test_malformed_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="schedule"):
        schedule_interval_seconds(expression)
    bad = Integration(
        name="bad-schedule",
        description="",
        source="erp",
        package="x",
        trigger=ScheduleTrigger(expression),
        targets=(Target(name="shopify"),),
    )
    with pytest.raises(ValueError, match="schedule"):  # before anything is built
        JunctionStack(cdk.App(), "bad", stage="dev", settings=StageSettings(), integrations=[bad])


def test_colliding_construct_ids_are_refused() -> None:
    """ "a1" and "a-1" are distinct names whose construct ids would be the same."""
    one = Integration(
        name="sync-a1",
        description="",
        source="erp",
        package="x",
        trigger=ScheduleTrigger("rate(5 minutes)"),
        targets=(Target(name="shop"),),
    )
    other = Integration(
        name="sync-a-1",
        description="",
        source="erp",
        package="y",
        trigger=ScheduleTrigger("rate(5 minutes)"),
        targets=(Target(name="shop"),),
    )
    with pytest.raises(ValueError, match="construct id"):
        JunctionStack(cdk.App(), "collide", stage="dev", settings=StageSettings(), integrations=[one, other])


# --------------------------------------------------------------------------------- functions
def test_functions_have_their_own_log_groups_with_stage_retention(dev_template: Template) -> None:
    days = cdk_context()["stages"]["dev"]["log_retention_days"]
    functions = resources(dev_template, "AWS::Lambda::Function")
    processors = sum(len(i.targets) for i in INTEGRATIONS)
    ingresses = sum(1 for i in INTEGRATIONS if i.webhook)
    pollers = sum(1 for i in INTEGRATIONS if i.schedule)
    assert len(functions) == processors + ingresses + pollers + 1  # and the history export
    for fn in functions.values():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = dev_template.to_json()["Resources"][group]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{fn['Properties']['FunctionName']}"
        assert log_group["RetentionInDays"] == days
    for log_group in resources(dev_template, "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == days


def test_function_names_are_unique_and_within_lambda_limits(wide_template: Template) -> None:
    found = [f["Properties"]["FunctionName"] for f in resources(wide_template, "AWS::Lambda::Function").values()]
    assert len(found) == len(set(found))
    assert all(len(name) <= 64 for name in found)
    expected = {function_name("dev", i, f"{t.name}-processor") for i, t in TARGETS}
    expected |= {function_name("dev", i, "ingress") for i in WEBHOOKS}
    expected |= {function_name("dev", i, "poller") for i in SCHEDULES}
    assert set(found) == expected | {history.function_name("dev")}


def test_no_secret_values_in_lambda_environment(wide_template: Template) -> None:
    for fn in resources(wide_template, "AWS::Lambda::Function").values():
        variables = fn["Properties"]["Environment"]["Variables"]
        assert set(variables) <= {
            "JUNCTION_STAGE",
            "JUNCTION_INTEGRATION",
            "JUNCTION_TARGET",
            "JUNCTION_QUEUE_URL",
            "JUNCTION_QUEUE_URLS",
            "JUNCTION_FOLLOWER_QUEUE_URLS",
            "JUNCTION_DLQ_URL",
            "JUNCTION_IDEMPOTENCY_TABLE",
            "JUNCTION_STATE_TABLE",
            "JUNCTION_PAYLOAD_BUCKET",
            "JUNCTION_HISTORY_BUCKET",
        }
        assert "secretsmanager" not in json.dumps(variables)


# ----------------------------------------------------------------------------------- secrets
def test_secrets_exist_once_per_name(wide_template: Template) -> None:
    declared = {ref.name: ref for i in WIDE for ref in i.all_secrets}
    secrets = resources(wide_template, "AWS::SecretsManager::Secret")
    found = sorted(s["Properties"]["Name"] for s in secrets.values())
    assert found == sorted(secret_id("dev", ref) for ref in declared.values())
    assert all(name.startswith("junction/dev/") for name in found)
    for ref_ in declared.values():
        props = only(resources(wide_template, "AWS::SecretsManager::Secret", {"Name": secret_id("dev", ref_)}))
        assert props["Properties"]["Description"] == ref_.description
        assert "SecretString" not in props["Properties"]


def _secret_access(stack: JunctionStack, template: Template, fn: Any) -> tuple[set[str], set[str]]:
    """(readable, writable) secrets of a function, by logical id."""
    role = ref(stack, fn.role)
    readable: set[str] = set()
    writable: set[str] = set()
    for policy in resources(template, "AWS::IAM::Policy").values():
        if role not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            secrets = {r["Ref"] for r in targets if isinstance(r, dict) and "Ref" in r}
            if "secretsmanager:GetSecretValue" in actions:
                readable |= secrets
            if any(
                a.startswith("secretsmanager:")
                and a not in {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
                for a in actions
            ):
                assert [a for a in actions if a.startswith("secretsmanager:")] == ["secretsmanager:PutSecretValue"]
                writable |= secrets
    return readable, writable


@pytest.mark.parametrize("integration", WIDE, ids=names(WIDE))
def test_functions_read_only_their_secrets(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    secret_ids = {name: logical_id(wide_stack, s) for name, s in wide_stack.secrets.items()}
    i = integration
    for t in i.targets:
        readable, writable = _secret_access(wide_stack, wide_template, wide_stack.processors[target_key(i, t)])
        assert readable == {secret_ids[r.name] for r in (*t.secrets, *t.writes_secrets)}, t.name
        assert writable == {secret_ids[r.name] for r in t.writes_secrets}, t.name
    if i.webhook:
        fn = wide_stack.ingress_functions[i.name]
        assert _secret_access(wide_stack, wide_template, fn) == ({secret_ids[i.webhook.secret.name]}, set())
    if i.schedule:
        # A source credential that a target writes back rotates on refresh: the poller stores it too.
        fn = wide_stack.pollers[i.name]
        rotating = {secret_ids[r.name] for r in i.secrets if r.name in rotating_secrets(WIDE)}
        assert _secret_access(wide_stack, wide_template, fn) == ({secret_ids[r.name] for r in i.secrets}, rotating)


def test_a_rotated_credential_is_written_by_its_target_only(wide_stack: JunctionStack, wide_template: Template) -> None:
    allegro = SCHEDULED.target("allegro")
    assert allegro.writes_secrets
    written = logical_id(wide_stack, wide_stack.secrets[allegro.writes_secrets[0].name])
    writers = [
        key
        for key, fn in {**wide_stack.processors, **wide_stack.pollers, **wide_stack.ingress_functions}.items()
        if written in _secret_access(wide_stack, wide_template, fn)[1]
    ]
    assert writers == [target_key(SCHEDULED, allegro)]


def test_a_poller_writes_back_a_rotating_source_credential_only() -> None:
    """Which source credentials rotate is derived from the targets' ``writes_secrets``."""
    rotating = rotating_secrets(WIDE)
    assert {"allegro-api", "sample-market-api"} <= rotating
    assert not rotating & {"erp-service-layer", "sample-erp", "shopify-admin", "shopify-webhook"}


# ------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize(
    ("name", "keys"),
    [
        (idempotency_table_name("dev"), [{"AttributeName": "id", "KeyType": "HASH"}]),
        (
            state_table_name("dev"),
            [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        ),
    ],
)
def test_tables(dev_template: Template, name: str, keys: list[dict[str, str]]) -> None:
    table = only(resources(dev_template, "AWS::DynamoDB::Table", {"TableName": name}))
    props = table["Properties"]
    assert props["KeySchema"] == keys
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == "Delete"


def test_prod_retains_stateful_resources(prod_template: Template) -> None:
    tables = resources(prod_template, "AWS::DynamoDB::Table")
    assert len(tables) == 2
    for table in tables.values():
        assert table["DeletionPolicy"] == "Retain"
        assert table["UpdateReplacePolicy"] == "Retain"
        assert table["Properties"]["DeletionProtectionEnabled"] is True
        assert table["Properties"]["TableName"].startswith("junction-prod-")
    for type_ in (
        "AWS::SQS::Queue",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
        "AWS::KMS::Key",
        "AWS::S3::Bucket",
    ):
        assert all(r["DeletionPolicy"] == "Retain" for r in resources(prod_template, type_).values()), type_
    days = cdk_context()["stages"]["prod"]["log_retention_days"]
    assert all(
        g["Properties"]["RetentionInDays"] == days for g in resources(prod_template, "AWS::Logs::LogGroup").values()
    )


# ------------------------------------------------------------------------------------ alarms
@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_alarms_notify_the_topic(
    wide_stack: JunctionStack,
    wide_template: Template,
    wide_observability: Template,
    integration: Integration,
    target: Target,
) -> None:
    """The alarms (in the nested stack) name the queues and functions by their physical names, the
    ones the main stack gives them."""
    key = target_key(integration, target)
    topic = alarm_topic_ref(wide_stack)
    queue_names = {r["Properties"]["QueueName"] for r in resources(wide_template, "AWS::SQS::Queue").values()}

    def alarm(metric: str, queue: str) -> dict[str, Any]:
        assert queue in queue_names
        dims = [{"Name": "QueueName", "Value": queue}]
        props: dict[str, Any] = only(
            resources(wide_observability, "AWS::CloudWatch::Alarm", {"MetricName": metric, "Dimensions": dims})
        )["Properties"]
        return props

    dlq_depth = alarm("ApproximateNumberOfMessagesVisible", queue_name("dev", integration, target, dead_letter=True))
    assert dlq_depth["Threshold"] == target.alarms.dlq_depth
    assert dlq_depth["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    age = alarm("ApproximateAgeOfOldestMessage", queue_name("dev", integration, target))
    assert age["Threshold"] == target.alarms.oldest_message_age_seconds
    assert age["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    processor = function_name("dev", integration, f"{target.name}-processor")
    assert function_id(wide_template, processor) == logical_id(wide_stack, wide_stack.processors[key])
    fn_dims = [{"Name": "FunctionName", "Value": processor}]
    errors = only(
        resources(wide_observability, "AWS::CloudWatch::Alarm", {"MetricName": "Errors", "Dimensions": fn_dims})
    )
    assert errors["Properties"]["Threshold"] == 0
    assert errors["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    for props in (dlq_depth, age, errors["Properties"]):
        assert props["AlarmActions"] == [topic]
        assert props["AlarmName"].startswith(f"junction-dev-{integration.name}-{target.name}-")


def test_alarm_names_are_unique(wide_observability: Template) -> None:
    found = [a["Properties"]["AlarmName"] for a in resources(wide_observability, "AWS::CloudWatch::Alarm").values()]
    assert len(found) == len(set(found))


# Alarms per target (DLQ depth, DLQ near expiry, oldest message, processor errors, breaker opened),
# per webhook (ingress errors, 401 spike, 503s, gateway 5xx), per poller (errors, failed poll, cursor
# lag) and per stage (the history export's errors).
ALARMS_PER = {"target": 5, "webhook": 4, "poller": 3, "stage": 1}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_registry_makes_as_many_resources_as_it_declares(stage: str, request: pytest.FixtureRequest) -> None:
    """Counted from the declarations, so an integration or target the stack skipped shows up here.
    The alarms and dashboards are the nested stack's, nothing else is."""
    template: Template = request.getfixturevalue(f"{stage}_template")
    nested: Template = request.getfixturevalue(f"{stage}_observability")
    targets = sum(len(i.targets) for i in INTEGRATIONS)
    webhooks = sum(1 for i in INTEGRATIONS if i.webhook)
    rest_routes = sum(1 for i in INTEGRATIONS if i.webhook and serves_over_rest(i.webhook))
    pollers = sum(1 for i in INTEGRATIONS if i.schedule)
    # The functions and schedules of the integrations, plus the stage's history export.
    assert len(resources(template, "AWS::Lambda::Function")) == targets + webhooks + pollers + 1
    assert len(resources(template, "AWS::SQS::Queue")) == 2 * targets
    assert len(resources(template, "AWS::Lambda::EventSourceMapping")) == targets
    assert len(resources(template, "AWS::Events::Rule")) == pollers + 1
    assert len(resources(nested, "AWS::CloudWatch::Dashboard")) == len(INTEGRATIONS) + 1
    assert not resources(template, "AWS::CloudWatch::Dashboard")
    assert not resources(template, "AWS::CloudWatch::Alarm")
    assert set(resource["Type"] for resource in nested.to_json()["Resources"].values()) == {
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
    }
    assert len(resources(template, "AWS::ApiGateway::Method")) == rest_routes
    assert len(resources(template, "AWS::ApiGatewayV2::Route")) == webhooks - rest_routes
    assert len(resources(template, "AWS::SecretsManager::Secret")) == len(
        {ref.name for i in INTEGRATIONS for ref in i.all_secrets}
    )
    assert len(resources(nested, "AWS::CloudWatch::Alarm")) == (
        ALARMS_PER["target"] * targets
        + ALARMS_PER["webhook"] * webhooks
        + ALARMS_PER["poller"] * pollers
        + ALARMS_PER["stage"]
    )


def test_alarm_topic_is_encrypted_and_ssl_only(dev_stack: JunctionStack, dev_template: Template) -> None:
    topic = only(resources(dev_template, "AWS::SNS::Topic"))["Properties"]
    assert topic["KmsMasterKeyId"] == arn(dev_stack, dev_stack.key)
    key = dev_template.to_json()["Resources"][logical_id(dev_stack, dev_stack.key)]["Properties"]
    assert key["EnableKeyRotation"] is True
    policy = only(resources(dev_template, "AWS::SNS::TopicPolicy"))["Properties"]["PolicyDocument"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy["Statement"])


# ----------------------------------------------------------------------------------- cdk-nag
def test_cdk_nag_reports_nothing(dev_stack: JunctionStack) -> None:
    annotations = Annotations.from_stack(dev_stack)
    assert annotations.find_error("*", NAG) == []
    assert annotations.find_warning("*", NAG) == []


def test_cdk_nag_reports_nothing_for_every_shape(wide_stack: JunctionStack) -> None:
    """Fan-out webhooks, pollers, FIFO target queues, written secrets: no finding either."""
    annotations = Annotations.from_stack(wide_stack)
    assert annotations.find_error("*", NAG) == []
    assert annotations.find_warning("*", NAG) == []


def test_registered_integrations_are_all_in_the_real_stack(dev_stack: JunctionStack) -> None:
    assert set(dev_stack.processors) == {target_key(i, t) for i in INTEGRATIONS for t in i.targets}
    assert set(dev_stack.pollers) == {i.name for i in INTEGRATIONS if i.schedule}
    assert set(dev_stack.ingress_functions) == {i.name for i in INTEGRATIONS if i.webhook}


# ---------------------------------------------------------------------------------- bundling
def test_processor_bundle_is_built_for_lambda_arm64(dev_stack: JunctionStack) -> None:
    bundle = dev_stack.processor_code_dir
    binaries = list((bundle / "pydantic_core").glob("_pydantic_core*.so"))
    assert binaries, "pydantic-core's compiled extension is missing"
    for so in binaries:
        assert "aarch64" in so.name
        assert "x86_64" not in so.name
        assert "cpython-313" in so.name
    assert (bundle / "functions" / "registry.py").is_file()
    assert (bundle / "functions" / "handlers.py").is_file()  # PROCESSOR_HANDLER and POLLER_HANDLER
    assert (bundle / "shared" / "processing.py").is_file()
    for package in ("pydantic", "httpx", "phonenumbers", "stdnum", "aws_lambda_powertools"):
        assert (bundle / package).is_dir(), package


def test_ingress_bundle_has_only_our_source(dev_stack: JunctionStack) -> None:
    bundle = dev_stack.ingress_code_dir
    top_level = {p.name for p in bundle.iterdir() if not p.name.startswith(".")}
    assert top_level == {"shared", "functions"}
    assert {p.suffix for p in bundle.rglob("*") if p.is_file() and not p.name.startswith(".")} <= {".py", ".pyc"}
    for dependency in ("pydantic", "pydantic_core", "httpx"):
        assert not list(bundle.rglob(dependency)), dependency


def test_bundle_cache_key_follows_the_dependency_list() -> None:
    deps = bundling.runtime_dependencies()
    assert bundling.dependencies_hash(deps) == bundling.dependencies_hash(tuple(deps))
    assert bundling.dependencies_hash(deps) != bundling.dependencies_hash((*deps, "extra-package"))
    assert bundling.dependencies_dir(deps).name == f"deps-{bundling.dependencies_hash(deps)}"


# ---------------------------------------------------------------------------------- settings
def test_a_secret_shared_by_two_integrations_exists_once(wide_template: Template) -> None:
    shared = [i for i in WIDE if any(r.name == "sample-erp" for r in i.all_secrets)]
    assert len(shared) >= 2
    wide_template.resource_properties_count_is("AWS::SecretsManager::Secret", {"Name": "junction/dev/sample-erp"}, 1)


def test_stage_settings_are_validated() -> None:
    assert StageSettings.from_context({"removal_policy": "retain"}).removal_policy == cdk.RemovalPolicy.RETAIN
    with pytest.raises(ValueError, match="removal_policy"):
        StageSettings.from_context({"removal_policy": "snapshot"})
    with pytest.raises(ValueError, match="log_retention_days"):
        StageSettings.from_context({"log_retention_days": 13})
    with pytest.raises(ValueError, match="unknown stage settings"):
        StageSettings.from_context({"log_retention": 14})
