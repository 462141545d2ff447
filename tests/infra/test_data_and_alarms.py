"""Data at rest, least privilege and the alarms for losses at the sender's end, on the template."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from functions.registry import INTEGRATIONS
from infra.stack import (
    DLQ_EXPIRY_MARGIN_DAYS,
    PAYLOAD_EXPIRY_MARGIN_DAYS,
    UNAUTHORIZED_SPIKE,
    JunctionStack,
    StageSettings,
)
from shared import claim_check
from shared.declaration import Integration
from tests.infra.test_stack import WEBHOOKS, ids, logical_id, only, resources

pytestmark = pytest.mark.slow

DYNAMODB_READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:Scan"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(stack: JunctionStack, template: Template, fn: Any) -> list[dict[str, Any]]:
    """Every statement of the policies attached to a function's role."""
    role = {"Ref": logical_id(stack, fn.role)}
    out: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if role in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def allowing(stack: JunctionStack, template: Template, fn: Any, action: str, resource: Any) -> list[dict[str, Any]]:
    return [
        s
        for s in statements(stack, template, fn)
        if s["Effect"] == "Allow" and action in _list(s["Action"]) and resource in _list(s["Resource"])
    ]


def arn(stack: JunctionStack, construct: Any) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id(stack, construct), "Arn"]}


def objects(stack: JunctionStack, integration: Integration) -> dict[str, Any]:
    # The key layout the ingress writes and the processor reads (shared/claim_check.py).
    prefix = claim_check.KEY_PREFIX
    return {"Fn::Join": ["", [arn(stack, stack.payload_bucket), f"/{prefix}/{integration.name}/*"]]}


