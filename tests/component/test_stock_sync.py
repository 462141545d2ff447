"""Stock sync end to end in one process: ERP poll -> both target queues -> Shopify and Allegro.

Every test runs on moto and on the local hot path (the ``aws`` fixture), against stand-ins as
strict as the real APIs (compare-and-set, cost throttle, asynchronous commands, per-minute limits).
Failure paths first: a target down, rate limited or refusing; stale and duplicate deliveries;
business errors dead-lettered one SKU at a time. Time passes through the harness clock, never by
sleeping. Each test names the mutation of the code that makes it fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from functions.erp_stock_to_channels import to_allegro
from functions.erp_stock_to_channels.declaration import INTEGRATION
from junction_local.standins.allegro import AllegroStandIn
from junction_local.standins.erp import DEFAULT_ITEMS, ErpStandIn
from junction_local.standins.shopify_admin import ACCESS_TOKEN, ShopifyAdminStandIn
from shared.connectors.shopify_admin import VARIANTS
from shared.envelope import Envelope
from shared.polling import CHANGES_TOPIC
from tests.component.stock_harness import StockPipeline, changes_of, reason

SKUS = 20
TARGETS = ("shopify", "allegro")
UNSOLD = sorted(("unmapped_sku", sku) for sku in DEFAULT_ITEMS)  # the ERP's items no channel sells

MakeStock = Callable[..., StockPipeline]


@pytest.fixture
def make_stock(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeStock]:
    """A pipeline over fresh stand-ins: 20 SKUs in the ERP and in both catalogues. Keyword
    arguments go to the channel stand-ins' constructors; ``stock`` sets ERP levels first."""
    # The stand-in finishes a command within milliseconds: follow it at that pace.
    monkeypatch.setattr(to_allegro, "FOLLOW_INTERVAL_SECONDS", 0.02)
    with ExitStack() as stack:

        def make(
            *,
            shopify: dict[str, Any] | None = None,
            allegro: dict[str, Any] | None = None,
            stock: dict[str, dict[str, tuple[int, int]]] | None = None,
        ) -> StockPipeline:
            erp = stack.enter_context(ErpStandIn())
            shop = stack.enter_context(ShopifyAdminStandIn(**(shopify or {})))
            market = stack.enter_context(AllegroStandIn(**(allegro or {})))
            erp.seed_items(SKUS, prefix="SKU-")
            shop.seed_catalogue(SKUS, prefix="SKU-")
            market.seed_offers(SKUS, prefix="SKU-", quantity=1)
            for sku, levels in (stock or {}).items():
                set_stock(erp, sku, **levels)
            pipeline = StockPipeline.start(erp, shop, market)
            stack.callback(pipeline.close)
            return pipeline

        yield make


def set_stock(erp: ErpStandIn, sku: str, **levels: tuple[int, int]) -> None:
    """``wh01=(in stock, committed)``, ``wh02=(...)``."""
    erp.set_stock([{"item": sku, "warehouse": wh[2:], "in_stock": s, "committed": c} for wh, (s, c) in levels.items()])


def converge(p: StockPipeline, *names: str) -> None:
    """Poll, then drain the targets' queues (all of them unless named)."""
    p.poll()
    for name in names or TARGETS:
        p.drain(name)


def assert_converged(p: StockPipeline) -> None:
    for name in TARGETS:
        assert p.mismatches(name) == {}, name


def delivered_result(p: StockPipeline, name: str, sku: str) -> dict[str, str]:
    """``target_ids`` of the last delivery of a message whose first SKU is ``sku``."""
    found = [t for t in p.traces(name, "delivered") if t["entity_ids"].get("first_sku") == sku]
    assert found, f"no delivery of {sku} to {name}"
    return dict(found[-1]["target_ids"])


