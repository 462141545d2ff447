"""The local runtime and the deployed stack are built from the same declarations: prove that the
settings the local runtime applies are the ones in the synthesized template, target by target and
function by function (the registry's integrations and the samples)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.stack import JunctionStack, schedule_interval_seconds, target_key
from junction_local.host import share
from junction_local.provision import QueuePair, Resources, function_roles, queue_attributes, queue_key
from junction_local.schedule import Schedule
from shared.declaration import TABLE_KEYS, TTL_ATTRIBUTE, Integration, Target, function_name, queue_name
from tests.infra.conftest import SCHEDULES, TARGET_IDS, TARGETS, WIDE, names
from tests.infra.test_stack import logical_id

pytestmark = pytest.mark.slow


def resources(template: Template, kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template.to_json()["Resources"].values() if r["Type"] == kind]


def queue(template: Template, name: str) -> dict[str, Any]:
    [found] = [q for q in resources(template, "AWS::SQS::Queue") if q.get("QueueName") == name]
    return found


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_queues_match(wide_template: Template, integration: Integration, target: Target) -> None:
    deployed = queue(wide_template, queue_name("dev", integration, target))
    deployed_dlq = queue(wide_template, queue_name("dev", integration, target, dead_letter=True))
    local = queue_attributes(target, dead_letter=False, dlq_arn="arn:local")
    local_dlq = queue_attributes(target, dead_letter=True)
    assert int(local["VisibilityTimeout"]) == deployed["VisibilityTimeout"]
    assert int(local["MessageRetentionPeriod"]) == deployed["MessageRetentionPeriod"]
    assert int(local["MaximumMessageSize"]) == deployed["MaximumMessageSize"] == int(local_dlq["MaximumMessageSize"])
    assert int(local_dlq["MessageRetentionPeriod"]) == deployed_dlq["MessageRetentionPeriod"]
    assert json.loads(local["RedrivePolicy"])["maxReceiveCount"] == deployed["RedrivePolicy"]["maxReceiveCount"]
    assert ("FifoQueue" in local) == bool(deployed.get("FifoQueue")) == ("FifoQueue" in local_dlq)
    # The local state file and the stack's dictionaries name a target's queues alike.
    assert queue_key(integration, target) == target_key(integration, target)


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_event_source_matches(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration, target: Target
) -> None:
    queue_id = logical_id(wide_stack, wide_stack.queues[target_key(integration, target)])
    [deployed] = [
        m
        for m in resources(wide_template, "AWS::Lambda::EventSourceMapping")
        if m["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    ]
    assert deployed["ScalingConfig"]["MaximumConcurrency"] == target.max_concurrency
    assert deployed["BatchSize"] == target.queue.batch_size
    assert deployed.get("MaximumBatchingWindowInSeconds", 0) == target.queue.batching_window_seconds
    assert deployed["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for processes in (1, 2, 3):  # the local slots add up to the deployed maximum concurrency
        assert sum(share(target, k, processes) for k in range(processes)) == target.max_concurrency


class _Names:
    """Turns the template's references back into the names a local Resources is given below."""

    def __init__(self, stack: JunctionStack) -> None:
        def lid(construct: Any) -> str:
            return logical_id(stack, construct)

        self.refs: dict[str, str] = {
            lid(stack.idempotency_table): "idempotency-table",
            lid(stack.state_table): "state-table",
            lid(stack.payload_bucket): "payload-bucket",
        }
        for key, q in stack.queues.items():
            self.refs[lid(q)] = f"queue:{key}"
            self.refs[lid(stack.dead_letter_queues[key])] = f"dlq:{key}"

    def value(self, v: Any) -> str:
        if isinstance(v, str):
            return v
        if "Ref" in v:
            return self.refs[v["Ref"]]
        separator, parts = v["Fn::Join"]
        return str(separator).join(self.value(p) for p in parts)


def _local_resources() -> Resources:
    local = Resources(
        "dev", idempotency_table="idempotency-table", state_table="state-table", payload_bucket="payload-bucket"
    )
    for i, t in TARGETS:
        key = queue_key(i, t)
        local.queues[key] = QueuePair(f"queue:{key}", f"arn:{key}", f"dlq:{key}", f"arn:dlq:{key}")
    return local


@pytest.mark.parametrize("integration", WIDE, ids=names(WIDE))
def test_function_environments_match(
    wide_stack: JunctionStack, wide_template: Template, integration: Integration
) -> None:
    """Every function the stack deploys runs locally under the same role with the same variables,
    pointing at the same queues in the same order."""
    functions = {f["FunctionName"]: f for f in resources(wide_template, "AWS::Lambda::Function")}
    local = _local_resources()
    refs = _Names(wide_stack)
    deployed_roles = [
        name.removeprefix(f"junction-dev-{integration.name}-")
        for name in functions
        if name.startswith(f"junction-dev-{integration.name}-")
    ]
    assert sorted(function_roles(integration)) == sorted(deployed_roles)
    for role in function_roles(integration):
        deployed = functions[function_name("dev", integration, role)]["Environment"]["Variables"]
        assert {k: refs.value(v) for k, v in deployed.items()} == local.function_env(integration, role), role


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_schedules_match(wide_template: Template, integration: Integration) -> None:
    assert integration.schedule is not None
    expression = integration.schedule.expression
    [rule] = [
        r for r in resources(wide_template, "AWS::Events::Rule") if r["Name"] == f"junction-dev-{integration.name}"
    ]
    assert rule["ScheduleExpression"] == expression
    assert Schedule(expression).interval == schedule_interval_seconds(expression)


def test_webhook_routes_match(wide_template: Template) -> None:
    """Each declared route is on the API that serves it: the REST API for one open to its sender's
    addresses only, the HTTP API (route key ``METHOD /path``) for a signed one."""
    parts = {r["PathPart"] for r in resources(wide_template, "AWS::ApiGateway::Resource")}
    methods = {m["HttpMethod"] for m in resources(wide_template, "AWS::ApiGateway::Method")}
    route_keys = {r["RouteKey"] for r in resources(wide_template, "AWS::ApiGatewayV2::Route")}
    for integration in WIDE:
        if integration.webhook and integration.webhook.source_ips:
            assert set(integration.webhook.path.strip("/").split("/")) <= parts
            assert integration.webhook.method in methods
        elif integration.webhook:
            assert f"{integration.webhook.method} {integration.webhook.path}" in route_keys


def test_tables_match(dev_template: Template) -> None:
    tables = resources(dev_template, "AWS::DynamoDB::Table")
    for hash_key, range_key in TABLE_KEYS.values():
        wanted = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            wanted.append({"AttributeName": range_key, "KeyType": "RANGE"})
        [table] = [t for t in tables if t["KeySchema"] == wanted]
        assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