# ------------------------------------------------------------------------ queue and bucket grants
@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_processor_consumes_its_queue_and_sends_to_its_dlq(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    fn = dev_stack.processors[integration.name]
    queue = arn(dev_stack, dev_stack.queues[integration.name])
    dlq = arn(dev_stack, dev_stack.dead_letter_queues[integration.name])
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert allowing(dev_stack, dev_template, fn, action, queue), action
    assert allowing(dev_stack, dev_template, fn, "sqs:SendMessage", dlq)
    assert not allowing(dev_stack, dev_template, fn, "sqs:SendMessage", queue)
    # The data key the queues are encrypted with.
    assert allowing(dev_stack, dev_template, fn, "kms:Decrypt", arn(dev_stack, dev_stack.data_key))


@pytest.mark.parametrize("integration", WEBHOOKS, ids=[i.name for i in WEBHOOKS])
def test_ingress_sends_to_its_queue_and_writes_payloads_only(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    fn = dev_stack.ingress_functions[integration.name]
    assert allowing(dev_stack, dev_template, fn, "sqs:SendMessage", arn(dev_stack, dev_stack.queues[integration.name]))
    key = arn(dev_stack, dev_stack.data_key)
    key_actions = {
        a for s in statements(dev_stack, dev_template, fn) if key in _list(s["Resource"]) for a in _list(s["Action"])
    }
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= key_actions  # SendMessage and PutObject with the data key
    s3 = [s for s in statements(dev_stack, dev_template, fn) if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in s3] == [
        (["s3:PutObject"], [objects(dev_stack, integration)])
    ]
    assert not any(
        a.startswith("dynamodb:") for s in statements(dev_stack, dev_template, fn) for a in _list(s["Action"])
    )


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_processor_reads_its_payloads_only(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    fn = dev_stack.processors[integration.name]
    s3 = [s for s in statements(dev_stack, dev_template, fn) if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in s3] == [
        (["s3:GetObject"], [objects(dev_stack, integration)])
    ]


# ---------------------------------------------------------------------------- tables by key prefix
@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_processor_table_access_is_limited_by_leading_keys(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    name = integration.name
    fn = dev_stack.processors[name]
    idem, state = arn(dev_stack, dev_stack.idempotency_table), arn(dev_stack, dev_stack.state_table)
    table_statements = [
        s for s in statements(dev_stack, dev_template, fn) if any(a.startswith("dynamodb:") for a in _list(s["Action"]))
    ]
    assert table_statements
    for s in table_statements:
        assert "dynamodb:Scan" not in _list(s["Action"])  # a Scan has no partition key to restrict
        assert _list(s["Resource"]) in ([idem], [state]), s
        keys = s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]  # no unrestricted statement
        if idem in _list(s["Resource"]):
            assert keys == [f"{name}#*"]
        if state in _list(s["Resource"]):
            assert set(keys) <= {"trace#*", f"status#{name}", f"breaker#{name}#*"}
            if "trace#*" in keys:  # another integration's entity history: add to it, never read or change it
                assert set(_list(s["Action"])) <= {"dynamodb:PutItem", "dynamodb:BatchWriteItem"}
    # What the processor needs: its idempotency records, its breaker and status, trace items in batches.
    assert allowing(dev_stack, dev_template, fn, "dynamodb:UpdateItem", idem)
    assert allowing(dev_stack, dev_template, fn, "dynamodb:GetItem", idem)
    breaker = [
        s
        for s in allowing(dev_stack, dev_template, fn, "dynamodb:UpdateItem", state)
        if f"breaker#{name}#*" in s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    ]
    assert breaker
    mixed = [
        s
        for s in allowing(dev_stack, dev_template, fn, "dynamodb:BatchWriteItem", state)
        if {"trace#*", f"status#{name}"} <= set(s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
    ]
    assert mixed, "a batch of trace and status items must fit one statement"
    assert not any(
        a in DYNAMODB_READS
        for s in statements(dev_stack, dev_template, fn)
        if "trace#*" in json.dumps(s.get("Condition", {}))
        for a in _list(s["Action"])
    )


# ------------------------------------------------------------------------------- data at rest
def test_tables_queues_and_bucket_use_the_data_key(dev_stack: JunctionStack, dev_template: Template) -> None:
    key = arn(dev_stack, dev_stack.data_key)
    assert key != arn(dev_stack, dev_stack.key)  # not the alarm topic's key
    data_key = dev_template.to_json()["Resources"][logical_id(dev_stack, dev_stack.data_key)]["Properties"]
    assert data_key["EnableKeyRotation"] is True
    for table in resources(dev_template, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"] == {"KMSMasterKeyId": key, "SSEEnabled": True, "SSEType": "KMS"}
    queues = resources(dev_template, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(INTEGRATIONS)
    for queue in queues.values():
        assert queue["Properties"]["KmsMasterKeyId"] == key


def test_payload_bucket(dev_stack: JunctionStack, dev_template: Template) -> None:
    bucket = only(resources(dev_template, "AWS::S3::Bucket"))["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": arn(dev_stack, dev_stack.data_key),
    }
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket.get("VersioningConfiguration", {}).get("Status") != "Enabled"
    longest_ttl = max(i.idempotency_ttl_days for i in INTEGRATIONS)
    [expiry] = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expiry["Status"] == "Enabled"
    assert expiry["ExpirationInDays"] == longest_ttl + PAYLOAD_EXPIRY_MARGIN_DAYS > longest_ttl
    policy = only(resources(dev_template, "AWS::S3::BucketPolicy"))["Properties"]["PolicyDocument"]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )


# ------------------------------------------------------------------------------------- alarms
def _alarms(template: Template, metric: str, **props: Any) -> list[dict[str, Any]]:
    return [
        a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm", {"MetricName": metric, **props}).values()
    ]


def _junction_alarm(dev_stack: JunctionStack, dev_template: Template, metric: str, i: Integration) -> dict[str, Any]:
    [alarm] = _alarms(dev_template, metric, Namespace="Junction", Dimensions=[{"Name": "Integration", "Value": i.name}])
    assert alarm["AlarmActions"] == [{"Ref": logical_id(dev_stack, dev_stack.alarm_topic)}]
    assert alarm["Statistic"] == "Sum"
    return alarm


@pytest.mark.parametrize("integration", WEBHOOKS, ids=[i.name for i in WEBHOOKS])
def test_alarm_on_a_spike_of_401s(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    """A secret rotated on one side only: every delivery fails verification, the sender gives up later."""
    found = []
    for alarm in resources(dev_template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        if any(
            s["MetricName"] == "Webhook_unauthorized"
            and s["Namespace"] == "Junction"
            and s["Dimensions"] == [{"Name": "Integration", "Value": integration.name}]
            for s in stats
        ):
            found.append(props)
    [alarm] = found
    assert alarm["Threshold"] == UNAUTHORIZED_SPIKE
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": logical_id(dev_stack, dev_stack.alarm_topic)}]
    [expression] = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    assert "unauthorized" in expression and "accepted" in expression


@pytest.mark.parametrize("integration", WEBHOOKS, ids=[i.name for i in WEBHOOKS])
def test_alarm_on_503s(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    alarm = _junction_alarm(dev_stack, dev_template, "Webhook_unavailable", integration)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_alarm_on_an_open_circuit_breaker(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    alarm = _junction_alarm(dev_stack, dev_template, "Breaker_opened", integration)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_alarm_on_dlq_messages_nearing_their_retention(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    i = integration
    dims = [
        {
            "Name": "QueueName",
            "Value": {"Fn::GetAtt": [logical_id(dev_stack, dev_stack.dead_letter_queues[i.name]), "QueueName"]},
        }
    ]
    [alarm] = _alarms(dev_template, "ApproximateAgeOfOldestMessage", Dimensions=dims)
    retention = i.queue.dlq_retention_days * 86_400
    # A standard DLQ's messages expire by their first enqueue; the metric counts from the move.
    spent = 0 if i.queue.fifo else i.queue.retention_days * 86_400
    assert alarm["Threshold"] == retention - spent - DLQ_EXPIRY_MARGIN_DAYS * 86_400
    assert 0 < alarm["Threshold"] <= retention - spent - 86_400
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": logical_id(dev_stack, dev_stack.alarm_topic)}]


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=ids)
def test_alarm_on_processor_errors(dev_stack: JunctionStack, dev_template: Template, integration: Integration) -> None:
    dims = [{"Name": "FunctionName", "Value": {"Ref": logical_id(dev_stack, dev_stack.processors[integration.name])}}]
    [alarm] = _alarms(dev_template, "Errors", Dimensions=dims)
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


# ------------------------------------------------------------------- alarms nobody would hear
NO_SUBSCRIBER = Match.string_like_regexp(".*alarm topic .* has no subscriber.*")


def test_prod_without_alarm_subscriber_warns(prod_stack: JunctionStack, dev_stack: JunctionStack) -> None:
    assert Annotations.from_stack(prod_stack).find_warning("*", NO_SUBSCRIBER)
    assert not Annotations.from_stack(dev_stack).find_warning("*", NO_SUBSCRIBER)


def test_prod_with_alarm_subscriber_does_not_warn(dev_stack: JunctionStack) -> None:
    settings = StageSettings(removal_policy=cdk.RemovalPolicy.RETAIN, alarm_email="ops@example.com")
    stack = JunctionStack(
        cdk.App(),
        "subscribed",
        stage="prod",
        settings=settings,
        ingress_code_dir=dev_stack.ingress_code_dir,
        processor_code_dir=dev_stack.processor_code_dir,
    )
    assert not Annotations.from_stack(stack).find_warning("*", NO_SUBSCRIBER)
    Template.from_stack(stack).has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
