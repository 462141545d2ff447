"""The two ``inpost`` hops against the ShipX stand-in and the AWS stand-in's state table: one
shipment per order whatever happens to the answers, a wait while ShipX confirms, and statuses
acted on only as ShipX confirms them, never backwards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from functions.inpost_shipments.declaration import INTEGRATION as SHIPMENTS
from functions.inpost_tracking.declaration import INTEGRATION as TRACKING
from functions.shipping.status import StatusFromInPost, StatusStore, status_key
from functions.shipping.to_inpost import ShipmentsToInPost
from junction_local.standins.inpost import LOCAL, InPostStandIn
from shared.connectors.inpost import InPostClient, InPostSettings, ShipmentNotFound, ShipmentRefused
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, TargetUnavailable
from shared.parameters import Secrets
from shared.processing import Attempt, FlowContext
from shared.xref import CrossReference

EVENTS = Path(__file__).resolve().parents[1] / "events"
SCOPE = ("inpost-tracking", "inpost")  # the hop that holds the statuses
TABLE = "junction-test-state"
REGION = "eu-central-1"
ORDER = "shopify-order:820982911946154508"


@pytest.fixture
def ddb(aws: str) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def shipx() -> Iterator[InPostStandIn]:
    with InPostStandIn(confirm_delay=0.2) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def context(integration: Any, ddb: Any) -> FlowContext:
    # The rate budget is the processor's business; the hops are exercised without it here.
    target = integration.targets[0]
    return FlowContext(integration, replace(target, rate=None), "test", Secrets(None), ddb, TABLE)


def client_of(shipx: InPostStandIn, http: httpx.Client) -> Any:
    settings = InPostSettings.from_secret(LOCAL.credentials(shipx.url))
    return lambda: InPostClient(settings, http)


def shipments_flow(shipx: InPostStandIn, ddb: Any, http: httpx.Client, **options: Any) -> ShipmentsToInPost:
    return ShipmentsToInPost(context(SHIPMENTS, ddb), client_of(shipx, http), **options)


def status_flow(shipx: InPostStandIn, ddb: Any, http: httpx.Client) -> StatusFromInPost:
    return StatusFromInPost(context(TRACKING, ddb), client_of(shipx, http))


def envelope(body: dict[str, Any], *, source: str, delivery_id: str = "msg_1") -> Envelope:
    return Envelope(
        integration="inpost-shipments" if source == "wms" else "inpost-tracking",
        delivery_id=delivery_id,
        idempotency_key=f"x:{delivery_id}",
        source=source,
        topic=None,
        received_at="2026-12-06T14:05:13Z",
        body=json.dumps(body),
    )


def packed(**data_changes: Any) -> Envelope:
    body = json.loads((EVENTS / "wms" / "order-packed-locker.json").read_text(encoding="utf-8"))
    body["data"].update(data_changes)
    return envelope(body, source="wms")


def webhook(shipment_id: int, claimed: str) -> Envelope:
    body = {
        "event_ts": "2026-12-07 10:41:03 +0100",
        "event": "shipment_status_changed",
        "organization_id": 1234,
        "payload": {"shipment_id": shipment_id, "status": claimed, "tracking_number": None},
    }
    return envelope(body, source="inpost", delivery_id=f"shipx:{shipment_id}:{claimed}")


def attempt(number: int = 1, *, seconds: float = 25.0) -> Attempt:
    return Attempt(
        idempotency_key="k",
        number=number,
        maybe_delivered=number > 1,
        reached_at=time.time() - 3600 if number > 1 else None,
        settle_seconds=120,
        deadline=time.monotonic() + seconds,
    )


# -- the shipment --------------------------------------------------------------------------
def test_a_packed_order_becomes_one_shipment_followed_to_its_tracking_number(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    flow = shipments_flow(shipx, ddb, http, poll_interval=0.15, polls=5)
    prepared = flow.prepare(packed())
    made = flow.deliver(prepared, attempt())

    [held] = shipx.shipments()
    assert made == {
        "order_reference": "shopify:820982911946154508",
        "inpost_shipment_id": str(held["id"]),
        "tracking_number": held["tracking_number"],
        "tracking_url": f"https://inpost.pl/sledzenie-przesylek?number={held['tracking_number']}",
        "inpost_service": "inpost_locker_standard",
        "inpost_status": "confirmed",
        "shipment_event": "shipped",
    }
    assert held["custom_attributes"]["target_point"] == "KRA010"
    xref = CrossReference(ddb, TABLE).ids(ORDER)
    assert xref == {"inpost_shipment_id": str(held["id"]), "tracking_number": held["tracking_number"]}


def test_a_lost_answer_to_the_create_makes_no_second_shipment_on_the_retry(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    flow = shipments_flow(shipx, ddb, http, poll_interval=0.15, polls=5)
    prepared = flow.prepare(packed())
    shipx.set_behaviour("accept_then_hang", delay=4.0, count=1)
    first = attempt(seconds=2.5)  # the POST's answer does not come back within the attempt
    with pytest.raises(TargetUnavailable):
        flow.deliver(prepared, first)
    assert first.creating_at is not None  # the create may have happened: the retry looks first
    assert shipx.summary()["shipments"] == 1

    made = flow.deliver(prepared, attempt(2))
    assert shipx.summary()["shipments"] == 1
    assert made["inpost_shipment_id"] == str(shipx.shipments()[0]["id"])
    assert made["tracking_number"]
    # A third delivery of the same order (the warehouse sent it again) only finds it.
    assert flow.deliver(flow.prepare(packed()), attempt(3))["inpost_shipment_id"] == made["inpost_shipment_id"]
    assert shipx.summary()["shipments"] == 1


def test_a_shipment_not_confirmed_yet_waits_and_the_retry_only_follows_it(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    shipx.configure(confirm_delay=3600)
    slept: list[float] = []
    flow = shipments_flow(shipx, ddb, http, poll_interval=0.5, polls=3, sleep=slept.append)
    prepared = flow.prepare(packed())
    with pytest.raises(AwaitingPrerequisite) as caught:
        flow.deliver(prepared, attempt())
    assert caught.value.reason == "awaiting_tracking_number"
    assert slept == [0.5, 0.5, 0.5]
    assert shipx.summary()["shipments"] == 1

    shipx.advance(3600)  # ShipX confirms it
    made = flow.deliver(prepared, attempt(2))
    assert made["inpost_status"] == "confirmed" and made["tracking_number"]
    assert shipx.summary()["shipments"] == 1


def test_a_refused_shipment_is_a_rejection_naming_the_fields_without_personal_data(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    flow = shipments_flow(shipx, ddb, http)
    prepared = flow.prepare(packed(target_point="ZZZ999"))
    with pytest.raises(ShipmentRefused) as caught:
        flow.deliver(prepared, attempt())
    assert "custom_attributes.target_point" in caught.value.message
    assert "anna" not in (caught.value.message + repr(caught.value.details)).lower()
    assert shipx.summary()["shipments"] == 0


def test_shipx_down_is_transient_and_creates_nothing(shipx: InPostStandIn, ddb: Any, http: httpx.Client) -> None:
    shipx.set_behaviour("down")
    flow = shipments_flow(shipx, ddb, http)
    with pytest.raises(TargetUnavailable):
        flow.deliver(flow.prepare(packed()), attempt())
    assert shipx.summary()["shipments"] == 0


# -- statuses ------------------------------------------------------------------------------
def shipped(shipx: InPostStandIn, ddb: Any, http: httpx.Client) -> int:
    flow = shipments_flow(shipx, ddb, http, poll_interval=0.15, polls=5)
    return int(flow.deliver(flow.prepare(packed()), attempt())["inpost_shipment_id"])


def test_a_delivered_webhook_confirmed_by_shipx_is_handed_on_with_the_order(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    shipment_id = shipped(shipx, ddb, http)
    shipx.move(shipment_id, "delivered")
    flow = status_flow(shipx, ddb, http)

    made = flow.deliver(flow.prepare(webhook(shipment_id, "delivered")), attempt())
    assert made["shipment_event"] == "status"
    assert made["inpost_status"] == "delivered"
    assert made["order_reference"] == "shopify:820982911946154508"
    assert "effect" not in made
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) == "delivered"


def test_a_forged_status_shipx_does_not_confirm_is_never_acted_on(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    shipment_id = shipped(shipx, ddb, http)
    shipx.move(shipment_id, "out_for_delivery")
    flow = status_flow(shipx, ddb, http)
    flow.deliver(flow.prepare(webhook(shipment_id, "out_for_delivery")), attempt())

    claim = flow.prepare(webhook(shipment_id, "delivered"))
    with pytest.raises(AwaitingPrerequisite) as waiting:  # it waits: its key is not consumed
        flow.deliver(claim, attempt())
    assert waiting.value.reason == "awaiting_shipx_status"
    assert waiting.value.entity_ids["inpost_status"] == "out_for_delivery"  # what ShipX says
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) == "out_for_delivery"
    # Once ShipX confirms it (its API had not caught up, or the parcel arrived since), the retry acts.
    shipx.move(shipment_id, "delivered")
    made = flow.deliver(claim, attempt())
    assert (made["inpost_status"], made.get("effect")) == ("delivered", None)
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) == "delivered"


def test_a_forged_status_on_a_shipment_never_seen_holds_nothing_and_hands_nothing_on(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    shipment_id = shipped(shipx, ddb, http)
    flow = status_flow(shipx, ddb, http)
    with pytest.raises(AwaitingPrerequisite):
        flow.deliver(flow.prepare(webhook(shipment_id, "delivered")), attempt())
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) is None
    # A claim ShipX confirms is handed on: ShipX's own status, whatever order the webhooks came in.
    made = flow.deliver(flow.prepare(webhook(shipment_id, "confirmed")), attempt())
    assert (made["shipment_event"], made["inpost_status"]) == ("status", "confirmed")


def test_an_older_status_after_a_newer_one_changes_nothing(shipx: InPostStandIn, ddb: Any, http: httpx.Client) -> None:
    shipment_id = shipped(shipx, ddb, http)
    shipx.move(shipment_id, "delivered")
    flow = status_flow(shipx, ddb, http)
    flow.deliver(flow.prepare(webhook(shipment_id, "delivered")), attempt())

    late = flow.deliver(flow.prepare(webhook(shipment_id, "out_for_delivery")), attempt())
    assert late["effect"] == "none"
    assert late["inpost_status"] == "delivered"
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) == "delivered"


def test_the_held_status_only_moves_forward(ddb: Any) -> None:
    store = StatusStore(ddb, TABLE, SCOPE)
    first = store.offer("1", "out_for_delivery")
    assert (first.holds, first.advanced) == (True, True)
    assert store.offer("1", "out_for_delivery").advanced is False  # the same again: held, not new
    assert store.offer("1", "confirmed").holds is False
    assert store.offer("1", "delivered").advanced is True
    assert store.offer("1", "returned_to_sender").holds is False  # a terminal status stays
    assert store.held("1") == "delivered"
    pk, sk = status_key(SCOPE, "1")
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    assert pk == "idmap#inpost-tracking#inpost#inpost-shipment-status:1" and item["status"]["S"] == "delivered"


def test_a_retry_after_a_crash_hands_the_confirmed_status_on_again(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    shipment_id = shipped(shipx, ddb, http)
    shipx.move(shipment_id, "returned_to_sender")
    flow = status_flow(shipx, ddb, http)
    prepared = flow.prepare(webhook(shipment_id, "returned_to_sender"))
    flow.deliver(prepared, attempt())  # delivered, then the process died before recording it

    again = flow.deliver(prepared, attempt(2))
    assert again["inpost_status"] == "returned_to_sender" and "effect" not in again


def test_a_webhook_for_a_shipment_shipx_does_not_hold_is_rejected(
    shipx: InPostStandIn, ddb: Any, http: httpx.Client
) -> None:
    flow = status_flow(shipx, ddb, http)
    with pytest.raises(ShipmentNotFound):
        flow.deliver(flow.prepare(webhook(42, "delivered")), attempt())


def test_a_status_webhook_while_shipx_is_down_is_transient(shipx: InPostStandIn, ddb: Any, http: httpx.Client) -> None:
    shipment_id = shipped(shipx, ddb, http)
    shipx.set_behaviour("down")
    flow = status_flow(shipx, ddb, http)
    with pytest.raises(TargetUnavailable):
        flow.deliver(flow.prepare(webhook(shipment_id, "delivered")), attempt())
    assert StatusStore(ddb, TABLE, SCOPE).held(str(shipment_id)) is None
