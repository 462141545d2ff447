"""The parcel route's source events (no network): the warehouse's ``order.packed`` read and
mapped to a ShipX shipment, ShipX's webhook read as a pointer, and the two senders' requests
as the ingress verifies them."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from functions.inpost_shipments.declaration import INTEGRATION as SHIPMENTS
from functions.inpost_tracking.declaration import INTEGRATION as TRACKING
from functions.shipping import status, to_inpost
from functions.shipping.events import packed_from_envelope, shipx_from_envelope
from functions.shipping.inpost_hop import contract_ids, order_entity_id
from functions.shipping.to_inpost import shipment_body, shipx_phone
from junction_local.standins import inpost_webhooks, wms
from junction_local.standins.inpost import shipment_problems
from shared.envelope import Envelope
from shared.errors import ValidationFailed
from shared.parameters import Secrets
from shared.processing import FlowContext
from shared.webhooks.base import Headers, VerificationFailed
from shared.webhooks.standard import StandardWebhooksVerifier

EVENTS = Path(__file__).resolve().parents[1] / "events"
IDS = {"order": "shopify-order:1"}


def sample(folder: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / folder / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def envelope(body: dict[str, Any], *, source: str = "wms", delivery_id: str = "msg_1") -> Envelope:
    return Envelope(
        integration="inpost-shipments",
        delivery_id=delivery_id,
        idempotency_key=f"inpost-shipments:{delivery_id}",
        source=source,
        topic=None,
        received_at="2026-12-06T14:05:13Z",
        body=json.dumps(body),
    )


def packed(**data_changes: Any) -> dict[str, Any]:
    event = sample("wms", "order-packed-locker")
    event["data"].update(data_changes)
    return event


def context(integration: Any) -> FlowContext:
    # prepare() makes no call: no AWS client is needed to read and map an event.
    return FlowContext(integration, integration.targets[0], "test", Secrets(None), None, "state")


# -- order.packed --------------------------------------------------------------------------
def test_the_locker_sample_maps_to_a_locker_shipment_shipx_accepts() -> None:
    event = packed_from_envelope(envelope(sample("wms", "order-packed-locker")))
    order = event.data
    assert order.entity_id == "shopify-order:820982911946154508"
    body = shipment_body(order, IDS)

    assert body["service"] == "inpost_locker_standard"
    assert body["custom_attributes"] == {"target_point": "KRA010"}
    assert body["reference"] == "shopify:820982911946154508"
    assert body["receiver"]["phone"] == "601234567"  # ShipX's nine digits
    assert body["parcels"] == [{"id": "1", "template": "small"}]
    assert "cod" not in body
    assert shipment_problems(body) == {}


def test_the_courier_sample_maps_dimensions_and_exact_weight_and_the_address() -> None:
    order = packed_from_envelope(envelope(sample("wms", "order-packed-courier"))).data
    body = shipment_body(order, IDS)

    assert body["service"] == "inpost_courier_standard"
    assert body["parcels"][0]["weight"] == {"amount": "2.350", "unit": "kg"}
    assert body["parcels"][0]["dimensions"] == {"length": "400", "width": "300", "height": "150", "unit": "mm"}
    assert body["receiver"]["address"]["building_number"] == "12/4"
    assert "custom_attributes" not in body
    assert shipment_problems(body) == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target_point": None}, "data"),  # a locker without its locker
        ({"parcel": {"dimensions": {"length_mm": 1, "width_mm": 1, "height_mm": 1}, "weight_g": 10}}, "data"),
        ({"service": "pigeon"}, "data.service"),
        ({"order_reference": "820982911946154508"}, "data.order_reference"),
        ({"cod": {"amount": "99.00", "currency": "PLN"}}, "data.cod"),
        ({"parcel": {"template": "huge"}}, "data.parcel.template"),
        ({"parcel": {"weight_g": 500}}, "data.parcel"),
        ({"receiver": {"name": "Anna", "phone": "601234567"}}, "data.receiver.email"),
    ],
)
def test_an_unshippable_packed_order_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        packed_from_envelope(envelope(packed(**change)))
    assert field in caught.value.details["fields"]
    assert "anna" not in caught.value.message.lower()


def test_a_courier_order_needs_the_address() -> None:
    event = sample("wms", "order-packed-courier")
    del event["data"]["receiver"]["address"]
    with pytest.raises(ValidationFailed):
        packed_from_envelope(envelope(event))


def test_fields_the_warehouse_adds_later_are_ignored() -> None:
    order = packed_from_envelope(envelope(packed(carrier_hint="x", pallet=3))).data
    assert order.order_number == "#1001"


@pytest.mark.parametrize(("phone", "digits"), [("+48 601 234 567", "601234567"), ("601-234-567", "601234567")])
def test_polish_phones_become_nine_digits(phone: str, digits: str) -> None:
    assert shipx_phone(phone, IDS) == digits


@pytest.mark.parametrize("phone", ["+49 30 901820", "12"])
def test_a_phone_shipx_cannot_take_is_a_validation_failure(phone: str) -> None:
    with pytest.raises(ValidationFailed):
        shipx_phone(phone, IDS)


def test_prepare_keys_one_shipment_per_order_whatever_the_delivery() -> None:
    flow = to_inpost.build(context(SHIPMENTS))
    first = flow.prepare(envelope(sample("wms", "order-packed-locker"), delivery_id="msg_1"))
    again = flow.prepare(envelope(sample("wms", "order-packed-locker"), delivery_id="msg_2"))

    assert first.business_key == again.business_key == "shopify:820982911946154508#shipment"
    assert first.entity_id == "shopify-order:820982911946154508"
    assert first.fingerprint == again.fingerprint
    assert "anna" not in json.dumps(first.entity_ids).lower()


def test_prepare_of_another_warehouse_event_routes_nothing() -> None:
    flow = to_inpost.build(context(SHIPMENTS))
    prepared = flow.prepare(envelope({"type": "order.picked", "timestamp": "2026-12-06T14:00:00Z", "data": {}}))
    assert prepared.data is None
    assert prepared.business_key == "not-routed:msg_1"


# -- ShipX's webhook -----------------------------------------------------------------------
def test_the_shipx_sample_is_read_as_a_pointer_and_keyed_by_the_status_it_claims() -> None:
    flow = status.build(context(TRACKING))
    prepared = flow.prepare(envelope(sample("inpost", "shipment-status-changed"), source="inpost"))
    assert prepared.business_key == "inpost:600000001#delivered"
    assert prepared.entity_id == "inpost-shipment:600000001"
    assert prepared.entity_ids == {"inpost_shipment_id": "600000001", "webhook_status": "delivered"}


def test_shipment_confirmed_claims_confirmed() -> None:
    webhook = shipx_from_envelope(envelope(sample("inpost", "shipment-confirmed"), source="inpost"))
    assert webhook.status == "confirmed"


def test_a_body_naming_its_event_action_is_read_too() -> None:
    body = sample("inpost", "shipment-status-changed")
    body["action"] = body.pop("event")
    webhook = shipx_from_envelope(envelope(body, source="inpost"))
    assert webhook.event == "shipment_status_changed" and webhook.payload.shipment_id == "600000001"


@pytest.mark.parametrize("shipment_id", [None, "abc", True, "1 OR 1", 1.5])
def test_a_webhook_without_a_shipment_number_is_a_validation_failure(shipment_id: Any) -> None:
    body = sample("inpost", "shipment-status-changed")
    body["payload"]["shipment_id"] = shipment_id
    flow = status.build(context(TRACKING))
    with pytest.raises(ValidationFailed):
        flow.prepare(envelope(body, source="inpost"))


def test_another_shipx_event_routes_nothing() -> None:
    flow = status.build(context(TRACKING))
    prepared = flow.prepare(envelope({"event": "offers_prepared", "payload": {"shipment_id": 1}}, source="inpost"))
    assert prepared.data is None


def test_the_upstream_contract_of_a_shipment() -> None:
    ids = contract_ids(
        {
            "id": 600000001,
            "status": "confirmed",
            "tracking_number": "600000000000000600000001",
            "reference": "woocommerce:727",
            "service": "inpost_courier_standard",
        },
        event="shipped",
    )
    assert ids == {
        "order_reference": "woocommerce:727",
        "inpost_shipment_id": "600000001",
        "tracking_number": "600000000000000600000001",
        "tracking_url": "https://inpost.pl/sledzenie-przesylek?number=600000000000000600000001",
        "inpost_service": "inpost_courier_standard",
        "inpost_status": "confirmed",
        "shipment_event": "shipped",
    }
    assert order_entity_id("allegro:7d1b-uuid") == "allegro-order:7d1b-uuid"
    assert order_entity_id("") is None


# -- the senders ---------------------------------------------------------------------------
def test_the_warehouse_sender_signs_as_standard_webhooks_and_a_flipped_byte_fails() -> None:
    sender = wms.WmsStandIn("http://127.0.0.1:9/webhooks/wms/packed", wms.SIGNING_SECRET)
    body = json.dumps(wms.make_packed("shopify:5", service="courier", customer=1)).encode()
    headers = sender.headers(body, "msg_abc")
    verifier = StandardWebhooksVerifier()

    verified = verifier.verify(Headers(headers), body, [wms.SIGNING_SECRET], now=time.time(), tolerance=300)
    assert verified.delivery_id == "msg_abc"
    tampered = bytearray(body)
    tampered[10] ^= 1
    with pytest.raises(VerificationFailed):
        verifier.verify(Headers(headers), bytes(tampered), [wms.SIGNING_SECRET], now=time.time(), tolerance=300)


def test_the_warehouse_events_are_shippable_for_both_services() -> None:
    for n in range(4):
        order = packed_from_envelope(envelope(wms.LOCAL.event(n))).data
        assert shipment_problems(shipment_body(order, IDS)) == {}


def test_the_shipx_sender_puts_its_token_or_a_given_one_in_the_path() -> None:
    template = "http://127.0.0.1:9/webhooks/inpost/{token}"
    sender = inpost_webhooks.InPostWebhookSender(template, inpost_webhooks.PATH_TOKEN)
    assert sender.path == f"/webhooks/inpost/{inpost_webhooks.PATH_TOKEN}"
    assert sender._poster("wrong").path == "/webhooks/inpost/wrong"
    assert inpost_webhooks.LOCAL.secret_value() == {"secrets": [inpost_webhooks.PATH_TOKEN]}
    with pytest.raises(ValueError):
        inpost_webhooks.InPostWebhookSender("http://127.0.0.1:9/webhooks/inpost/fixed", "t")


def test_the_shipx_sender_events_are_read_as_webhooks() -> None:
    body = copy.deepcopy(inpost_webhooks.LOCAL.event(3))
    webhook = shipx_from_envelope(envelope(body, source="inpost"))
    assert webhook.payload.shipment_id == "600000003" and webhook.status == "delivered"
