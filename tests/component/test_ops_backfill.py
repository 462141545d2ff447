"""``junction trace <any id>`` and ``junction replay --since --until --target`` (a backfill) against
moto and the local AWS stand-in.

The state table is written as the processors write it (trace hops, idempotency records keeping
the event, the cross-reference through ``CrossReference.record``): what is tested is what the
CLI reads back and where it sends, not the pipeline that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from functions import registry
from functions.shopify_orders.declaration import INTEGRATION as SHOPIFY
from functions.woocommerce_orders.declaration import INTEGRATION as WOO
from junction_local.provision import Resources, provision
from ops import commands
from ops.cli import app
from shared import state_keys
from shared.aws import item_to_ddb
from shared.declaration import Integration, ScheduleTrigger, SecretRef, Target
from shared.envelope import Envelope
from shared.xref import CrossReference
from tests.component.harness import STAGE

# An integration without the backfilled target: its entities are skipped, never sent elsewhere.
STOCK = Integration(
    name="stock-fanout",
    description="scheduled, no warehouse target",
    source="erp",
    trigger=ScheduleTrigger("rate(5 minutes)"),
    package="functions.shopify_orders",
    targets=(Target(name="shopify"),),
    secrets=(SecretRef("stock-source", "the poller's source credentials"),),
)
DECLARED = (SHOPIFY, WOO, STOCK)
DAY = "2026-03-01"
SINCE, UNTIL = f"{DAY}T10:00:00Z", f"{DAY}T11:00:00Z"
runner = CliRunner()


def at(hh_mm_ss: str) -> str:
    """A trace sort key's time, as the processors write it (UTC, milliseconds)."""
    return f"{DAY}T{hh_mm_ss}.000+00:00"


def junction(*args: str) -> Result:
    return runner.invoke(app, ["--aws", "--stage", STAGE, *args], env={"COLUMNS": "250", "JUNCTION_OPS_ON": None})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr + repr(result.exception)
    return result.stdout


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output + repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output + result.stderr, result.stderr
    return errors[0]


@dataclass
class State:
    """The order integrations provisioned in the AWS stand-in, and the writes their processors make."""

    resources: Resources
    sqs: Any
    ddb: Any

    def hop(
        self,
        integration: Integration,
        target: str,
        entity: str,
        when: str,
        outcome: str = "delivered",
        *,
        effect: str = "create",
        ids: dict[str, str] | None = None,
    ) -> str:
        """One hop as shared/processing.py traces it; a delivered one also keeps its event in the
        idempotency record and writes its ids to the cross-reference. Returns the delivery id."""
        delivery = f"{entity}:{effect}"
        record_key = f"{integration.name}#{target}#{entity}#{effect}"
        item: dict[str, Any] = {
            "pk": state_keys.trace_pk(entity),
            "sk": state_keys.trace_sk(at(when), f"{integration.name}/{target}", outcome, "0000abcd"),
            "integration": integration.name,
            "target": target,
            "outcome": outcome,
            "delivery_id": delivery,
            "idempotency_key": f"{integration.name}:{delivery}",
            "attempts": 1,
            "latency_ms": 120,
            "entity_ids": {"order": entity},
            "expires_at": 4_000_000_000,
            "record_key": record_key,
        }
        if ids:
            item["target_ids"] = ids
        self.ddb.put_item(TableName=self.resources.state_table, Item=item_to_ddb(item))
        if outcome == "delivered":
            self.ddb.put_item(
                TableName=self.resources.idempotency_table,
                Item={
                    "id": {"S": record_key},
                    "status": {"S": "COMPLETED"},
                    "envelope": {"S": event(integration, delivery).to_json()},
                },
            )
            CrossReference(self.ddb, self.resources.state_table).record(
                entity, f"{integration.name}/{target}", ids or {}
            )
        return delivery

    def received(self, integration: Integration, target: str) -> list[str]:
        """The delivery ids waiting on a target's queue, in the order they were sent."""
        url = self.resources.queue(integration, target).url
        found: list[str] = []
        while got := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            found += [Envelope.from_json(m["Body"]).delivery_id for m in got]
        return found

    def depth(self, integration: Integration, target: str) -> int:
        url = self.resources.queue(integration, target).url
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def event(integration: Integration, delivery: str) -> Envelope:
    body = json.dumps({"id": delivery})
    return Envelope(
        integration.name,
        delivery,
        f"{integration.name}:{delivery}",
        integration.source,
        "orders/create",
        f"{DAY}T00:00:00+00:00",
        body,
    )


