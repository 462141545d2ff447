"""The ops CLI (``junction``) against moto and the local stand-in, with the real pipeline behind it.

The ``aws`` fixture points boto3 at the stand-in through AWS_ENDPOINT_URL*, so the CLI runs as it
would against a deployed stage: ``--aws --stage test``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from functions import registry
from junction_local.provision import Resources, provision
from ops import commands, dlq
from ops.cli import app
from ops.context import OpsError, resolve_target
from shared import state_keys
from shared.declaration import Integration, ScheduleTrigger, SecretRef, Target
from shared.envelope import Envelope
from tests.component.harness import STAGE, Pipeline
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

TARGET = INTEGRATION.target("erp")
BAD_ORDER = 2000
runner = CliRunner()


@pytest.fixture(autouse=True)
def declared_as_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI knows the integrations the test stack deploys: the pipeline's one (the tests of
    several targets declare theirs)."""
    monkeypatch.setattr(registry, "INTEGRATIONS", (INTEGRATION,))


def junction(*args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
    return runner.invoke(
        app,
        ["--aws", "--stage", STAGE, *args],
        env={"COLUMNS": "250", "JUNCTION_OPS_ON": None, **(env or {})},
        input=input,
    )


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr + repr(result.exception)
    return result.stdout


def one_line_error(result: Result) -> str:
    """The run failed with exit code 1 and one 'error:' line on stderr, no traceback."""
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert "Traceback" not in result.output + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def reasons(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["MessageAttributes"]["junction-reason"]["StringValue"] for m in messages)


def dead_letter_two(pipeline: Pipeline) -> None:
    """One malformed message and one order the ERP rejects (unknown SKU) end up in the DLQ."""
    pipeline.enqueue_raw("{not json")
    bad = shopify_order(id=BAD_ORDER, name=f"#{BAD_ORDER}")
    bad["line_items"][0]["sku"] = "NO-SUCH-ITEM"
    pipeline.send_order(bad)
    pipeline.drain()


def erp_orders(pipeline: Pipeline, order_id: int) -> int:
    return sum(1 for o in pipeline.erp.orders() if o["NumAtCard"] == f"shopify:{order_id}")


# -- integrations and status ---------------------------------------------------------------------
def test_integrations_lists_every_declaration() -> None:
    out = ok(runner.invoke(app, ["integrations"], env={"COLUMNS": "250"}))
    assert INTEGRATION.name in out
    assert "/webhooks/shopify/orders" in out and "shopify → erp" in out


def test_status_counts_queue_dlq_and_last_success(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=1001, name="#1001"))
    dead_letter_two(pipeline)
    pipeline.send_order(shopify_order(id=1002, name="#1002"))  # waiting, not processed yet

    status = commands.queue_status(pipeline.boto_sqs, pipeline.boto_ddb, STAGE, INTEGRATION, TARGET)
    assert (status.target, status.visible, status.in_flight, status.delayed, status.dlq_depth) == ("erp", 1, 0, 0, 2)
    assert status.last_success is not None

    result = junction("status")
    row = next(line for line in ok(result).splitlines() if INTEGRATION.name in line)
    cells = [c.strip() for c in row.strip(" │|").split("│")]
    assert cells[1:6] == ["erp", "1", "0", "0", "2"]
    assert cells[7] == "closed"
    assert "ago" in cells[8]
    assert "target: aws (stage test)" in result.stderr