def test_a_full_sync_makes_every_channel_equal_to_the_erp(make_stock: MakeStock) -> None:
    stock = make_stock()
    run = stock.poll()
    assert run.outcome == "caught_up" and run.changes == SKUS + len(DEFAULT_ITEMS)
    stock.drain("shopify")
    stock.drain("allegro")
    assert stock.mismatches("shopify") == {}
    assert stock.mismatches("allegro") == {}
    # The ERP's own items that no channel sells are business errors, each on its own, never retried.
    for channel in ("shopify", "allegro"):
        dead = stock.dead_letters(channel)
        reasons = {m["MessageAttributes"]["junction-reason"]["StringValue"] for m in dead}
        assert reasons == {"unmapped_sku"}
        keys = sorted(json.loads(m["MessageAttributes"]["junction-entity-ids"]["StringValue"])["key"] for m in dead)
        assert keys == sorted(DEFAULT_ITEMS)


# -- 1. an order ------------------------------------------------------------------------------
def test_an_erp_order_pushes_only_that_skus_new_level_to_both_channels(make_stock: MakeStock) -> None:
    # Mutations caught: the poller re-sending unchanged items (its content filter dropped); a flow
    # pushing every SKU it knows rather than the message's; the order's commitment not subtracted.
    sku = "SKU-000007"
    p = make_stock(stock={sku: {"wh01": (50, 0), "wh02": (4, 1)}})
    converge(p)
    assert p.shopify_quantities()[sku] == 53 and p.allegro_quantities()[sku] == 48
    shop_before, market_before = p.shopify.summary(), p.allegro.summary()

    p.sales_order({sku: 5})
    run = p.poll()

    assert run.changes == 1
    for name in TARGETS:
        [message] = p.peek(name)
        assert [c["key"] for c in changes_of(message)] == [sku]
        p.drain(name)
    shop = p.shopify.summary()
    assert shop["adjustment_groups"] == shop_before["adjustment_groups"] + 1
    assert shop["quantities_set"] == shop_before["quantities_set"] + 1
    market = p.allegro.summary()
    # One quantity command, for that one offer.
    assert market["commands"] == market_before["commands"] + 1
    assert market["tasks_done"] == market_before["tasks_done"] + 1
    assert market["publication_commands"] == market_before["publication_commands"]
    assert p.shopify_quantities()[sku] == 48 and p.allegro_quantities()[sku] == 43
    assert_converged(p)


# -- 2. one target down ------------------------------------------------------------------------
def test_allegro_down_never_blocks_shopify_and_its_messages_wait_then_converge(make_stock: MakeStock) -> None:
    # Mutations caught: a target failure dead-lettering the message (or failing the poll, so
    # Shopify gets nothing); the breaker not counting 5xx (it never opens, and waiting messages
    # call Allegro); a retry that forgets an END or an ACTIVATE its failed attempt meant to send.
    ending, returning = "SKU-000001", "SKU-000002"
    p = make_stock(stock={ending: {"wh01": (10, 0)}, returning: {"wh01": (1, 0)}})
    converge(p)
    assert_converged(p)
    assert returning in p.allegro.state()["ended"]
    dead = {name: p.dead(name) for name in TARGETS}

    p.allegro.set_behaviour("down")
    changes = [
        (ending, {"wh01": (2, 0)}),  # Allegro: nothing to sell -> END
        (returning, {"wh01": (9, 0)}),  # stock back -> quantity 7, then ACTIVATE
        ("SKU-000003", {"wh01": (70, 5)}),
        ("SKU-000004", {"wh01": (71, 5)}),
        ("SKU-000005", {"wh01": (72, 5)}),
    ]
    for sku, levels in changes:  # one poll a minute during the outage: a message each
        set_stock(p.erp, sku, **levels)
        assert p.poll().changes == 1
    p.drain("shopify")
    assert p.mismatches("shopify") == {}  # Shopify is not held up by Allegro

    p.drain("allegro")
    assert p.pending("allegro") == len(changes)  # each retried later, none dead-lettered
    assert p.dead("allegro") == dead["allegro"]
    assert p.breaker("allegro")["state"] == "open"

    # Open: a new message waits without calling Allegro.
    set_stock(p.erp, "SKU-000006", wh01=(80, 0))
    p.poll()
    requests = p.allegro.summary()["requests"]
    p.drain("allegro")
    assert p.allegro.summary()["requests"] == requests
    assert p.pending("allegro") == len(changes) + 1

    p.drain("shopify")
    p.allegro.set_behaviour("ok")
    assert p.advance(INTEGRATION.target("allegro").breaker.max_open_seconds + 100) == len(changes) + 1
    p.drain("allegro")
    assert p.pending("allegro") == 0
    assert p.breaker("allegro")["state"] == "closed"
    assert p.dead("allegro") == dead["allegro"]
    assert_converged(p)
    state = p.allegro.state()
    assert ending in state["ended"] and returning not in state["ended"]


