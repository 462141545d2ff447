"""The order route end to end in one process: Shopify and WooCommerce webhooks through the real
ingress, Allegro checkout forms through the real poller, every order event to the ERP, HubSpot and
ShipBob through the real processor and flows, against the stand-ins; counted at the stand-ins.

Failure paths first: a cancellation that overtakes its creation, a target down or rate limited,
a cancellation the target refuses, duplicates, payloads that changed shape or lost a field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from junction_local.standins.allegro import AllegroStandIn
from junction_local.standins.erp import ErpStandIn
from junction_local.standins.hubspot import CLOSED_LOST, ORDER_KEY_PROPERTY, HubSpotStandIn
from junction_local.standins.shipbob import CANCELLED, ShipBobStandIn
from shared.xref import CrossReference, entities_of
from tests.component.order_harness import SOURCES, TARGETS, OrderRoute, StandIns
from tests.sample import EVENTS, shopify_order

SKUS = ("MUG-BLUE", "TEAPOT-L")
SHOPIFY_ID = 820982911946154508
SHOPIFY_ENTITY = f"shopify-order:{SHOPIFY_ID}"
SHOPIFY_KEY = f"shopify:{SHOPIFY_ID}"  # the order's reference at every target


@pytest.fixture
def route(aws: str) -> Iterator[OrderRoute]:
    with ErpStandIn() as erp, HubSpotStandIn() as hubspot, ShipBobStandIn() as shipbob, AllegroStandIn() as allegro:
        for sku in SKUS:
            allegro.add_offer(sku, quantity=10)
        running = OrderRoute.start(StandIns(erp, hubspot, shipbob, allegro))
        yield running
        running.close()


def woocommerce_order(name: str = "order-created", **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EVENTS / "woocommerce" / f"{name}.json").read_text())
    payload.update(changes)
    return payload


def cancelled_shopify_order() -> dict[str, Any]:
    return shopify_order(cancelled_at="2026-11-21T11:00:00+01:00", updated_at="2026-11-21T11:00:00+01:00")


def allegro_order(route: OrderRoute) -> str:
    """A paid Allegro order, read by the poller (its first run starts at the journal's end, so it
    runs once before the order is bought); the checkout form id."""
    route.poll()
    form_id = route.standins.allegro.create_order([{"sku": "MUG-BLUE", "quantity": 2}])
    assert route.poll().changes == 1
    return form_id


def deal(route: OrderRoute, key: str) -> dict[str, str]:
    found = [d for d in route.deals().values() if d[ORDER_KEY_PROPERTY] == key]
    assert len(found) == 1, found
    return found[0]


def erp_order(route: OrderRoute, key: str) -> dict[str, Any]:
    found = [o for o in route.erp_orders() if o["NumAtCard"] == key]
    assert len(found) == 1, found
    return found[0]


def shipment(route: OrderRoute, key: str) -> dict[str, Any]:
    found = [o for o in route.shipments() if o["reference_id"] == key]
    assert len(found) == 1, found
    return found[0]


def outcomes(route: OrderRoute, entity: str, target: str) -> list[tuple[str, str]]:
    return [(str(t["outcome"]), str(t.get("reason", ""))) for t in route.trace(entity, target)]


def no_dead_letters(route: OrderRoute) -> None:
    dead = {(s, t): route.dead_reasons(s, t) for s in SOURCES for t in TARGETS}
    assert {queue: reasons for queue, reasons in dead.items() if reasons} == {}


# -- a cancellation that overtakes its creation --------------------------------------------------
def test_a_cancellation_before_its_order_waits_for_it_then_cancels_it_everywhere(route: OrderRoute) -> None:
    assert route.shopify(cancelled_shopify_order(), topic="orders/cancelled") == 202

    route.drain_all()

    for target in ("erp", "hubspot"):
        assert outcomes(route, SHOPIFY_ENTITY, target) == [("retry_scheduled", "awaiting_order")]
    # ShipBob comes after the ERP: the cancellation reaches it only once the ERP has cancelled.
    assert outcomes(route, SHOPIFY_ENTITY, "shipbob") == []
    assert route.counts() == (0, 0, 0, 0)
    assert route.waiting() == 2  # each cancellation comes back later
    no_dead_letters(route)

    assert route.shopify(shopify_order()) == 202
    route.settle()

    assert erp_order(route, SHOPIFY_KEY)["Cancelled"] == "tYES"
    assert deal(route, SHOPIFY_KEY)["dealstage"] == CLOSED_LOST
    assert shipment(route, SHOPIFY_KEY)["status"] == CANCELLED
    for target in TARGETS:
        assert [o for o, _ in outcomes(route, SHOPIFY_ENTITY, target)].count("delivered") == 2  # create, cancel
    assert route.counts() == (1, 1, 1, 1)
    no_dead_letters(route)


def test_an_allegro_buyer_cancellation_and_a_woocommerce_cancellation_cancel_the_order_everywhere(
    route: OrderRoute,
) -> None:
    form_id = allegro_order(route)
    woo = woocommerce_order()
    assert route.woocommerce(woo) == 202
    route.settle()

    route.standins.allegro.cancel_order(form_id)
    assert route.poll().changes == 1
    assert route.woocommerce(woocommerce_order("order-cancelled"), topic="order.updated") == 202
    route.settle()

    for key in (f"allegro:{form_id}", f"woocommerce:{woo['id']}"):
        assert erp_order(route, key)["Cancelled"] == "tYES"
        assert deal(route, key)["dealstage"] == CLOSED_LOST
        assert shipment(route, key)["status"] == CANCELLED
    assert route.counts()[0] == 2  # cancelled, never made again
    no_dead_letters(route)


# -- HubSpot down, HubSpot rate limited ---------------------------------------------------------
def test_hubspot_down_waits_behind_its_breaker_while_the_erp_and_shipbob_deliver(route: OrderRoute) -> None:
    route.standins.hubspot.set_behaviour("down")
    orders = [shopify_order(id=SHOPIFY_ID + n, name=f"#{1001 + n}") for n in range(6)]
    for order in orders:
        assert route.shopify(order) == 202

    route.drain_all()

    assert len(route.erp_orders()) == 6
    assert len(route.shipments()) == 6
    assert route.deals() == {}
    assert route.breaker("shopify", "hubspot")["state"] == "open"  # five failures in a row opened it
    assert route.depth("shopify", "hubspot") == 6  # every message waits, none is lost
    assert route.dead_reasons("shopify", "hubspot") == []
    calls = route.standins.hubspot.summary()["requests"]
    route.advance(5)
    route.drain("shopify", "hubspot")
    assert route.standins.hubspot.summary()["requests"] == calls  # while open, HubSpot is left alone

    route.standins.hubspot.set_behaviour("ok")
    route.settle(("hubspot",))

    assert sorted(d[ORDER_KEY_PROPERTY] for d in route.deals().values()) == sorted(f"shopify:{o['id']}" for o in orders)
    assert route.breaker("shopify", "hubspot")["state"] == "closed"
    assert (len(route.erp_orders()), len(route.shipments())) == (6, 6)  # nothing made twice
    no_dead_letters(route)


def test_a_hubspot_429_holds_the_shared_budget_and_the_order_is_delivered_after_it(route: OrderRoute) -> None:
    route.standins.hubspot.set_behaviour("rate_limited", retry_after=30, count=1)
    assert route.shopify(shopify_order()) == 202

    route.drain("shopify", "hubspot")

    before = route.clock()
    assert float(route.budget("hubspot")["blocked_until"]) >= before + 29
    assert outcomes(route, SHOPIFY_ENTITY, "hubspot") == [("retry_scheduled", "rate_limited")]
    assert route.advance(25) == 0  # not back before HubSpot's Retry-After
    assert route.deals() == {}

    route.settle(("hubspot",))

    assert deal(route, SHOPIFY_KEY)["dealstage"] == "closedwon"
    assert route.standins.hubspot.summary()["rate_limited"] == 1
    no_dead_letters(route)


# -- cancellations a target refuses ------------------------------------------------------------
def test_the_warehouse_gets_each_order_after_the_erp_with_the_erp_document(route: OrderRoute) -> None:
    """ShipBob is declared after the ERP: it waits on its queue, not by polling for the ERP's id."""
    route.standins.erp.set_behaviour("down")
    assert route.shopify(shopify_order()) == 202
    route.drain_all()
    assert route.counts()[1] == 1  # HubSpot does not wait for the ERP
    assert route.shipments() == []  # nothing sent to ShipBob while the ERP has no order
    assert route.depth("shopify", "shipbob") == 0

    route.standins.erp.set_behaviour("ok")
    route.settle()

    document = str(erp_order(route, SHOPIFY_KEY)["DocEntry"])
    assert shipment(route, SHOPIFY_KEY)["tags"] == [{"name": "ERP document", "value": document}]
    no_dead_letters(route)


