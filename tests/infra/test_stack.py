"""The synthesized CloudFormation of the dev stage, checked against every integration's declaration."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from functions.registry import INTEGRATIONS
from infra import bundling
from infra.stack import JunctionStack, StageSettings, construct_id
from shared.declaration import (
    TTL_ATTRIBUTE,
    FunctionSettings,
    Integration,
    QueueSettings,
    ScheduleTrigger,
    SecretRef,
    idempotency_table_name,
    queue_name,
    secret_id,
    state_table_name,
    visibility_timeout_seconds,
)
from tests.infra.conftest import cdk_context, synth_stack

pytestmark = pytest.mark.slow

WEBHOOKS = [i for i in INTEGRATIONS if i.webhook]
ids = [i.name for i in INTEGRATIONS]


def logical_id(stack: JunctionStack, construct: Any) -> str:
    child = construct.node.default_child
    assert isinstance(child, cdk.CfnElement)
    return stack.get_logical_id(child)


def resources(template: Template, type_: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(template.find_resources(type_, {"Properties": Match.object_like(props or {})}))


def only(found: dict[str, Any]) -> dict[str, Any]:
    assert len(found) == 1, f"expected exactly one resource, found {list(found)}"
    resource: dict[str, Any] = next(iter(found.values()))
    return resource


# ------------------------------------------------------------------------------------ queues
@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_queue_and_dead_letter_queue(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    i = integration
    queue = only(resources(dev_template, "AWS::SQS::Queue", {"QueueName": queue_name("dev", i)}))["Properties"]
    dlq = only(resources(dev_template, "AWS::SQS::Queue", {"QueueName": queue_name("dev", i, dead_letter=True)}))[
        "Properties"
    ]
    dlq_id = logical_id(dev_stack, dev_stack.dead_letter_queues[i.name])

    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert redrive["maxReceiveCount"] == i.queue.max_receive_count >= 5
    assert queue["MessageRetentionPeriod"] == i.queue.retention_days * 86_400
    assert dlq["MessageRetentionPeriod"] == i.queue.dlq_retention_days * 86_400
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["VisibilityTimeout"] == visibility_timeout_seconds(i) >= 6 * i.processor.timeout_seconds
    for props in (queue, dlq):  # the stage's data key, not SQS-managed keys
        assert props["KmsMasterKeyId"] == {"Fn::GetAtt": [logical_id(dev_stack, dev_stack.data_key), "Arn"]}
        assert "SqsManagedSseEnabled" not in props


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_queues_deny_insecure_transport(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    for queue in (dev_stack.queues[integration.name], dev_stack.dead_letter_queues[integration.name]):
        policy = only(
            resources(dev_template, "AWS::SQS::QueuePolicy", {"Queues": [{"Ref": logical_id(dev_stack, queue)}]})
        )
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


# --------------------------------------------------------------------------------- functions
@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_processor_function(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    i = integration
    fn = only(resources(dev_template, "AWS::Lambda::Function", {"Handler": i.processor_handler}))["Properties"]
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["MemorySize"] == i.processor.memory_mb
    assert fn["Timeout"] == i.processor.timeout_seconds
    env = fn["Environment"]["Variables"]
    assert env["JUNCTION_STAGE"] == "dev"
    assert env["JUNCTION_INTEGRATION"] == i.name
    assert env["JUNCTION_QUEUE_URL"] == {"Ref": logical_id(dev_stack, dev_stack.queues[i.name])}
    assert env["JUNCTION_DLQ_URL"] == {"Ref": logical_id(dev_stack, dev_stack.dead_letter_queues[i.name])}
    assert env["JUNCTION_IDEMPOTENCY_TABLE"] == {"Ref": logical_id(dev_stack, dev_stack.idempotency_table)}
    assert env["JUNCTION_STATE_TABLE"] == {"Ref": logical_id(dev_stack, dev_stack.state_table)}
    assert env["JUNCTION_PAYLOAD_BUCKET"] == {"Ref": logical_id(dev_stack, dev_stack.payload_bucket)}


@pytest.mark.parametrize("integration", [i for i in INTEGRATIONS if not i.schedule], ids=lambda i: i.name)
def test_event_source_mapping(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    i = integration
    queue_id = logical_id(dev_stack, dev_stack.queues[i.name])
    mapping = only(
        resources(
            dev_template, "AWS::Lambda::EventSourceMapping", {"EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
        )
    )["Properties"]
    assert mapping["FunctionName"] == {"Ref": logical_id(dev_stack, dev_stack.processors[i.name])}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": i.max_concurrency}
    assert mapping["BatchSize"] == i.queue.batch_size
    if i.queue.batching_window_seconds:
        assert mapping["MaximumBatchingWindowInSeconds"] == i.queue.batching_window_seconds


@pytest.mark.parametrize("integration", WEBHOOKS, ids=[i.name for i in WEBHOOKS])
def test_ingress_function_and_route(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    i = integration
    assert i.webhook is not None
    fn = only(resources(dev_template, "AWS::Lambda::Function", {"Handler": i.ingress_handler}))["Properties"]
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["MemorySize"] == i.ingress.memory_mb
    assert fn["Timeout"] == i.ingress.timeout_seconds
    assert fn["Environment"]["Variables"] == {
        "JUNCTION_STAGE": "dev",
        "JUNCTION_INTEGRATION": i.name,
        "JUNCTION_QUEUE_URL": {"Ref": logical_id(dev_stack, dev_stack.queues[i.name])},
        "JUNCTION_PAYLOAD_BUCKET": {"Ref": logical_id(dev_stack, dev_stack.payload_bucket)},
    }

    ingress_id = logical_id(dev_stack, dev_stack.ingress_functions[i.name])
    last_segment = i.webhook.path.rstrip("/").rsplit("/", 1)[-1]
    resource_ids = list(resources(dev_template, "AWS::ApiGateway::Resource", {"PathPart": last_segment}))
    methods = resources(dev_template, "AWS::ApiGateway::Method", {"HttpMethod": i.webhook.method.upper()})
    method = [
        m["Properties"] for m in methods.values() if m["Properties"]["ResourceId"] in [{"Ref": r} for r in resource_ids]
    ]
    assert len(method) == 1
    assert method[0]["Integration"]["Type"] == "AWS_PROXY"
    assert ingress_id in json.dumps(method[0]["Integration"]["Uri"])

    stage = only(resources(dev_template, "AWS::ApiGateway::Stage"))["Properties"]
    escaped = "/" + i.webhook.path.replace("/", "~1")  # the MethodSettings encoding of a resource path
    assert {
        "HttpMethod": i.webhook.method.upper(),
        "ResourcePath": escaped,
        "ThrottlingRateLimit": i.webhook.throttle_rate_per_second,
        "ThrottlingBurstLimit": i.webhook.throttle_burst,
    }.items() <= next(s for s in stage["MethodSettings"] if s["ResourcePath"] == escaped).items()
    assert any(k.endswith("WebhookUrl") and construct_id(i.name) in k for k in dev_template.find_outputs("*"))


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
    assert "ApiUrl" in dev_template.find_outputs("*")


def test_functions_have_their_own_log_groups_with_stage_retention(dev_template: Template) -> None:
    days = cdk_context()["stages"]["dev"]["log_retention_days"]
    functions = resources(dev_template, "AWS::Lambda::Function")
    assert len(functions) == len(INTEGRATIONS) + len(WEBHOOKS)
    for fn in functions.values():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = dev_template.to_json()["Resources"][group]["Properties"]
        assert log_group["LogGroupName"] == f"/aws/lambda/{fn['Properties']['FunctionName']}"
        assert log_group["RetentionInDays"] == days
    for log_group in resources(dev_template, "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == days


def test_no_secret_values_in_lambda_environment(dev_template: Template) -> None:
    for fn in resources(dev_template, "AWS::Lambda::Function").values():
        variables = fn["Properties"]["Environment"]["Variables"]
        assert set(variables) <= {
            "JUNCTION_STAGE",
            "JUNCTION_INTEGRATION",
            "JUNCTION_QUEUE_URL",
            "JUNCTION_DLQ_URL",
            "JUNCTION_IDEMPOTENCY_TABLE",
            "JUNCTION_STATE_TABLE",
            "JUNCTION_PAYLOAD_BUCKET",
        }
        assert "secretsmanager" not in json.dumps(variables)


# ----------------------------------------------------------------------------------- secrets
def test_secrets_exist_once_per_name(dev_template: Template) -> None:
    declared = {ref.name: ref for i in INTEGRATIONS for ref in i.all_secrets}
    secrets = resources(dev_template, "AWS::SecretsManager::Secret")
    names = sorted(s["Properties"]["Name"] for s in secrets.values())
    assert names == sorted(secret_id("dev", ref) for ref in declared.values())
    assert all(name.startswith("junction/dev/") for name in names)
    for ref in declared.values():
        props = only(resources(dev_template, "AWS::SecretsManager::Secret", {"Name": secret_id("dev", ref)}))
        assert props["Properties"]["Description"] == ref.description
        assert "SecretString" not in props["Properties"]


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_functions_read_only_their_secrets(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    def readable(fn: Any) -> set[str]:
        role_id = logical_id(dev_stack, fn.role)
        policies = resources(dev_template, "AWS::IAM::Policy", {"Roles": [{"Ref": role_id}]})
        out: set[str] = set()
        for policy in policies.values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if "secretsmanager:GetSecretValue" in actions:
                    out.add(statement["Resource"]["Ref"])
        return out

    secret_ids = {name: logical_id(dev_stack, s) for name, s in dev_stack.secrets.items()}
    i = integration
    assert readable(dev_stack.processors[i.name]) == {secret_ids[ref.name] for ref in i.secrets}
    if i.webhook:
        assert readable(dev_stack.ingress_functions[i.name]) == {secret_ids[i.webhook.secret.name]}


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
@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_alarms_notify_the_topic(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    i = integration
    topic = {"Ref": logical_id(dev_stack, dev_stack.alarm_topic)}

    def alarm(metric: str, queue: Any) -> dict[str, Any]:
        dims = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [logical_id(dev_stack, queue), "QueueName"]}}]
        props: dict[str, Any] = only(
            resources(dev_template, "AWS::CloudWatch::Alarm", {"MetricName": metric, "Dimensions": dims})
        )["Properties"]
        return props

    dlq_depth = alarm("ApproximateNumberOfMessagesVisible", dev_stack.dead_letter_queues[i.name])
    assert dlq_depth["Threshold"] == i.alarms.dlq_depth
    assert dlq_depth["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    age = alarm("ApproximateAgeOfOldestMessage", dev_stack.queues[i.name])
    assert age["Threshold"] == i.alarms.oldest_message_age_seconds
    assert age["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    fn_dims = [{"Name": "FunctionName", "Value": {"Ref": logical_id(dev_stack, dev_stack.processors[i.name])}}]
    errors = only(resources(dev_template, "AWS::CloudWatch::Alarm", {"MetricName": "Errors", "Dimensions": fn_dims}))
    assert errors["Properties"]["Threshold"] == 0
    assert errors["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    for props in (dlq_depth, age, errors["Properties"]):
        assert props["AlarmActions"] == [topic]


def test_alarm_topic_is_encrypted_and_ssl_only(dev_stack: JunctionStack, dev_template: Template) -> None:
    topic = only(resources(dev_template, "AWS::SNS::Topic"))["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [logical_id(dev_stack, dev_stack.key), "Arn"]}
    key = dev_template.to_json()["Resources"][logical_id(dev_stack, dev_stack.key)]["Properties"]
    assert key["EnableKeyRotation"] is True
    policy = only(resources(dev_template, "AWS::SNS::TopicPolicy"))["Properties"]["PolicyDocument"]
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy["Statement"])


# ----------------------------------------------------------------------------------- cdk-nag
def test_cdk_nag_reports_nothing(dev_stack: JunctionStack, dev_template: Template) -> None:
    annotations = Annotations.from_stack(dev_stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    assert annotations.find_error("*", pattern) == []
    assert annotations.find_warning("*", pattern) == []


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


# ---------------------------------------------------------------------- schedules and settings
def test_schedule_integration_gets_a_rule_and_no_sqs_mapping() -> None:
    poller = Integration(
        name="erp-stock-to-shop",
        description="poll ERP stock levels",
        source="erp",
        target="shopify",
        trigger=ScheduleTrigger("rate(5 minutes)"),
        package="functions.erp_stock_to_shop",
        secrets=(SecretRef("erp-service-layer", "ERP Service Layer connection"),),
        queue=QueueSettings(fifo=True),
        processor=FunctionSettings(memory_mb=256, timeout_seconds=60),
    )
    stack = synth_stack("dev", (*INTEGRATIONS, poller))
    template = Template.from_stack(stack)
    processor = {"Fn::GetAtt": [logical_id(stack, stack.processors[poller.name]), "Arn"]}
    rule = only(resources(template, "AWS::Events::Rule", {"ScheduleExpression": "rate(5 minutes)"}))["Properties"]
    assert rule["Targets"][0]["Arn"] == processor
    queue_arn = {"Fn::GetAtt": [logical_id(stack, stack.queues[poller.name]), "Arn"]}
    assert not resources(template, "AWS::Lambda::EventSourceMapping", {"EventSourceArn": queue_arn})
    fifo = resources(template, "AWS::SQS::Queue", {"FifoQueue": True})
    assert sorted(q["Properties"]["QueueName"] for q in fifo.values()) == [
        "junction-dev-erp-stock-to-shop-dlq.fifo",
        "junction-dev-erp-stock-to-shop.fifo",
    ]
    # The secret both integrations declare exists once.
    template.resource_properties_count_is("AWS::SecretsManager::Secret", {"Name": "junction/dev/erp-service-layer"}, 1)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    assert Annotations.from_stack(stack).find_error("*", pattern) == []
    assert Annotations.from_stack(stack).find_warning("*", pattern) == []


def test_stage_settings_are_validated() -> None:
    assert StageSettings.from_context({"removal_policy": "retain"}).removal_policy == cdk.RemovalPolicy.RETAIN
    with pytest.raises(ValueError, match="removal_policy"):
        StageSettings.from_context({"removal_policy": "snapshot"})
    with pytest.raises(ValueError, match="log_retention_days"):
        StageSettings.from_context({"log_retention_days": 13})
    with pytest.raises(ValueError, match="unknown stage settings"):
        StageSettings.from_context({"log_retention": 14})
