"""The HubSpot client against the HubSpot stand-in (in-process, port 0): contacts and deals
upserted by their unique keys, associations, closed-lost, rate limits, a rotated token and the
stand-in's own strictness."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from junction_local.standins.hubspot import LOCAL, LOCAL_TOKEN, HubSpotStandIn
from shared.connectors.hubspot import (
    MAX_BATCH_INPUTS,
    ORDER_KEY_PROPERTY,
    STAGE_LOST,
    STAGE_OPEN,
    STAGE_WON,
    HubSpotClient,
    HubSpotSettings,
)
from shared.connectors.shopify import order_from_webhook
from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
)
from shared.models import Customer, Order
from tests.sample import shopify_order

IDS = {"order": "shopify-order:1"}


class Clock:
    """The stand-in's clock, moved by the test: rate limit windows pass without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Secret:
    """The hubspot-private-app secret, with every read recorded (True: read past any cache)."""

    def __init__(self, doc: dict[str, str]) -> None:
        self.doc = dict(doc)
        self.reads: list[bool] = []

    def __call__(self, refresh: bool) -> HubSpotSettings:
        self.reads.append(refresh)
        return HubSpotSettings.from_secret(self.doc)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def standin(clock: Clock) -> Iterator[HubSpotStandIn]:
    with HubSpotStandIn(clock=clock) as running:
        yield running


def make_client(standin: HubSpotStandIn) -> tuple[HubSpotClient, Secret]:
    secret = Secret(LOCAL.credentials(standin.url))
    return HubSpotClient(secret, httpx.Client()), secret


@pytest.fixture
def hubspot(standin: HubSpotStandIn) -> Iterator[HubSpotClient]:
    client, _ = make_client(standin)
    yield client
    client.close()


def order(**changes: Any) -> Order:
    return order_from_webhook(shopify_order(**changes))


def post(standin: HubSpotStandIn, path: str, body: Any, token: str = LOCAL_TOKEN) -> httpx.Response:
    return httpx.post(standin.url + path, json=body, headers={"Authorization": f"Bearer {token}"})