def test_a_cancellation_after_delivery_is_dead_lettered_and_never_reaches_the_warehouse(route: OrderRoute) -> None:
    assert route.shopify(shopify_order()) == 202
    route.settle()
    route.standins.erp.deliver_order(int(erp_order(route, SHOPIFY_KEY)["DocEntry"]))

    assert route.shopify(cancelled_shopify_order(), topic="orders/cancelled") == 202
    route.settle()

    assert route.dead_reasons("shopify", "erp") == ["order_delivered"]
    assert route.dead_reasons("shopify", "shipbob") == []  # after the ERP: it never had the cancel
    assert route.dead_reasons("shopify", "hubspot") == []
    assert erp_order(route, SHOPIFY_KEY)["Cancelled"] == "tNO"
    assert shipment(route, SHOPIFY_KEY)["status"] != CANCELLED
    assert deal(route, SHOPIFY_KEY)["dealstage"] == CLOSED_LOST  # the CRM records what happened
    assert route.waiting() == 0


def test_a_cancellation_after_picking_is_dead_lettered_at_the_warehouse_alone(route: OrderRoute) -> None:
    assert route.shopify(shopify_order()) == 202
    route.settle()
    route.standins.shipbob.advance_order("picked", reference_id=SHOPIFY_KEY)

    assert route.shopify(cancelled_shopify_order(), topic="orders/cancelled") == 202
    route.settle()

    assert route.dead_reasons("shopify", "shipbob") == ["order_already_picked"]
    assert route.dead_reasons("shopify", "erp") == []
    assert erp_order(route, SHOPIFY_KEY)["Cancelled"] == "tYES"
    assert shipment(route, SHOPIFY_KEY)["status"] != CANCELLED
    assert route.waiting() == 0


