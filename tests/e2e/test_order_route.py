"""The order route on the local runtime: Shopify and WooCommerce webhooks and Allegro's polled
order events, each order made once in the ERP, HubSpot and ShipBob, cancellations following,
one target's outage never holding the others."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from junction_local.runtime import LocalRuntime, _json, wait_for
from junction_local.standins.shop import make_order as shop_order
from junction_local.standins.woocommerce import make_order as woo_order

SOURCES = ("shopify-orders", "woocommerce-orders", "allegro-orders")
SYSTEMS = ("erp", "hubspot", "shipbob")


def counts(runtime: LocalRuntime) -> dict[str, int]:
    erp, crm, wms = (runtime.target_summary(s) for s in SYSTEMS)
    return {
        "erp": erp["orders"],
        "erp_cancelled": erp["orders_cancelled"],
        "hubspot": crm["deals"],
        "hubspot_lost": crm["deals_closed_lost"],
        "shipbob": wms["orders"],
        "shipbob_cancelled": wms["orders_cancelled"],
    }


def settled(runtime: LocalRuntime) -> bool:
    return all(runtime.settled(name) for name in SOURCES)


def poll_allegro(runtime: LocalRuntime) -> dict[str, Any]:
    for _ in range(30):
        answer: dict[str, Any] = runtime.fire_schedule("allegro-orders")["response"]
        if answer.get("outcome") != "overlap":
            return answer
        time.sleep(1)
    raise AssertionError("the Allegro order poller's lease stayed taken")


def grows_by(runtime: LocalRuntime, before: dict[str, int], keys: tuple[str, ...], n: int) -> dict[str, int]:
    """Waits until every key grew by ``n`` and the queues are settled; returns the growth of all."""
    wait_for(lambda: all(counts(runtime)[k] - before[k] >= n for k in keys) and settled(runtime), 120)
    now = counts(runtime)
    return {k: now[k] - before[k] for k in now}


def test_an_order_from_each_source_is_made_once_in_every_target(runtime: LocalRuntime) -> None:
    allegro = f"{runtime.target_url('allegro')}/_standin/orders"
    poll_allegro(runtime)  # a first run starts at Allegro's latest event
    wait_for(lambda: settled(runtime), 60)
    before = counts(runtime)
    runtime.sender("shopify-orders").send(shop_order(610001, skus=("MUG-BLUE",)))
    woo = runtime.sender("woocommerce-orders")
    woo.send(woo_order(61001, skus=("TEAPOT-L",)))
    woo.send(woo_order(61001, skus=("TEAPOT-L",)), topic="order.updated")  # the same order again
    form = _json(allegro, {"lines": [{"sku": "MUG-RED", "quantity": 1}]})["id"]
    _json(f"{allegro}/{form}/ready", {})  # Allegro's READY_FOR_PROCESSING, a second time
    poll_allegro(runtime)
    grown = grows_by(runtime, before, ("erp", "hubspot", "shipbob"), 3)
    assert grown == {
        "erp": 3,
        "erp_cancelled": 0,
        "hubspot": 3,
        "hubspot_lost": 0,
        "shipbob": 3,
        "shipbob_cancelled": 0,
    }


def test_a_cancellation_that_overtakes_its_order_waits_for_it(runtime: LocalRuntime) -> None:
    woo = runtime.sender("woocommerce-orders")
    before = counts(runtime)
    woo.send(woo_order(61002, skus=("CUP-SET-4",), status="cancelled"), topic="order.updated")
    time.sleep(2)  # the cancellation is tried first, and waits: nothing to cancel anywhere yet
    assert counts(runtime) == before
    woo.send(woo_order(61002, skus=("CUP-SET-4",)))
    grown = grows_by(runtime, before, ("erp_cancelled", "hubspot_lost", "shipbob_cancelled"), 1)
    assert grown == {k: 1 for k in grown}
    assert runtime.queue_depth("woocommerce-orders")["dead_letters"] == 0


def test_hubspot_down_holds_neither_the_erp_nor_shipbob(runtime: LocalRuntime) -> None:
    runtime.target_behaviour("hubspot", "down")
    try:
        before = counts(runtime)
        runtime.sender("shopify-orders").send(shop_order(610010, skus=("TEAPOT-S",)))
        assert wait_for(lambda: all(counts(runtime)[k] - before[k] == 1 for k in ("erp", "shipbob")), 60)
        assert counts(runtime)["hubspot"] == before["hubspot"]
    finally:
        runtime.target_behaviour("hubspot", "ok")
    grown = grows_by(runtime, before, ("erp", "hubspot", "shipbob"), 1)
    assert (grown["erp"], grown["hubspot"], grown["shipbob"]) == (1, 1, 1)


def test_a_woocommerce_ping_is_answered_and_makes_nothing(runtime: LocalRuntime) -> None:
    before = counts(runtime)
    request = urllib.request.Request(
        runtime.webhook_url("woocommerce-orders"),
        data=b"webhook_id=17",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    time.sleep(1)
    assert runtime.queue_depth("woocommerce-orders")["visible"] == 0
    assert counts(runtime) == before
