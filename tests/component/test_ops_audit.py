"""Every operator action leaves an audit record before the command returns, and ``junction
audit`` lists them (moto and the local AWS stand-in, the real pipeline behind the CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from typer.testing import CliRunner, Result

from functions import registry
from ops import commands
from ops.cli import app
from ops.context import OpsError
from shared import audit
from shared.declaration import state_table_name
from tests.component.harness import STAGE, Pipeline
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

TARGET = INTEGRATION.target("erp")
runner = CliRunner()


@pytest.fixture(autouse=True)
def declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "INTEGRATIONS", (INTEGRATION,))


def junction(*args: str) -> Result:
    return runner.invoke(app, ["--aws", "--stage", STAGE, *args], env={"COLUMNS": "100", "JUNCTION_OPS_ON": None})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr + repr(result.exception)
    return result.stdout


def records() -> list[audit.AuditRecord]:
    since = datetime.now(UTC) - timedelta(hours=1)
    return list(audit.records(boto3.client("dynamodb"), state_table_name(STAGE), since))


def test_a_redrive_is_recorded_with_who_what_how_many_and_the_filters(pipeline: Pipeline) -> None:
    bad = shopify_order(id=2000, name="#2000")
    bad["line_items"][0]["sku"] = "NO-SUCH-ITEM"
    pipeline.send_order(bad)
    pipeline.drain()
    ok(junction("dlq", "redrive", INTEGRATION.name, "--reason", "target_rejected", "--dry-run"))
    assert records() == []  # a dry run changes nothing and records nothing
    ok(junction("dlq", "redrive", INTEGRATION.name, "--reason", "target_rejected", "--yes"))
    (r,) = records()
    assert (r.action, r.integration, r.target, r.count, r.outcome) == (
        "dlq.redrive",
        INTEGRATION.name,
        "erp",
        1,
        "done",
    )
    assert r.filters["reason"] == "target_rejected" and r.who.startswith("arn:aws:")
    listed = json.loads(ok(junction("audit", "--json")))
    assert [(d["action"], d["count"]) for d in listed] == [("dlq.redrive", 1)]
    assert "dlq.redrive" in ok(junction("audit", "--action", "dlq"))


def test_a_replay_is_recorded(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=1001, name="#1001"))
    pipeline.drain()
    ok(junction("replay", "shopify-order:1001"))
    (r,) = records()
    assert (r.action, r.count, r.filters["entity"]) == ("replay", 1, "shopify-order:1001")


def test_breaker_open_close_and_reset_are_recorded_and_take_effect(pipeline: Pipeline) -> None:
    doc = json.loads(ok(junction("breaker", "open", INTEGRATION.name, "--for", "60", "--yes", "--json")))
    assert doc["after"]["breaker"] == "open"
    status = commands.queue_status(pipeline.boto_sqs, pipeline.boto_ddb, STAGE, INTEGRATION, TARGET)
    assert status.breaker == "open" and status.breaker_open_until is not None
    ok(junction("breaker", "close", INTEGRATION.name, "--yes"))
    assert commands.breaker_state(pipeline.boto_ddb, STAGE, INTEGRATION, TARGET)["breaker"] == "closed"
    ok(junction("breaker", "reset", INTEGRATION.name, "--yes"))
    assert [(r.action, r.details["after"]) for r in records()] == [
        ("breaker.open", "open"),
        ("breaker.close", "closed"),
        ("breaker.reset", "closed"),
    ]


def test_a_breaker_override_asks_first_and_answered_no_changes_nothing(pipeline: Pipeline) -> None:
    result = runner.invoke(
        app,
        ["--aws", "--stage", STAGE, "breaker", "open", INTEGRATION.name],
        env={"JUNCTION_OPS_ON": None},
        input="n\n",
    )
    assert result.exit_code == 1
    assert commands.breaker_state(pipeline.boto_ddb, STAGE, INTEGRATION, TARGET)["breaker"] == "closed"
    assert records() == []


def test_an_action_that_fails_part_way_is_recorded_as_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.send_order(shopify_order(id=1001, name="#1001"))
    pipeline.drain()

    def broken(*args: object, **kwargs: object) -> object:
        raise OpsError("queue gone")

    monkeypatch.setattr(commands, "replay", broken)
    result = junction("replay", "shopify-order:1001")
    assert result.exit_code == 1 and "queue gone" in result.stderr
    (r,) = records()
    assert (r.action, r.outcome) == ("replay", "failed") and "queue gone" in r.details["error"]


def test_audit_records_are_listed_by_day_and_window(aws: str) -> None:
    ddb = boto3.client("dynamodb")
    table = "audit-test"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
        BillingMode="PAY_PER_REQUEST",
    )
    day = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    for n, at in enumerate((day, day + timedelta(minutes=2), day + timedelta(days=3))):
        entry = audit.AuditRecord(f"sync.reset{n}", "jane", STAGE, "aws", filters={"rate": 2.5})
        audit.record(ddb, table, entry, now=at)
    found = list(audit.records(ddb, table, day - timedelta(hours=1), day + timedelta(days=1)))
    assert [r.action for r in found] == ["sync.reset0", "sync.reset1"]  # across midnight, not the later one
    assert found[0].filters == {"rate": 2.5}