# -- payloads ------------------------------------------------------------------------------------
def test_a_woocommerce_order_awaiting_payment_is_not_routed(route: OrderRoute) -> None:
    assert route.woocommerce(woocommerce_order("order-pending")) == 202

    route.settle()

    assert route.counts() == (0, 0, 0, 0)
    assert route.standins.erp.requests_seen() == 0
    no_dead_letters(route)


def test_an_abandoned_woocommerce_checkout_cancelled_is_not_routed(route: OrderRoute) -> None:
    """WooCommerce cancels an unpaid online checkout after its hold time: never placed, so no
    target waits 72 hours for an order that will never come (and no DLQ alarm fires)."""
    abandoned = woocommerce_order("order-pending", status="cancelled", date_paid_gmt=None, payment_method="payu")
    assert route.woocommerce(abandoned, topic="order.updated") == 202

    route.settle()

    assert route.counts() == (0, 0, 0, 0)
    no_dead_letters(route)


def test_a_woocommerce_order_with_a_new_field_is_delivered_and_the_change_logged(
    route: OrderRoute, caplog: pytest.LogCaptureFixture
) -> None:
    orders_log = logging.getLogger("junction.orders")  # its own JSON handler; it does not propagate
    orders_log.addHandler(caplog.handler)
    try:
        assert route.woocommerce(woocommerce_order(loyalty_points=120)) == 202
        route.settle()
    finally:
        orders_log.removeHandler(caplog.handler)

    assert route.counts() == (1, 1, 1, 1)
    shape = [r.__dict__["ctx"] for r in caplog.records if r.getMessage() == "payload shape changed"]
    assert len(shape) == 3  # once per target's copy of the event
    assert {s["unknown_fields"] for s in shape} == {"loyalty_points"}
    assert "anna" not in json.dumps(shape).lower()  # ids only, never the buyer
    no_dead_letters(route)


