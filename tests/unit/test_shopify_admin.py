"""The Shopify Admin inventory client against the stand-in, in process on a free port: the
compare-and-set, idempotency, cost throttling and version rules as Shopify documents them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from junction_local.standins.shopify_admin import (
    ACCESS_TOKEN,
    CURRENT_VERSION,
    DEFAULT_LOCATION_ID,
    ITEM_BASE,
    LOCAL,
    MAX_BULK_QUERIES,
    MAXIMUM_AVAILABLE,
    RESTORE_RATE,
    ShopifyAdminStandIn,
)
from shared.connectors.shopify_admin import (
    BULK_VARIANTS,
    QuantityChange,
    SetResult,
    ShopifyAdmin,
    ShopifySettings,
    ThrottleStatus,
)
from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    IdempotencyConflict,
    InProgressElsewhere,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
)

LOC = DEFAULT_LOCATION_ID
UNKNOWN_ITEM = f"gid://shopify/InventoryItem/{ITEM_BASE + 999_999}"
SET_DOC = """
mutation S($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) %s {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange item { id } location { id } } }
    userErrors { field message code }
  }
}
"""


@pytest.fixture
def shop() -> Iterator[ShopifyAdminStandIn]:
    with ShopifyAdminStandIn() as standin:
        yield standin


def settings(shop: ShopifyAdminStandIn, **override: str) -> ShopifySettings:
    return ShopifySettings.from_secret({**LOCAL.credentials(shop.root_url), **override})


def admin(shop: ShopifyAdminStandIn, **override: str) -> ShopifyAdmin:
    return ShopifyAdmin(settings(shop, **override))


def post(
    shop: ShopifyAdminStandIn,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    version: str = CURRENT_VERSION,
    token: str = ACCESS_TOKEN,
) -> httpx.Response:
    return httpx.post(
        shop.graphql_url(version),
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
    )


def codes(answer: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in answer.get("errors", [])]


def quantity(item: str, value: int, change_from: int | None, **extra: Any) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": LOC, "quantity": value, "changeFromQuantity": change_from, **extra}


def set_input(*quantities: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"input": {"name": "available", "reason": "correction", "quantities": list(quantities), **extra}}


def items(shop: ShopifyAdminStandIn, count: int, stock: int = 5) -> list[str]:
    shop.seed_catalogue(count, quantity=stock)
    return [shop.item_id(f"SKU-{n:06d}") for n in range(1, count + 1)]


# -- setting and reading -----------------------------------------------------------------------
def test_quantities_set_are_read_back(shop: ShopifyAdminStandIn) -> None:
    first, second, third = items(shop, 3)
    nowhere = shop.add_variant("NOT-STOCKED", quantity=None)
    client = admin(shop)

    result = client.set_quantities(
        [QuantityChange(first, LOC, 7, 5), QuantityChange(second, LOC, 0, 5), QuantityChange(third, LOC, 9, None)],
        idempotency_key="sync-1",
        reference="gid://junction/StockSync/1",
    )

    assert result == SetResult(applied=True, throttle=client.last_throttle)
    assert client.read_available([first, second, third, nowhere, UNKNOWN_ITEM], LOC) == {
        first: 7,
        second: 0,
        third: 9,
        nowhere: None,  # no level at the location
    }  # the unknown item is left out
    assert shop.quantities() == {"SKU-000001": 7, "SKU-000002": 0, "SKU-000003": 9, "NOT-STOCKED": None}
    assert shop.summary()["quantities_set"] == 3


def test_a_stale_change_from_fails_the_whole_call_and_changes_nothing(shop: ShopifyAdminStandIn) -> None:
    first, second = items(shop, 2)
    shop.set_quantities({"SKU-000002": 4})  # a shop sale since we last read
    client = admin(shop)
    changes = [QuantityChange(first, LOC, 7, 5), QuantityChange(second, LOC, 8, 5)]

    result = client.set_quantities(changes, idempotency_key="sync-1")

    assert not result.applied
    assert result.mismatched == [second]
    assert shop.quantities() == {"SKU-000001": 5, "SKU-000002": 4}  # the matching one was not set either
    assert shop.summary()["compare_mismatches"] == 1
    now = client.read_available([first, second], LOC)
    retried = client.set_quantities(
        [QuantityChange(c.inventory_item_id, LOC, c.quantity, now[c.inventory_item_id]) for c in changes],
        idempotency_key="sync-1-retry",
    )
    assert retried.applied
    assert shop.quantities() == {"SKU-000001": 7, "SKU-000002": 8}


@pytest.mark.parametrize("version", ["2026-04", "2026-07", "2026-10"])
def test_from_2026_04_change_from_and_the_idempotent_directive_are_mandatory(
    shop: ShopifyAdminStandIn, version: str
) -> None:
    (item,) = items(shop, 1)
    without_key = post(shop, SET_DOC % "", set_input(quantity(item, 7, 5)), version=version).json()
    without_change_from = post(
        shop,
        SET_DOC % '@idempotent(key: "a")',
        set_input({"inventoryItemId": item, "locationId": LOC, "quantity": 7}),
        version=version,
    ).json()
    with_compare = post(
        shop,
        SET_DOC % '@idempotent(key: "b")',
        set_input(quantity(item, 7, 5, compareQuantity=5)),
        version=version,
    ).json()

    assert codes(without_key) == ["BAD_REQUEST"] and without_key["data"] is None
    assert codes(without_change_from) == ["INVALID_FIELD_ARGUMENTS"] and without_change_from["data"] is None
    assert codes(with_compare) == ["INVALID_VARIABLE"]  # compareQuantity is gone from the schema
    assert shop.quantities() == {"SKU-000001": 5}
    assert shop.summary()["mutations"] == 0


def test_2026_01_takes_either_compare_and_wants_one_of_them(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    old = {"version": "2026-01"}

    neither = post(shop, SET_DOC % "", set_input({"inventoryItemId": item, "locationId": LOC, "quantity": 7}), **old)
    stale = post(
        shop,
        SET_DOC % "",
        set_input({"inventoryItemId": item, "locationId": LOC, "quantity": 7, "compareQuantity": 4}),
        **old,
    )
    assert [e["code"] for e in neither.json()["data"]["inventorySetQuantities"]["userErrors"]] == [
        "COMPARE_QUANTITY_REQUIRED"
    ]
    assert [e["code"] for e in stale.json()["data"]["inventorySetQuantities"]["userErrors"]] == [
        "COMPARE_QUANTITY_STALE"
    ]
    assert shop.quantities() == {"SKU-000001": 5}

    ignored = post(
        shop,
        SET_DOC % "",
        set_input({"inventoryItemId": item, "locationId": LOC, "quantity": 6}, ignoreCompareQuantity=True),
        **old,
    ).json()
    assert ignored["data"]["inventorySetQuantities"]["userErrors"] == []
    assert (
        admin(shop, api_version="2026-01")
        .set_quantities([QuantityChange(item, LOC, 7, 6)], idempotency_key="k")
        .applied
    )
    assert shop.quantities() == {"SKU-000001": 7}


# -- idempotency -------------------------------------------------------------------------------
def test_the_same_key_replays_the_first_result_without_applying_again(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    client = admin(shop)
    change = [QuantityChange(item, LOC, 7, 5)]
    assert client.set_quantities(change, idempotency_key="sync-7").applied
    shop.set_quantities({"SKU-000001": 3})  # sold meanwhile: applying again would now be stale

    replayed = client.set_quantities(change, idempotency_key="sync-7")  # e.g. our answer was lost

    assert replayed.applied and replayed.mismatched == []
    assert shop.quantities() == {"SKU-000001": 3}  # not set to 7 a second time
    assert shop.summary()["idempotent_replays"] == 1
    assert shop.summary()["adjustment_groups"] == 1


def test_the_same_key_with_other_changes_is_a_conflict(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    client = admin(shop)
    client.set_quantities([QuantityChange(item, LOC, 7, 5)], idempotency_key="sync-7")

    with pytest.raises(IdempotencyConflict):
        client.set_quantities([QuantityChange(item, LOC, 8, 7)], idempotency_key="sync-7")
    assert shop.quantities() == {"SKU-000001": 7}


def test_keys_are_kept_for_24_hours(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    client = admin(shop)
    change = [QuantityChange(item, LOC, 7, 5)]
    client.set_quantities(change, idempotency_key="nightly")
    shop.set_quantities({"SKU-000001": 5})

    shop.advance_clock(23 * 3600)
    client.set_quantities(change, idempotency_key="nightly")
    assert shop.quantities() == {"SKU-000001": 5}  # still a replay

    shop.advance_clock(3600 + 1)
    assert client.set_quantities(change, idempotency_key="nightly").applied
    assert shop.quantities() == {"SKU-000001": 7}  # the key had expired: a new operation
    assert shop.summary()["adjustment_groups"] == 2


def test_a_key_still_being_applied_is_in_progress_elsewhere(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    shop.set_behaviour("slow", delay=30, count=1)  # the first attempt holds after taking its key
    change = [QuantityChange(item, LOC, 7, 5)]
    first: list[SetResult] = []
    attempt = threading.Thread(target=lambda: first.append(admin(shop).set_quantities(change, idempotency_key="k")))
    attempt.start()
    try:
        for _ in range(1000):  # until the first attempt holds the key (a bound, not a timing)
            if shop.in_progress() == ["k"]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the first attempt never took its key")
        with pytest.raises(InProgressElsewhere):
            admin(shop).set_quantities(change, idempotency_key="k")
    finally:
        shop.release()
        attempt.join(timeout=10)
    assert first[0].applied
    assert shop.quantities() == {"SKU-000001": 7}


def test_a_failed_key_sent_again_on_2026_10_asks_for_a_new_key(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    client = admin(shop, api_version="2026-10")
    stale = [QuantityChange(item, LOC, 7, 4)]
    assert client.set_quantities(stale, idempotency_key="k").mismatched == [item]

    again = client.set_quantities(stale, idempotency_key="k")

    assert again == SetResult(applied=False, throttle=client.last_throttle, retry_with_new_key=True)


# -- refusals ----------------------------------------------------------------------------------
def test_more_than_250_quantities_are_refused(shop: ShopifyAdminStandIn) -> None:
    ids = items(shop, 251)
    with pytest.raises(ValueError, match="250"):
        admin(shop).set_quantities([QuantityChange(i, LOC, 1, 5) for i in ids], idempotency_key="k")

    answer = post(shop, SET_DOC % '@idempotent(key: "k")', set_input(*(quantity(i, 1, 5) for i in ids))).json()

    assert codes(answer) == ["MAX_INPUT_SIZE_EXCEEDED"]
    assert answer["errors"][0]["path"] == ["inventorySetQuantities", "input", "quantities"]
    assert set(shop.quantities().values()) == {5}


def test_unknown_and_unstocked_items_are_reported_and_nothing_is_set(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    nowhere = shop.add_variant("NOT-STOCKED", quantity=None)

    result = admin(shop).set_quantities(
        [
            QuantityChange(item, LOC, 7, 5),
            QuantityChange(UNKNOWN_ITEM, LOC, 1, None),
            QuantityChange(nowhere, LOC, 1, None),
        ],
        idempotency_key="k",
    )

    assert (result.applied, result.unknown, result.not_stocked, result.mismatched) == (
        False,
        [UNKNOWN_ITEM],
        [nowhere],
        [],
    )
    assert shop.quantities() == {"SKU-000001": 5, "NOT-STOCKED": None}


@pytest.mark.parametrize(
    ("reason", "location", "code"),
    [("bogus", LOC, "INVALID_REASON"), ("correction", "gid://shopify/Location/99", "INVALID_LOCATION")],
)
def test_other_user_errors_are_permanent(shop: ShopifyAdminStandIn, reason: str, location: str, code: str) -> None:
    (item,) = items(shop, 1)
    with pytest.raises(TargetRejected) as refused:
        admin(shop).set_quantities([QuantityChange(item, location, 7, 5)], idempotency_key="k", reason=reason)
    assert refused.value.details["codes"] == [code]
    assert shop.quantities() == {"SKU-000001": 5}


def test_an_invalid_document_is_a_validation_error_with_no_effect(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    unknown_field = post(
        shop,
        SET_DOC.replace("quantityAfterChange", "quantityAfter") % '@idempotent(key: "k")',
        set_input(quantity(item, 7, 5)),
    ).json()
    syntax = post(shop, "{ productVariants(first: 1) { nodes { id }").json()

    assert codes(unknown_field) == ["undefinedField"] and "data" not in unknown_field
    assert syntax["errors"][0]["locations"] and "data" not in syntax
    assert unknown_field["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == MAXIMUM_AVAILABLE
    assert shop.quantities() == {"SKU-000001": 5}
    with pytest.raises(TargetRejected) as refused:
        admin(shop).graphql("{ productVariants(first: 1) { nodes { id title foo } } }", {})
    assert refused.value.details["codes"] == ["undefinedField"]


# -- cost and throttling -----------------------------------------------------------------------
def test_a_burst_is_throttled_and_goes_through_after_the_computed_wait() -> None:
    with ShopifyAdminStandIn(maximum_available=20, restore_rate=10) as shop:
        (item,) = items(shop, 1, stock=0)
        client = admin(shop)
        applied = 0
        with pytest.raises(RateLimited) as throttled:  # each mutation costs 10; the bucket holds 20
            for n in range(1, 50):
                client.set_quantities([QuantityChange(item, LOC, n, n - 1)], idempotency_key=f"burst-{n}")
                applied = n
        status = client.last_throttle
        assert status is not None
        assert (status.maximum_available, status.restore_rate) == (20.0, 10.0)
        retry_after = throttled.value.retry_after
        assert retry_after is not None
        assert retry_after == pytest.approx((10 - status.currently_available) / 10, abs=0.002)
        assert 0 < client.wait_seconds(10) <= retry_after
        assert shop.quantities() == {"SKU-000001": applied}  # the throttled call had no effect
        assert shop.summary()["throttled"] == 1

        time.sleep(retry_after)
        n = applied + 1
        assert client.set_quantities([QuantityChange(item, LOC, n, n - 1)], idempotency_key=f"burst-{n}").applied


def test_a_query_above_the_single_query_limit_is_refused_unpaid(shop: ShopifyAdminStandIn) -> None:
    ids = {"ids": items(shop, 250)}  # 250 x 5 objects: 1250 points
    deep = """query Deep($ids: [ID!]!) {
      nodes(ids: $ids) { ... on InventoryItem { variant { inventoryItem { variant { inventoryItem { id } } } } } }
    }"""

    answer = post(shop, deep, ids).json()

    assert codes(answer) == ["MAX_COST_EXCEEDED"]
    assert answer["errors"][0]["extensions"]["maxCost"] == 1000
    assert answer["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == MAXIMUM_AVAILABLE
    with pytest.raises(TargetRejected) as refused:
        admin(shop).graphql(deep, ids)
    assert refused.value.details["codes"] == ["MAX_COST_EXCEEDED"]


def test_every_answer_reports_the_bucket(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    client = admin(shop)
    client.read_available([item], LOC)
    assert client.last_throttle is not None
    assert client.last_throttle.maximum_available == MAXIMUM_AVAILABLE
    assert client.last_throttle.restore_rate == RESTORE_RATE
    assert client.last_throttle.currently_available < MAXIMUM_AVAILABLE


def test_throttle_status_arithmetic() -> None:
    status = ThrottleStatus(maximum_available=2000, currently_available=40, restore_rate=100)
    assert status.wait_seconds(10) == 0
    assert status.wait_seconds(502) == pytest.approx(4.62)
    assert status.wait_seconds(502, elapsed=2) == pytest.approx(2.62)
    assert status.wait_seconds(502, elapsed=60) == 0
    with pytest.raises(ValueError):
        status.wait_seconds(2001)


# -- paging ------------------------------------------------------------------------------------
def test_variants_pages_over_every_variant_once(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(600)
    shop.add_variant(None)  # a variant without a sku is skipped
    before = shop.summary()["requests"]

    found = list(admin(shop).variants(page_size=250))

    assert len(found) == 600 and len({sku for sku, _ in found}) == 600
    assert dict(found)["SKU-000600"] == shop.item_id("SKU-000600")
    assert shop.summary()["requests"] - before == 3


def test_long_reads_wait_for_the_bucket_instead_of_being_throttled() -> None:
    with ShopifyAdminStandIn(maximum_available=1100, restore_rate=2000) as shop:
        ids = items(shop, 600, stock=3)
        waits: list[float] = []

        def pause(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        client = ShopifyAdmin(settings(shop), pause=pause)

        assert len(list(client.variants())) == 600  # 502 points a page, 1100 in the bucket
        assert set(client.read_available(ids, LOC).values()) == {3}  # 750 points per 250 items

        assert waits  # it waited for the bucket rather than give up halfway


# -- bulk query operations ---------------------------------------------------------------------
RUN_BULK = """
mutation Run($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message code } }
}
"""
BULK_STATUS = """
query Status($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount fileSize url partialDataUrl completedAt }
}
"""


def run_bulk(shop: ShopifyAdminStandIn, query: str = BULK_VARIANTS) -> dict[str, Any]:
    return dict(post(shop, RUN_BULK, {"query": query}).json()["data"]["bulkOperationRunQuery"])


def bulk_status(shop: ShopifyAdminStandIn, operation_id: str) -> dict[str, Any]:
    """The operation once it has stopped running (a condition polled for, not a duration)."""
    for _ in range(2000):
        found = dict(post(shop, BULK_STATUS, {"id": operation_id}).json()["data"]["bulkOperation"])
        if found["status"] not in ("CREATED", "RUNNING"):
            return found
        time.sleep(0.005)
    raise AssertionError("the bulk operation did not finish")


def test_a_bulk_read_returns_every_variant_with_a_sku_once(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(1200)
    shop.add_variant(None)  # written to the file, skipped by the client
    seen: list[httpx.Request] = []
    client = ShopifyAdmin(settings(shop), httpx.Client(event_hooks={"request": [seen.append]}))

    found = list(client.bulk_variants(poll_seconds=0.01))

    assert len(found) == 1200 and len(set(found)) == 1200
    assert dict(found) == {f"SKU-{n:06d}": shop.item_id(f"SKU-{n:06d}") for n in range(1, 1201)}
    download = seen[-1]
    assert (download.method, download.url.path) == ("GET", "/_standin/bulk/1.jsonl")
    assert "X-Shopify-Access-Token" not in download.headers  # a signed URL: the token stays with the API
    assert shop.bulk_operations() == [
        {
            "id": "gid://shopify/BulkOperation/1",
            "status": "COMPLETED",
            "objectCount": 1201,
            "total": 1201,
            "errorCode": None,
        }
    ]
    assert (shop.summary()["bulk_operations"], shop.summary()["bulk_downloads"]) == (1, 1)


def test_a_bulk_query_runs_asynchronously_and_writes_shopifys_jsonl(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(3)
    started = post(shop, RUN_BULK, {"query": BULK_VARIANTS}).json()
    operation = started["data"]["bulkOperationRunQuery"]["bulkOperation"]
    assert operation["status"] == "CREATED" and operation["id"].startswith("gid://shopify/BulkOperation/")
    assert started["extensions"]["cost"]["requestedQueryCost"] == 10  # a mutation, whatever it reads
    polled = post(shop, BULK_STATUS, {"id": operation["id"]}).json()
    assert polled["extensions"]["cost"]["requestedQueryCost"] == 1

    done = bulk_status(shop, operation["id"])
    body = httpx.get(done["url"])

    assert done["status"] == "COMPLETED" and done["errorCode"] is None and done["partialDataUrl"] is None
    assert (done["objectCount"], done["rootObjectCount"]) == ("3", "3")  # UnsignedInt64, as strings
    assert done["fileSize"] == str(len(body.content))
    assert body.status_code == 200
    assert body.text.splitlines()[0] == (
        '{"id":"gid://shopify/ProductVariant/44000000001","sku":"SKU-000001",'
        '"inventoryItem":{"id":"gid://shopify/InventoryItem/46000000001"}}'
    )
    assert len(body.text.splitlines()) == 3
    current = post(shop, "{ currentBulkOperation { id status } }").json()["data"]["currentBulkOperation"]
    node_query = "query N($id: ID!) { node(id: $id) { ... on BulkOperation { status } } }"
    node = post(shop, node_query, {"id": operation["id"]}).json()
    assert current == {"id": operation["id"], "status": "COMPLETED"}
    assert node["data"]["node"] == {"status": "COMPLETED"}

    nothing = bulk_status(
        shop, run_bulk(shop, '{ productVariants(query: "sku:NOPE") { nodes { id } } }')["bulkOperation"]["id"]
    )
    assert (nothing["status"], nothing["objectCount"], nothing["url"]) == ("COMPLETED", "0", None)  # no file


def test_a_bulk_query_while_the_apps_slots_are_taken_is_in_progress_elsewhere(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(10)
    shop.set_bulk_behaviour("hold")
    client = admin(shop)
    running = [client.start_bulk_query(BULK_VARIANTS) for _ in range(MAX_BULK_QUERIES)]  # five from 2026-01

    with pytest.raises(InProgressElsewhere) as busy:
        list(client.bulk_variants(poll_seconds=0.01))
    refused = run_bulk(shop)

    assert busy.value.details["codes"] == ["OPERATION_IN_PROGRESS"]
    assert refused["bulkOperation"] is None
    assert refused["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    assert all(r in refused["userErrors"][0]["message"] for r in running)
    assert [o["status"] for o in shop.bulk_operations()] == ["RUNNING"] * MAX_BULK_QUERIES

    shop.set_bulk_behaviour("ok")
    assert {bulk_status(shop, r)["status"] for r in running} == {"COMPLETED"}
    assert len(list(client.bulk_variants(poll_seconds=0.01))) == 10  # a slot is free again


def test_a_failed_bulk_query_is_unavailable_and_keeps_its_partial_data(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(1200)
    shop.set_bulk_behaviour("fail", error_code="INTERNAL_SERVER_ERROR", fail_after=500)

    with pytest.raises(TargetUnavailable) as failed:
        list(admin(shop).bulk_variants(poll_seconds=0.01))

    assert failed.value.details["status"] == "FAILED"
    assert failed.value.details["error_code"] == "INTERNAL_SERVER_ERROR"
    operation = bulk_status(shop, failed.value.details["operation"])
    assert (operation["url"], operation["objectCount"]) == (None, "500")
    partial = httpx.get(operation["partialDataUrl"])
    assert partial.status_code == 200 and len(partial.text.splitlines()) == 500

    shop.set_bulk_behaviour("fail", error_code="ACCESS_DENIED")
    with pytest.raises(CredentialsRejected):  # missing access scopes: the app's grants need fixing
        list(admin(shop).bulk_variants(poll_seconds=0.01))


def test_a_bulk_query_not_done_in_time_is_canceled_and_unavailable(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(10)
    shop.set_bulk_behaviour("hold")

    with pytest.raises(TargetUnavailable) as late:
        list(admin(shop).bulk_variants(poll_seconds=0.01, timeout=0.05))

    assert late.value.details["status"] == "RUNNING"
    assert [o["status"] for o in shop.bulk_operations()] == ["CANCELED"]  # its slot is free
    with pytest.raises(ValueError):
        admin(shop).bulk_variants(timeout=0)


def test_bulk_queries_fail_after_ten_days_and_their_files_expire_after_a_week(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(5)
    done = bulk_status(shop, run_bulk(shop)["bulkOperation"]["id"])
    shop.set_bulk_behaviour("hold")
    stuck = run_bulk(shop)["bulkOperation"]["id"]

    shop.advance_clock(7 * 24 * 3600)

    expired = httpx.get(done["url"])
    assert expired.status_code == 400 and b"<Code>ExpiredToken</Code>" in expired.content
    assert bulk_status(shop, done["id"])["status"] == "EXPIRED"
    with pytest.raises(TargetRejected):
        list(admin(shop).bulk_results(done["url"]))
    assert httpx.get(f"{shop.root_url}/_standin/bulk/99.jsonl").status_code == 404

    shop.advance_clock(3 * 24 * 3600)
    timed_out = bulk_status(shop, stuck)
    assert (timed_out["status"], timed_out["errorCode"]) == ("FAILED", "TIMEOUT")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("{ productVariants { nodes { id price } } }", "Cannot query field 'price'"),  # validated like any query
        ("{ productVariants { nodes { id } ", "Syntax Error"),
        ('{ location(id: "gid://shopify/Location/1") { id } }', "at least one connection"),
        ('{ nodes(ids: ["gid://shopify/ProductVariant/1"]) { id } }', "node and nodes"),
        ("{ a: productVariants { nodes { id } } b: locations { nodes { id } } }", "single top-level field"),
        ("mutation { bulkOperationCancel(id: 1) { userErrors { message } } }", "query operation"),
        ("query V($q: String) { productVariants(query: $q) { nodes { id } } }", "variables"),
        ("{ locations { nodes { id } } }", "productVariants, not locations"),  # beyond the stand-in
        ("{ productVariants { nodes { id inventoryQuantity } } }", "does not include the field inventoryQuantity"),
    ],
)
def test_a_bulk_query_shopify_would_refuse_is_an_invalid_user_error(
    shop: ShopifyAdminStandIn, query: str, reason: str
) -> None:
    refused = run_bulk(shop, query)

    assert refused["bulkOperation"] is None
    assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("INVALID", ["query"])]
    assert reason in refused["userErrors"][0]["message"]
    with pytest.raises(TargetRejected) as rejected:
        admin(shop).start_bulk_query(query)
    assert rejected.value.details["codes"] == ["INVALID"]
    assert shop.bulk_operations() == []


def test_lookup_reads_quantities_by_sku(shop: ShopifyAdminStandIn) -> None:
    shop.seed_catalogue(3, quantity=4)
    shop.set_quantities({"SKU-000002": 9})
    shop.add_variant("NOT-STOCKED", quantity=None)
    lookup = f"{shop.root_url}/_standin/lookup"

    found = httpx.post(lookup, json={"skus": ["SKU-000001", "SKU-000002", "NOT-STOCKED", "NOPE"]})

    assert found.status_code == 200
    assert found.json() == {
        "quantities": {"SKU-000001": 4, "SKU-000002": 9, "NOT-STOCKED": None},
        "unknown": ["NOPE"],
    }
    for body in ({}, {"skus": "SKU-000001"}, {"skus": [1]}, {"skus": [], "location_id": "gid://shopify/Location/9"}):
        assert httpx.post(lookup, json=body).status_code == 400, body
    assert shop.summary()["requests"] == 0  # not an API request: no cost, no behaviour


# -- the target misbehaving --------------------------------------------------------------------
def test_down_is_unavailable(shop: ShopifyAdminStandIn) -> None:
    shop.set_behaviour("down")
    with pytest.raises(TargetUnavailable):
        list(admin(shop).variants())


def test_rate_limited_honours_the_decimal_retry_after(shop: ShopifyAdminStandIn) -> None:
    shop.set_behaviour("rate_limited", retry_after=30)  # longer than a long read waits by itself
    with pytest.raises(RateLimited) as limited:
        admin(shop).read_available([UNKNOWN_ITEM], LOC)
    assert limited.value.retry_after == 30.0
    assert shop.summary()["errors_429"] == 1


def test_flaky_fails_a_seeded_fraction_then_serves(shop: ShopifyAdminStandIn) -> None:
    (item,) = items(shop, 1)
    shop.set_behaviour("flaky", rate=1.0, count=1)
    client = admin(shop)
    with pytest.raises(TargetUnavailable):
        client.read_available([item], LOC)
    assert client.read_available([item], LOC) == {item: 5}

    shop.set_behaviour("flaky", rate=0.5, seed=7)
    outcomes = []
    for _ in range(20):
        try:
            client.read_available([item], LOC)
            outcomes.append(True)
        except TargetUnavailable:
            outcomes.append(False)
    assert True in outcomes and False in outcomes


def test_a_refused_token_is_read_again_once_then_rejected(shop: ShopifyAdminStandIn) -> None:
    with pytest.raises(CredentialsRejected):
        admin(shop, access_token="shpat_wrong").read_available([UNKNOWN_ITEM], LOC)

    shop.set_access_token("shpat_rotated")
    reads: list[bool] = []

    def source(refresh: bool) -> ShopifySettings:
        reads.append(refresh)
        return settings(shop, access_token="shpat_rotated" if refresh else ACCESS_TOKEN)

    assert ShopifyAdmin(source).read_available([UNKNOWN_ITEM], LOC) == {}
    assert reads == [False, True]


def test_versions_outside_the_supported_set(shop: ShopifyAdminStandIn) -> None:
    retired = post(shop, "{ locations(first: 5) { nodes { id name } } }", version="2025-01")
    assert retired.status_code == 200
    assert retired.headers["X-Shopify-API-Version"] == "2026-01"  # falls forward to the oldest supported
    assert post(shop, "{ locations(first: 1) { nodes { id } } }", version="2026-05").status_code == 404
    with pytest.raises(TargetRejected):
        admin(shop, api_version="2027-01").locations()


def test_locations_list_the_default_and_added_ones(shop: ShopifyAdminStandIn) -> None:
    second = shop.add_location("Store Kraków")
    assert admin(shop).locations() == [(LOC, "Warehouse PL"), (second, "Store Kraków")]


# -- control and settings ----------------------------------------------------------------------
def test_control_endpoints_seed_a_large_catalogue_and_play_a_sale(shop: ShopifyAdminStandIn) -> None:
    seeded = httpx.post(f"{shop.root_url}/_standin/catalogue/seed", json={"count": 100_000, "quantity": 2})
    assert seeded.status_code == 201 and seeded.json()["variants"] == 100_000

    sale = httpx.post(f"{shop.root_url}/_standin/quantities", json={"SKU-100000": 1})
    unknown = httpx.post(f"{shop.root_url}/_standin/quantities", json={"NOPE": 1})
    summary = httpx.get(f"{shop.root_url}/_standin/summary").json()

    assert sale.status_code == 200 and unknown.status_code == 400
    assert shop.quantities()["SKU-100000"] == 1
    assert summary["limits"] == {"maximum_available": MAXIMUM_AVAILABLE, "restore_rate": RESTORE_RATE}
    assert httpx.post(f"{shop.root_url}/_standin/behaviour", json={"mode": "sideways"}).status_code == 400


def test_settings_come_from_the_secret(shop: ShopifyAdminStandIn) -> None:
    good = settings(shop)
    assert good.graphql_url == shop.graphql_url(CURRENT_VERSION)
    assert "shpat" not in repr(good)
    for broken in ({"access_token": ""}, {"api_version": "latest"}, {"location_id": "1"}, {"base_url": "shop"}):
        with pytest.raises(ConfigurationError):
            ShopifySettings.from_secret({**LOCAL.credentials(shop.root_url), **broken})
    with pytest.raises(ConfigurationError):
        ShopifySettings.from_secret(None)
