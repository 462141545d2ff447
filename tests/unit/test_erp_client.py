"""The ERP connector's protocol edges, against an httpx transport that plays the Service Layer."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from shared.connectors.erp import ERR_ALREADY_EXISTS, ErpClient, ErpSettings
from shared.errors import CredentialsRejected, DeadlineReached
from shared.models import Customer

SETTINGS = ErpSettings("http://127.0.0.1:9/b1s/v1", "DB", "manager", "old-password")


def client(handler: Callable[[httpx.Request], httpx.Response], settings: object = SETTINGS) -> ErpClient:
    return ErpClient(settings, httpx.Client(transport=httpx.MockTransport(handler)))  # type: ignore[arg-type]


def login_ok(request: httpx.Request) -> httpx.Response | None:
    if request.url.path.endswith("/Login"):
        return httpx.Response(200, json={"SessionId": "s"}, headers={"Set-Cookie": "B1SESSION=s; Path=/b1s"})
    return None


def customer() -> Customer:
    return Customer(email="anna@example.com", first_name="Anna", last_name="Nowak")


def test_a_customer_created_concurrently_after_our_lookup_is_taken_as_found() -> None:
    calls: list[str] = []

    def erp(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        if (answer := login_ok(request)) is not None:
            return answer
        if request.method == "GET":  # our lookup: not there yet ...
            return httpx.Response(404, json={"error": {"code": -2028, "message": {"value": "No matching records"}}})
        # ... but another order's delivery created it before our create arrived
        return httpx.Response(400, json={"error": {"code": ERR_ALREADY_EXISTS, "message": {"value": "exists"}}})

    code = client(erp).ensure_customer(customer(), None, {})
    assert code == customer().code()
    assert [c.split()[0] for c in calls] == ["POST", "GET", "POST"]


def test_a_refused_login_reads_the_credentials_again_once() -> None:
    seen: list[str] = []
    current = {"password": "old-password"}

    def erp(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Login"):
            password = json.loads(request.content)["Password"]
            seen.append(password)
            if password != "new-password":
                return httpx.Response(401, json={"error": {"code": -304, "message": {"value": "Fail"}}})
            return httpx.Response(200, json={}, headers={"Set-Cookie": "B1SESSION=s; Path=/b1s"})
        return httpx.Response(200, json={"value": []})

    def settings(refresh: bool) -> ErpSettings:
        if refresh:
            current["password"] = "new-password"  # the rotated secret
        return ErpSettings(SETTINGS.base_url, "DB", "manager", current["password"])

    erp_client = client(erp, settings)
    assert erp_client.find_order("shopify:1", {}) is None
    assert seen == ["old-password", "new-password"]


def test_credentials_refused_after_a_refresh_are_a_transient_error() -> None:
    def erp(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": -304, "message": {"value": "Fail"}}})

    with pytest.raises(CredentialsRejected):
        client(erp).find_order("shopify:1", {})


def test_no_call_starts_when_the_deadline_has_passed() -> None:
    sent: list[httpx.Request] = []

    def erp(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return login_ok(request) or httpx.Response(200, json={"value": []})

    def no_time_left(wanted: float) -> float:
        raise DeadlineReached("no time left")

    erp_client = client(erp)
    with erp_client.bounded(no_time_left), pytest.raises(DeadlineReached):
        erp_client.find_order("shopify:1", {})
    assert sent == []


def test_each_call_gets_at_most_the_time_left() -> None:
    timeouts: list[object] = []

    def erp(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return login_ok(request) or httpx.Response(200, json={"value": []})

    erp_client = client(erp)
    with erp_client.bounded(lambda wanted: min(wanted, 2.5)):
        erp_client.find_order("shopify:1", {})
    assert timeouts == [2.5, 2.5]
