"""Data at rest, least privilege per target and per function, and the alarms, on the template."""

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
    POLL_LAG_FLOOR_SECONDS,
    UNAUTHORIZED_SPIKE,
    JunctionStack,
    StageSettings,
    poll_lag_threshold_seconds,
    target_key,
)
from shared import claim_check, state_keys
from shared.declaration import Integration, ScheduleTrigger, Target, function_name, queue_name
from tests.infra.conftest import SCHEDULES, TARGET_IDS, TARGETS, WEBHOOKS, WIDE, alarm_topic_ref, names
from tests.infra.samples import SCHEDULED, TWO_TARGET_WEBHOOK
from tests.infra.test_stack import arn, logical_id, only, ref, resources

pytestmark = pytest.mark.slow

DYNAMODB_READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:Scan"}
QUEUE_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(stack: JunctionStack, template: Template, fn: Any) -> list[dict[str, Any]]:
    """Every statement of the policies attached to a function's role."""
    role = ref(stack, fn.role)
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


def objects(stack: JunctionStack, integration: Integration) -> dict[str, Any]:
    # The key layout the ingress and poller write and the processor reads (shared/claim_check.py).
    prefix = claim_check.KEY_PREFIX
    return {"Fn::Join": ["", [arn(stack, stack.payload_bucket), f"/{prefix}/{integration.name}/*"]]}


def table_statements(stack: JunctionStack, template: Template, fn: Any) -> list[dict[str, Any]]:
    return [s for s in statements(stack, template, fn) if any(a.startswith("dynamodb:") for a in _list(s["Action"]))]


def keys_of(statement: dict[str, Any]) -> list[str]:
    keys: list[str] = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    return keys