def test_status_shows_an_open_breaker(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down")
    for n in range(TARGET.breaker.failure_threshold):
        pipeline.send_order(shopify_order(id=3000 + n, name=f"#{3000 + n}"))
    pipeline.auto_advance = False
    pipeline.run_batch()
    status = commands.queue_status(pipeline.boto_sqs, pipeline.boto_ddb, STAGE, INTEGRATION, TARGET)
    assert status.breaker == "open" and status.breaker_open_until is not None
    row = next(line for line in ok(junction("status")).splitlines() if INTEGRATION.name in line)
    assert "open (" in row and "s left)" in row


# -- dlq list / show -------------------------------------------------------------------------------
def test_dlq_list_groups_by_reason_and_leaves_messages_in_place(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)

    groups = dlq.group_by_reason(dlq.peek(pipeline.boto_sqs, STAGE, INTEGRATION, TARGET))
    assert sorted((g.reason, g.count) for g in groups) == [("malformed_envelope", 1), ("target_rejected", 1)]
    rejected = next(g for g in groups if g.reason == "target_rejected")
    assert f"shopify-order:{BAD_ORDER}" in rejected.sample_entity_ids

    out = ok(junction("dlq", "list"))
    assert "2 message(s) in the DLQ" in out
    assert "malformed_envelope" in out and "target_rejected" in out
    assert f"shopify_order_id={BAD_ORDER}" in out
    assert reasons(pipeline.dlq()) == ["malformed_envelope", "target_rejected"]  # peeking moved nothing


def test_dlq_show_prints_attributes_and_the_decoded_event(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)
    message = next(m for m in dlq.peek(pipeline.boto_sqs, STAGE, INTEGRATION, TARGET) if m.reason == "target_rejected")

    out = ok(junction("dlq", "show", message.message_id, "--integration", INTEGRATION.name))
    assert "junction-reason" in out and "target_rejected" in out
    assert '"delivery_id": "delivery-2000"' in out
    assert '"sku": "NO-SUCH-ITEM"' in out  # the inner Shopify payload, decoded

    assert "not found" in one_line_error(junction("dlq", "show", "no-such-message"))


# -- claim checks: bodies too large for one SQS message lie in S3 --------------------------------
BIG_ORDER = 4000


def big_order(order_id: int, **changes: Any) -> dict[str, Any]:
    """An order whose envelope does not fit one SQS message: the ingress stores it by claim check."""
    return shopify_order(id=order_id, name=f"#{order_id}", note="n" * (300 * 1024), **changes)


def test_dlq_show_prints_the_claim_check_of_a_large_event(pipeline: Pipeline) -> None:
    order = big_order(BIG_ORDER)
    order["line_items"][0]["sku"] = "NO-SUCH-ITEM"
    assert pipeline.send_order(order)[0] == 202
    pipeline.drain()
    [message] = dlq.peek(pipeline.boto_sqs, STAGE, INTEGRATION, TARGET)
    check = message.claim_check
    assert check is not None and message.reason == "target_rejected"
    assert check.bucket == pipeline.resources.payload_bucket and check.size > 300 * 1024

    out = ok(junction("dlq", "show", message.message_id))
    assert "claim check" in out
    assert check.bucket in out and check.key in out and f"{check.size:,} bytes" in out
    assert '"body_encoding": "s3"' in out and '"body": ""' not in out  # the pointer, not an empty body
    assert f'"delivery_id": "delivery-{BIG_ORDER}"' in out

    # Fixed, redriven as it is: the processor loads the body from S3 and delivers it once.
    pipeline.erp.add_item("NO-SUCH-ITEM")
    ok(junction("dlq", "redrive", "--reason", "target_rejected", "--rate", "200", "--yes"))
    pipeline.drain()
    assert erp_orders(pipeline, BIG_ORDER) == 1 and pipeline.dlq() == []


def test_dlq_show_of_an_inline_event_has_no_claim_check(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)
    messages = dlq.peek(pipeline.boto_sqs, STAGE, INTEGRATION, TARGET)
    assert [m.claim_check for m in messages] == [None, None]  # inline, and not an envelope at all
    rejected = next(m for m in messages if m.reason == "target_rejected")
    assert "claim check" not in ok(junction("dlq", "show", rejected.message_id))


def test_replay_of_a_claim_checked_event(pipeline: Pipeline) -> None:
    """The recorded event is the pointer; the processor resolves it on every replay."""
    assert pipeline.send_order(big_order(BIG_ORDER + 1))[0] == 202
    [queued] = pipeline.receive()
    assert '"body_encoding":"s3"' in queued["Body"]
    pipeline.release([queued])
    pipeline.drain()
    entity = f"shopify-order:{BIG_ORDER + 1}"
    assert erp_orders(pipeline, BIG_ORDER + 1) == 1

    assert "duplicate" in ok(junction("replay", entity))
    pipeline.drain()
    assert erp_orders(pipeline, BIG_ORDER + 1) == 1

    assert "replay id" in ok(junction("replay", entity, "--bypass-idempotency", "--yes"))
    pipeline.drain()
    assert erp_orders(pipeline, BIG_ORDER + 1) == 2
    assert sorted(h["outcome"] for h in pipeline.trace(entity)) == ["delivered", "delivered", "duplicate"]
    assert pipeline.dlq() == []


# -- redrive -------------------------------------------------------------------------------------
def test_redrive_by_reason_delivers_the_fixed_order_once_and_leaves_the_rest(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)
    pipeline.erp.add_item("NO-SUCH-ITEM")  # the operator fixes the cause

    out = ok(junction("dlq", "redrive", INTEGRATION.name, "--reason", "target_rejected", "--rate", "200", "--yes"))
    assert "moved 1, skipped 1" in out
    pipeline.drain()
    assert erp_orders(pipeline, BAD_ORDER) == 1
    assert reasons(pipeline.dlq()) == ["malformed_envelope"]


def test_redrive_filters_by_entity_and_age(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)
    none_old_enough = ok(junction("dlq", "redrive", "--older-than", "1d", "--yes"))
    assert "moved 0, skipped 2" in none_old_enough

    pipeline.erp.add_item("NO-SUCH-ITEM")
    result = dlq.redrive(
        pipeline.boto_sqs, STAGE, INTEGRATION, TARGET, dlq.Filter(entity=str(BAD_ORDER)), rate=500, sleep=lambda _: None
    )
    assert (result.method, result.moved, result.skipped) == ("manual", 1, 1)
    pipeline.drain()
    assert erp_orders(pipeline, BAD_ORDER) == 1


def test_dry_run_lists_what_would_move_and_moves_nothing(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)

    out = ok(junction("dlq", "redrive", "--dry-run"))
    assert "dry run, 2 would move, 0 would stay; nothing moved" in out
    assert "target_rejected" in out and "malformed_envelope" in out
    assert pipeline.queue_depth() == 0
    assert reasons(pipeline.dlq()) == ["malformed_envelope", "target_rejected"]


def test_unfiltered_redrive_moves_everything_back(pipeline: Pipeline, request: pytest.FixtureRequest) -> None:
    """A message move task on the local stand-in; moto has none, so the manual path runs there."""
    dead_letter_two(pipeline)
    pipeline.erp.add_item("NO-SUCH-ITEM")

    out = ok(junction("dlq", "redrive", "--rate", "200", "--yes"))
    assert "moved 2, skipped 0" in out
    moto = request.node.callspec.params["aws"] == "moto"
    assert ("(filter: all messages)" if moto else "(message move task)") in out
    assert pipeline.queue_depth() == 2
    pipeline.drain()
    assert erp_orders(pipeline, BAD_ORDER) == 1
    assert reasons(pipeline.dlq()) == ["malformed_envelope"]  # still not an envelope: back in the DLQ


def test_redrive_asks_before_moving(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)
    result = junction("dlq", "redrive", input="n\n")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert pipeline.queue_depth() == 0 and len(pipeline.dlq()) == 2


# -- replay and trace ----------------------------------------------------------------------------
def test_replay_keeps_idempotency_unless_bypassed(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=1001, name="#1001"))
    pipeline.drain()
    entity = "shopify-order:1001"

    out = ok(junction("replay", entity))
    assert "duplicate" in out
    pipeline.drain()
    assert erp_orders(pipeline, 1001) == 1
    assert sorted(h["outcome"] for h in pipeline.trace(entity)) == ["delivered", "duplicate"]

    declined = junction("replay", entity, "--bypass-idempotency", input="n\n")
    assert declined.exit_code == 1 and pipeline.queue_depth() == 0

    out = ok(junction("replay", entity, "--bypass-idempotency", "--yes"))
    assert "replay id" in out
    pipeline.drain()
    assert erp_orders(pipeline, 1001) == 2
    replayed = [h for h in pipeline.trace(entity) if h.get("replay_id")]
    assert [h["outcome"] for h in replayed] == ["delivered"]


