"""The local runtime and the deployed stack are built from the same declarations: prove that the
settings the local runtime applies are the ones in the synthesized template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from functions.registry import INTEGRATIONS
from junction_local.host import share
from junction_local.provision import queue_attributes
from shared.declaration import TABLE_KEYS, TTL_ATTRIBUTE, Integration, queue_name


def resources(template: Template, kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template.to_json()["Resources"].values() if r["Type"] == kind]


def queue(template: Template, name: str) -> dict[str, Any]:
    [found] = [q for q in resources(template, "AWS::SQS::Queue") if q.get("QueueName") == name]
    return found


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=lambda i: i.name)
def test_queues_match(dev_template: Template, integration: Integration) -> None:
    deployed = queue(dev_template, queue_name("dev", integration))
    deployed_dlq = queue(dev_template, queue_name("dev", integration, dead_letter=True))
    local = queue_attributes(integration, dead_letter=False, dlq_arn="arn:local")
    local_dlq = queue_attributes(integration, dead_letter=True)
    assert int(local["VisibilityTimeout"]) == deployed["VisibilityTimeout"]
    assert int(local["MessageRetentionPeriod"]) == deployed["MessageRetentionPeriod"]
    assert int(local["MaximumMessageSize"]) == deployed["MaximumMessageSize"] == int(local_dlq["MaximumMessageSize"])
    assert int(local_dlq["MessageRetentionPeriod"]) == deployed_dlq["MessageRetentionPeriod"]
    assert json.loads(local["RedrivePolicy"])["maxReceiveCount"] == deployed["RedrivePolicy"]["maxReceiveCount"]
    assert ("FifoQueue" in local) == bool(deployed.get("FifoQueue"))


@pytest.mark.parametrize("integration", INTEGRATIONS, ids=lambda i: i.name)
def test_event_source_matches(dev_template: Template, integration: Integration) -> None:
    mappings = resources(dev_template, "AWS::Lambda::EventSourceMapping")
    [deployed] = [m for m in mappings if m["ScalingConfig"]["MaximumConcurrency"] == integration.max_concurrency]
    assert deployed["BatchSize"] == integration.queue.batch_size
    assert deployed.get("MaximumBatchingWindowInSeconds", 0) == integration.queue.batching_window_seconds
    assert deployed["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for processes in (1, 2, 3):  # the local slots add up to the deployed maximum concurrency
        assert sum(share(integration, k, processes) for k in range(processes)) == integration.max_concurrency


def test_webhook_routes_match(dev_template: Template) -> None:
    parts = {r["PathPart"] for r in resources(dev_template, "AWS::ApiGateway::Resource")}
    methods = {m["HttpMethod"] for m in resources(dev_template, "AWS::ApiGateway::Method")}
    for integration in INTEGRATIONS:
        if integration.webhook:
            assert set(integration.webhook.path.strip("/").split("/")) <= parts
            assert integration.webhook.method in methods


def test_tables_match(dev_template: Template) -> None:
    tables = resources(dev_template, "AWS::DynamoDB::Table")
    for hash_key, range_key in TABLE_KEYS.values():
        wanted = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            wanted.append({"AttributeName": range_key, "KeyType": "RANGE"})
        [table] = [t for t in tables if t["KeySchema"] == wanted]
        assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