def test_levels_superseded_during_an_outage_still_end_and_reactivate_on_allegro(make_stock: MakeStock) -> None:
    # Mutations caught: a flow told, as the previous level, what a failed (never applied) push
    # recorded rather than what the channel last took: the newer level then skips the END (an
    # offer left selling stock that is gone) or the ACTIVATE (restocked, but still ended).
    ending, returning = "SKU-000001", "SKU-000002"
    p = make_stock(stock={ending: {"wh01": (10, 0)}, returning: {"wh01": (1, 0)}})
    converge(p, "allegro")
    p.allegro.set_behaviour("down")
    set_stock(p.erp, ending, wh01=(2, 0))  # Allegro 8 -> 0
    set_stock(p.erp, returning, wh01=(9, 0))  # Allegro 0 -> 7
    p.poll()
    p.drain("allegro")
    set_stock(p.erp, ending, wh01=(1, 0))  # still nothing to sell
    set_stock(p.erp, returning, wh01=(11, 0))  # 9
    p.poll()
    p.drain("allegro")
    assert p.pending("allegro") == 2 and p.dead("allegro") == UNSOLD

    p.allegro.set_behaviour("ok")
    p.advance(INTEGRATION.target("allegro").retry.max_delay_seconds)
    p.drain("allegro")
    assert p.pending("allegro") == 0
    state = p.allegro.state()
    assert ending in state["ended"] and returning not in state["ended"]
    assert p.allegro_quantities()[returning] == 9
    assert p.mismatches("allegro") == {}


def test_allegro_down_before_its_catalogue_was_ever_read_is_retried_behind_the_breaker(
    make_stock: MakeStock,
) -> None:
    # Mutations caught: a failed catalogue read leaving its marker taken, so the next deliveries
    # wait out their invocations for a reader that is gone (Allegro not called, the breaker never
    # told); the unmapped SKUs dead-lettered before the catalogue could say what is unmapped.
    p = make_stock()
    p.allegro.set_behaviour("down")
    p.poll()
    p.drain("shopify")
    assert p.mismatches("shopify") == {}
    threshold = INTEGRATION.target("allegro").breaker.failure_threshold
    for attempt in range(1, threshold + 1):
        requests = p.allegro.summary()["requests"]
        p.drain("allegro", seconds=20)
        assert p.allegro.summary()["requests"] > requests, f"attempt {attempt} did not try Allegro"
        assert p.pending("allegro") == 1 and p.dead("allegro") == []
        p.advance_until_due("allegro")
    assert p.breaker("allegro")["state"] == "open"

    p.allegro.set_behaviour("ok")
    p.advance(INTEGRATION.target("allegro").breaker.max_open_seconds)
    p.drain("allegro")
    assert p.pending("allegro") == 0
    assert p.dead("allegro") == UNSOLD
    assert_converged(p)


# -- 3. a stale redrive ------------------------------------------------------------------------
def test_a_stale_message_redriven_a_day_later_is_refused_by_the_version_gate(make_stock: MakeStock) -> None:
    # Mutations caught: the version gate letting an older version through (``<=`` turned ``>=``,
    # or no condition): the old level would overwrite the newer one on both channels.
    sku = "SKU-000004"
    p = make_stock()
    converge(p)
    set_stock(p.erp, sku, wh01=(40, 0), wh02=(0, 0))
    p.poll()
    old = {name: p.peek(name) for name in TARGETS}
    for name in TARGETS:
        p.drain(name)
    set_stock(p.erp, sku, wh01=(30, 0), wh02=(0, 0))
    converge(p)
    assert p.shopify_quantities()[sku] == 30 and p.allegro_quantities()[sku] == 28
    shop_sets = p.shopify.summary()["quantities_set"]
    commands = p.allegro.summary()["commands"]

    p.advance(86_400)  # an operator redrives the old message a day later
    for name in TARGETS:
        [message] = old[name]
        p.delete_idempotency_record(name, message)  # so idempotency alone cannot stop it
        p.resend(name, message)
        p.drain(name)
        result = delivered_result(p, name, sku)
        assert (result["stale"], result["pushed"]) == ("1", "0"), name

    assert p.shopify_quantities()[sku] == 30 and p.allegro_quantities()[sku] == 28
    assert p.shopify.summary()["quantities_set"] == shop_sets
    assert p.allegro.summary()["commands"] == commands
    assert_converged(p)