def test_replay_without_a_recorded_event_is_a_one_line_error(pipeline: Pipeline) -> None:
    dead_letter_two(pipeline)  # the rejected order has a trace, but no completed effect kept its event
    assert "no recorded event" in one_line_error(junction("replay", f"shopify-order:{BAD_ORDER}"))
    assert "no trace" in one_line_error(junction("replay", "shopify-order:404"))


def test_trace_lists_every_hop_oldest_first(pipeline: Pipeline) -> None:
    for _ in range(2):
        pipeline.send_order(shopify_order(id=1001, name="#1001"), delivery_id="same-delivery")
        pipeline.drain()

    hops = commands.trace(pipeline.boto_ddb, STAGE, "shopify-order:1001")
    assert [h.outcome for h in hops] == ["delivered", "duplicate"]

    out = ok(junction("trace", "shopify-order:1001"))
    assert out.index("delivered") < out.index("duplicate")
    assert "same-delivery" in out and "erp_doc_entry=" in out
    assert "no trace" in one_line_error(junction("trace", "shopify-order:404"))


# -- several targets: a queue, a DLQ, a breaker and a last success each ------------------------
STOCK = Integration(
    name="stock-fanout",
    description="scheduled, two targets: what the ops CLI must tell apart",
    source="erp",
    trigger=ScheduleTrigger("rate(5 minutes)"),
    package="functions.shopify_orders",
    targets=(Target(name="shopify"), Target(name="allegro")),
    secrets=(SecretRef("stock-source", "the poller's source credentials"),),
)