@pytest.fixture
def state(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    sqs, ddb = boto3.client("sqs"), boto3.client("dynamodb")
    secrets = {ref.name: {"value": "local"} for i in DECLARED for ref in i.all_secrets}
    resources = provision(
        DECLARED, stage=STAGE, sqs=sqs, ddb=ddb, secretsmanager=boto3.client("secretsmanager"), secret_values=secrets
    )
    monkeypatch.setattr(registry, "INTEGRATIONS", DECLARED)
    yield State(resources, sqs, ddb)


def an_order_at_three_targets(state: State) -> None:
    """shopify-order:1001 reached the ERP (DocEntry 57), HubSpot (deal 9001) and ShipBob."""
    entity = "shopify-order:1001"
    state.hop(SHOPIFY, "erp", entity, "10:00:01", ids={"shopify_order_id": "1001", "erp_doc_entry": "57"})
    state.hop(SHOPIFY, "shipbob", entity, "10:00:02", "retry_scheduled")
    state.hop(SHOPIFY, "hubspot", entity, "10:00:03", ids={"shopify_order_id": "1001", "hubspot_deal_id": "9001"})
    state.hop(SHOPIFY, "shipbob", entity, "10:00:09", ids={"shopify_order_id": "1001", "shipbob_order_id": "S-5"})


# -- trace by any id -----------------------------------------------------------------------------
def test_trace_by_an_alias_finds_the_entity_and_shows_its_cross_reference(state: State) -> None:
    an_order_at_three_targets(state)

    out = ok(junction("trace", "57"))  # the ERP's DocEntry
    assert "57 is the erp_doc_entry of shopify-order:1001" in out
    xref = out.split("Cross-reference of shopify-order:1001", 1)[1].split("Trace of", 1)[0]
    for kind, value in [("erp_doc_entry", "57"), ("hubspot_deal_id", "9001"), ("shipbob_order_id", "S-5")]:
        assert kind in xref and value in xref
    hops = out.split("Trace of shopify-order:1001", 1)[1]
    rows = [line for line in hops.splitlines() if SHOPIFY.name in line]
    assert [r.split("│")[3].strip() for r in rows] == ["erp", "shipbob", "hubspot", "shipbob"]  # time order
    assert "retry_scheduled" in rows[1] and "erp_doc_entry=57" in rows[0]

    by_source_id = json.loads(ok(junction("trace", "1001", "--json")))  # the shop's order id
    [found] = by_source_id
    assert (found["entity_id"], found["matched_as"]) == ("shopify-order:1001", ["shopify_order_id"])
    assert found["ids"]["hubspot_deal_id"] == "9001"
    assert [(h["target"], h["outcome"]) for h in found["hops"]] == [
        ("erp", "delivered"),
        ("shipbob", "retry_scheduled"),
        ("hubspot", "delivered"),
        ("shipbob", "delivered"),
    ]

    own = json.loads(ok(junction("trace", "shopify-order:1001", "--json")))  # its own id: no alias needed
    assert own[0]["matched_as"] == [] and own[0]["ids"]["shipbob_order_id"] == "S-5"


def test_an_id_two_systems_share_shows_both_orders(state: State) -> None:
    state.hop(SHOPIFY, "erp", "shopify-order:1", "10:00:00", ids={"erp_doc_entry": "77"})
    state.hop(WOO, "shipbob", "woocommerce-order:2", "10:05:00", ids={"shipbob_order_id": "77"})

    traces = commands.traces_of(state.ddb, STAGE, "77")
    assert sorted((t.entity_id, t.matched_as) for t in traces) == [
        ("shopify-order:1", ("erp_doc_entry",)),
        ("woocommerce-order:2", ("shipbob_order_id",)),
    ]
    out = ok(junction("trace", "77"))
    assert "Trace of shopify-order:1" in out and "Trace of woocommerce-order:2" in out


def test_an_unknown_id_says_so(state: State) -> None:
    an_order_at_three_targets(state)
    line = one_line_error(junction("trace", "404"))
    assert "no trace for '404' in stage test" in line and "no system's id leads to one" in line


# -- backfill: replay --since --until --target ---------------------------------------------------
def a_morning_of_orders(state: State) -> dict[str, str]:
    """Orders delivered to the ERP and HubSpot before, in and after the window 10:00-11:00; one
    already at ShipBob. Returns the delivery ids by name."""
    return {
        "at_since": state.hop(SHOPIFY, "erp", "shopify-order:1", "10:00:00"),  # the window's first instant: in
        "in": state.hop(SHOPIFY, "hubspot", "shopify-order:2", "10:20:00"),
        # created before the window, cancelled in it: both effects go, the create first
        "created_before": state.hop(SHOPIFY, "erp", "shopify-order:3", "09:00:00"),
        "cancelled_in": state.hop(SHOPIFY, "erp", "shopify-order:3", "10:30:00", effect="cancel"),
        "woo": state.hop(WOO, "erp", "woocommerce-order:4", "10:40:00"),
        "woo_at_shipbob": state.hop(WOO, "shipbob", "woocommerce-order:4", "10:41:00"),
        "after": state.hop(SHOPIFY, "erp", "shopify-order:5", "11:00:00"),  # until is excluded
        "before": state.hop(SHOPIFY, "erp", "shopify-order:6", "09:59:59"),
        "failed_in": state.hop(SHOPIFY, "erp", "shopify-order:7", "10:10:00", "dead_lettered"),
    }


def test_backfill_sends_the_window_only_to_the_named_target(state: State) -> None:
    sent = a_morning_of_orders(state)

    out = ok(junction("replay", "--since", SINCE, "--until", UNTIL, "--target", "shipbob", "--yes"))

    assert state.received(SHOPIFY, "shipbob") == [
        sent["at_since"],
        sent["in"],
        sent["created_before"],
        sent["cancelled_in"],
    ]
    assert state.received(WOO, "shipbob") == [sent["woo"]]
    for integration in (SHOPIFY, WOO):
        assert state.depth(integration, "erp") == 0 and state.depth(integration, "hubspot") == 0
    assert "shopify-orders/shipbob: sent 4 to junction-test-shopify-orders-shipbob" in out
    assert "woocommerce-orders/shipbob: sent 1 to junction-test-woocommerce-orders-shipbob" in out
    assert "5 event(s) of 4 entities" in out and "1 already made at shipbob" in out


def test_backfill_dry_run_sends_nothing(state: State) -> None:
    a_morning_of_orders(state)

    out = ok(junction("replay", "--since", SINCE, "--until", UNTIL, "--target", "shipbob"))

    assert "dry run: 5 event(s) of 4 entities" in out and "nothing sent" in out
    assert "shopify-order:3#cancel" in out and "yes (duplicate)" in out
    assert "shopify-order:5" not in out and "shopify-order:6" not in out and "shopify-order:7" not in out
    assert all(state.depth(i, t.name) == 0 for i in (SHOPIFY, WOO) for t in i.targets)


def test_backfill_of_one_integration(state: State) -> None:
    sent = a_morning_of_orders(state)

    plan = commands.backfill_plan(state.ddb, STAGE, SINCE, UNTIL, "hubspot", integration_name=WOO.name)
    assert [(e.entity_id, e.at_target) for e in plan.events] == [("woocommerce-order:4", False)]
    ok(
        junction(
            "replay", "--since", SINCE, "--until", UNTIL, "--target", "hubspot", "--integration", WOO.name, "--yes"
        )
    )
    assert state.received(WOO, "hubspot") == [sent["woo"]]
    assert state.depth(SHOPIFY, "hubspot") == 0


def test_backfill_skips_an_entity_whose_integration_lacks_the_target(state: State) -> None:
    state.hop(STOCK, "shopify", "sku:MUG-1", "10:15:00")
    state.hop(SHOPIFY, "erp", "shopify-order:1", "10:16:00")

    result = junction("replay", "--since", SINCE, "--until", UNTIL, "--target", "shipbob", "--yes")

    assert "skipped sku:MUG-1: stock-fanout has no target 'shipbob'" in result.stderr
    assert "shopify-orders/shipbob: sent 1" in ok(result)
    assert state.depth(STOCK, "shopify") == 0


def test_an_empty_window_sends_nothing(state: State) -> None:
    a_morning_of_orders(state)
    out = ok(junction("replay", "--since", f"{DAY}T12:00:00Z", "--until", f"{DAY}T13:00:00Z", "--target", "shipbob"))
    assert "no entity delivered" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", UNTIL, "--until", SINCE, "--target", "shipbob"], "is not before --until"),
        (["--since", "yesterday", "--until", UNTIL, "--target", "shipbob"], "is not an ISO 8601 time"),
        (["--since", SINCE, "--until", UNTIL], "a backfill needs --target"),
        (["--since", SINCE, "--target", "shipbob"], "needs both --since and --until"),
        (["--since", SINCE, "--until", UNTIL, "--target", "wms"], "no integration has a target 'wms'"),
        (["shopify-order:1", "--since", SINCE, "--until", UNTIL, "--target", "shipbob"], "not both"),
        (["--since", SINCE, "--until", UNTIL, "--target", "shipbob", "--bypass-idempotency"], "keeps idempotency"),
        (["--since", SINCE, "--until", UNTIL, "--target", "wms", "--integration", WOO.name], "has no target 'wms'"),
        ([], "pass an entity id, or --since and --until"),
    ],
)
def test_backfill_refuses_what_it_cannot_do(state: State, args: list[str], message: str) -> None:
    a_morning_of_orders(state)
    assert message in one_line_error(junction("replay", *args))
    assert all(state.depth(i, t.name) == 0 for i in DECLARED for t in i.targets)
