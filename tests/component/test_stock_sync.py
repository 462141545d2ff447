"""Stock sync end to end in one process: ERP poll -> both target queues -> Shopify and Allegro.

Every test runs on moto and on the local hot path (the ``aws`` fixture), against stand-ins as
strict as the real APIs (compare-and-set, cost throttle, asynchronous commands, per-minute limits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from junction_local.standins.allegro import AllegroStandIn
from junction_local.standins.erp import DEFAULT_ITEMS, ErpStandIn
from junction_local.standins.shopify_admin import ShopifyAdminStandIn
from tests.component.stock_harness import StockPipeline

SKUS = 30


@pytest.fixture
def stock(aws: str) -> Iterator[StockPipeline]:
    with ErpStandIn() as erp, ShopifyAdminStandIn() as shopify, AllegroStandIn() as allegro:
        erp.seed_items(SKUS, prefix="SKU-")
        shopify.seed_catalogue(SKUS, prefix="SKU-")
        allegro.seed_offers(SKUS, prefix="SKU-", quantity=1)
        yield StockPipeline.start(erp, shopify, allegro)


def converge(p: StockPipeline) -> None:
    p.poll()
    p.drain("shopify")
    p.drain("allegro")


def test_a_full_sync_makes_every_channel_equal_to_the_erp(stock: StockPipeline) -> None:
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
        assert sorted(json.loads(m["MessageAttributes"]["junction-entity-ids"]["StringValue"])["key"] for m in dead) == sorted(DEFAULT_ITEMS)
