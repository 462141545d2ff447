"""Money and parcels on the local runtime: an order paid (Przelewy24, verified; Stripe, with a
refund that overtakes its payment), packed, shipped through InPost and delivered, each step landing
once in the shop and the ERP; forged, replayed and unconfirmed requests changing nothing."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from junction_local.runtime import LocalRuntime, _json, wait_for
from junction_local.standins.inpost_webhooks import InPostWebhookSender, make_status
from junction_local.standins.przelewy24 import Przelewy24NotificationStandIn, notification
from junction_local.standins.stripe import StripeStandIn, charge_refunded, payment_succeeded
from junction_local.standins.wms import make_packed
from junction_local.standins.woocommerce import make_order as woo_order

PAYMENTS = ("stripe-payments", "przelewy24-payments")
PARCELS = ("inpost-shipments", "inpost-tracking")


def erp(runtime: LocalRuntime) -> dict[str, int]:
    return runtime.target_summary("erp")


def settled(runtime: LocalRuntime, names: tuple[str, ...]) -> bool:
    return all(runtime.settled(name) for name in names)


def woo_state(runtime: LocalRuntime, order_id: int) -> dict[str, Any]:
    orders = _json(f"{runtime.target_url('woocommerce')}/_standin/state")["orders"]
    found: dict[str, Any] = next(o for o in orders if o["id"] == order_id)
    return found


def shipments(runtime: LocalRuntime, reference: str) -> list[dict[str, Any]]:
    listed = _json(f"{runtime.target_url('inpost')}/_standin/shipments")["shipments"]
    return [s for s in listed if s.get("reference") == reference]


def an_order(runtime: LocalRuntime, order_id: int) -> None:
    """A WooCommerce order: in the shop (its REST API) and, through the order route, in the ERP."""
    _json(f"{runtime.target_url('woocommerce')}/_standin/orders", {"id": order_id, "status": "processing"})
    before = erp(runtime)["orders"]
    runtime.sender("woocommerce-orders").send(woo_order(order_id, skus=("MUG-BLUE",)))
    assert wait_for(lambda: erp(runtime)["orders"] == before + 1, 60)


def test_a_p24_payment_is_verified_then_booked_once_however_often_p24_notifies(runtime: LocalRuntime) -> None:
    an_order(runtime, 78001)
    p24 = cast(Przelewy24NotificationStandIn, runtime.sender("przelewy24-payments"))
    settled_note = p24.settle(notification(78001))  # registered and paid at P24, signed by it
    body = json.dumps(settled_note, ensure_ascii=False, separators=(",", ":")).encode()
    before = erp(runtime)
    # P24 re-sends until it gets a 200: the same notification three times.
    statuses = [p24.send_raw(body, p24.headers(body, "")).attempts[-1] for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert wait_for(lambda: erp(runtime)["incoming_payments"] == before["incoming_payments"] + 1, 60)
    assert wait_for(lambda: settled(runtime, PAYMENTS), 60)
    assert erp(runtime)["incoming_payments"] == before["incoming_payments"] + 1
    assert _json(f"{runtime.target_url('przelewy24')}/_standin/summary")["verified"] >= 1

    # A notification with a wrong sign is refused at the door and makes nothing.
    forged = {**settled_note, "amount": settled_note["amount"] * 10, "originAmount": settled_note["amount"] * 10}
    forged_body = json.dumps(forged, ensure_ascii=False, separators=(",", ":")).encode()
    assert p24.send_raw(forged_body, p24.headers(forged_body, "")).attempts[-1] == 401
    assert erp(runtime)["incoming_payments"] == before["incoming_payments"] + 1


def test_stripe_refuses_forgeries_and_a_refund_that_overtakes_its_payment_waits_for_it(runtime: LocalRuntime) -> None:
    an_order(runtime, 78002)
    stripe = cast(StripeStandIn, runtime.sender("stripe-payments"))
    before = erp(runtime)
    forged = stripe.forge(payment_succeeded(78002), secret="whsec_not_ours")
    assert forged.attempts[-1] == 401
    old = stripe.forge(payment_succeeded(78002), timestamp=1)  # outside the 300 s tolerance
    assert old.attempts[-1] == 401
    # The refund arrives first: it waits for its payment, then both are booked once.
    assert stripe.send(charge_refunded(78002, refunded=2_000)).attempts[-1] == 202
    assert wait_for(lambda: runtime.queue_depth("stripe-payments")["in_flight"] >= 1, 30)
    assert erp(runtime)["refunds"] == before["refunds"]
    assert stripe.send(payment_succeeded(78002)).attempts[-1] == 202
    assert wait_for(lambda: erp(runtime)["refunds"] == before["refunds"] + 1, 90)
    assert erp(runtime)["incoming_payments"] == before["incoming_payments"] + 1
    stripe.send(payment_succeeded(78002))  # Stripe delivers again: nothing new
    assert wait_for(lambda: settled(runtime, PAYMENTS), 90)
    assert erp(runtime)["incoming_payments"] == before["incoming_payments"] + 1
    assert erp(runtime)["refunds"] == before["refunds"] + 1


def test_a_packed_order_ships_once_and_only_the_status_shipx_confirms_reaches_shop_and_erp(
    runtime: LocalRuntime,
) -> None:
    order_id, reference = 78003, "woocommerce:78003"
    an_order(runtime, order_id)
    before = erp(runtime)
    wms = runtime.sender("inpost-shipments")
    wms.send(make_packed(reference))
    wms.send(make_packed(reference))  # the warehouse reports it twice: one parcel
    assert wait_for(lambda: erp(runtime)["delivery_notes"] == before["delivery_notes"] + 1, 90)
    assert wait_for(lambda: settled(runtime, PARCELS), 90)
    [shipment] = shipments(runtime, reference)
    tracking = shipment["tracking_number"]
    woo = woo_state(runtime, order_id)
    assert woo["status"] == "completed"
    assert any(tracking in json.dumps(m) for m in woo["meta_data"])
    notes = len(woo["notes"])

    inpost = cast(InPostWebhookSender, runtime.sender("inpost-tracking"))
    # A wrong path token: refused, nothing queued.
    assert inpost.send(make_status(shipment["id"], "delivered", tracking), token="not-the-token").attempts[-1] == 401
    # The right token, but a status ShipX does not confirm (the parcel is not delivered yet): it
    # waits for ShipX, acting on nothing meanwhile.
    assert inpost.send(make_status(shipment["id"], "delivered", tracking)).attempts[-1] == 202
    waiting = runtime.queue_depth("inpost-tracking", "inpost")
    assert wait_for(lambda: sum(runtime.queue_depth("inpost-tracking", "inpost").values()) == 1, 30), waiting
    time.sleep(3)  # several re-reads of ShipX at this runtime's pace
    assert erp(runtime)["deliveries_delivered"] == before["deliveries_delivered"]
    assert len(woo_state(runtime, order_id)["notes"]) == notes
    assert not settled(runtime, ("inpost-tracking",))

    # ShipX delivers it and says so itself: shop and ERP learn it once.
    moved = _json(
        f"{runtime.target_url('inpost')}/_standin/shipments/status",
        {"shipment_id": shipment["id"], "status": "delivered", "notify": True},
    )
    assert moved
    assert wait_for(lambda: erp(runtime)["deliveries_delivered"] == before["deliveries_delivered"] + 1, 60)
    assert wait_for(lambda: settled(runtime, PARCELS), 60)
    assert len(woo_state(runtime, order_id)["notes"]) == notes + 1
    # An older status after the newer one changes nothing.
    inpost.send(make_status(shipment["id"], "out_for_delivery", tracking))
    assert wait_for(lambda: settled(runtime, PARCELS), 60)
    assert erp(runtime)["deliveries_delivered"] == before["deliveries_delivered"] + 1
    assert len(shipments(runtime, reference)) == 1
