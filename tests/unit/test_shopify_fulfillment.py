"""The Shopify fulfilment client against the Admin API stand-in (in-process, port 0): an order
shipped with its tracking once however often it is sent, delivery and return events once,
closed and held fulfillment orders, unknown orders, auth, throttling and outages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from junction_local.standins.shopify_admin import LOCAL, ShopifyAdminStandIn
from shared.connectors.shopify_admin import ShopifyAdmin, ShopifySettings
from shared.connectors.shopify_fulfillment import (
    FulfillmentOrderClosed,
    OrderNotFound,
    ShopifyFulfillment,
    Tracking,
    order_gid,
)
from shared.errors import AwaitingPrerequisite, CredentialsRejected, RateLimited, TargetRejected, TargetUnavailable

ORDER = 820982911946154508
IDS = {"order": f"shopify-order:{ORDER}"}
TRACKING = Tracking("InPost", "680000000000000001", "https://inpost.pl/sledzenie-przesylek?number=680000000000000001")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin() -> Iterator[ShopifyAdminStandIn]:
    with ShopifyAdminStandIn(clock=Clock()) as running:
        running.seed_order(ORDER, [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}])
        yield running


def client_for(standin: ShopifyAdminStandIn) -> ShopifyFulfillment:
    return ShopifyFulfillment(
        ShopifyAdmin(ShopifySettings.from_secret(LOCAL.credentials(standin.root_url)), httpx.Client())
    )


@pytest.fixture
def shopify(standin: ShopifyAdminStandIn) -> Iterator[ShopifyFulfillment]:
    client = client_for(standin)
    yield client
    client.admin.close()


def test_shipping_fulfils_every_open_line_with_the_tracking_and_notifies_the_customer(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    called: list[str] = []
    shipped = shopify.ship(
        str(ORDER), TRACKING, notify_customer=True, ids=IDS, before_create=lambda: called.append("x")
    )

    assert shipped.created and called == ["x"]
    state = standin.order_state(ORDER)
    assert [fo["status"] for fo in state["fulfillment_orders"]] == ["CLOSED"]
    assert state["fulfillments"] == [
        {
            "id": shipped.fulfillment_ids[0],
            "status": "SUCCESS",
            "display_status": "FULFILLED",
            "tracking": [{"company": "InPost", "number": TRACKING.number, "url": TRACKING.url}],
            "notify_customer": True,
            "events": [],
        }
    ]


def test_shipping_again_finds_the_order_shipped_and_sends_nothing(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    first = shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    mutations = standin.summary()["mutations"]
    again = shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS, before_create=pytest.fail)

    assert not again.created and again.fulfillment_ids == first.fulfillment_ids
    assert standin.summary()["mutations"] == mutations
    assert standin.summary()["fulfillments_created"] == 1


def test_a_lost_answer_is_found_on_the_retry_and_never_fulfilled_twice(standin: ShopifyAdminStandIn) -> None:
    shopify = client_for(standin)

    def hold_the_answer() -> None:  # the create is made, then its answer held past the client's timeout
        standin.set_behaviour("slow", delay=3.0, count=1)

    with shopify.admin.bounded(lambda _wanted: 0.5), pytest.raises(TargetUnavailable):
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS, before_create=hold_the_answer)
    assert standin.summary()["fulfillments_created"] == 1
    standin.release()
    standin.set_behaviour("ok")

    again = shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert not again.created
    assert standin.summary()["fulfillments_created"] == 1
    assert len(standin.order_state(ORDER)["fulfillments"]) == 1


def test_an_order_the_merchant_fulfilled_by_hand_is_a_closed_fulfillment_order(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    standin.fulfil_elsewhere(ORDER, company="DPD", number="DPD-1")
    with pytest.raises(FulfillmentOrderClosed) as caught:
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert caught.value.reason == "fulfillment_order_closed"
    assert caught.value.details["fulfillment_order_statuses"] == ["CLOSED"]


def test_shopify_refuses_to_fulfil_a_closed_fulfillment_order_and_the_client_reads_why(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    fulfillment_order = standin.order_state(ORDER)["fulfillment_orders"][0]["id"]
    standin.fulfil_elsewhere(ORDER)
    data = shopify.admin.graphql(
        "mutation F($f: FulfillmentInput!) {"
        " fulfillmentCreate(fulfillment: $f) { fulfillment { id } userErrors { field message } } }",
        {"f": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fulfillment_order}]}},
    )
    result = data["fulfillmentCreate"]
    assert result["fulfillment"] is None
    assert result["userErrors"][0]["field"] == ["fulfillment", "lineItemsByFulfillmentOrder", "0", "fulfillmentOrderId"]


def test_an_order_on_hold_waits_for_the_merchant(shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn) -> None:
    fulfillment_order = standin.order_state(ORDER)["fulfillment_orders"][0]["id"]
    standin.set_fulfillment_order_status(fulfillment_order, "ON_HOLD")
    with pytest.raises(AwaitingPrerequisite) as caught:
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert caught.value.reason == "fulfillment_on_hold"

    standin.set_fulfillment_order_status(fulfillment_order, "OPEN")
    assert shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS).created


def test_an_order_shipped_from_two_locations_gets_a_fulfilment_per_location(standin: ShopifyAdminStandIn) -> None:
    second = standin.add_location("Warehouse DE")
    standin.seed_order(1001, [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": 1, "location_id": second}])
    shipped = client_for(standin).ship("1001", TRACKING, notify_customer=False, ids=IDS)

    assert shipped.created and len(shipped.fulfillment_ids) == 2
    assert {fo["status"] for fo in standin.order_state(1001)["fulfillment_orders"]} == {"CLOSED"}


def test_an_unknown_order_is_not_found(shopify: ShopifyFulfillment) -> None:
    assert shopify.order("42") is None
    with pytest.raises(OrderNotFound):
        shopify.ship("42", TRACKING, notify_customer=True, ids=IDS)
    with pytest.raises(ValueError):
        order_gid("shopify:42")


def test_delivered_is_one_event_on_the_fulfilment_carrying_the_number(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    shipped = shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    marked = shopify.mark(str(ORDER), TRACKING.number, "DELIVERED", None, ids=IDS)
    again = shopify.mark(str(ORDER), TRACKING.number, "DELIVERED", None, ids=IDS, before_create=pytest.fail)

    assert marked.created and marked.fulfillment_id == shipped.fulfillment_ids[0] and marked.event_id
    assert not again.created
    fulfilment = standin.order_state(ORDER)["fulfillments"][0]
    assert fulfilment["display_status"] == "DELIVERED"
    assert fulfilment["events"] == [{"status": "DELIVERED", "message": None}]


def test_a_return_is_a_failure_event_with_its_message(
    shopify: ShopifyFulfillment, standin: ShopifyAdminStandIn
) -> None:
    shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    shopify.mark(str(ORDER), TRACKING.number, "FAILURE", "Returned to sender", ids=IDS)
    assert standin.order_state(ORDER)["fulfillments"][0]["events"] == [
        {"status": "FAILURE", "message": "Returned to sender"}
    ]


def test_an_event_before_the_fulfilment_waits_for_it(shopify: ShopifyFulfillment) -> None:
    with pytest.raises(AwaitingPrerequisite) as caught:
        shopify.mark(str(ORDER), TRACKING.number, "DELIVERED", None, ids=IDS)
    assert caught.value.reason == "awaiting_fulfillment"
    with pytest.raises(ValueError):
        shopify.mark(str(ORDER), TRACKING.number, "RETURNED", None, ids=IDS)


def test_a_refused_token_is_credentials_rejected(standin: ShopifyAdminStandIn) -> None:
    shopify = client_for(standin)
    standin.set_access_token("shpat_rotated")
    with pytest.raises(CredentialsRejected):
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert standin.summary()["fulfillments_created"] == 0


def test_a_429_and_a_throttled_bucket_are_rate_limited_with_the_wait(standin: ShopifyAdminStandIn) -> None:
    shopify = client_for(standin)
    standin.set_behaviour("rate_limited", retry_after=3.0, count=1)
    with pytest.raises(RateLimited) as caught:
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert caught.value.retry_after == 3.0

    small = ShopifyAdminStandIn(maximum_available=200, restore_rate=10).start()
    try:
        small.seed_order(ORDER, [{"sku": "SKU-1", "quantity": 1}])
        tight = client_for(small)
        tight.order(str(ORDER))  # about 180 of 200 points
        with pytest.raises(RateLimited) as throttled:
            tight.order(str(ORDER))
        assert throttled.value.retry_after is not None and throttled.value.retry_after > 0
        assert small.summary()["fulfillments_created"] == 0
    finally:
        small.stop()


def test_a_5xx_is_transient_and_nothing_is_fulfilled(standin: ShopifyAdminStandIn) -> None:
    shopify = client_for(standin)
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        shopify.ship(str(ORDER), TRACKING, notify_customer=True, ids=IDS)
    assert standin.summary()["fulfillments_created"] == 0


def test_the_order_read_fits_the_single_query_cost_limit(shopify: ShopifyFulfillment) -> None:
    shopify.order(str(ORDER))
    requested = max(shopify.admin._costs.values())
    assert requested <= 200


def test_unknown_fields_are_refused_as_shopify_validates_documents(shopify: ShopifyFulfillment) -> None:
    with pytest.raises(TargetRejected) as caught:
        shopify.admin.graphql('query { order(id: "gid://shopify/Order/1") { trackingNumber } }', {})
    assert caught.value.details["codes"] == ["undefinedField"]