# -- 4. a sale in the shop ---------------------------------------------------------------------
def test_a_shop_sale_then_an_erp_change_rereads_the_mismatch_and_sets_the_erps_level(
    make_stock: MakeStock,
) -> None:
    # Mutations caught: no compare (changeFromQuantity null: the stand-in counts no mismatch); a
    # mismatch given up on or dead-lettered; a retry that keeps the stale compare value.
    sku = "SKU-000011"
    p = make_stock(stock={sku: {"wh01": (20, 0), "wh02": (5, 0)}})
    converge(p, "shopify")
    assert p.shopify_quantities()[sku] == 25
    p.shopify.set_quantities({sku: 22})  # three sold in the shop
    mismatches = p.shopify.summary()["compare_mismatches"]

    p.sales_order({sku: 3})  # the ERP books the sale ...
    set_stock(p.erp, sku, wh02=(15, 0))  # ... and a delivery to the second warehouse
    p.poll()
    p.drain("shopify")

    assert p.shopify_quantities()[sku] == 20 - 3 + 15
    assert p.shopify.summary()["compare_mismatches"] == mismatches + 1
    assert delivered_result(p, "shopify", sku)["shopify_rereads"] == "1"
    assert p.pending("shopify") == 0
    assert p.mismatches("shopify") == {}


# -- 5. rate limits ----------------------------------------------------------------------------
def test_allegro_rate_limited_holds_the_account_and_the_messages_come_back(make_stock: MakeStock) -> None:
    # Mutations caught: a 429 dead-lettering the message; the budget not held (no blocked_until);
    # a retry sooner than Allegro's block (the held budget, or Retry-After, ignored).
    sku = "SKU-000012"
    p = make_stock()
    converge(p, "allegro")
    dead = p.dead("allegro")
    # Over its request limit, a client id is blocked for a minute, and Allegro's 429 says so.
    p.allegro.set_behaviour("rate_limited", retry_after=60, count=2)
    set_stock(p.erp, sku, wh01=(33, 0))
    p.poll()

    p.drain("allegro")
    assert p.pending("allegro") == 1
    held = float(p.budget("allegro")["blocked_until"])
    assert held >= p.clock() + 50  # the whole account holds for the Retry-After
    # The message comes back no sooner than the hold ends.
    assert p.advance(held - p.clock() - 5) == 0

    p.advance(10)
    p.drain("allegro")  # the second of the two 429s
    assert p.pending("allegro") == 1
    assert p.budget("allegro")["blocked_until"] > held

    p.advance(120)
    p.drain("allegro")
    assert p.pending("allegro") == 0
    assert p.allegro.summary()["errors_429"] == 2
    assert p.dead("allegro") == dead
    assert p.allegro_quantities()[sku] == 31
    assert p.mismatches("allegro") == {}


def spend_shopify_bucket(shopify: ShopifyAdminStandIn) -> None:
    """Another app of the shop spends the cost bucket until Shopify throttles small queries."""
    with httpx.Client(timeout=10.0) as http:
        for first in (30, 1):
            for _ in range(200):
                answer = http.post(
                    shopify.graphql_url(),
                    json={"query": VARIANTS, "variables": {"first": first}},
                    headers={"X-Shopify-Access-Token": ACCESS_TOKEN},
                ).json()
                if any(e.get("extensions", {}).get("code") == "THROTTLED" for e in answer.get("errors", [])):
                    break


