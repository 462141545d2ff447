"""The WooCommerce REST API client against the WooCommerce API stand-in (in-process, port 0):
orders, their meta and notes; auth, unknown orders, validation, rate limits, outages."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from junction_local.process import free_port, stop_process, wait_until_up
from junction_local.standins.woocommerce_api import CONSUMER_KEY, CONSUMER_SECRET, LOCAL, WooCommerceApiStandIn
from shared.connectors.woocommerce_api import (
    TRACKING_META,
    OrderNotFound,
    WooCommerceApi,
    WooCommerceSettings,
    tracking_item,
    tracking_items,
)
from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
)

IDS = {"order": "woocommerce-order:727"}


@pytest.fixture
def standin() -> Iterator[WooCommerceApiStandIn]:
    with WooCommerceApiStandIn(clock=lambda: 1_800_000_000.0) as running:
        running.seed_order(727, status="processing")
        yield running


@pytest.fixture
def api(standin: WooCommerceApiStandIn) -> Iterator[WooCommerceApi]:
    client = WooCommerceApi(WooCommerceSettings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    yield client
    client.close()


def test_the_tracking_meta_and_the_completed_status_are_written_in_one_update(
    api: WooCommerceApi, standin: WooCommerceApiStandIn
) -> None:
    item = tracking_item(
        "InPost", "680000000000000001", "https://inpost.pl/sledzenie-przesylek?number=1", 1_800_000_000
    )
    updated = api.update_order(
        727, {"status": "completed", "meta_data": [{"key": TRACKING_META, "value": [item]}]}, IDS
    )

    assert updated["status"] == "completed"
    assert tracking_items(updated) == [item]
    assert tracking_items(api.get_order(727, IDS)) == [item]
    # WooCommerce records the status change as a system note.
    assert [n["note"] for n in standin.notes(727)] == ["Order status changed from Processing to Completed."]


def test_writing_the_meta_again_replaces_its_value_rather_than_adding_a_second_one(api: WooCommerceApi) -> None:
    first = tracking_item("InPost", "1", "https://t/1", 1)
    second = tracking_item("InPost", "2", "https://t/2", 2)
    api.update_order(727, {"meta_data": [{"key": TRACKING_META, "value": [first]}]}, IDS)
    order = api.update_order(727, {"meta_data": [{"key": TRACKING_META, "value": [first, second]}]}, IDS)

    assert [m["key"] for m in order["meta_data"]].count(TRACKING_META) == 1
    assert [i["tracking_number"] for i in tracking_items(order)] == ["1", "2"]


def test_a_tracking_item_names_a_custom_provider_and_keeps_its_id_when_written_again() -> None:
    item = tracking_item("InPost", "6800", "https://t/6800", 1_800_000_000)
    assert item["tracking_provider"] == ""
    assert item["custom_tracking_provider"] == "InPost"
    assert item["custom_tracking_link"] == "https://t/6800"
    assert item["date_shipped"] == 1_800_000_000
    assert item["tracking_id"] == tracking_item("InPost", "6800", "https://x", 5)["tracking_id"]
    assert item["tracking_id"] != tracking_item("InPost", "6801", "https://t/6800", 1)["tracking_id"]


def test_notes_are_added_and_listed_newest_first(api: WooCommerceApi, standin: WooCommerceApiStandIn) -> None:
    first = api.add_note(727, "Shipped: 6800", customer_note=True, ids=IDS)
    second = api.add_note(727, "Private remark", customer_note=False, ids=IDS)

    listed = api.notes(727, IDS)
    assert [n["id"] for n in listed] == [second["id"], first["id"]]
    assert listed[1]["customer_note"] is True and listed[0]["customer_note"] is False
    assert standin.summary()["customer_notes"] == 1


def test_an_unknown_order_is_order_not_found_on_every_endpoint(api: WooCommerceApi) -> None:
    for call in (
        lambda: api.get_order(999, IDS),
        lambda: api.update_order(999, {"status": "completed"}, IDS),
        lambda: api.notes(999, IDS),
        lambda: api.add_note(999, "x", customer_note=False, ids=IDS),
    ):
        with pytest.raises(OrderNotFound) as caught:
            call()
        assert caught.value.details["status"] == 404
        assert caught.value.details["code"] in (
            "woocommerce_rest_shop_order_invalid_id",
            "woocommerce_rest_order_invalid_id",
        )


def test_an_invalid_parameter_is_rejected_with_its_code_and_names(api: WooCommerceApi) -> None:
    with pytest.raises(TargetRejected) as caught:
        api.update_order(727, {"status": "shipped"}, IDS)
    assert not isinstance(caught.value, OrderNotFound)
    assert caught.value.details == {
        "status": 400,
        "target": "woocommerce",
        "code": "rest_invalid_param",
        "params": ["status"],
    }


def test_a_wrong_secret_is_read_again_once_and_a_rotated_key_is_taken(standin: WooCommerceApiStandIn) -> None:
    reads: list[bool] = []
    current = {"base_url": standin.url, "consumer_key": CONSUMER_KEY, "consumer_secret": "cs_old"}

    def source(refresh: bool) -> WooCommerceSettings:
        reads.append(refresh)
        return WooCommerceSettings.from_secret(current)

    api = WooCommerceApi(source, httpx.Client())
    current = {**current, "consumer_secret": CONSUMER_SECRET}
    assert api.get_order(727, IDS)["id"] == 727
    assert reads == [False, True]

    standin.set_credentials(CONSUMER_KEY, "cs_rotated_elsewhere")
    with pytest.raises(CredentialsRejected) as caught:
        api.get_order(727, IDS)
    assert caught.value.details["code"] == "woocommerce_rest_authentication_error"


def test_a_request_without_credentials_is_refused_as_woocommerce_refuses_it(standin: WooCommerceApiStandIn) -> None:
    answer = httpx.get(f"{standin.url}/wp-json/wc/v3/orders/727")
    assert answer.status_code == 401
    assert answer.json() == {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot view this resource.",
        "data": {"status": 401},
    }


def test_a_429_is_rate_limited_with_the_retry_after(api: WooCommerceApi, standin: WooCommerceApiStandIn) -> None:
    standin.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as caught:
        api.get_order(727, IDS)
    assert caught.value.retry_after == 7
    assert api.get_order(727, IDS)["id"] == 727


def test_a_5xx_and_a_timeout_are_transient(standin: WooCommerceApiStandIn) -> None:
    api = WooCommerceApi(WooCommerceSettings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        api.notes(727, IDS)
    standin.set_behaviour("slow", delay=2.0, count=1)
    with api.bounded(lambda _wanted: 0.3), pytest.raises(TargetUnavailable):
        api.notes(727, IDS)


def test_a_note_whose_answer_was_lost_was_made_once(standin: WooCommerceApiStandIn) -> None:
    api = WooCommerceApi(WooCommerceSettings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    standin.set_behaviour("accept_then_hang", delay=2.0)
    with api.bounded(lambda _wanted: 0.3), pytest.raises(TargetUnavailable):
        api.add_note(727, "Shipped: 6800", customer_note=True, ids=IDS)
    standin.set_behaviour("ok")
    assert [n["note"] for n in api.notes(727, IDS)] == ["Shipped: 6800"]


def test_the_settings_refuse_plain_http_to_a_remote_site_and_missing_keys() -> None:
    with pytest.raises(ConfigurationError):
        WooCommerceSettings.from_secret(
            {"base_url": "http://shop.example.com", "consumer_key": "ck", "consumer_secret": "cs"}
        )
    with pytest.raises(ConfigurationError):
        WooCommerceSettings.from_secret({"base_url": "https://shop.example.com", "consumer_key": "ck"})
    settings = WooCommerceSettings.from_secret(
        {"base_url": "https://shop.example.com/", "consumer_key": "ck", "consumer_secret": "cs"}
    )
    assert settings.base_url == "https://shop.example.com"
    assert "cs" not in repr(settings)


def test_an_order_id_that_is_not_a_number_never_reaches_the_shop(
    api: WooCommerceApi, standin: WooCommerceApiStandIn
) -> None:
    with pytest.raises(ValueError):
        api.get_order("727/notes", IDS)
    assert standin.summary()["requests"] == 0


def test_the_stand_in_runs_as_a_process_and_seeds_an_order_over_its_control_api() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "woocommerce.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", LOCAL.module, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            root = f"http://127.0.0.1:{port}"
            wait_until_up(root + LOCAL.health_path, process, log)
            seeded = httpx.post(f"{root}/_standin/orders", content=json.dumps({"id": 41, "status": "on-hold"}))
            assert seeded.status_code == 201
            api = WooCommerceApi(WooCommerceSettings.from_secret(LOCAL.credentials(root)), httpx.Client())
            assert api.get_order(41, IDS)["status"] == "on-hold"
            assert httpx.get(root + "/_standin/summary").json()["orders"] == 1
        finally:
            stop_process(process)