@dataclass
class Fanout:
    """``STOCK`` provisioned in the AWS stand-in, and the only integration the CLI knows."""

    resources: Resources
    sqs: Any
    ddb: Any

    def dead_letter(self, target: str, entity: str, reason: str = "target_rejected") -> None:
        """A message the target's processor dead-lettered, as it writes one."""
        attributes = {
            "junction-reason": {"DataType": "String", "StringValue": reason},
            "junction-entity-ids": {"DataType": "String", "StringValue": json.dumps({"sku": entity})},
            "junction-target": {"DataType": "String", "StringValue": target},
        }
        dlq_url = self.resources.queue(STOCK, target).dlq_url
        self.sqs.send_message(QueueUrl=dlq_url, MessageBody=envelope(entity).to_json(), MessageAttributes=attributes)

    def depth(self, target: str, *, dead_letter: bool = False) -> int:
        pair = self.resources.queue(STOCK, target)
        url = pair.dlq_url if dead_letter else pair.url
        names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(v) for v in attrs.values())

    def received(self, target: str) -> list[Envelope]:
        got = self.sqs.receive_message(QueueUrl=self.resources.queue(STOCK, target).url, MaxNumberOfMessages=10)
        return [Envelope.from_json(m["Body"]) for m in got.get("Messages", [])]

    def delivered(self, target: str, entity: str, at: str) -> str:
        """What a target's processor records for a delivered effect: the idempotency record that
        keeps the event, and the trace hop that points at it. Returns the record key."""
        key = f"{STOCK.name}#{target}#sku:{entity}"
        self.ddb.put_item(
            TableName=self.resources.idempotency_table,
            Item={"id": {"S": key}, "status": {"S": "COMPLETED"}, "envelope": {"S": envelope(entity).to_json()}},
        )
        hop = f"{STOCK.name}/{target}"
        item = {
            "pk": {"S": state_keys.trace_pk(f"sku:{entity}")},
            "sk": {"S": state_keys.trace_sk(at, hop, "delivered", "00000001")},
            "integration": {"S": STOCK.name},
            "target": {"S": target},
            "outcome": {"S": "delivered"},
            "record_key": {"S": key},
        }
        self.ddb.put_item(TableName=self.resources.state_table, Item=item)
        return key


def envelope(entity: str) -> Envelope:
    body = json.dumps({"changes": [{"sku": entity, "quantity": 3}]})
    return Envelope(
        STOCK.name, f"run-1:{entity}", f"{STOCK.name}:run-1:{entity}", "erp", None, "2026-01-01T00:00:00Z", body
    )


@pytest.fixture
def fanout(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fanout]:
    sqs, ddb = boto3.client("sqs"), boto3.client("dynamodb")
    resources = provision(
        (STOCK,),
        stage=STAGE,
        sqs=sqs,
        ddb=ddb,
        secretsmanager=boto3.client("secretsmanager"),
        secret_values={"stock-source": {"user": "u"}},
    )
    monkeypatch.setattr(registry, "INTEGRATIONS", (STOCK,))
    yield Fanout(resources, sqs, ddb)