def test_shopify_throttled_holds_the_budget_and_converges(make_stock: MakeStock) -> None:
    # Mutations caught: THROTTLED taken for a refusal (dead-lettered); the shared budget not held
    # for the bucket's refill; a retry throttled again.
    sku = "SKU-000013"
    # A tiny bucket refilled at a point a second: the app spending it leaves the next call short.
    p = make_stock(shopify={"maximum_available": 60.0, "restore_rate": 1.0})
    converge(p, "shopify")
    set_stock(p.erp, sku, wh01=(17, 0), wh02=(2, 0))
    p.poll()
    spend_shopify_bucket(p.shopify)
    throttled = p.shopify.summary()["throttled"]

    p.drain("shopify")
    assert p.shopify.summary()["throttled"] == throttled + 1
    assert p.pending("shopify") == 1 and p.dead("shopify") == UNSOLD
    # Every invocation on the shop holds until the bucket has the call's 10 points again.
    assert float(p.budget("shopify")["blocked_until"]) > p.clock() + 1

    p.shopify.advance_clock(120)  # the bucket refills
    p.cold_start("shopify")  # the retry runs elsewhere: only the shared budget knows to wait
    p.advance_until_due("shopify")
    p.drain("shopify")
    assert p.pending("shopify") == 0
    assert p.shopify.summary()["throttled"] == throttled + 1
    assert p.shopify_quantities()[sku] == 19
    assert p.dead("shopify") == UNSOLD
    assert p.mismatches("shopify") == {}


# -- 6. an unmapped SKU ------------------------------------------------------------------------
def test_an_unmapped_sku_is_dead_lettered_alone_and_delivered_once_mapped_and_redriven(
    make_stock: MakeStock,
) -> None:
    # Mutations caught: an unmapped SKU retried (or failing the whole message); the ID map not
    # refreshed for a missing SKU (the redrive would be dead-lettered again).
    sku = "MUG-BLUE"
    p = make_stock()
    converge(p)
    for name in TARGETS:
        dead = p.dead_letters(name)
        assert p.dead(name) == UNSOLD
        assert {m["MessageAttributes"]["junction-attempts"]["StringValue"] for m in dead} == {"1"}
        assert all(len(changes_of(m)) == 1 for m in dead)  # each SKU alone
        assert p.pending(name) == 0 and p.receive(name) == []  # never retried
    assert_converged(p)

    p.shopify.add_variant(sku, quantity=0)
    p.allegro.add_offer(sku, quantity=1)
    p.advance(120)  # the catalogue is read again at most once a minute
    for name in TARGETS:
        assert p.redrive(name, [sku]) == 1
        p.drain(name)
        assert p.dead(name) == [d for d in UNSOLD if d[1] != sku]
    assert p.shopify_quantities()[sku] == p.expected("shopify")[sku] == 20
    assert p.allegro_quantities()[sku] == p.expected("allegro")[sku] == 18
    assert_converged(p)


# -- 7. an offer Allegro refuses ---------------------------------------------------------------
def test_an_offer_allegro_refuses_is_dead_lettered_alone_and_the_rest_delivered(make_stock: MakeStock) -> None:
    # Mutations caught: a refused task failing the whole message (retried, the good offer pushed
    # again and again) or ignored (the refusal lost, nothing dead-lettered).
    gone, fine = "SKU-000005", "SKU-000006"
    p = make_stock()
    converge(p, "allegro")
    p.id_map("allegro").put_many({gone: "17999999999"})  # an offer Allegro no longer has
    for sku in (gone, fine):
        set_stock(p.erp, sku, wh01=(42, 0))  # both 40 on Allegro: one command for the two
    p.poll()
    p.drain("allegro")

    dead = [m for m in p.dead_letters("allegro") if reason(m) != "unmapped_sku"]
    assert [(reason(m), changes_of(m)[0]["key"]) for m in dead] == [("offer_refused", gone)]
    assert "OfferNotFoundException" in dead[0]["MessageAttributes"]["junction-error"]["StringValue"]
    assert p.pending("allegro") == 0
    assert p.allegro_quantities()[fine] == 40
    assert delivered_result(p, "allegro", gone)["allegro_refused"] == "1"


