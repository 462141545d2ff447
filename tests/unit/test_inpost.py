"""The ShipX client against the ShipX stand-in (in-process, port 0): creation confirmed
asynchronously, references looked up across pages, refusals naming fields, credentials read
again, the rate limit and failures; and the stand-in as strict as ShipX."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from junction_local.process import free_port, stop_process, wait_until_up
from junction_local.standins.inpost import LOCAL, ORGANIZATION_ID, TOKEN, InPostStandIn, shipment_problems
from shared.connectors.inpost import (
    COURIER,
    LOCKER,
    STATUSES,
    TERMINAL_RANK,
    InPostClient,
    InPostSettings,
    ShipmentNotFound,
    ShipmentRefused,
    field_paths,
    has_tracking,
    is_newer,
    status_rank,
)
from shared.errors import ConfigurationError, CredentialsRejected, RateLimited, TargetUnavailable

IDS = {"order": "shopify-order:test"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin() -> Iterator[InPostStandIn]:
    with InPostStandIn(clock=Clock()) as running:
        yield running


@pytest.fixture
def client(standin: InPostStandIn) -> Iterator[InPostClient]:
    inpost = InPostClient(InPostSettings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    yield inpost
    inpost.close()


def locker_body(reference: str = "shopify:1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receiver": {"name": "Anna Kowalska", "email": "anna@example.pl", "phone": "601234567"},
        "parcels": [{"id": "1", "template": "small"}],
        "service": LOCKER,
        "custom_attributes": {"target_point": "KRA010"},
        "reference": reference,
    }
    body.update(changes)
    return body


def courier_body(reference: str = "woocommerce:727") -> dict[str, Any]:
    return {
        "receiver": {
            "name": "Jan Nowak",
            "email": "jan@example.pl",
            "phone": "602345678",
            "address": {
                "street": "Floriańska",
                "building_number": "12/4",
                "city": "Kraków",
                "post_code": "31-042",
                "country_code": "PL",
            },
        },
        "parcels": [
            {
                "id": "1",
                "dimensions": {"length": "400", "width": "300", "height": "150", "unit": "mm"},
                "weight": {"amount": "2.350", "unit": "kg"},
            }
        ],
        "service": COURIER,
        "reference": reference,
    }


# -- creating and following ----------------------------------------------------------------
def test_a_shipment_is_created_unconfirmed_and_gets_its_tracking_number_when_shipx_confirms_it(
    standin: InPostStandIn, client: InPostClient
) -> None:
    created = client.create_shipment(locker_body(), IDS)
    assert created["status"] == "created"
    assert created["tracking_number"] is None
    assert not has_tracking(created)
    assert not has_tracking(client.get_shipment(created["id"], IDS))

    standin.advance(1.0)  # past the confirmation delay
    confirmed = client.get_shipment(created["id"], IDS)
    assert confirmed["status"] == "confirmed"
    assert has_tracking(confirmed) and len(confirmed["tracking_number"]) == 24
    assert confirmed["reference"] == "shopify:1"


def test_a_courier_shipment_with_dimensions_and_weight_is_accepted(client: InPostClient) -> None:
    created = client.create_shipment(courier_body(), IDS)
    assert created["service"] == COURIER


def test_shipx_makes_a_second_shipment_with_the_same_reference_and_the_look_up_finds_the_first(
    standin: InPostStandIn, client: InPostClient
) -> None:
    first = client.create_shipment(locker_body("shopify:7"), IDS)
    client.create_shipment(locker_body("shopify:7"), IDS)  # what a client that does not look would do

    assert standin.summary()["duplicates"] == 1
    found = client.find_by_reference("shopify:7", IDS)
    assert found is not None and found["id"] == first["id"]


def test_the_look_up_finds_nothing_for_a_reference_never_sent(client: InPostClient) -> None:
    client.create_shipment(locker_body("shopify:1"), IDS)
    assert client.find_by_reference("shopify:2", IDS) is None


def test_the_look_up_reads_every_page_and_checks_each_reference_itself() -> None:
    """A search that ignores its filter still finds the shipment, on a later page."""
    pages = {
        1: [{"id": n, "reference": f"shopify:{n}"} for n in range(1, 101)],
        2: [{"id": 150, "reference": "shopify:150"}, {"id": 151, "reference": "shopify:wanted"}],
    }
    asked: list[str] = []

    def shipx(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        asked.append(request.url.params["reference"])
        return httpx.Response(200, json={"count": 102, "page": page, "per_page": 100, "items": pages[page]})

    settings = InPostSettings.from_secret(LOCAL.credentials("http://127.0.0.1:9"))
    client = InPostClient(settings, httpx.Client(transport=httpx.MockTransport(shipx)))
    found = client.find_by_reference("shopify:wanted", IDS)
    assert found is not None and found["id"] == 151
    assert asked == ["shopify:wanted", "shopify:wanted"]


def test_the_stand_in_pages_a_search_with_its_total_count(standin: InPostStandIn) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{standin.url}/v1/organizations/{ORGANIZATION_ID}/shipments"
    for n in range(5):
        assert httpx.post(url, json=locker_body(f"shopify:{n}"), headers=headers).status_code == 201
    page = httpx.get(url, params={"per_page": "2", "page": "3"}, headers=headers).json()
    assert (page["count"], page["page"], page["per_page"], len(page["items"])) == (5, 3, 2, 1)
    assert httpx.get(url, params={"per_page": "500"}, headers=headers).status_code == 400


# -- refusals ------------------------------------------------------------------------------
def test_a_refused_shipment_names_the_fields_and_no_personal_data(standin: InPostStandIn, client: InPostClient) -> None:
    body = locker_body(custom_attributes={"target_point": "NOWHERE1"})
    body["receiver"]["phone"] = "+48 601 234 567"  # ShipX takes nine digits
    with pytest.raises(ShipmentRefused) as caught:
        client.create_shipment(body, IDS)

    error = caught.value
    assert error.details["status"] == 400
    assert error.details["error"] == "validation_failed"
    assert error.details["fields"] == ["custom_attributes.target_point", "receiver.phone"]
    assert "receiver.phone" in error.message
    assert "601" not in repr(error.details) + error.message
    assert standin.summary()["shipments"] == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service": "inpost_letter_ecommerce"}, "service"),
        ({"custom_attributes": {}}, "custom_attributes"),
        ({"parcels": [{"dimensions": {"length": "1", "width": "1", "height": "1", "unit": "mm"}}]}, "parcels"),
        ({"parcels": []}, "parcels"),
        ({"cod": {"amount": "10.00", "currency": "PLN"}}, "cod"),
        ({"receiver": {"name": "A", "phone": "601234567"}}, "receiver"),
    ],
)
def test_the_stand_in_refuses_what_shipx_refuses(change: dict[str, Any], field: str) -> None:
    assert field in shipment_problems(locker_body(**change))


def test_a_courier_shipment_needs_the_receivers_address() -> None:
    body = courier_body()
    del body["receiver"]["address"]
    assert shipment_problems(body) == {"receiver": [{"address": ["required"]}]}
    body = courier_body()
    body["receiver"]["address"]["post_code"] = "31042"
    assert shipment_problems(body) == {"receiver": [{"address": [{"post_code": ["invalid"]}]}]}


def test_field_paths_keep_the_keys_and_drop_the_values() -> None:
    details = {"receiver": [{"phone": ["invalid"], "address": [{"post_code": ["invalid"]}]}], "service": ["invalid"]}
    assert sorted(field_paths(details)) == ["receiver.address.post_code", "receiver.phone", "service"]


def test_an_unknown_shipment_is_not_found(client: InPostClient) -> None:
    with pytest.raises(ShipmentNotFound) as caught:
        client.get_shipment(42, IDS)
    assert caught.value.reason == "shipment_not_found"


# -- limits and failures -------------------------------------------------------------------
def test_the_minute_limit_is_a_rate_limit_with_retry_after(standin: InPostStandIn, client: InPostClient) -> None:
    standin.configure(requests_per_minute=3)
    for n in range(3):
        client.find_by_reference(f"shopify:{n}", IDS)
    with pytest.raises(RateLimited) as caught:
        client.find_by_reference("shopify:9", IDS)
    assert caught.value.retry_after == 60  # the stand-in's clock stands on a minute's start

    standin.advance(60)
    assert client.find_by_reference("shopify:9", IDS) is None
    assert standin.summary()["rate_limited"] == 1


def test_a_429_from_the_knob_carries_its_retry_after(standin: InPostStandIn, client: InPostClient) -> None:
    standin.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as caught:
        client.find_by_reference("shopify:1", IDS)
    assert caught.value.retry_after == 7
    assert client.find_by_reference("shopify:1", IDS) is None


def test_a_429_without_retry_after_waits_a_minute() -> None:
    settings = InPostSettings.from_secret(LOCAL.credentials("http://127.0.0.1:9"))
    client = InPostClient(settings, httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(429))))
    with pytest.raises(RateLimited) as caught:
        client.get_shipment(1, IDS)
    assert caught.value.retry_after == 60


def test_503_is_transient_and_nothing_was_created(standin: InPostStandIn, client: InPostClient) -> None:
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable) as caught:
        client.create_shipment(locker_body(), IDS)
    assert caught.value.details["status"] == 503
    assert standin.summary()["shipments"] == 0
    client.create_shipment(locker_body(), IDS)
    assert standin.summary()["shipments"] == 1


def test_a_lost_answer_leaves_a_shipment_the_look_up_finds(standin: InPostStandIn, client: InPostClient) -> None:
    standin.set_behaviour("accept_then_hang", delay=2.0, count=1)
    with client.bounded(lambda _default: 0.3), pytest.raises(TargetUnavailable):
        client.create_shipment(locker_body("shopify:5"), IDS)
    found = client.find_by_reference("shopify:5", IDS)
    assert found is not None
    assert standin.summary()["shipments"] == 1


def test_flaky_refuses_a_seeded_share_of_requests(standin: InPostStandIn, client: InPostClient) -> None:
    standin.set_behaviour("flaky", rate=0.5, seed=3, count=20)
    failures = 0
    for n in range(20):
        try:
            client.find_by_reference(f"shopify:{n}", IDS)
        except TargetUnavailable:
            failures += 1
    assert 0 < failures < 20
    assert standin.summary()["rejected_by_behaviour"] == failures


# -- credentials ---------------------------------------------------------------------------
def test_a_rotated_token_is_read_again_once(standin: InPostStandIn) -> None:
    reads: list[bool] = []

    def source(refresh: bool) -> InPostSettings:
        reads.append(refresh)
        token = TOKEN if refresh else "old-token"
        return InPostSettings.from_secret({**LOCAL.credentials(standin.url), "token": token})

    assert InPostClient(source, httpx.Client()).find_by_reference("shopify:1", IDS) is None
    assert reads == [False, True]


def test_a_token_refused_again_is_credentials_rejected(standin: InPostStandIn) -> None:
    settings = InPostSettings.from_secret({**LOCAL.credentials(standin.url), "token": "wrong"})
    with pytest.raises(CredentialsRejected):
        InPostClient(settings, httpx.Client()).get_shipment(1, IDS)


def test_another_organisation_is_forbidden(standin: InPostStandIn) -> None:
    settings = InPostSettings.from_secret({**LOCAL.credentials(standin.url), "organization_id": "999"})
    with pytest.raises(CredentialsRejected) as caught:
        InPostClient(settings, httpx.Client()).find_by_reference("shopify:1", IDS)
    assert caught.value.details["status"] == 403


def test_a_secret_without_its_fields_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        InPostSettings.from_secret({"base_url": "http://127.0.0.1:9", "token": "t"})
    with pytest.raises(ConfigurationError):
        InPostSettings.from_secret({"base_url": "http://127.0.0.1:9", "token": "t", "organization_id": "org"})
    assert TOKEN not in repr(InPostSettings.from_secret(LOCAL.credentials("http://127.0.0.1:9")))


# -- statuses ------------------------------------------------------------------------------
def test_statuses_are_ranked_so_an_older_never_replaces_a_newer(client: InPostClient) -> None:
    assert status_rank("created") < status_rank("confirmed") < status_rank("out_for_delivery")
    assert status_rank("ready_to_pickup") < status_rank("delivered") == TERMINAL_RANK
    assert status_rank("returned_to_sender") == TERMINAL_RANK
    assert is_newer("delivered", "ready_to_pickup") and not is_newer("ready_to_pickup", "delivered")
    assert not is_newer("returned_to_sender", "delivered")  # a terminal status is never replaced
    assert status_rank("a_status_added_later") < status_rank("created")
    # Every status the stand-in (ShipX's list) knows is ranked.
    assert set(client.statuses(IDS)) == set(STATUSES)


# -- moving a shipment, and its webhook ----------------------------------------------------
class Receiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append((self.path, json.loads(raw)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_status_move_posts_shipx_webhook_to_the_configured_url(standin: InPostStandIn, client: InPostClient) -> None:
    receiver = Receiver()
    try:
        created = client.create_shipment(locker_body(), IDS)
        answer = httpx.post(standin.url + "/_standin/settings", json={"webhook_url": receiver.url + "/webhooks/x/tok"})
        assert answer.status_code == 200
        moved = httpx.post(
            standin.url + "/_standin/shipments/status",
            json={"shipment_id": created["id"], "status": "delivered", "notify": True},
        ).json()
        assert moved["status"] == "delivered" and moved["tracking_number"]

        [(path, body)] = receiver.bodies
        assert path == "/webhooks/x/tok"
        assert body["event"] == "shipment_status_changed"
        assert body["payload"] == {
            "shipment_id": created["id"],
            "status": "delivered",
            "tracking_number": moved["tracking_number"],
        }
        assert standin.summary()["webhooks_sent"] == 1
        bad = httpx.post(standin.url + "/_standin/shipments/status", json={"shipment_id": created["id"], "status": "x"})
        assert bad.status_code == 400
        assert httpx.post(standin.url + "/_standin/settings", json={"webhook_url": "http://example.com/"}).is_error
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_the_stand_in_runs_as_a_process_and_serves_its_control_summary() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "inpost.log"
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
