"""The shop followers of the InPost hop (``functions.shipping.to_shopify`` / ``to_woocommerce``),
built as the processor builds them (FlowContext: the declared integration and target, secrets, a
DynamoDB for the cross-reference on moto) and run against the Shopify Admin and WooCommerce API
stand-ins: what each event makes in the shop, once; the events that make nothing, with no call;
and the failures a processor must tell apart."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from functions.inpost_shipments.declaration import INTEGRATION as SHIPMENTS
from functions.inpost_tracking.declaration import INTEGRATION as TRACKING
from functions.shipping import to_shopify, to_woocommerce
from functions.shipping.targets import SHOPIFY, WOOCOMMERCE
from junction_local.standins.shopify_admin import LOCAL as SHOPIFY_LOCAL
from junction_local.standins.shopify_admin import ShopifyAdminStandIn
from junction_local.standins.woocommerce_api import LOCAL as WOOCOMMERCE_LOCAL
from junction_local.standins.woocommerce_api import WooCommerceApiStandIn
from shared.connectors.shopify_fulfillment import FulfillmentOrderClosed
from shared.connectors.woocommerce_api import TRACKING_META, OrderNotFound, tracking_items
from shared.declaration import Integration, Target, secret_id
from shared.envelope import Envelope
from shared.errors import (
    AwaitingPrerequisite,
    CredentialsRejected,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
    ValidationFailed,
)
from shared.parameters import Secrets
from shared.processing import Attempt, FlowContext
from shared.xref import CrossReference

STAGE = "test"
SHOPIFY_ORDER = 820982911946154508
WOO_ORDER = 727
SHIPMENT = "1234567890"
NUMBER = "520000011395200025754311"
URL = f"https://inpost.pl/sledzenie-przesylek?number={NUMBER}"
_tables = itertools.count(1)


class FakeSecrets(Secrets):
    def __init__(self, values: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.values = values
        self.reads: list[tuple[str, bool]] = []

    def get_json(self, secret_id: str, *, refresh: bool = False) -> dict[str, Any]:
        self.reads.append((secret_id, refresh))
        return dict(self.values[secret_id])


@dataclass
class Shops:
    shopify: ShopifyAdminStandIn
    woocommerce: WooCommerceApiStandIn
    ddb: Any
    table: str
    secrets: FakeSecrets

    def context(self, integration: Integration, target: Target) -> FlowContext:
        return FlowContext(integration, target, STAGE, self.secrets, self.ddb, self.table)

    def xref(self, entity_id: str) -> dict[str, str]:
        return CrossReference(self.ddb, self.table).ids(entity_id)


@pytest.fixture
def shops(moto_endpoint: str) -> Iterator[Shops]:
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    table = f"shipping-state-{next(_tables)}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with ShopifyAdminStandIn() as shopify, WooCommerceApiStandIn() as woocommerce:
        shopify.seed_order(SHOPIFY_ORDER, [{"sku": "SKU-1", "quantity": 2}])
        woocommerce.seed_order(WOO_ORDER, status="processing")
        secrets = FakeSecrets(
            {
                secret_id(STAGE, SHOPIFY.secrets[0]): SHOPIFY_LOCAL.credentials(shopify.root_url),
                secret_id(STAGE, WOOCOMMERCE.secrets[0]): WOOCOMMERCE_LOCAL.credentials(woocommerce.url),
            }
        )
        yield Shops(shopify, woocommerce, ddb, table, secrets)


def envelope(reference: str, event: str = "shipped", status: str = "confirmed", *, body: str = "{}") -> Envelope:
    integration = SHIPMENTS if event == "shipped" else TRACKING
    delivery = f"msg_{event}_{status}_{reference}"
    return Envelope(
        integration=integration.name,
        delivery_id=delivery,
        idempotency_key=f"{integration.name}:{delivery}",
        source=integration.source,
        topic="order.packed" if event == "shipped" else "shipment_status_changed",
        received_at="2026-12-06T12:00:00Z",
        body=body,
        upstream={
            "order_reference": reference,
            "inpost_shipment_id": SHIPMENT,
            "tracking_number": NUMBER,
            "tracking_url": URL,
            "inpost_service": "inpost_locker_standard",
            "inpost_status": status,
            "shipment_event": event,
        },
    )


def attempt(number: int = 1) -> Attempt:
    return Attempt(idempotency_key="k", number=number, maybe_delivered=number > 1)


def woo_flow(shops: Shops, integration: Integration = SHIPMENTS) -> to_woocommerce.ShippingToWooCommerce:
    return to_woocommerce.build(shops.context(integration, WOOCOMMERCE))


def shopify_flow(shops: Shops, integration: Integration = SHIPMENTS) -> to_shopify.ShippingToShopify:
    return to_shopify.build(shops.context(integration, SHOPIFY))


def run(flow: Any, env: Envelope, number: int = 1) -> dict[str, str]:
    result: dict[str, str] = flow.deliver(flow.prepare(env), attempt(number))
    return result


# -- WooCommerce -------------------------------------------------------------------------------
def test_a_shipped_woocommerce_order_gets_the_tracking_meta_completed_and_a_customer_note(shops: Shops) -> None:
    made = run(woo_flow(shops), envelope(f"woocommerce:{WOO_ORDER}"))

    order = shops.woocommerce.order(WOO_ORDER)
    assert order is not None and order["status"] == "completed"
    [item] = tracking_items(order)
    assert (item["custom_tracking_provider"], item["tracking_number"], item["custom_tracking_link"]) == (
        "InPost",
        NUMBER,
        URL,
    )
    customer_notes = [n for n in shops.woocommerce.notes(WOO_ORDER) if n["customer_note"]]
    assert [n["note"] for n in customer_notes] == [
        f"Your order has been shipped with InPost. Tracking number: {NUMBER}. Track it: {URL}"
    ]
    assert made == {
        "woocommerce_order_id": str(WOO_ORDER),
        "woocommerce_note_id": str(customer_notes[0]["id"]),
        "effect": "shipped",
    }
    assert shops.xref(f"woocommerce-order:{WOO_ORDER}") == {
        "woocommerce_order_id": str(WOO_ORDER),
        "woocommerce_note_id": str(customer_notes[0]["id"]),
        "inpost_shipment_id": SHIPMENT,
    }


def test_the_business_key_is_the_orders_effect_per_shipment_and_the_body_is_never_read(shops: Shops) -> None:
    prepared = woo_flow(shops).prepare(envelope(f"woocommerce:{WOO_ORDER}", body="not json at all"))
    assert prepared.business_key == f"woocommerce:{WOO_ORDER}#shipped#{SHIPMENT}"
    assert prepared.entity_id == f"woocommerce-order:{WOO_ORDER}"
    delivered = woo_flow(shops, TRACKING).prepare(envelope(f"woocommerce:{WOO_ORDER}", "status", "delivered"))
    assert delivered.business_key == f"woocommerce:{WOO_ORDER}#delivered#{SHIPMENT}"
    returned = woo_flow(shops, TRACKING).prepare(envelope(f"woocommerce:{WOO_ORDER}", "status", "returned_to_sender"))
    assert returned.business_key == f"woocommerce:{WOO_ORDER}#returned#{SHIPMENT}"


def test_a_redelivered_shipped_event_finds_the_order_done_and_writes_nothing(shops: Shops) -> None:
    flow = woo_flow(shops)
    first = run(flow, envelope(f"woocommerce:{WOO_ORDER}"))
    writes = shops.woocommerce.summary()
    again = run(flow, envelope(f"woocommerce:{WOO_ORDER}"), number=2)

    assert again["effect"] == "already_shipped"
    assert again["woocommerce_note_id"] == first["woocommerce_note_id"]
    after = shops.woocommerce.summary()
    assert (after["notes_created"], after["orders_updated"]) == (writes["notes_created"], writes["orders_updated"])


def test_a_lost_answer_is_found_on_the_retry_and_the_customer_is_told_once(shops: Shops) -> None:
    flow = woo_flow(shops)
    env = envelope(f"woocommerce:{WOO_ORDER}")
    shops.woocommerce.set_behaviour("accept_then_hang", delay=4.0)  # each write made, its answer held
    with pytest.raises(TargetUnavailable):  # the invocation's deadline cuts the call short
        flow.deliver(flow.prepare(env), Attempt("k", 1, False, deadline=time.monotonic() + 2.0))
    shops.woocommerce.set_behaviour("ok")

    # The tracking update was made (its answer lost); the retry finds it and adds only the note.
    assert run(flow, env, number=2)["effect"] == "shipped"
    assert run(flow, env, number=3)["effect"] == "already_shipped"
    assert shops.woocommerce.summary()["orders_updated"] == 1
    order = shops.woocommerce.order(WOO_ORDER)
    assert order is not None and len(tracking_items(order)) == 1
    assert len([n for n in shops.woocommerce.notes(WOO_ORDER) if n["customer_note"]]) == 1


def test_delivered_waits_for_the_tracking_then_is_noted_once(shops: Shops) -> None:
    delivered = envelope(f"woocommerce:{WOO_ORDER}", "status", "delivered")
    with pytest.raises(AwaitingPrerequisite) as caught:
        run(woo_flow(shops, TRACKING), delivered)
    assert caught.value.reason == "awaiting_tracking"

    run(woo_flow(shops), envelope(f"woocommerce:{WOO_ORDER}"))
    assert run(woo_flow(shops, TRACKING), delivered)["effect"] == "delivered"
    assert run(woo_flow(shops, TRACKING), delivered, number=2)["effect"] == "already_delivered"
    texts = [n["note"] for n in shops.woocommerce.notes(WOO_ORDER)]
    assert texts.count(f"InPost delivered your parcel {NUMBER}.") == 1


def test_a_return_is_a_private_note_for_the_merchant(shops: Shops) -> None:
    run(woo_flow(shops), envelope(f"woocommerce:{WOO_ORDER}"))
    made = run(woo_flow(shops, TRACKING), envelope(f"woocommerce:{WOO_ORDER}", "status", "returned_to_sender"))

    [note] = [n for n in shops.woocommerce.notes(WOO_ORDER) if "returned" in n["note"]]
    assert note["customer_note"] is False
    assert made["woocommerce_note_id"] == str(note["id"])


def test_an_order_not_processing_keeps_its_status(shops: Shops) -> None:
    shops.woocommerce.seed_order(728, status="cancelled")
    run(woo_flow(shops), envelope("woocommerce:728"))
    order = shops.woocommerce.order(728)
    assert order is not None and order["status"] == "cancelled"
    assert any(m["key"] == TRACKING_META for m in order["meta_data"])


@pytest.mark.parametrize(
    ("reference", "event", "status"),
    [
        (f"shopify:{SHOPIFY_ORDER}", "shipped", "confirmed"),
        ("allegro:29c2a1f4-0d5c-11ee-be56-0242ac120002", "shipped", "confirmed"),
        (f"woocommerce:{WOO_ORDER}", "status", "out_for_delivery"),
        (f"woocommerce:{WOO_ORDER}", "status", "pickup_time_expired"),
    ],
)
def test_events_of_no_effect_for_woocommerce_make_no_call(
    shops: Shops, reference: str, event: str, status: str
) -> None:
    flow = woo_flow(shops, SHIPMENTS if event == "shipped" else TRACKING)
    prepared = flow.prepare(envelope(reference, event, status))
    assert prepared.data is None
    assert flow.deliver(prepared, attempt()) == {"effect": "none"}
    assert shops.woocommerce.summary()["requests"] == 0
    assert shops.secrets.reads == []  # not even the secret is read


def test_an_unknown_woocommerce_order_is_a_business_error(shops: Shops) -> None:
    with pytest.raises(OrderNotFound) as caught:
        run(woo_flow(shops), envelope("woocommerce:999"))
    assert isinstance(caught.value, TargetRejected)
    assert caught.value.reason == "shop_order_not_found"


def test_a_woocommerce_429_is_rate_limited_with_its_retry_after(shops: Shops) -> None:
    shops.woocommerce.set_behaviour("rate_limited", retry_after=30, count=1)
    with pytest.raises(RateLimited) as caught:
        run(woo_flow(shops), envelope(f"woocommerce:{WOO_ORDER}"))
    assert caught.value.retry_after == 30
    assert shops.woocommerce.summary()["notes_created"] == 0


def test_an_event_without_the_inpost_hops_ids_is_refused(shops: Shops) -> None:
    env = envelope(f"woocommerce:{WOO_ORDER}")
    broken = Envelope(**{**env.__dict__, "upstream": {"order_reference": f"woocommerce:{WOO_ORDER}"}})
    with pytest.raises(ValidationFailed) as caught:
        woo_flow(shops).prepare(broken)
    assert caught.value.details["missing"] == ["inpost_shipment_id", "tracking_number", "shipment_event"]
    with pytest.raises(ValidationFailed):
        woo_flow(shops).prepare(envelope("woocommerce:abc"))


# -- Shopify -----------------------------------------------------------------------------------
def test_a_shipped_shopify_order_is_fulfilled_with_the_tracking_once(shops: Shops) -> None:
    flow = shopify_flow(shops)
    made = run(flow, envelope(f"shopify:{SHOPIFY_ORDER}"))
    again = run(flow, envelope(f"shopify:{SHOPIFY_ORDER}"), number=2)

    state = shops.shopify.order_state(SHOPIFY_ORDER)
    [fulfilment] = state["fulfillments"]
    assert fulfilment["tracking"] == [{"company": "InPost", "number": NUMBER, "url": URL}]
    assert fulfilment["notify_customer"] is True
    assert made == {
        "effect": "shipped",
        "shopify_fulfillment_id": fulfilment["id"],
        "shopify_order_id": str(SHOPIFY_ORDER),
    }
    assert again["effect"] == "already_shipped" and again["shopify_fulfillment_id"] == fulfilment["id"]
    assert shops.xref(f"shopify-order:{SHOPIFY_ORDER}")["shopify_fulfillment_id"] == fulfilment["id"]


def test_a_lost_fulfilment_answer_is_found_on_the_retry(shops: Shops) -> None:
    flow = shopify_flow(shops)
    env = envelope(f"shopify:{SHOPIFY_ORDER}")

    class HeldAnswer(Attempt):
        def creating(self) -> None:
            super().creating()
            shops.shopify.set_behaviour("slow", delay=4.0, count=1)  # made, then its answer held

    with pytest.raises(TargetUnavailable):  # the invocation's deadline cuts the call short
        flow.deliver(flow.prepare(env), HeldAnswer("k", 1, False, deadline=time.monotonic() + 2.0))
    shops.shopify.release()
    shops.shopify.set_behaviour("ok")

    assert run(flow, env, number=2)["effect"] == "already_shipped"
    assert shops.shopify.summary()["fulfillments_created"] == 1


def test_delivered_and_returned_are_events_on_the_fulfilment(shops: Shops) -> None:
    shops.shopify.seed_order(1002, [{"sku": "SKU-1", "quantity": 1}])
    with pytest.raises(AwaitingPrerequisite):
        run(shopify_flow(shops, TRACKING), envelope(f"shopify:{SHOPIFY_ORDER}", "status", "delivered"))
    run(shopify_flow(shops), envelope(f"shopify:{SHOPIFY_ORDER}"))
    run(shopify_flow(shops), envelope("shopify:1002"))

    delivered = run(shopify_flow(shops, TRACKING), envelope(f"shopify:{SHOPIFY_ORDER}", "status", "delivered"))
    again = run(shopify_flow(shops, TRACKING), envelope(f"shopify:{SHOPIFY_ORDER}", "status", "delivered"), 2)
    returned = run(shopify_flow(shops, TRACKING), envelope("shopify:1002", "status", "returned_to_sender"))

    assert delivered["effect"] == "delivered" and "shopify_fulfillment_event_id" in delivered
    assert again["effect"] == "already_delivered"
    assert shops.shopify.order_state(SHOPIFY_ORDER)["fulfillments"][0]["display_status"] == "DELIVERED"
    [event] = shops.shopify.order_state(1002)["fulfillments"][0]["events"]
    assert event["status"] == "FAILURE" and event["message"] is not None and NUMBER in event["message"]
    assert returned["effect"] == "returned"


def test_events_of_no_effect_for_shopify_make_no_call(shops: Shops) -> None:
    for env, integration in (
        (envelope(f"woocommerce:{WOO_ORDER}"), SHIPMENTS),
        (envelope(f"shopify:{SHOPIFY_ORDER}", "status", "taken_by_courier"), TRACKING),
    ):
        flow = shopify_flow(shops, integration)
        assert flow.deliver(flow.prepare(env), attempt()) == {"effect": "none"}
    assert shops.shopify.summary()["requests"] == 0


def test_a_shopify_order_fulfilled_by_hand_is_a_business_error(shops: Shops) -> None:
    shops.shopify.fulfil_elsewhere(SHOPIFY_ORDER, company="DPD", number="DPD-1")
    with pytest.raises(FulfillmentOrderClosed):
        run(shopify_flow(shops), envelope(f"shopify:{SHOPIFY_ORDER}"))


def test_an_unknown_shopify_order_is_a_business_error(shops: Shops) -> None:
    with pytest.raises(TargetRejected) as caught:
        run(shopify_flow(shops), envelope("shopify:42"))
    assert caught.value.reason == "shop_order_not_found"


def test_a_refused_shopify_token_is_read_again_then_credentials_rejected(shops: Shops) -> None:
    shops.shopify.set_access_token("shpat_rotated_elsewhere")
    with pytest.raises(CredentialsRejected):
        run(shopify_flow(shops), envelope(f"shopify:{SHOPIFY_ORDER}"))
    assert [refresh for _, refresh in shops.secrets.reads] == [False, True]


def test_a_shopify_429_and_an_outage_are_transient(shops: Shops) -> None:
    shops.shopify.set_behaviour("rate_limited", retry_after=4.0, count=1)
    with pytest.raises(RateLimited) as caught:
        run(shopify_flow(shops), envelope(f"shopify:{SHOPIFY_ORDER}"))
    assert caught.value.retry_after == 4.0
    shops.shopify.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        run(shopify_flow(shops), envelope(f"shopify:{SHOPIFY_ORDER}"))
    assert shops.shopify.summary()["fulfillments_created"] == 0


def test_the_envelope_upstream_is_what_a_follower_gets(shops: Shops) -> None:
    """The ids travel in the queue message as the upstream processor forwards them."""
    env = envelope(f"shopify:{SHOPIFY_ORDER}")
    forwarded = Envelope(**json.loads(env.to_json()))
    assert shopify_flow(shops).prepare(forwarded).business_key == f"shopify:{SHOPIFY_ORDER}#shipped#{SHIPMENT}"