# -- 8. malformed messages ---------------------------------------------------------------------
def _envelope(delivery_id: str, payload: Any, topic: str = CHANGES_TOPIC) -> str:
    body = json.dumps(payload)
    return Envelope(
        integration=INTEGRATION.name,
        delivery_id=delivery_id,
        idempotency_key=f"{INTEGRATION.name}:{delivery_id}",
        source="erp",
        topic=topic,
        received_at=datetime.now(UTC).isoformat(),
        body=body,
    ).to_json()


def test_malformed_messages_and_rejected_erp_items_go_to_the_dlq_with_their_reason(make_stock: MakeStock) -> None:
    # Mutations caught: a malformed message retried (or crashing the batch); a rejected ERP item
    # delivered, retried or dead-lettered without the poller's reason.
    bad_item = "SKU-000003"
    p = make_stock()
    p.erp_transport.tamper[bad_item] = lambda item: item.pop("UpdateTime")
    for name in TARGETS:
        p.send(name, _envelope("bad-shape", {"changes": "SKU-000001"}))
        p.send(name, _envelope("bad-change", {"changes": [{"key": "SKU-000001", "data": {"warehouses": {}}}]}))
    run = p.poll()
    assert run.rejected == 1
    for name in TARGETS:
        p.drain(name)
        assert p.pending(name) == 0
        assert p.dead(name) == sorted(
            [
                *UNSOLD,
                ("malformed_item", bad_item),
                ("validation_failed", "bad-shape"),
                ("validation_failed", "bad-change"),
            ]
        )
        assert {k: v for k, v in p.mismatches(name).items() if k != bad_item} == {}


# -- 9. the sellable rule ----------------------------------------------------------------------
def test_allegro_sells_warehouse_01_less_safety_stock_and_shopify_both_warehouses(
    make_stock: MakeStock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mutations caught: safety stock not subtracted or a negative level sent (Allegro refuses
    # quantities below 1); warehouse 02 sold on Allegro or left out on Shopify; an ended offer
    # activated before its quantity is set, or never activated again.
    sku = "SKU-000009"
    p = make_stock(stock={sku: {"wh01": (1, 0), "wh02": (7, 2)}})
    client = p.flow("allegro").client
    offer = dict(client.offers())[sku]
    calls: list[tuple[str, Any]] = []
    for method, kind in (("change_quantity", "quantity"), ("change_publication", "publication")):
        real = getattr(client, method)

        def spy(
            command_id: str, offer_ids: list[str], value: Any, *, _real: Any = real, _kind: str = kind, **kw: Any
        ) -> Any:
            if offer in offer_ids:
                calls.append((_kind, value))
            return _real(command_id, offer_ids, value, **kw)

        monkeypatch.setattr(client, method, spy)

    converge(p)
    assert p.shopify_quantities()[sku] == 1 + 7 - 2
    assert sku in p.allegro.state()["ended"]  # 1 - 2 safety stock: nothing to sell
    assert calls == [("publication", "END")]

    set_stock(p.erp, sku, wh01=(10, 1))
    converge(p)
    assert p.shopify_quantities()[sku] == 9 + 5
    assert calls[1:] == [("quantity", 7), ("publication", "ACTIVATE")]
    assert sku not in p.allegro.state()["ended"] and p.allegro_quantities()[sku] == 7
    assert all(v >= 1 for kind, v in calls if kind == "quantity")
    assert_converged(p)


# -- 10. a duplicate delivery ------------------------------------------------------------------
def test_a_message_delivered_again_after_success_makes_no_second_call(make_stock: MakeStock) -> None:
    # Mutations caught: the idempotency record not consulted (or not written at completion): the
    # second delivery would call both channels again and dead-letter the unsold SKUs twice.
    p = make_stock()
    p.poll()
    copies = {name: p.peek(name) for name in TARGETS}
    for name in TARGETS:
        p.drain(name)
    assert_converged(p)
    shop, market = p.shopify.summary(), p.allegro.summary()

    for name in TARGETS:
        for message in copies[name]:
            p.resend(name, message)
        p.drain(name)
        assert len(p.traces(name, "duplicate")) == len(copies[name])
        assert p.dead(name) == UNSOLD
        assert p.pending(name) == 0
    assert p.shopify.summary()["requests"] == shop["requests"]
    assert p.allegro.summary()["requests"] == market["requests"]