def test_status_has_a_row_per_target(fanout: Fanout) -> None:
    fanout.dead_letter("allegro", "MUG-1")
    fanout.dead_letter("allegro", "MUG-2")
    fanout.dead_letter("shopify", "MUG-3")
    rows = [line for line in ok(junction("status")).splitlines() if STOCK.name in line]
    cells = [[c.strip() for c in row.strip(" │|").split("│")] for row in rows]
    assert [(c[1], c[5]) for c in cells] == [("shopify", "1"), ("allegro", "2")]  # declaration order
    assert all(c[8] == "never" for c in cells)
    only = ok(junction("status", STOCK.name, "--target", "allegro"))
    assert "allegro" in only and "shopify" not in only.split("Status", 1)[1]


def test_dlq_commands_need_the_target_of_an_integration_with_several(fanout: Fanout) -> None:
    fanout.dead_letter("allegro", "MUG-1")
    for args in (
        ["dlq", "list", STOCK.name],
        ["dlq", "redrive", STOCK.name, "--yes"],
        ["dlq", "show", "x", "--integration", STOCK.name],
    ):
        line = one_line_error(junction(*args))
        assert "several targets (shopify, allegro): pass --target" in line
    assert "has no target 'ebay'" in one_line_error(junction("dlq", "list", STOCK.name, "--target", "ebay"))
    assert "--target needs an integration" in one_line_error(junction("dlq", "list", "--target", "allegro"))
    assert fanout.depth("allegro", dead_letter=True) == 1  # nothing moved by a refused command


def test_dlq_list_show_and_redrive_one_target_leave_the_other_alone(fanout: Fanout) -> None:
    fanout.dead_letter("allegro", "MUG-1")
    fanout.dead_letter("shopify", "MUG-2")

    listed = ok(junction("dlq", "list", STOCK.name, "--target", "allegro"))
    assert f"{STOCK.name}/allegro: 1 message(s) in the DLQ" in listed
    assert "sku=MUG-1" in listed and "MUG-2" not in listed
    everything = ok(junction("dlq", "list"))  # no integration named: every target's DLQ
    assert f"{STOCK.name}/shopify: 1 message(s)" in everything and f"{STOCK.name}/allegro: 1 message(s)" in everything

    [message] = dlq.peek(fanout.sqs, STAGE, STOCK, STOCK.target("allegro"))
    assert message.target == "allegro"
    shown = ok(junction("dlq", "show", message.message_id, "--integration", STOCK.name, "--target", "allegro"))
    assert f"{STOCK.name}/allegro: message {message.message_id}" in shown
    assert "not found" in one_line_error(
        junction("dlq", "show", message.message_id, "--integration", STOCK.name, "--target", "shopify")
    )

    moved = ok(junction("dlq", "redrive", STOCK.name, "--target", "allegro", "--reason", "target_rejected", "--yes"))
    assert f"{STOCK.name}/allegro: moved 1, skipped 0" in moved
    assert [e.delivery_id for e in fanout.received("allegro")] == ["run-1:MUG-1"]
    assert fanout.depth("allegro", dead_letter=True) == 0
    assert fanout.depth("shopify") == 0 and fanout.depth("shopify", dead_letter=True) == 1


def test_replay_goes_to_the_target_that_recorded_the_effect(fanout: Fanout) -> None:
    fanout.delivered("shopify", "MUG-9", "2026-01-01T00:00:01.000Z")
    allegro_key = fanout.delivered("allegro", "MUG-9", "2026-01-01T00:00:02.000Z")

    latest = commands.recorded_event(fanout.ddb, STAGE, "sku:MUG-9")
    assert (latest.target.name, latest.record_key) == ("allegro", allegro_key)

    out = ok(junction("replay", "sku:MUG-9", "--integration", STOCK.name, "--target", "shopify"))
    assert f"junction-{STAGE}-{STOCK.name}-shopify" in out and f"{STOCK.name}#shopify#sku:MUG-9" in out
    assert [e.delivery_id for e in fanout.received("shopify")] == ["run-1:MUG-9"]
    assert fanout.depth("allegro") == 0  # the other target's scope is not touched

    ok(junction("replay", "sku:MUG-9"))  # the latest effect: allegro's
    assert [e.delivery_id for e in fanout.received("allegro")] == ["run-1:MUG-9"]

    assert "has no target 'ebay'" in one_line_error(
        junction("replay", "sku:MUG-9", "--integration", STOCK.name, "--target", "ebay")
    )