# ------------------------------------------------------------------------ queue and bucket grants
@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_processor_consumes_its_queue_and_sends_to_its_dlq(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    key = target_key(integration, target)
    fn = wide_stack.processors[key]
    queue = arn(wide_stack, wide_stack.queues[key])
    dlq = arn(wide_stack, wide_stack.dead_letter_queues[key])
    for action in QUEUE_CONSUME:
        assert allowing(wide_stack, wide_template, fn, action, queue), action
    assert allowing(wide_stack, wide_template, fn, "sqs:SendMessage", dlq)
    assert not allowing(wide_stack, wide_template, fn, "sqs:SendMessage", queue)
    # The targets after it (Target.after) get each delivery from it: send to their queues only.
    followers = {target_key(integration, f) for f in integration.followers(target)}
    for follower in followers:
        follower_queue = arn(wide_stack, wide_stack.queues[follower])
        assert allowing(wide_stack, wide_template, fn, "sqs:SendMessage", follower_queue)
        for action in QUEUE_CONSUME:
            assert not allowing(wide_stack, wide_template, fn, action, follower_queue), action
    # No other target's queues, whatever the integration.
    for other, other_queue in wide_stack.queues.items():
        if other == key:
            continue
        for q in (other_queue, wide_stack.dead_letter_queues[other]):
            if other in followers and q is other_queue:
                continue
            touched = [
                s for s in statements(wide_stack, wide_template, fn) if arn(wide_stack, q) in _list(s["Resource"])
            ]
            assert touched == [], other
    # The data key the queues are encrypted with.
    assert allowing(wide_stack, wide_template, fn, "kms:Decrypt", arn(wide_stack, wide_stack.data_key))


@pytest.mark.parametrize("integration", WEBHOOKS, ids=names(WEBHOOKS))
def test_ingress_sends_to_every_target_queue_and_writes_payloads_only(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    fn = wide_stack.ingress_functions[integration.name]
    own = {target_key(integration, t) for t in integration.entry_targets}  # not the targets after another
    for key, queue in wide_stack.queues.items():
        sends = allowing(wide_stack, wide_template, fn, "sqs:SendMessage", arn(wide_stack, queue))
        assert bool(sends) == (key in own), key
        for action in QUEUE_CONSUME:
            assert not allowing(wide_stack, wide_template, fn, action, arn(wide_stack, queue))
    data_key = arn(wide_stack, wide_stack.data_key)
    key_actions = {
        a
        for s in statements(wide_stack, wide_template, fn)
        if data_key in _list(s["Resource"])
        for a in _list(s["Action"])
    }
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= key_actions  # SendMessage and PutObject with the data key
    s3 = [s for s in statements(wide_stack, wide_template, fn) if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in s3] == [
        (["s3:PutObject"], [objects(wide_stack, integration)])
    ]
    assert table_statements(wide_stack, wide_template, fn) == []


def test_the_two_target_ingress_may_send_to_both_queues(wide_stack: JunctionStack, wide_template: Template) -> None:
    fn = wide_stack.ingress_functions[TWO_TARGET_WEBHOOK.name]
    for t in TWO_TARGET_WEBHOOK.targets:
        queue = arn(wide_stack, wide_stack.queues[target_key(TWO_TARGET_WEBHOOK, t)])
        assert allowing(wide_stack, wide_template, fn, "sqs:SendMessage", queue), t.name


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_processor_reads_its_payloads_only(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    fn = wide_stack.processors[target_key(integration, target)]
    s3 = [s for s in statements(wide_stack, wide_template, fn) if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in s3] == [
        (["s3:GetObject"], [objects(wide_stack, integration)])
    ]


# ----------------------------------------------------------------------------------- pollers
@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_poller_sends_to_every_target_queue_and_nothing_else(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    fn = wide_stack.pollers[integration.name]
    own = {target_key(integration, t) for t in integration.entry_targets}  # not the targets after another
    for key, queue in wide_stack.queues.items():
        sends = allowing(wide_stack, wide_template, fn, "sqs:SendMessage", arn(wide_stack, queue))
        assert bool(sends) == (key in own), key
        for action in QUEUE_CONSUME:  # it has no queue of its own
            assert not allowing(wide_stack, wide_template, fn, action, arn(wide_stack, queue))
        dlq = arn(wide_stack, wide_stack.dead_letter_queues[key])
        assert not [s for s in statements(wide_stack, wide_template, fn) if dlq in _list(s["Resource"])]
    s3 = [s for s in statements(wide_stack, wide_template, fn) if any(a.startswith("s3:") for a in _list(s["Action"]))]
    assert [(_list(s["Action"]), _list(s["Resource"])) for s in s3] == [
        (["s3:PutObject"], [objects(wide_stack, integration)])
    ]


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_poller_table_access_is_its_sync_items_only(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    fn = wide_stack.pollers[integration.name]
    state = arn(wide_stack, wide_stack.state_table)
    found = table_statements(wide_stack, wide_template, fn)
    assert found
    for s in found:
        assert _list(s["Resource"]) == [state]  # never the idempotency table
        assert keys_of(s) == state_keys.poller_keys(integration.name) == [f"sync#{integration.name}"]
        assert "dynamodb:Scan" not in _list(s["Action"])
    # Its lease is a conditional write, its cursor a read and a conditional write, its history a query.
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"):
        assert allowing(wide_stack, wide_template, fn, action, state), action
    assert allowing(wide_stack, wide_template, fn, "kms:Decrypt", arn(wide_stack, wide_stack.data_key))


# ---------------------------------------------------------------------------- tables by key prefix
@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_processor_table_access_is_limited_by_leading_keys(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    i, t = integration, target
    fn = wide_stack.processors[target_key(i, t)]
    idem, state = arn(wide_stack, wide_stack.idempotency_table), arn(wide_stack, wide_stack.state_table)
    own = state_keys.processor_keys(
        i.name, t.name, t.rate.account if t.rate else None, cross_reference=t.cross_reference
    )
    found = table_statements(wide_stack, wide_template, fn)
    assert found
    for s in found:
        assert "dynamodb:Scan" not in _list(s["Action"])  # a Scan has no partition key to restrict
        assert _list(s["Resource"]) in ([idem], [state]), s
        keys = keys_of(s)  # no unrestricted statement
        if idem in _list(s["Resource"]):
            assert keys == [f"{i.name}#{t.name}#*"]  # each target its own idempotency scope
        if state in _list(s["Resource"]):
            assert set(keys) <= {"trace#*", *own}
            if "trace#*" in keys:  # another integration's entity history: add to it, never read or change it
                assert set(_list(s["Action"])) <= {"dynamodb:PutItem", "dynamodb:BatchWriteItem"}
    # What the processor needs: its idempotency records, all its own state items, trace items in batches.
    assert allowing(wide_stack, wide_template, fn, "dynamodb:UpdateItem", idem)
    assert allowing(wide_stack, wide_template, fn, "dynamodb:GetItem", idem)
    full = [
        s for s in allowing(wide_stack, wide_template, fn, "dynamodb:UpdateItem", state) if "trace#*" not in keys_of(s)
    ]
    assert [sorted(keys_of(s)) for s in full] == [sorted(own)]
    mixed = [
        s
        for s in allowing(wide_stack, wide_template, fn, "dynamodb:BatchWriteItem", state)
        if {"trace#*", f"status#{i.name}"} <= set(keys_of(s))
    ]
    assert mixed, "a batch of trace and status items must fit one statement"
    assert not any(
        a in DYNAMODB_READS
        for s in statements(wide_stack, wide_template, fn)
        if "trace#*" in json.dumps(s.get("Condition", {}))
        for a in _list(s["Action"])
    )
    # Never the pollers' sync items.
    assert not any(k.startswith("sync#") for s in found for k in keys_of(s))


def test_iam_conditions_are_per_target(wide_stack: JunctionStack, wide_template: Template) -> None:
    """Two targets of one integration share nothing in the tables but the integration's status item
    (whose sort key names the target): not idempotency records, breakers, version gates, id maps
    or rate budgets."""
    shopify, allegro = SCHEDULED.target("shopify"), SCHEDULED.target("allegro")

    def keys(t: Target) -> set[str]:
        fn = wide_stack.processors[target_key(SCHEDULED, t)]
        return {k for s in table_statements(wide_stack, wide_template, fn) for k in keys_of(s)}

    assert keys(shopify) & keys(allegro) == {"trace#*", f"status#{SCHEDULED.name}"}
    assert f"{SCHEDULED.name}#shopify#*" in keys(shopify)
    assert f"breaker#{SCHEDULED.name}#allegro" in keys(allegro)
    assert f"version#{SCHEDULED.name}#allegro#*" in keys(allegro)
    assert f"idmap#{SCHEDULED.name}#allegro#*" in keys(allegro)
    assert "budget#sample-shop" in keys(shopify) and "budget#sample-market" in keys(allegro)
    warehouse = TWO_TARGET_WEBHOOK.target("warehouse")  # no rate budget, so no budget item
    assert warehouse.rate is None
    fn = wide_stack.processors[target_key(TWO_TARGET_WEBHOOK, warehouse)]
    assert not [
        k for s in table_statements(wide_stack, wide_template, fn) for k in keys_of(s) if k.startswith("budget#")
    ]


# ------------------------------------------------------------------------------- data at rest
def test_tables_queues_and_bucket_use_the_data_key(wide_stack: JunctionStack, wide_template: Template) -> None:
    key = arn(wide_stack, wide_stack.data_key)
    assert key != arn(wide_stack, wide_stack.key)  # not the alarm topic's key
    data_key = wide_template.to_json()["Resources"][logical_id(wide_stack, wide_stack.data_key)]["Properties"]
    assert data_key["EnableKeyRotation"] is True
    for table in resources(wide_template, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"] == {"KMSMasterKeyId": key, "SSEEnabled": True, "SSEType": "KMS"}
    queues = resources(wide_template, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(TARGETS)
    for queue in queues.values():
        assert queue["Properties"]["KmsMasterKeyId"] == key


def test_payload_bucket(dev_stack: JunctionStack, dev_template: Template) -> None:
    bucket = dev_template.to_json()["Resources"][logical_id(dev_stack, dev_stack.payload_bucket)]["Properties"]
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
    longest_ttl = max(t.idempotency_ttl_days for i in INTEGRATIONS for t in i.targets)
    [expiry] = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expiry["Status"] == "Enabled"
    assert expiry["ExpirationInDays"] == longest_ttl + PAYLOAD_EXPIRY_MARGIN_DAYS > longest_ttl
    bucket_ref = ref(dev_stack, dev_stack.payload_bucket)
    policy = only(resources(dev_template, "AWS::S3::BucketPolicy", {"Bucket": bucket_ref}))["Properties"][
        "PolicyDocument"
    ]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )


# ------------------------------------------------------------------------------------- alarms
def _alarms(template: Template, metric: str, **props: Any) -> list[dict[str, Any]]:
    return [
        a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm", {"MetricName": metric, **props}).values()
    ]


def _junction_alarm(
    stack: JunctionStack, template: Template, metric: str, i: Integration, t: Target | None = None
) -> dict[str, Any]:
    dimensions = [{"Name": "Integration", "Value": i.name}] + ([{"Name": "Target", "Value": t.name}] if t else [])
    [alarm] = _alarms(template, metric, Namespace="Junction", Dimensions=dimensions)
    assert alarm["AlarmActions"] == [alarm_topic_ref(stack)]
    assert alarm["TreatMissingData"] == "notBreaching"
    return alarm


@pytest.mark.parametrize("integration", WEBHOOKS, ids=names(WEBHOOKS))
def test_alarm_on_a_spike_of_401s(
    wide_stack: JunctionStack, wide_observability: Template, integration: Integration
) -> None:
    """A secret rotated on one side only: every delivery fails verification, the sender gives up later."""
    found = []
    for alarm in resources(wide_observability, "AWS::CloudWatch::Alarm").values():
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
    assert alarm["AlarmActions"] == [alarm_topic_ref(wide_stack)]
    [expression] = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
    assert "unauthorized" in expression and "accepted" in expression


@pytest.mark.parametrize("integration", WEBHOOKS, ids=names(WEBHOOKS))
def test_alarm_on_503s(wide_stack: JunctionStack, wide_observability: Template, integration: Integration) -> None:
    alarm = _junction_alarm(wide_stack, wide_observability, "Webhook_unavailable", integration)
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_alarm_on_an_open_circuit_breaker(
    wide_stack: JunctionStack, wide_observability: Template, integration: Integration, target: Target
) -> None:
    """The processors emit Breaker_opened with dimensions Integration and Target: one alarm per target."""
    alarm = _junction_alarm(wide_stack, wide_observability, "Breaker_opened", integration, target)
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # None on the integration alone: that metric is never emitted, the alarm would never fire.
    assert not _alarms(
        wide_observability, "Breaker_opened", Dimensions=[{"Name": "Integration", "Value": integration.name}]
    )


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_alarm_on_dlq_messages_nearing_their_retention(
    wide_stack: JunctionStack,
    wide_template: Template,
    wide_observability: Template,
    integration: Integration,
    target: Target,
) -> None:
    t = target
    dlq = wide_stack.dead_letter_queues[target_key(integration, t)]
    name = queue_name("dev", integration, t, dead_letter=True)  # the alarm names the queue the main stack makes
    assert wide_template.to_json()["Resources"][logical_id(wide_stack, dlq)]["Properties"]["QueueName"] == name
    dims = [{"Name": "QueueName", "Value": name}]
    [alarm] = _alarms(wide_observability, "ApproximateAgeOfOldestMessage", Dimensions=dims)
    retention = t.queue.dlq_retention_days * 86_400
    # A standard DLQ's messages expire by their first enqueue; the metric counts from the move.
    spent = 0 if t.queue.fifo else t.queue.retention_days * 86_400
    assert alarm["Threshold"] == retention - spent - DLQ_EXPIRY_MARGIN_DAYS * 86_400
    assert 0 < alarm["Threshold"] <= retention - spent - 86_400
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [alarm_topic_ref(wide_stack)]


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_alarm_on_processor_errors(
    wide_stack: JunctionStack,
    wide_template: Template,
    wide_observability: Template,
    integration: Integration,
    target: Target,
) -> None:
    fn = wide_stack.processors[target_key(integration, target)]
    name = function_name("dev", integration, f"{target.name}-processor")
    assert wide_template.to_json()["Resources"][logical_id(wide_stack, fn)]["Properties"]["FunctionName"] == name
    [alarm] = _alarms(wide_observability, "Errors", Dimensions=[{"Name": "FunctionName", "Value": name}])
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


# -------------------------------------------------------------------------------- poller alarms
@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_alarm_on_poller_errors(
    wide_stack: JunctionStack, wide_template: Template, wide_observability: Template, integration: Integration
) -> None:
    fn = wide_stack.pollers[integration.name]
    name = function_name("dev", integration, "poller")
    assert wide_template.to_json()["Resources"][logical_id(wide_stack, fn)]["Properties"]["FunctionName"] == name
    [alarm] = _alarms(wide_observability, "Errors", Dimensions=[{"Name": "FunctionName", "Value": name}])
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [alarm_topic_ref(wide_stack)]


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_alarm_on_a_failed_poll(
    wide_stack: JunctionStack, wide_observability: Template, integration: Integration
) -> None:
    alarm = _junction_alarm(wide_stack, wide_observability, "Poll_failed", integration)
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] == 900
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_alarm_on_cursor_lag(wide_stack: JunctionStack, wide_observability: Template, integration: Integration) -> None:
    alarm = _junction_alarm(wide_stack, wide_observability, "Poll_lag_seconds", integration)
    assert alarm["Statistic"] == "Maximum"  # the worst lag of any run in the period
    assert alarm["Threshold"] == poll_lag_threshold_seconds(integration)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def _scheduled(expression: str) -> Integration:
    return Integration(
        name="lagging",
        description="",
        source="erp",
        package="x",
        trigger=ScheduleTrigger(expression),
        targets=(Target(name="shop"),),
    )


@pytest.mark.parametrize(
    ("expression", "threshold"),
    [
        ("rate(1 minute)", POLL_LAG_FLOOR_SECONDS),  # three periods would page on one slow run
        ("rate(5 minutes)", 900),
        ("rate(10 minutes)", 1800),
        ("rate(1 hour)", 3 * 3600),
        ("cron(0 3 * * ? *)", 3600),
    ],
)
def test_cursor_lag_threshold(expression: str, threshold: int) -> None:
    assert poll_lag_threshold_seconds(_scheduled(expression)) == threshold


def test_the_samples_cover_both_schedule_kinds() -> None:
    kinds = {i.schedule.expression.split("(")[0] for i in WIDE if i.schedule}
    assert kinds == {"rate", "cron"}


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
