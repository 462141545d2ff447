"""``--json`` on every command (one JSON document on stdout, nothing else there), and piped
tables that grep can read: no cell wrapped, folded or clipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from functions import registry
from ops.cli import app
from shared import state_keys
from shared.aws import item_to_ddb
from shared.declaration import state_table_name
from tests.component.harness import STAGE, Pipeline
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

runner = CliRunner()
LONG_ENTITY = "shopify-order:" + "7" * 180
LONG_REASON = "validation_failed_" + "x" * 150


@pytest.fixture(autouse=True)
def declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "INTEGRATIONS", (INTEGRATION,))


def as_json(*args: str) -> Any:
    result: Result = runner.invoke(
        app, ["--aws", "--stage", STAGE, *args, "--json"], env={"COLUMNS": "80", "JUNCTION_OPS_ON": None}
    )
    assert result.exit_code == 0, result.output + result.stderr + repr(result.exception)
    return json.loads(result.stdout)  # the whole of stdout is one document


def test_every_reading_command_prints_one_json_document(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=1001, name="#1001"))
    bad = shopify_order(id=2000, name="#2000")
    bad["line_items"][0]["sku"] = "NO-SUCH-ITEM"
    pipeline.send_order(bad)
    pipeline.drain()

    assert as_json("integrations")[0]["name"] == INTEGRATION.name
    (status,) = as_json("status")
    assert (status["target"], status["dlq_depth"], status["breaker"]) == ("erp", 1, "closed")
    (listing,) = as_json("dlq", "list")
    assert listing["count"] == 1 and listing["by_reason"][0]["reason"] == "target_rejected"
    message_id = listing["messages"][0]["message_id"]
    shown = as_json("dlq", "show", message_id)
    assert shown["attributes"]["junction-reason"] == "target_rejected" and isinstance(shown["body"], dict)
    (trace,) = as_json("trace", "shopify-order:1001")
    assert trace["hops"][0]["outcome"] == "delivered"
    history = as_json("history", INTEGRATION.name)
    assert {e["outcome"] for e in history["events"]} == {"delivered", "dead_lettered"}
    assert as_json("audit") == []
    assert as_json("sync", "status") == []
    dry = as_json("dlq", "redrive", INTEGRATION.name, "--dry-run")
    assert dry[0]["method"] == "dry-run" and dry[0]["matched"][0]["message_id"] == message_id
    moved = as_json("dlq", "redrive", INTEGRATION.name, "--yes")
    assert moved[0]["moved"] == 1
    replayed = as_json("replay", "shopify-order:1001")
    assert replayed["target"] == "erp" and replayed["replay_id"] is None
    modelled = as_json("cost", "--model")
    assert modelled["order_to_one_target"]["rest"]["region"] == "eu-central-1"


def test_cost_on_aws_sums_what_cloudwatch_counted() -> None:
    from datetime import UTC, datetime, timedelta

    from ops import cost

    class FakeCloudWatch:
        """GetMetricData as CloudWatch answers it: values per query id, paged by NextToken."""

        def __init__(self) -> None:
            self.asked: list[dict[str, Any]] = []

        def get_metric_data(self, **params: Any) -> dict[str, Any]:
            self.asked += params["MetricDataQueries"]
            results = []
            for q in params["MetricDataQueries"]:
                if "Expression" in q:  # a SEARCH (an HTTP API route: its API id is generated)
                    counted = [3.0] if 'MetricName="Count"' in q["Expression"] else []
                    results.append({"Id": q["Id"], "Values": counted})
                    continue
                stat = q["MetricStat"]
                dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
                values = [2.0, 2.0] if stat["Metric"]["MetricName"] == "Invocations" else []
                if stat["Metric"]["MetricName"] == "Duration" and dims["FunctionName"].endswith("-ingress"):
                    values = [4096.0]  # ms
                results.append({"Id": q["Id"], "Values": values})
            return {"MetricDataResults": results}

    fake = FakeCloudWatch()
    until = datetime(2026, 3, 1, 12, tzinfo=UTC)
    usage = cost.aws_usage(fake, STAGE, (INTEGRATION,), until - timedelta(hours=2), until)[INTEGRATION.name]
    assert usage.lambda_requests == 8  # ingress and the erp processor, 4 each
    assert usage.lambda_gb_seconds == cost.gb_seconds(INTEGRATION.ingress.memory_mb, 4096)
    assert usage.secrets_calls == len(INTEGRATION.all_secrets) * 12 * 2  # per secret per 5 min, 2 h
    assert usage.apigateway_requests == 3  # the signed route's requests, from the HTTP API's route metric
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in fake.asked if "MetricStat" in q}
    assert {"NumberOfMessagesSent", "ConsumedWriteCapacityUnits", "Duration"} <= names
    assert any('MetricName="Count"' in q.get("Expression", "") for q in fake.asked)


def test_piped_tables_are_never_wrapped_or_clipped(pipeline: Pipeline) -> None:
    ddb = boto3.client("dynamodb")
    item = {
        "pk": state_keys.trace_pk(LONG_ENTITY),
        "sk": state_keys.trace_sk("2026-03-01T10:00:00.000+00:00", f"{INTEGRATION.name}/erp", "dead_lettered", "0a"),
        "integration": INTEGRATION.name,
        "target": "erp",
        "outcome": "dead_lettered",
        "reason": LONG_REASON,
        "delivery_id": "d-1",
    }
    ddb.put_item(TableName=state_table_name(STAGE), Item=item_to_ddb(item))
    env = {**os.environ, "JUNCTION_OPS_ON": "aws", "COLUMNS": "80"}
    cli = [sys.executable, "-m", "ops.cli", "--aws", "--stage", STAGE]
    window = ["--since", "2026-03-01T09:00:00", "--until", "2026-03-01T11:00:00"]
    for args in (["history", INTEGRATION.name, *window], ["trace", LONG_ENTITY]):
        piped = subprocess.run(
            f"{' '.join(cli + args)} | grep -F {LONG_REASON}",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert piped.returncode == 0, piped.stderr  # grep found the reason whole, on one line
        (line,) = piped.stdout.splitlines()
        assert LONG_ENTITY in line or args[0] == "trace"
        assert "…" not in line