def test_integrations_lists_a_row_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "INTEGRATIONS", (INTEGRATION, STOCK))
    rows = commands.integration_rows()
    assert [(r.name, r.target, r.flow) for r in rows] == [
        (INTEGRATION.name, "erp", "shopify -> erp"),
        (STOCK.name, "shopify", "erp -> shopify"),
        (STOCK.name, "allegro", "erp -> allegro"),
    ]
    out = ok(runner.invoke(app, ["integrations"], env={"COLUMNS": "250"}))
    assert "schedule rate(5 minutes)" in out and "erp → allegro" in out


# -- errors: one line, exit code 1 ---------------------------------------------------------------
def test_unknown_integration() -> None:
    line = one_line_error(junction("status", "no-such-integration"))
    assert "unknown integration 'no-such-integration'" in line and INTEGRATION.name in line
    assert "unknown integration" in one_line_error(junction("dlq", "redrive", "nope", "--yes"))


def test_local_without_a_state_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--local", "status"], env={"JUNCTION_LOCAL_STATE": str(tmp_path / "none.json")})
    assert "local stack not running" in one_line_error(result)


def test_local_stack_that_refuses_connections(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "local.json"
    url = f"http://127.0.0.1:{port}"
    state.write_text(json.dumps({"stage": "local", "endpoints": {"default": url, "sqs": url, "dynamodb": url}}))

    result = runner.invoke(app, ["status"], env={"JUNCTION_LOCAL_STATE": str(state), "JUNCTION_OPS_ON": None})
    assert "local stack not running" in one_line_error(result)
    assert "target: local (stage local)" in result.stderr


def test_stack_not_deployed_for_the_stage(aws: str) -> None:
    for args in (["status"], ["dlq", "list"], ["trace", "shopify-order:1"]):
        result = runner.invoke(app, ["--aws", "--stage", "nowhere", *args], env={"COLUMNS": "250"})
        assert "stack not deployed for stage nowhere?" in one_line_error(result)


def test_aws_needs_a_stage_credentials_and_a_region(tmp_path: Path) -> None:
    no_files = {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "JUNCTION_STAGE": None,
    }
    assert "no stage given" in one_line_error(runner.invoke(app, ["--aws", "status"], env=no_files))

    no_region = {**no_files, "AWS_REGION": None, "AWS_DEFAULT_REGION": None}
    line = one_line_error(runner.invoke(app, ["--aws", "--stage", STAGE, "status"], env=no_region))
    assert "no AWS region" in line

    no_credentials = {**no_files, "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}
    line = one_line_error(runner.invoke(app, ["--aws", "--stage", STAGE, "status"], env=no_credentials))
    assert "no AWS credentials" in line


# -- target resolution ---------------------------------------------------------------------------
def test_target_resolution(tmp_path: Path) -> None:
    state = tmp_path / "local.json"
    env = {"JUNCTION_LOCAL_STATE": str(state)}
    assert resolve_target(None, "prod", env).kind == "aws"  # no local stack running
    with pytest.raises(OpsError, match="no stage"):
        resolve_target(False, None, env)
    assert resolve_target(None, None, {**env, "JUNCTION_STAGE": "dev"}).stage == "dev"

    state.write_text(json.dumps({"stage": "local", "region": "eu-central-1", "endpoints": {"default": "http://m"}}))
    local = resolve_target(None, None, env)
    assert (local.kind, local.stage, local.endpoint_for("sqs"), local.endpoint_for("cloudwatch")) == (
        "local",
        "local",
        "http://m",
        "http://m",
    )
    state.write_text(json.dumps({"stage": "local", "endpoints": {"default": "http://m", "sqs": "http://s"}}))
    assert resolve_target(None, None, env).endpoint_for("sqs") == "http://s"
    assert resolve_target(None, "x", {**env, "JUNCTION_OPS_ON": "aws"}).kind == "aws"
    with pytest.raises(OpsError, match="JUNCTION_OPS_ON"):
        resolve_target(None, None, {**env, "JUNCTION_OPS_ON": "mars"})


def test_durations() -> None:
    assert dlq.parse_duration("10m").total_seconds() == 600
    assert dlq.parse_duration("2h").total_seconds() == 7200
    assert dlq.parse_duration("1d").total_seconds() == 86_400
    with pytest.raises(ValueError, match="not a duration"):
        dlq.parse_duration("soon")
