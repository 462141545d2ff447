"""Allegro orders: the client against the stand-in (event journal, stats, checkout forms), the
checkout form -> Order mapping, and the poller's source (what a page of events becomes)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from functions.erp_stock_to_channels.declaration import ALLEGRO_API, INTEGRATION
from functions.orders.allegro_source import BEGINNING, AllegroOrderSource, build
from junction_local.standins.allegro import EVENT_RETENTION_SECONDS, LOCAL, MEDIA_TYPE, AllegroStandIn
from shared.connectors.allegro import (
    AllegroClient,
    CheckoutFormNotFound,
    UnmappedSku,
    order_from_checkout_form,
    unknown_checkout_form_fields,
)
from shared.declaration import secret_id
from shared.errors import RateLimited, TargetRejected, TargetUnavailable, ValidationFailed
from shared.parameters import Secrets as ParameterSecrets
from shared.polling import CursorState, Page, PollerContext

SKUS = ("MUG-BLUE", "TEAPOT-L")


@pytest.fixture
def standin() -> Iterator[AllegroStandIn]:
    with AllegroStandIn() as running:
        for sku in SKUS:
            running.add_offer(sku, quantity=10)
        yield running


@pytest.fixture
def secret(standin: AllegroStandIn) -> dict[str, Any]:
    return dict(LOCAL.credentials(standin.url))


@pytest.fixture
def client(secret: dict[str, Any]) -> Iterator[AllegroClient]:
    allegro = AllegroClient(lambda refresh: dict(secret), secret.update, httpx.Client())
    yield allegro
    allegro.close()


def raw_get(standin: AllegroStandIn, secret: dict[str, Any], path: str, **params: Any) -> httpx.Response:
    """A request as Allegro receives it, with the token the client stored in the secret."""
    headers = {"Authorization": f"Bearer {secret['access_token']}", "Accept": MEDIA_TYPE}
    return httpx.get(standin.url + path, params=params, headers=headers)


# -- the client against the stand-in -----------------------------------------------------------
def test_events_are_read_on_from_an_event_id_exclusively_oldest_first(
    standin: AllegroStandIn, client: AllegroClient
) -> None:
    first = standin.create_order([{"sku": "MUG-BLUE", "quantity": 2}])
    second = standin.create_order([{"sku": "TEAPOT-L", "quantity": 1}])
    journal = standin.order_event_ids()

    page = client.order_events(None, 4)
    rest = client.order_events(page[-1]["id"], 4)

    assert [e["id"] for e in page + rest] == journal
    assert [e["type"] for e in page[:3]] == ["BOUGHT", "FILLED_IN", "READY_FOR_PROCESSING"]
    assert {e["order"]["checkoutForm"]["id"] for e in page[:3]} == {first}
    assert {e["order"]["checkoutForm"]["id"] for e in rest} == {second}
    assert client.order_events(rest[-1]["id"], 4) == []


def test_the_limit_is_1_to_1000_in_the_client_and_at_allegro(
    standin: AllegroStandIn, client: AllegroClient, secret: dict[str, Any]
) -> None:
    for bad in (0, 1001, True):
        with pytest.raises(ValueError, match="limit"):
            client.order_events(None, bad)
    client.order_event_stats()  # takes a token
    for text in ("0", "1001", "x"):
        answer = raw_get(standin, secret, "/order/events", limit=text)
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    assert raw_get(standin, secret, "/order/events", limit="1000").status_code == 200


def test_an_event_id_allegro_never_gave_is_refused(standin: AllegroStandIn, client: AllegroClient) -> None:
    with pytest.raises(TargetRejected) as refused:
        client.order_events("not-an-event-id", 10)
    assert refused.value.details["status"] == 400


def test_event_stats_name_the_latest_event_and_nothing_before_the_first(
    standin: AllegroStandIn, client: AllegroClient
) -> None:
    assert client.order_event_stats() == {"latestEvent": None}
    standin.create_order()
    latest = client.order_event_stats(timeout=5)["latestEvent"]
    assert latest["id"] == standin.order_event_ids()[-1]
    assert latest["occurredAt"].endswith("Z")


def test_events_older_than_60_days_are_gone(standin: AllegroStandIn, client: AllegroClient) -> None:
    standin.create_order()
    standin.advance(EVENT_RETENTION_SECONDS + 10)
    standin.expire_tokens()
    later = standin.create_order(stage="bought")

    events = client.order_events(None, 100)

    assert [e["order"]["checkoutForm"]["id"] for e in events] == [later]
    assert standin.summary()["order_events"] == 1


def test_a_checkout_form_is_the_order_now_and_a_cancellation_revises_it(
    standin: AllegroStandIn, client: AllegroClient
) -> None:
    form_id = standin.create_order([{"sku": "MUG-BLUE", "quantity": 3}])
    ready = client.checkout_form(form_id)
    standin.cancel_order(form_id)
    cancelled = client.checkout_form(form_id, timeout=5)

    assert ready["status"] == "READY_FOR_PROCESSING"
    assert ready["payment"]["paidAmount"] == ready["summary"]["totalToPay"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["revision"] != ready["revision"]
    assert client.order_events(None, 10)[-1]["type"] == "BUYER_CANCELLED"
    assert client.order_events(None, 10)[-1]["order"]["checkoutForm"]["revision"] == cancelled["revision"]


def test_a_checkout_form_allegro_does_not_serve_is_not_found(standin: AllegroStandIn, client: AllegroClient) -> None:
    form_id = standin.create_order()
    standin.remove_order(form_id)
    with pytest.raises(CheckoutFormNotFound) as missing:
        client.checkout_form(form_id)
    assert isinstance(missing.value, TargetRejected)
    assert missing.value.reason == "checkout_form_not_found"
    assert missing.value.entity_ids == {"checkout_form_id": form_id}


def test_order_endpoints_need_a_bearer_token_and_the_vendor_media_type(standin: AllegroStandIn) -> None:
    assert httpx.get(standin.url + "/order/event-stats", headers={"Accept": MEDIA_TYPE}).status_code == 401
    assert httpx.get(standin.url + "/order/events", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_order_endpoints_follow_the_behaviour_knobs(standin: AllegroStandIn, client: AllegroClient) -> None:
    client.order_event_stats()  # the token first: the knobs apply to the token endpoint too
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        client.order_events(None, 10)
    standin.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as limited:
        client.checkout_form("any")
    assert limited.value.retry_after == 7
    standin.set_behaviour("flaky", rate=1.0, count=1)
    with pytest.raises(TargetUnavailable):
        client.order_event_stats()
    assert client.order_event_stats() == {"latestEvent": None}


def test_the_control_endpoints_drive_orders_over_http(standin: AllegroStandIn) -> None:
    created = httpx.post(
        standin.url + "/_standin/orders", json={"lines": [{"sku": "TEAPOT-L", "quantity": 2}], "locker": True}
    )
    assert created.status_code == 201
    form_id = created.json()["id"]
    assert httpx.post(standin.url + f"/_standin/orders/{form_id}/ready").status_code == 200
    assert httpx.post(standin.url + f"/_standin/orders/{form_id}/cancel").status_code == 200
    assert httpx.post(standin.url + "/_standin/orders", json={"lines": [{"sku": "NOPE"}]}).status_code == 400
    unpaid = httpx.post(standin.url + "/_standin/orders", json={"stage": "bought"}).json()
    assert unpaid["events"] == standin.order_event_ids()[-1:]
    assert httpx.post(standin.url + f"/_standin/orders/{unpaid['id']}/remove").status_code == 200
    summary = httpx.get(standin.url + "/_standin/summary").json()
    assert (summary["orders"], summary["order_events"]) == (1, 6)


# -- the mapping -------------------------------------------------------------------------------
@pytest.fixture
def form(standin: AllegroStandIn) -> dict[str, Any]:
    form_id = standin.create_order(
        [{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "TEAPOT-L", "quantity": 1}], invoice=True, locker=True
    )
    doc = standin.checkout_form_doc(form_id)
    assert doc is not None
    return doc


def test_a_checkout_form_maps_to_a_gross_order_in_its_currency(form: dict[str, Any]) -> None:
    order = order_from_checkout_form(form)

    mug, teapot = (Decimal(i["price"]["amount"]) for i in form["lineItems"])
    assert (order.source, order.source_id, order.number, order.currency) == ("allegro", form["id"], form["id"], "PLN")
    assert [(line.sku, line.quantity, line.unit_price.amount) for line in order.lines] == [
        ("MUG-BLUE", Decimal(2), mug),
        ("TEAPOT-L", Decimal(1), teapot),
    ]
    assert order.subtotal.amount == 2 * mug + teapot
    assert order.shipping[0].price.amount == Decimal("9.99")
    assert (
        order.total.amount
        == order.subtotal.amount + Decimal("9.99")
        == Decimal(form["summary"]["totalToPay"]["amount"])
    )
    assert order.taxes_included and order.total_tax.amount == 0
    assert order.customer.email == form["buyer"]["email"]
    assert order.customer.tax_id == "PL" + form["invoice"]["address"]["company"]["taxId"]
    assert order.customer.phone is not None and order.customer.phone.startswith("+48")
    assert order.billing_address is not None and order.billing_address.company == order.customer.company
    shipping = order.shipping_address
    assert shipping is not None and "KRA01M" in shipping.line1 and shipping.line2 == "ul. Karmelicka 45"
    assert shipping.name == f"{form['buyer']['firstName']} {form['buyer']['lastName']}"
    amounts = [order.subtotal, order.total, *(line.unit_price for line in order.lines)]
    assert all(isinstance(m.amount, Decimal) for m in amounts)


def test_without_an_invoice_the_billing_address_is_the_delivery_address(standin: AllegroStandIn) -> None:
    doc = standin.checkout_form_doc(standin.create_order())
    assert doc is not None
    order = order_from_checkout_form(doc)
    assert order.customer.tax_id is None
    assert order.billing_address == order.shipping_address
    assert order.shipping_address is not None and order.shipping_address.line1 == doc["delivery"]["address"]["street"]


def test_a_line_without_an_external_id_is_an_unmapped_sku_naming_ids_only(standin: AllegroStandIn) -> None:
    offer_id = standin.add_offer(None, quantity=3)
    doc = standin.checkout_form_doc(standin.create_order([{"offer_id": offer_id, "quantity": 1}]))
    assert doc is not None
    with pytest.raises(UnmappedSku) as unmapped:
        order_from_checkout_form(doc)
    assert isinstance(unmapped.value, ValidationFailed)
    assert unmapped.value.reason == "unmapped_sku"
    assert unmapped.value.entity_ids == {
        "checkout_form_id": doc["id"],
        "offer_id": offer_id,
        "line_item_id": doc["lineItems"][0]["id"],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("summary", "totalToPay", "amount"), 462.96),  # a float: money is never read from one
        (("lineItems", 0, "price", "amount"), "12,50"),
        (("lineItems", 0, "price", "currency"), "EUR"),
        (("buyer", "email"), "anna.kowalska@"),
        (("buyer", "phoneNumber"), "+48 12"),
        (("lineItems",), []),
    ],
)
def test_an_invalid_form_fails_validation_without_personal_data(
    form: dict[str, Any], field: tuple[Any, ...], value: Any
) -> None:
    broken = copy.deepcopy(form)
    target: Any = broken
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    with pytest.raises(ValidationFailed) as invalid:
        order_from_checkout_form(broken)
    said = f"{invalid.value.message} {invalid.value.entity_ids} {invalid.value.details}"
    assert invalid.value.entity_ids == {"checkout_form_id": form["id"]}
    for personal in (form["buyer"]["email"], form["buyer"]["lastName"], "anna.kowalska", "+48 12", "Długa"):
        assert personal not in said


def test_a_payload_that_is_not_a_form_fails_validation() -> None:
    payloads: list[Any] = [None, [], {"status": "READY_FOR_PROCESSING"}]
    for payload in payloads:
        with pytest.raises(ValidationFailed):
            order_from_checkout_form(payload)


def test_fields_outside_the_documented_form_are_reported(form: dict[str, Any]) -> None:
    assert unknown_checkout_form_fields(form) == []
    assert unknown_checkout_form_fields({**form, "taxSettings": {}, "buyerPreferences": None}) == [
        "buyerPreferences",
        "taxSettings",
    ]


# -- the poller's source -----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def advance(cursor: CursorState, page: Page) -> CursorState:
    """The cursor after the poller has sent the page (shared/polling.py, token cursors)."""
    position = page.position if page.position is not None else cursor.position
    return CursorState(position=position, next=page.next)


def read(source: AllegroOrderSource, cursor: CursorState, page_size: int = 100) -> Page:
    return source.read(cursor, page_size, 0, timeout=30.0)


@pytest.fixture
def source(client: AllegroClient) -> AllegroOrderSource:
    return AllegroOrderSource(client)


def test_a_first_run_starts_at_the_latest_event_and_replays_nothing_older(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    standin.create_order()
    first = read(source, CursorState())
    assert first.changes == [] and first.next is None
    assert first.position == standin.order_event_ids()[-1]

    later = standin.create_order()
    second = read(source, advance(CursorState(), first))
    assert [c.key for c in second.changes] == [later]


def test_a_first_run_on_an_empty_journal_misses_nothing_that_follows(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    first = read(source, CursorState())
    assert first == Page([], position=BEGINNING)
    form_id = standin.create_order()
    assert [c.key for c in read(source, advance(CursorState(), first)).changes] == [form_id]


def test_a_repeated_ready_for_processing_in_one_page_is_one_change(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    start = read(source, CursorState())
    form_id = standin.create_order()
    again = standin.ready_again(form_id)

    page = read(source, advance(CursorState(), start))

    assert len(page.changes) == 1
    change = page.changes[0]
    assert (change.key, change.stamp) == (form_id, again)
    assert change.data["event_types"] == ["BOUGHT", "FILLED_IN", "READY_FOR_PROCESSING", "READY_FOR_PROCESSING"]
    assert change.data["event_id"] == again
    assert change.data["checkout_form"]["status"] == "READY_FOR_PROCESSING"
    assert page.position == again and page.next is None


def test_events_out_of_order_make_one_change_per_form_stamped_with_its_last_event(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    start = read(source, CursorState())
    first = standin.create_order(out_of_order=True)
    second = standin.create_order([{"sku": "TEAPOT-L", "quantity": 4}], out_of_order=True)
    journal = standin.order_event_ids()[-6:]

    page = read(source, advance(CursorState(), start))

    assert [(c.key, c.stamp) for c in page.changes] == [(first, journal[2]), (second, journal[5])]
    assert page.changes[0].data["event_types"] == ["BOUGHT", "READY_FOR_PROCESSING", "FILLED_IN"]


def test_unpaid_and_auto_cancelled_orders_are_skipped_without_reading_the_form(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    start = read(source, CursorState())
    form_id = standin.create_order(stage="filled_in")
    standin.cancel_order(form_id, auto=True)
    requests = standin.summary()["requests"]

    page = read(source, advance(CursorState(), start))

    assert page.changes == [] and page.rejected == []
    assert page.position == standin.order_event_ids()[-1]
    assert standin.summary()["requests"] == requests + 1  # the events, no form


def test_a_buyer_cancellation_is_sent_with_the_cancelled_form(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    form_id = standin.create_order()
    start = read(source, CursorState())
    cancelled = standin.cancel_order(form_id)

    page = read(source, advance(CursorState(), start))

    assert [(c.key, c.stamp, c.data["event_types"]) for c in page.changes] == [
        (form_id, cancelled, ["BUYER_CANCELLED"])
    ]
    assert page.changes[0].data["checkout_form"]["status"] == "CANCELLED"


def test_a_buyer_modification_of_an_unpaid_form_waits_for_its_payment(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    start = read(source, CursorState())
    form_id = standin.create_order(stage="filled_in")
    standin.modify_order(form_id)
    page = read(source, advance(CursorState(), start))
    assert page.changes == []

    paid = standin.ready_again(form_id)
    after = read(source, advance(advance(CursorState(), start), page))
    assert [(c.key, c.stamp) for c in after.changes] == [(form_id, paid)]
    assert after.changes[0].data["checkout_form"]["messageToSeller"]


def test_a_page_boundary_continues_from_the_last_event_id(standin: AllegroStandIn, source: AllegroOrderSource) -> None:
    start = read(source, CursorState())
    form_id = standin.create_order()
    journal = standin.order_event_ids()[-3:]

    cursor = advance(CursorState(), start)
    first = read(source, cursor, page_size=2)
    assert first.changes == [] and (first.position, first.next) == (journal[1], journal[1])

    cursor = advance(cursor, first)
    second = read(source, cursor, page_size=2)
    assert [(c.key, c.stamp, c.data["event_types"]) for c in second.changes] == [
        (form_id, journal[2], ["READY_FOR_PROCESSING"])
    ]
    assert (second.position, second.next) == (journal[2], None)


def test_a_form_allegro_no_longer_serves_is_rejected_and_the_rest_go_on(
    standin: AllegroStandIn, source: AllegroOrderSource
) -> None:
    start = read(source, CursorState())
    gone = standin.create_order()
    kept = standin.create_order()
    standin.remove_order(gone)

    page = read(source, advance(CursorState(), start))

    assert [c.key for c in page.changes] == [kept]
    assert [(r.reason, r.key, r.stamp) for r in page.rejected] == [
        ("checkout_form_not_found", gone, standin.order_event_ids()[2])
    ]
    assert page.rejected[0].item == {
        "checkout_form_id": gone,
        "event_id": standin.order_event_ids()[2],
        "event_types": ["BOUGHT", "FILLED_IN", "READY_FOR_PROCESSING"],
    }


def test_a_page_ends_before_the_form_there_is_no_time_left_to_read(
    standin: AllegroStandIn, client: AllegroClient
) -> None:
    clock = Clock()
    source = AllegroOrderSource(client, clock=clock)
    start = read(source, CursorState())
    first = standin.create_order()
    standin.create_order()
    journal = standin.order_event_ids()[-6:]
    reading = client.checkout_form

    def slow_form(form_id: str, timeout: float | None = None) -> dict[str, Any]:
        clock.now += 29.0  # the first form takes the whole timeout
        return reading(form_id, timeout=timeout)

    client.checkout_form = slow_form  # type: ignore[method-assign]
    page = read(source, advance(CursorState(), start))

    assert [(c.key, c.stamp) for c in page.changes] == [(first, journal[2])]
    assert (page.position, page.next) == (journal[2], journal[2])


def test_allegro_down_fails_the_read_and_moves_nothing(standin: AllegroStandIn, source: AllegroOrderSource) -> None:
    start = read(source, CursorState())
    standin.create_order()
    standin.set_behaviour("down")
    with pytest.raises(TargetUnavailable):
        read(source, advance(CursorState(), start))


def test_an_event_naming_no_form_is_rejected_alone_without_the_buyers_data(
    standin: AllegroStandIn, client: AllegroClient
) -> None:
    source = AllegroOrderSource(client)
    start = read(source, CursorState())
    form_id = standin.create_order()
    reading = client.order_events

    def with_a_broken_event(from_id: str | None, limit: int, timeout: float | None = None) -> list[dict[str, Any]]:
        events = reading(from_id, limit, timeout=timeout)
        broken = {**events[0], "order": {"buyer": events[0]["order"]["buyer"]}}
        return [broken, *events[1:]]

    client.order_events = with_a_broken_event  # type: ignore[method-assign]
    page = read(source, advance(CursorState(), start))

    assert [c.key for c in page.changes] == [form_id]
    assert [(r.reason, r.item) for r in page.rejected] == [
        ("malformed_event", {"event_id": standin.order_event_ids()[0], "type": "BOUGHT"})
    ]


class Secrets(ParameterSecrets):
    """The allegro-api secret in memory, under its stage's name."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.docs = docs

    def get_json(self, secret_id: str, *, refresh: bool = False) -> dict[str, Any]:
        return dict(self.docs[secret_id])

    def put_json(self, secret_id: str, value: dict[str, Any]) -> None:
        self.docs[secret_id] = dict(value)


def test_build_reads_and_rotates_the_allegro_api_secret(standin: AllegroStandIn, secret: dict[str, Any]) -> None:
    name = secret_id("test", ALLEGRO_API)
    secrets = Secrets({name: secret})
    source = build(PollerContext(INTEGRATION, "test", secrets))

    standin.create_order()
    page = source.read(CursorState(), 10, 0, timeout=10.0)

    assert page.position == standin.order_event_ids()[-1]
    assert secrets.docs[name]["refresh_token"] != secret["refresh_token"]  # the rotated pair was stored