def test_a_woocommerce_order_missing_a_required_field_is_dead_lettered_everywhere(route: OrderRoute) -> None:
    payload = woocommerce_order()
    del payload["line_items"]
    assert route.woocommerce(payload) == 202

    route.settle()

    assert route.counts() == (0, 0, 0, 0)
    for target in ("erp", "hubspot"):  # ShipBob, after the ERP, never gets what the ERP refused
        dead = route.dead_letters("woocommerce", target)
        assert [m["MessageAttributes"]["junction-reason"]["StringValue"] for m in dead] == ["validation_failed"]
        assert "line_items" in dead[0]["MessageAttributes"]["junction-error"]["StringValue"]
    assert route.dead_letters("woocommerce", "shipbob") == []


# -- duplicates ------------------------------------------------------------------------------
def test_an_event_delivered_twice_and_a_repeated_ready_for_processing_make_one_order(route: OrderRoute) -> None:
    form_id = allegro_order(route)
    for _ in range(2):  # the same webhook delivered twice, then sent again under a new delivery id
        assert route.shopify(shopify_order()) == 202
    assert route.shopify(shopify_order(), delivery_id="resent-1") == 202
    assert route.shopify(shopify_order(updated_at="2026-11-21T10:20:00+01:00"), topic="orders/updated") == 202
    route.settle()
    assert route.counts() == (2, 2, 2, 2)

    route.standins.allegro.ready_again(form_id)
    assert route.poll().changes == 1
    route.settle()

    assert route.counts() == (2, 2, 2, 2)
    assert route.standins.hubspot.summary()["duplicate_deals"] == 0
    assert route.standins.shipbob.summary()["duplicates"] == 0
    for target in ("erp", "hubspot"):
        seen = [o for o, _ in outcomes(route, f"allegro-order:{form_id}", target)]
        assert sorted(seen) == ["delivered", "duplicate"]
        seen = [o for o, _ in outcomes(route, SHOPIFY_ENTITY, target)]
        assert seen.count("delivered") == 1
        assert seen.count("duplicate") == 3
    # ShipBob hears of an order from the ERP's delivery only: the ERP's duplicates send nothing on.
    assert [o for o, _ in outcomes(route, f"allegro-order:{form_id}", "shipbob")] == ["delivered"]
    assert [o for o, _ in outcomes(route, SHOPIFY_ENTITY, "shipbob")] == ["delivered"]
    no_dead_letters(route)


# -- delivery -----------------------------------------------------------------------------------
def test_one_order_of_each_source_lands_once_in_every_target(route: OrderRoute) -> None:
    form_id = allegro_order(route)
    woo = woocommerce_order()
    woo["billing"] = {**woo["billing"], "email": "jan.nowak@example.pl"}
    assert route.shopify(shopify_order()) == 202
    assert route.woocommerce(woo) == 202

    route.settle()

    keys = [SHOPIFY_KEY, f"woocommerce:{woo['id']}", f"allegro:{form_id}"]
    for key in keys:
        assert erp_order(route, key)["Cancelled"] == "tNO"
        assert deal(route, key)["dealstage"] == "closedwon"
        assert shipment(route, key)["status"] != CANCELLED
    state = route.standins.hubspot.state()
    assert len(state["contacts"]) == 3
    deals_with_contact = {a["deal"] for a in state["associations"]}
    assert deals_with_contact == set(state["deals"])  # every deal has its buyer
    assert route.counts() == (3, 3, 3, 3)
    no_dead_letters(route)


def test_each_hop_writes_its_ids_to_the_orders_cross_reference(route: OrderRoute) -> None:
    assert route.shopify(shopify_order()) == 202
    route.settle()

    ids = CrossReference(route.ddb, route.resources.state_table).ids(SHOPIFY_ENTITY)

    doc_entry = str(erp_order(route, SHOPIFY_KEY)["DocEntry"])
    hubspot = route.standins.hubspot.state()
    assert ids["shopify_order_id"] == str(SHOPIFY_ID)
    assert ids["erp_doc_entry"] == doc_entry
    assert ids["hubspot_deal_id"] == next(iter(hubspot["deals"]))
    assert ids["hubspot_contact_id"] == next(iter(hubspot["contacts"]))
    assert ids["shipbob_order_id"] == str(shipment(route, SHOPIFY_KEY)["id"])
    found = entities_of(route.ddb, route.resources.state_table, doc_entry)
    assert ("erp_doc_entry", SHOPIFY_ENTITY) in found
    assert {entity for _, entity in found} == {SHOPIFY_ENTITY}
    assert entities_of(route.ddb, route.resources.state_table, "no-such-id") == []