def control(standin: HubSpotStandIn, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(standin.url + "/_standin/" + path, json=body)


# -- contacts and deals ---------------------------------------------------------------------------
def test_a_customer_upserted_twice_is_one_contact(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    customer = order().customer
    first = hubspot.upsert_contact(customer, IDS)
    again = hubspot.upsert_contact(customer.model_copy(update={"phone": None}), IDS)
    assert first is not None and first == again
    assert standin.summary()["contacts"] == 1
    assert standin.state()["contacts"][first]["email"] == customer.email


def test_a_customer_without_an_email_gets_no_contact(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    customer = Customer(tax_id="PL5260250995", country="PL")
    assert hubspot.upsert_contact(customer, IDS) is None
    assert standin.summary()["requests"] == 0  # nothing was sent


def test_an_order_upserted_twice_is_one_deal(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    placed = order()
    first = hubspot.upsert_deal("shopify:1", placed, STAGE_OPEN, IDS)
    again = hubspot.upsert_deal("shopify:1", placed, STAGE_WON, IDS)
    other = hubspot.upsert_deal("shopify:2", placed, STAGE_WON, IDS)
    assert first == again != other
    deal = standin.state()["deals"][first]
    assert deal["dealstage"] == STAGE_WON and deal[ORDER_KEY_PROPERTY] == "shopify:1"
    assert deal["amount"] == str(placed.total.amount) and deal["deal_currency_code"] == placed.currency
    assert (standin.summary()["deals"], standin.summary()["duplicate_deals"]) == (2, 0)


def test_a_deal_is_read_by_its_order_key(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    assert hubspot.get_deal("shopify:1", IDS) is None
    deal_id = hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    found = hubspot.get_deal("shopify:1", IDS)
    assert found is not None and found["id"] == deal_id
    assert found["properties"]["dealstage"] == STAGE_WON


def test_a_deal_is_associated_with_its_contact_once(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    placed = order()
    contact_id = hubspot.upsert_contact(placed.customer, IDS)
    deal_id = hubspot.upsert_deal("shopify:1", placed, STAGE_WON, IDS)
    assert contact_id is not None
    hubspot.associate(deal_id, contact_id, IDS)
    hubspot.associate(deal_id, contact_id, IDS)  # a redelivery repeats it
    assert standin.state()["associations"] == [{"deal": deal_id, "contact": contact_id}]


def test_an_association_with_an_unknown_record_is_rejected(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    deal_id = hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    with pytest.raises(TargetRejected) as caught:
        hubspot.associate(deal_id, "999999", IDS)
    assert caught.value.details["category"] == "OBJECT_NOT_FOUND"
    with pytest.raises(ValueError):
        hubspot.associate(deal_id, "not-a-number", IDS)


def test_a_cancelled_order_closes_its_deal_lost(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    deal_id = hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    assert hubspot.close_lost("shopify:1", IDS) == deal_id
    assert hubspot.close_lost("shopify:1", IDS) == deal_id  # redelivered: still one deal, still lost
    assert standin.state()["deals"][deal_id]["dealstage"] == STAGE_LOST
    assert (standin.summary()["deals"], standin.summary()["deals_closed_lost"]) == (1, 1)


def test_cancelling_an_order_without_a_deal_creates_none(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    assert hubspot.close_lost("shopify:404", IDS) is None
    assert standin.summary()["deals"] == 0


def test_bad_input_is_refused_before_sending(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    with pytest.raises(ValueError):
        hubspot.upsert_deal("shopify:1", order(), "won", IDS)
    with pytest.raises(ValueError):
        hubspot.upsert_deal(" ", order(), STAGE_WON, IDS)
    assert standin.summary()["requests"] == 0


# -- failures -------------------------------------------------------------------------------------
def test_the_rolling_window_limit_is_rate_limited_for_the_interval(clock: Clock) -> None:
    with HubSpotStandIn(requests_per_window=2, clock=clock) as standin:
        hubspot, _ = make_client(standin)
        hubspot.get_deal("a", IDS)
        hubspot.get_deal("b", IDS)
        with pytest.raises(RateLimited) as caught:
            hubspot.get_deal("c", IDS)
        assert caught.value.retry_after == 10.0  # no Retry-After: the 10 s window is waited out
        assert caught.value.details["policy"] == "TEN_SECONDLY_ROLLING"
        clock.now += 10.0
        assert hubspot.get_deal("c", IDS) is None
        assert standin.summary()["rate_limited"] == 1


def test_the_daily_limit_is_rate_limited_for_an_hour(clock: Clock) -> None:
    with HubSpotStandIn(daily_limit=1, clock=clock) as standin:
        hubspot, _ = make_client(standin)
        hubspot.get_deal("a", IDS)
        with pytest.raises(RateLimited) as caught:
            hubspot.get_deal("b", IDS)
        assert (caught.value.details["policy"], caught.value.retry_after) == ("DAILY", 3600.0)


def test_a_429_with_retry_after_is_honoured(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    standin.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as caught:
        hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    assert caught.value.retry_after == 7.0
    assert caught.value.entity_ids == IDS
    assert hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)  # the next request is served


def test_a_503_and_a_timeout_are_transient(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable) as caught:
        hubspot.upsert_contact(order().customer, IDS)
    assert caught.value.details["status"] == 503
    standin.set_behaviour("slow", delay=0.5, count=1)
    with hubspot.bounded(lambda default: 0.1), pytest.raises(TargetUnavailable) as timed_out:
        hubspot.upsert_contact(order().customer, IDS)
    assert "timed out" in timed_out.value.message


def test_a_rotated_token_is_read_again_once(standin: HubSpotStandIn) -> None:
    hubspot, secret = make_client(standin)
    standin.rotate_token("rotated-token")
    secret.doc["access_token"] = "rotated-token"
    assert hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    assert secret.reads == [False, True]
    assert standin.summary()["unauthorized"] == 1


def test_a_token_refused_after_the_read_again_is_credentials_rejected(standin: HubSpotStandIn) -> None:
    hubspot, secret = make_client(standin)
    standin.rotate_token("rotated-token")  # the secret still holds the old one
    with pytest.raises(CredentialsRejected) as caught:
        hubspot.get_deal("shopify:1", IDS)
    assert secret.reads == [False, True]
    assert LOCAL_TOKEN not in str(caught.value) and "rotated-token" not in str(caught.value)


def test_errors_carry_ids_and_no_personal_data(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    customer = order().customer
    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable) as caught:
        hubspot.upsert_contact(customer, IDS)
    assert customer.email is not None and customer.email not in repr(caught.value.__dict__)


# -- the stand-in's strictness --------------------------------------------------------------------
def test_a_batch_over_100_inputs_is_refused(standin: HubSpotStandIn) -> None:
    inputs = [{"id": f"c{n}@example.com", "idProperty": "email", "properties": {}} for n in range(MAX_BATCH_INPUTS + 1)]
    refused = post(standin, "/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs})
    assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"
    accepted = post(standin, "/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs[:MAX_BATCH_INPUTS]})
    assert accepted.status_code == 200 and len(accepted.json()["results"]) == MAX_BATCH_INPUTS


def test_a_second_deal_with_the_same_key_cannot_be_created(standin: HubSpotStandIn) -> None:
    deal = {"properties": {"dealname": "d", "dealstage": STAGE_WON, ORDER_KEY_PROPERTY: "shopify:1"}}
    assert post(standin, "/crm/v3/objects/deals", deal).status_code == 201
    conflict = post(standin, "/crm/v3/objects/deals", deal)
    assert conflict.status_code == 409 and conflict.json()["category"] == "CONFLICT"
    assert standin.summary()["deals"] == 1


def test_the_stand_in_refuses_what_hubspot_refuses(standin: HubSpotStandIn) -> None:
    upsert = "/crm/v3/objects/deals/batch/upsert"

    def deal(**properties: str) -> dict[str, Any]:
        return {"inputs": [{"id": "k", "idProperty": ORDER_KEY_PROPERTY, "properties": properties}]}

    assert post(standin, upsert, deal(dealstage="won")).status_code == 400
    assert post(standin, upsert, deal(amount="12,50")).status_code == 400
    assert post(standin, upsert, deal(colour="blue")).json()["errors"][0]["error"] == "PROPERTY_DOESNT_EXIST"
    wrong_key = {"inputs": [{"id": "k", "idProperty": "dealname", "properties": {}}]}
    assert post(standin, upsert, wrong_key).status_code == 400
    twice = {"inputs": deal()["inputs"] * 2}
    assert post(standin, upsert, twice).status_code == 400
    assert post(standin, upsert, deal(), token="wrong").status_code == 401
    assert standin.summary()["deals"] == 0


def test_success_answers_carry_the_rate_limit_headers(standin: HubSpotStandIn) -> None:
    answer = httpx.get(
        standin.url + "/crm/v3/objects/deals/x?idProperty=" + ORDER_KEY_PROPERTY,
        headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
    )
    assert answer.status_code == 404
    assert answer.headers["X-HubSpot-RateLimit-Max"] == "190"
    assert answer.headers["X-HubSpot-RateLimit-Remaining"] == "189"
    assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"


def test_with_idempotency_off_every_upsert_is_a_new_deal(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    assert control(standin, "idempotency", {"idempotency": False}).json() == {"idempotency": False}
    first = hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    again = hubspot.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    assert first != again
    summary = httpx.get(standin.url + "/_standin/summary").json()
    assert (summary["deals"], summary["duplicate_deals"], summary["idempotency"]) == (2, 1, False)
    assert control(standin, "idempotency", {"idempotency": "no"}).status_code == 400


def test_control_endpoints_drive_behaviour_and_reset(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    assert control(standin, "behaviour", {"mode": "down", "count": 1}).status_code == 200
    with pytest.raises(TargetUnavailable):
        hubspot.get_deal("k", IDS)
    assert control(standin, "behaviour", {"mode": "sideways"}).status_code == 400
    assert control(standin, "token", {"token": "t2"}).status_code == 200
    assert control(standin, "reset", {}).json() == {"reset": True}
    assert hubspot.get_deal("k", IDS) is None  # the initial token works again
    state = httpx.get(standin.url + "/_standin/state").json()
    assert (state["deals"], state["summary"]["requests"], state["behaviour"]["mode"]) == ({}, 1, "ok")


def test_flaky_fails_a_seeded_fraction(standin: HubSpotStandIn, hubspot: HubSpotClient) -> None:
    standin.set_behaviour("flaky", rate=0.5, seed=3)
    failures = 0
    for n in range(40):
        try:
            hubspot.get_deal(f"k{n}", IDS)
        except TargetUnavailable:
            failures += 1
    assert 8 <= failures <= 32


# -- settings and declaration ---------------------------------------------------------------------
def test_the_settings_need_both_fields_and_keep_the_token_out_of_repr() -> None:
    settings = HubSpotSettings.from_secret({"base_url": "https://api.hubapi.com/", "access_token": "pat-1"})
    assert settings.base_url == "https://api.hubapi.com" and "pat-1" not in repr(settings)
    for doc in ({"base_url": "x"}, None, {"base_url": "x", "access_token": ""}):
        with pytest.raises(ConfigurationError):
            HubSpotSettings.from_secret(doc)


def test_the_local_declaration_fills_the_hubspot_secret() -> None:
    assert (LOCAL.system, LOCAL.module, LOCAL.fills, LOCAL.effect_count) == (
        "hubspot",
        "junction_local.standins.hubspot",
        "hubspot-private-app",
        "deals",
    )
    assert LOCAL.credentials("http://127.0.0.1:8094") == {
        "base_url": "http://127.0.0.1:8094",
        "access_token": "local-hubspot-token",
    }


def test_an_upsert_answer_without_results_is_rejected() -> None:
    def hubspot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(207, json={"status": "COMPLETE", "results": [], "errors": [{"category": "VALIDATION"}]})

    settings = HubSpotSettings("https://api.hubspot.test", "t")
    client = HubSpotClient(settings, httpx.Client(transport=httpx.MockTransport(hubspot)))
    with pytest.raises(TargetRejected) as caught:
        client.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
    assert caught.value.details["categories"] == ["VALIDATION"]


def test_a_conflicting_upsert_is_retried() -> None:
    def hubspot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"status": "error", "message": "conflict", "category": "CONFLICT"})

    client = HubSpotClient(
        HubSpotSettings("https://api.hubspot.test", "t"), httpx.Client(transport=httpx.MockTransport(hubspot))
    )
    with pytest.raises(TargetUnavailable):
        client.upsert_deal("shopify:1", order(), STAGE_WON, IDS)
