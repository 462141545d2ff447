"""The ShipBob client against the ShipBob stand-in (in-process, port 0): one pick request per
order however often it is sent, cancels refused once picking began, the rate limit, failures."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.orders.warehouse import choose_location
from junction_local.process import free_port, stop_process, wait_until_up
from junction_local.standins.shipbob import CHANNEL_ID, LOCAL, TOKEN, ShipBobStandIn
from shared.connectors.shipbob import (
    API_VERSION,
    DEFAULT_SHIPPING_METHOD,
    OrderAlreadyPicked,
    ShipBobClient,
    ShipBobSettings,
    order_reference,
    shipping_method,
)
from shared.connectors.shopify import order_from_webhook
from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
    ValidationFailed,
)
from shared.models import Order

SAMPLE = Path(__file__).resolve().parents[1] / "events" / "shopify" / "orders-create.json"
IDS = {"order": "shopify-order:test"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin() -> Iterator[ShipBobStandIn]:
    with ShipBobStandIn(clock=Clock()) as running:
        yield running


@pytest.fixture
def client(standin: ShipBobStandIn) -> Iterator[ShipBobClient]:
    shipbob = ShipBobClient(ShipBobSettings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    yield shipbob
    shipbob.close()


def sample_order(source_id: str = "820982911946154508") -> Order:
    payload = json.loads(SAMPLE.read_text(encoding="utf-8"))
    payload["id"] = int(source_id)
    return order_from_webhook(payload)


def post(standin: ShipBobStandIn, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    base = {"Authorization": f"Bearer {TOKEN}", "shipbob_channel_id": CHANNEL_ID}
    return httpx.post(standin.url + path, json=body, headers={**base, **(headers or {})})


# -- creating the pick request -------------------------------------------------------------
def test_an_order_becomes_one_pick_request_with_its_lines_ship_to_and_carrier(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    order = sample_order()
    created = client.create_order(order, order_reference(order), 101, IDS)

    [held] = standin.orders()
    assert held["id"] == created["id"]
    assert held["reference_id"] == "shopify:820982911946154508"
    assert held["type"] == "DTC"
    assert held["shipping_method"] == "InPost Paczkomat"
    assert [(p["reference_id"], p["quantity"]) for p in held["products"]] == [("MUG-BLUE", 2), ("TEAPOT-L", 1)]
    assert held["recipient"]["address"]["country"] == "PL"
    assert held["shipments"][0]["location"]["id"] == 101
    assert held["status"] == "Processing"


def test_creating_twice_makes_one_order_and_returns_the_first(standin: ShipBobStandIn, client: ShipBobClient) -> None:
    order = sample_order()
    first = client.create_order(order, order_reference(order), None, IDS)
    second = client.create_order(order, order_reference(order), None, IDS)

    assert second["id"] == first["id"]
    assert standin.summary()["orders"] == 1
    assert standin.summary()["duplicates"] == 0


def test_a_lost_answer_leaves_an_order_the_look_up_finds_and_a_retry_does_not_duplicate(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    order = sample_order()
    reference = order_reference(order)
    standin.set_behaviour("accept_then_hang", delay=2.0, count=1)
    with client.bounded(lambda _default: 0.3), pytest.raises(TargetUnavailable):
        client.create_order(order, reference, None, IDS)

    found = client.find_order(reference, IDS)
    assert found is not None and found["reference_id"] == reference
    again = client.create_order(order, reference, None, IDS)
    assert again["id"] == found["id"]
    assert standin.summary()["orders"] == 1


def test_the_look_up_finds_nothing_for_an_order_never_sent(client: ShipBobClient) -> None:
    assert client.find_order("shopify:1", IDS) is None


def test_with_idempotency_off_the_stand_in_counts_the_duplicates_a_retry_makes(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    answer = httpx.post(standin.url + "/_standin/settings", json={"idempotency": False})
    assert answer.json()["idempotency"] is False
    order = sample_order()
    client.create_order(order, order_reference(order), None, IDS)
    client.create_order(order, order_reference(order), None, IDS)

    summary = httpx.get(standin.url + "/_standin/summary").json()
    assert (summary["orders"], summary["unique_references"], summary["duplicates"]) == (2, 1, 1)


# -- refusals ------------------------------------------------------------------------------
def test_the_stand_in_refuses_an_order_without_recipient_naming_the_field(standin: ShipBobStandIn) -> None:
    body = {
        "reference_id": "shopify:2",
        "type": "DTC",
        "shipping_method": "Standard",
        "products": [{"reference_id": "MUG-BLUE", "name": "Mug", "quantity": 1}],
    }
    answer = post(standin, f"/{API_VERSION}/order", body)

    assert answer.status_code == 400
    assert "recipient" in answer.json()["errors"]
    assert standin.summary()["orders"] == 0


def test_an_order_without_ship_to_address_is_a_validation_failure_sent_nowhere(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    order = sample_order().model_copy(update={"shipping_address": None})
    with pytest.raises(ValidationFailed):
        client.create_order(order, order_reference(order), None, IDS)
    assert standin.summary()["requests"] == 0


def test_a_refused_order_is_a_business_error_with_the_fields_and_no_personal_data(client: ShipBobClient) -> None:
    order = sample_order()
    with pytest.raises(TargetRejected) as caught:
        client.create_order(order, order_reference(order), 999, IDS)

    assert caught.value.details["status"] == 400
    assert caught.value.details["fields"] == ["location_id"]
    assert order.customer.email is not None and order.customer.email not in repr(caught.value.details)


def test_a_422_with_no_order_behind_it_is_a_rejection_not_a_found_order() -> None:
    def shipbob(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(422, json={"title": "Unprocessable Entity", "status": 422, "errors": {"type": ["x"]}})
        return httpx.Response(200, json=[])

    settings = ShipBobSettings.from_secret(LOCAL.credentials("http://127.0.0.1:9"))
    client = ShipBobClient(settings, httpx.Client(transport=httpx.MockTransport(shipbob)))
    order = sample_order()
    with pytest.raises(TargetRejected) as caught:
        client.create_order(order, order_reference(order), None, IDS)
    assert caught.value.details["status"] == 422


def test_a_non_integer_quantity_is_a_validation_failure(client: ShipBobClient) -> None:
    order = sample_order()
    half = order.lines[0].model_copy(update={"quantity": order.lines[0].quantity / 4})
    with pytest.raises(ValidationFailed):
        client.create_order(order.model_copy(update={"lines": (half,)}), order_reference(order), None, IDS)


# -- cancelling ----------------------------------------------------------------------------
def test_cancelling_an_open_order_cancels_it_and_releases_its_stock(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    order = sample_order()
    before = standin.stock()["MUG-BLUE"]["101"]["fulfillable"]
    created = client.create_order(order, order_reference(order), 101, IDS)
    assert standin.stock()["MUG-BLUE"]["101"]["fulfillable"] == before - 2

    assert client.cancel_order(created["id"], IDS) == "cancelled"
    assert standin.orders()[0]["status"] == "Cancelled"
    assert standin.stock()["MUG-BLUE"]["101"]["fulfillable"] == before
    assert client.cancel_order(created["id"], IDS) == "already_cancelled"
    assert standin.summary()["orders_cancelled"] == 1


@pytest.mark.parametrize("step", ["picked", "packed", "shipped"])
def test_cancelling_after_picking_began_is_refused(standin: ShipBobStandIn, client: ShipBobClient, step: str) -> None:
    order = sample_order()
    created = client.create_order(order, order_reference(order), None, IDS)
    moved = httpx.post(standin.url + "/_standin/fulfilment", json={"reference_id": order_reference(order), "to": step})
    assert moved.status_code == 200

    with pytest.raises(OrderAlreadyPicked) as caught:
        client.cancel_order(created["id"], IDS)
    assert isinstance(caught.value, TargetRejected)
    assert caught.value.reason == "order_already_picked"
    assert standin.summary()["orders_cancelled"] == 0


def test_cancelling_an_unknown_order_is_rejected(client: ShipBobClient) -> None:
    with pytest.raises(TargetRejected) as caught:
        client.cancel_order(4242, IDS)
    assert caught.value.details["status"] == 404


# -- limits and failures -------------------------------------------------------------------
def test_the_sliding_minute_limit_is_a_rate_limit_with_shipbobs_wait(client: ShipBobClient) -> None:
    standin_url = client.settings.base_url
    httpx.post(standin_url + "/_standin/settings", json={"requests_per_minute": 3})
    for n in range(3):
        client.find_order(f"shopify:{n}", IDS)
    with pytest.raises(RateLimited) as caught:
        client.find_order("shopify:9", IDS)
    assert caught.value.retry_after == 60

    httpx.post(standin_url + "/_standin/clock", json={"advance_seconds": 60})
    assert client.find_order("shopify:9", IDS) is None
    assert httpx.get(standin_url + "/_standin/summary").json()["rate_limited"] == 1


def test_a_429_from_the_knob_carries_its_x_retry_after(standin: ShipBobStandIn, client: ShipBobClient) -> None:
    standin.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as caught:
        client.find_order("shopify:1", IDS)
    assert caught.value.retry_after == 7
    assert client.find_order("shopify:1", IDS) is None


def test_503_is_transient_and_the_next_request_goes_through(standin: ShipBobStandIn, client: ShipBobClient) -> None:
    standin.set_behaviour("down", count=1)
    order = sample_order()
    with pytest.raises(TargetUnavailable) as caught:
        client.create_order(order, order_reference(order), None, IDS)
    assert caught.value.details["status"] == 503
    client.create_order(order, order_reference(order), None, IDS)
    assert standin.summary()["orders"] == 1
    assert standin.summary()["rejected_by_behaviour"] == 1


def test_flaky_refuses_a_seeded_share_of_requests(standin: ShipBobStandIn, client: ShipBobClient) -> None:
    standin.set_behaviour("flaky", rate=0.5, seed=3, count=20)
    outcomes = []
    for n in range(20):
        try:
            client.find_order(f"shopify:{n}", IDS)
            outcomes.append(True)
        except TargetUnavailable:
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 20
    assert standin.summary()["rejected_by_behaviour"] == outcomes.count(False)


# -- credentials and headers ---------------------------------------------------------------
def test_a_rotated_token_is_read_again_once(standin: ShipBobStandIn) -> None:
    reads: list[bool] = []

    def source(refresh: bool) -> ShipBobSettings:
        reads.append(refresh)
        token = TOKEN if refresh else "old-token"
        return ShipBobSettings.from_secret({**LOCAL.credentials(standin.url), "token": token})

    assert ShipBobClient(source, httpx.Client()).find_order("shopify:1", IDS) is None
    assert reads == [False, True]


def test_a_token_refused_again_is_credentials_rejected(standin: ShipBobStandIn) -> None:
    settings = ShipBobSettings.from_secret({**LOCAL.credentials(standin.url), "token": "wrong"})
    with pytest.raises(CredentialsRejected):
        ShipBobClient(settings, httpx.Client()).find_order("shopify:1", IDS)


def test_a_wrong_channel_is_refused(standin: ShipBobStandIn) -> None:
    settings = ShipBobSettings.from_secret({**LOCAL.credentials(standin.url), "channel_id": "7"})
    with pytest.raises(CredentialsRejected):
        ShipBobClient(settings, httpx.Client()).find_order("shopify:1", IDS)


def test_a_create_without_the_channel_header_is_refused(standin: ShipBobStandIn) -> None:
    answer = httpx.post(f"{standin.url}/{API_VERSION}/order", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400
    assert "shipbob_channel_id" in answer.json()["errors"]


def test_a_secret_without_its_fields_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        ShipBobSettings.from_secret({"base_url": "http://127.0.0.1:9", "token": "t"})
    with pytest.raises(ConfigurationError):
        ShipBobSettings.from_secret({"base_url": "http://127.0.0.1:9", "token": "t", "channel_id": "abc"})


def test_the_token_never_shows_in_the_settings_repr() -> None:
    assert TOKEN not in repr(ShipBobSettings.from_secret(LOCAL.credentials("http://127.0.0.1:9")))


# -- shipping method and inventory ---------------------------------------------------------
def test_the_carrier_choice_falls_back_to_the_code_then_to_standard() -> None:
    order = sample_order()
    line = order.shipping[0]
    assert shipping_method(order.model_copy(update={"shipping": (line.model_copy(update={"title": ""}),)})) == (
        "INPOST_LOCKER"
    )
    assert shipping_method(order.model_copy(update={"shipping": ()})) == DEFAULT_SHIPPING_METHOD


def test_inventory_per_location_follows_the_orders_and_the_routing_rule_uses_it(
    standin: ShipBobStandIn, client: ShipBobClient
) -> None:
    httpx.post(
        standin.url + "/_standin/inventory",
        json={"levels": [{"sku": "MUG-BLUE", "location_id": 101, "on_hand": 1}]},
    )
    order = sample_order()  # 2 x MUG-BLUE, 1 x TEAPOT-L to Poland
    stock = client.inventory_by_location([line.sku for line in order.lines] + ["NO-SUCH-SKU"], IDS)
    assert stock["MUG-BLUE"] == {101: 1, 102: 0, 103: 50}
    assert stock["NO-SUCH-SKU"] == {}

    location = choose_location(order, stock)
    assert location == 103  # Poznań is one mug short; Cicero holds every line
    client.create_order(order, order_reference(order), location, IDS)
    assert client.inventory_by_location(["MUG-BLUE"], IDS)["MUG-BLUE"][103] == 48
    assert standin.summary()["by_location"] == {"101": 0, "102": 0, "103": 1}


def test_the_stand_in_runs_as_a_process_and_serves_its_control_summary() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "shipbob.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", LOCAL.module, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(url + LOCAL.health_path, process, log)
            summary = httpx.get(url + LOCAL.control_path + "/summary").json()
            assert summary[LOCAL.effect_count] == 0
        finally:
            stop_process(process)


def test_the_stand_in_refuses_tags_that_are_not_name_value_strings() -> None:
    from junction_local.standins.shipbob import _order_problems

    assert "tags" in _order_problems({"tags": [{"name": "ERP document"}]})
    assert "tags" in _order_problems({"tags": "ERP 57"})
    assert "tags" not in _order_problems({"tags": [{"name": "ERP document", "value": "57"}]})
