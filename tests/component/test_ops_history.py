"""``junction history`` and the hourly export to S3, against moto and the local AWS stand-in.

The state table is written as the processors and pollers write it (trace items, run items): what
is tested is what history reads back, how it pages and bounds its reads, and what the export puts
in S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from functions import history_export, registry
from junction_local.provision import Resources, provision
from ops.cli import app
from shared import history, state_keys
from shared.aws import item_to_ddb
from tests.component.harness import STAGE
from tests.sample import SHOP_ORDERS_TO_ERP as ORDERS

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
runner = CliRunner()


def junction(*args: str) -> Result:
    return runner.invoke(app, ["--aws", "--stage", STAGE, *args], env={"COLUMNS": "100", "JUNCTION_OPS_ON": None})


@dataclass
class State:
    resources: Resources
    ddb: Any

    def hop(self, entity: str, when: str, outcome: str, *, target: str = "erp", reason: str | None = None) -> None:
        item: dict[str, Any] = {
            "pk": state_keys.trace_pk(entity),
            "sk": state_keys.trace_sk(f"2026-03-01T{when}.000+00:00", f"{ORDERS.name}/{target}", outcome, "00ab"),
            "integration": ORDERS.name,
            "target": target,
            "outcome": outcome,
            "delivery_id": f"{entity}:create",
            "attempts": 1,
            "latency_ms": 80,
        }
        if reason:
            item["reason"] = reason
        self.ddb.put_item(TableName=self.resources.state_table, Item=item_to_ddb(item))

    def run(self, when: str, outcome: str, integration: str = ORDERS.name) -> None:
        start = f"2026-03-01T{when}.000+00:00"
        item = {
            "pk": state_keys.sync_pk(integration),
            "sk": state_keys.run_sk(start, f"run-{when}"),
            "started_at": start,
            "ended_at": start,
            "outcome": outcome,
            "pages": 2,
            "changes": 7,
        }
        self.ddb.put_item(TableName=self.resources.state_table, Item=item_to_ddb(item))


@pytest.fixture
def state(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    ddb = boto3.client("dynamodb")
    resources = provision(
        (ORDERS,),
        stage=STAGE,
        sqs=boto3.client("sqs"),
        ddb=ddb,
        secretsmanager=boto3.client("secretsmanager"),
        secret_values={ref.name: {"value": "local"} for ref in ORDERS.all_secrets},
    )
    monkeypatch.setattr(registry, "INTEGRATIONS", (ORDERS,))
    s = State(resources, ddb)
    s.hop("shopify-order:1", "10:00:01", "delivered")
    s.hop("shopify-order:2", "10:00:02", "retry_scheduled", reason="target_unavailable")
    s.hop("shopify-order:3", "10:00:03", "dead_lettered", reason="validation_failed")
    s.hop("shopify-order:4", "10:00:04", "dead_lettered", reason="retries_exhausted")
    s.hop("shopify-order:1", "10:00:05", "duplicate")
    s.hop("shopify-order:9", "11:30:00", "delivered")  # outside the window
    s.run("10:10:00", "failed")
    yield s


def test_history_reads_deliveries_and_runs_with_outcome_and_class(state: State) -> None:
    page = history.read(state.ddb, state.resources.state_table, ORDERS.name, HOUR, HOUR.replace(hour=11))
    got = [(e.outcome, e.reason, e.error_class) for e in page.events]
    assert got == [
        ("delivered", None, None),
        ("retried", "target_unavailable", "system"),
        ("dead_lettered", "validation_failed", "business"),
        ("dead_lettered", "retries_exhausted", "system"),
        ("duplicate", None, None),
        ("failed", None, "system"),
    ]
    assert page.method == "scan" and page.complete and not page.limited
    assert history.counts(page.events)["erp"] == {
        "delivered": 1,
        "retried": 1,
        "system": 2,
        "dead_lettered": 2,
        "business": 1,
        "duplicate": 1,
    }


def test_a_bounded_scan_says_it_stopped(state: State) -> None:
    page = history.read(state.ddb, state.resources.state_table, ORDERS.name, HOUR, HOUR.replace(hour=11), max_scanned=2)
    assert not page.complete and page.scanned == 2


def test_history_cli_filters_limits_and_prints_jsonl_csv_and_json(state: State) -> None:
    window = ["--since", "2026-03-01T10:00:00Z", "--until", "2026-03-01T11:00:00Z"]
    result = junction("history", ORDERS.name, *window, "--outcome", "dead_lettered", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["entity_id"] for line in lines] == ["shopify-order:3", "shopify-order:4"]
    assert "Scan" in result.stderr  # no index: the read says it scanned

    limited = junction("history", ORDERS.name, *window, "--limit", "2", "--json")
    doc = json.loads(limited.stdout)
    assert doc["limited"] is True and [e["outcome"] for e in doc["events"]] == ["duplicate", "failed"]

    csv_out = junction("history", ORDERS.name, *window, "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("at,kind,integration") and len(csv_out) == 7

    table = junction("history", ORDERS.name, *window).stdout
    assert "validation_failed" in table and "business" in table and "poller run" in table


def test_history_refuses_bad_input(state: State) -> None:
    assert junction("history", ORDERS.name, "--outcome", "lost").exit_code == 2
    assert junction("history", ORDERS.name, "--since", "yesterday").exit_code == 2
    empty = junction("history", ORDERS.name, "--since", "2026-03-01T11:00:00", "--until", "2026-03-01T10:00:00")
    assert empty.exit_code == 1 and "window is empty" in empty.stderr
    assert junction("history", "no-such-integration").exit_code == 1


def test_the_export_writes_one_hour_as_json_lines_and_is_idempotent(state: State) -> None:
    s3 = boto3.client("s3", region_name="eu-central-1")
    s3.create_bucket(Bucket="history", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    env = {
        "JUNCTION_STAGE": STAGE,
        "JUNCTION_STATE_TABLE": state.resources.state_table,
        "JUNCTION_HISTORY_BUCKET": "history",
    }
    event = {"time": "2026-03-01T11:10:00Z"}  # the schedule's event: exports 10:00-11:00
    first = history_export.handler(event, None, ddb=state.ddb, s3=s3, environ=env)
    key = f"history/integration={ORDERS.name}/dt=2026-03-01/hour=10/part-00000.jsonl"
    assert first["exported"][0]["keys"] == [key] and first["exported"][0]["events"] == 6
    body = s3.get_object(Bucket="history", Key=key)["Body"].read()
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["outcome"] for line in lines][-1] == "failed" and lines[0]["entity_id"] == "shopify-order:1"

    # A stale part of an earlier export with smaller parts goes; the same hour gives the same bytes.
    s3.put_object(Bucket="history", Key=key.replace("00000", "00001"), Body=b"old\n")
    again = history_export.handler({"hour": "2026-03-01T10"}, None, ddb=state.ddb, s3=s3, environ=env)
    assert again["exported"][0]["removed"] == [key.replace("00000", "00001")]
    assert s3.get_object(Bucket="history", Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket="history")["Contents"]
    assert [o["Key"] for o in listed] == [key]


def test_the_export_of_several_hours_and_its_parts() -> None:
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    hours = history_export.hours_of({"hours": 2}, now)
    assert [h.hour for h in hours] == [10, 11]
    assert history.part_key("x", HOUR, 3).endswith("dt=2026-03-01/hour=10/part-00003.jsonl")
    with pytest.raises(ValueError):
        history_export.hours_of({"hours": 0}, now)


def test_history_reads_the_index_when_the_stage_has_one(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb = boto3.client("dynamodb")
    if ddb.meta.endpoint_url != boto3.client("s3").meta.endpoint_url:
        pytest.skip("the local stand-in has no secondary indexes; moto has")
    table = "history-index-test"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "integration")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": history.HISTORY_INDEX,
                "KeySchema": [
                    {"AttributeName": "integration", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(5):
        sk = state_keys.trace_sk(f"2026-03-01T10:00:0{n}.000+00:00", f"{ORDERS.name}/erp", "delivered", "00")
        item = {"pk": state_keys.trace_pk(f"o:{n}"), "sk": sk, "integration": ORDERS.name, "outcome": "delivered"}
        ddb.put_item(TableName=table, Item=item_to_ddb(item))
    page = history.read(
        ddb, table, ORDERS.name, HOUR, HOUR.replace(hour=11), limit=2, index=history.HISTORY_INDEX, runs=False
    )
    assert page.method == "index" and page.limited
    assert [e.entity_id for e in page.events] == ["o:3", "o:4"]  # the newest two, oldest first
