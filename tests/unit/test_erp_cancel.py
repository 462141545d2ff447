"""Cancelling an ERP sales order: the client against the stand-in, which refuses what the Service
Layer refuses (a second cancel, a delivered order), including outages and races with deliveries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from junction_local.standins.erp import COMPANY_DB, PASSWORD, USERNAME, ErpStandIn
from shared.connectors import shopify
from shared.connectors.erp import ORDER_SELECT, ErpClient, ErpSettings, OrderRefused
from shared.errors import RateLimited, TargetRejected, TargetUnavailable
from tests.sample import shopify_order

LOGIN = {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": PASSWORD}
IDS = {"shop_order_id": "test"}


@pytest.fixture(scope="module")
def server() -> Iterator[ErpStandIn]:
    with ErpStandIn() as standin:
        yield standin


@pytest.fixture
def erp(server: ErpStandIn) -> ErpStandIn:
    """One server for the module, emptied before each test (starting one costs half a second)."""
    server.set_behaviour("ok")
    server.reset()
    return server


class Recorder:
    """Sees every request the client sends; ``before_cancel`` runs just before a Cancel leaves
    (what another actor does between the client's look and its cancel)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.before_cancel: Callable[[], object] | None = None

    def __call__(self, request: httpx.Request) -> None:
        last = request.url.path.rsplit("/", 1)[-1]
        self.sent.append(f"{request.method} {last}")
        if last == "Cancel" and self.before_cancel is not None:
            self.before_cancel()

    def cancels(self) -> int:
        return sum(1 for s in self.sent if s == "POST Cancel")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(erp: ErpStandIn, recorder: Recorder) -> Iterator[ErpClient]:
    http = httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), event_hooks={"request": [recorder]})
    erp_client = ErpClient(ErpSettings(erp.url, COMPANY_DB, USERNAME, PASSWORD), http)
    yield erp_client
    erp_client.close()


@pytest.fixture
def raw(erp: ErpStandIn) -> Iterator[httpx.Client]:
    """A logged-in plain HTTP client, to see the Service Layer's own answers."""
    with httpx.Client(base_url=erp.url, timeout=10.0) as http:
        assert http.post("/Login", json=LOGIN).status_code == 200
        yield http


def place_order(client: ErpClient, source_id: int = 5001) -> int:
    """A shop order (MUG-BLUE x2, TEAPOT-L x1) created in the ERP the way deliveries create it."""
    order = shopify.order_from_webhook(shopify_order(id=source_id))
    card_code = client.ensure_customer(order.customer, order.billing_address, IDS)
    created = client.create_order(order, card_code, f"key-{source_id}", IDS)
    doc_entry = created["DocEntry"]
    assert isinstance(doc_entry, int)
    return doc_entry


def erp_error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["code"], int) and error["message"]["lang"] == "en-us"
    return error


# -- the client ------------------------------------------------------------------------------
def test_an_open_order_is_cancelled_and_reads_back_cancelled_and_closed(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    committed = erp.stock()["MUG-BLUE"]["01"]["Committed"]

    assert client.cancel_order(doc_entry, IDS) == "cancelled"

    order = client.get_order(doc_entry, IDS)
    assert order is not None and set(order) == set(ORDER_SELECT.split(","))
    assert (order["DocEntry"], order["Cancelled"], order["DocumentStatus"]) == (doc_entry, "tYES", "bost_Close")
    assert order["NumAtCard"] == "shopify:5001"
    assert erp.stock()["MUG-BLUE"]["01"]["Committed"] == committed - 2  # the reservation is released
    assert recorder.cancels() == 1 and erp.summary()["orders_cancelled"] == 1


def test_a_second_cancel_is_already_cancelled_and_sends_no_second_cancel(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    assert client.cancel_order(doc_entry, IDS) == "cancelled"
    assert client.cancel_order(doc_entry, IDS) == "already_cancelled"
    assert recorder.cancels() == 1
    assert erp.summary()["orders_cancelled"] == 1


def test_a_delivered_order_is_refused_as_order_delivered_without_a_cancel(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    with httpx.Client(base_url=erp.root_url, timeout=10.0) as control:
        note = control.post("/_standin/orders/deliver", json={"DocEntry": doc_entry})
    assert note.status_code == 201 and [line["BaseEntry"] for line in note.json()["DocumentLines"]] == [doc_entry] * 2

    with pytest.raises(TargetRejected) as refused:
        client.cancel_order(doc_entry, IDS)
    assert isinstance(refused.value, OrderRefused) and refused.value.reason == "order_delivered"
    assert refused.value.entity_ids == {**IDS, "erp_doc_entry": str(doc_entry)}
    assert recorder.cancels() == 0
    order = client.get_order(doc_entry, IDS)
    assert order is not None and (order["DocumentStatus"], order["Cancelled"]) == ("bost_Close", "tNO")
    assert erp.summary()["orders_cancelled"] == 0


def test_a_partly_delivered_order_is_open_but_refused_as_order_delivered(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder, raw: httpx.Client
) -> None:
    doc_entry = place_order(client)
    card_code = erp.orders()[0]["CardCode"]
    line = {"BaseType": 17, "BaseEntry": doc_entry, "BaseLine": 0, "Quantity": 1}
    assert raw.post("/DeliveryNotes", json={"CardCode": card_code, "DocumentLines": [line]}).status_code == 201
    order = client.get_order(doc_entry, IDS)
    assert order is not None and order["DocumentStatus"] == "bost_Open"

    with pytest.raises(OrderRefused) as refused:
        client.cancel_order(doc_entry, IDS)
    assert refused.value.reason == "order_delivered" and recorder.cancels() == 0
    # The Service Layer itself refuses it too, should a Cancel be sent anyway.
    answer = raw.post(f"/Orders({doc_entry})/Cancel")
    assert answer.status_code == 400 and erp_error(answer)


def test_an_unknown_order_is_order_not_found(client: ErpClient, recorder: Recorder) -> None:
    assert client.get_order(999, IDS) is None
    with pytest.raises(OrderRefused) as refused:
        client.cancel_order(999, IDS)
    assert refused.value.reason == "order_not_found" and recorder.cancels() == 0


@pytest.mark.parametrize("bad", [0, -1, True, "7"])
def test_a_doc_entry_that_is_not_a_positive_integer_is_refused_before_sending(
    client: ErpClient, recorder: Recorder, bad: Any
) -> None:
    with pytest.raises(ValueError):
        client.cancel_order(bad, IDS)
    assert recorder.sent == []


def test_erp_down_is_a_transient_error_and_the_retry_cancels(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    erp.set_behaviour("down")
    with pytest.raises(TargetUnavailable):
        client.cancel_order(doc_entry, IDS)
    assert erp.orders()[0]["Cancelled"] == "tNO"
    erp.set_behaviour("ok")
    assert client.cancel_order(doc_entry, IDS) == "cancelled"


def test_a_rate_limited_cancel_is_retried_later_with_the_erps_wait(erp: ErpStandIn, client: ErpClient) -> None:
    doc_entry = place_order(client)
    erp.set_behaviour("rate_limited", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        client.cancel_order(doc_entry, IDS)
    assert limited.value.retry_after == 7.0


def test_a_cancel_committed_but_never_answered_is_already_cancelled_on_the_retry(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    erp.set_behaviour("accept_then_hang", delay=3.0, count=1)
    with client.bounded(lambda wanted: 0.5), pytest.raises(TargetUnavailable):
        client.cancel_order(doc_entry, IDS)
    assert erp.orders()[0]["Cancelled"] == "tYES"  # the ERP committed it; the client could not know
    assert client.cancel_order(doc_entry, IDS) == "already_cancelled"
    assert recorder.cancels() == 1


def test_a_delivery_between_the_look_and_the_cancel_is_order_delivered(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder
) -> None:
    doc_entry = place_order(client)
    recorder.before_cancel = lambda: erp.deliver_order(doc_entry)  # the warehouse was faster
    with pytest.raises(OrderRefused) as refused:
        client.cancel_order(doc_entry, IDS)
    assert refused.value.reason == "order_delivered"
    assert recorder.cancels() == 1 and recorder.sent[-1] == "GET Orders(1)"  # looked again to say why


def test_a_cancel_that_another_cancel_beat_is_already_cancelled(
    erp: ErpStandIn, client: ErpClient, recorder: Recorder, raw: httpx.Client
) -> None:
    doc_entry = place_order(client)
    recorder.before_cancel = lambda: raw.post(f"/Orders({doc_entry})/Cancel").raise_for_status()
    assert client.cancel_order(doc_entry, IDS) == "already_cancelled"
    assert erp.summary()["orders_cancelled"] == 1


# -- the stand-in, as strict as the Service Layer --------------------------------------------
def test_the_stand_in_answers_cancel_with_204_once_then_the_service_layer_error(
    erp: ErpStandIn, client: ErpClient, raw: httpx.Client
) -> None:
    doc_entry = place_order(client)
    first = raw.post(f"/Orders({doc_entry})/Cancel")
    assert first.status_code == 204 and first.content == b""
    again = raw.post(f"/Orders({doc_entry})/Cancel")
    assert again.status_code == 400 and erp_error(again)["message"]["value"]
    assert raw.post("/Orders(42)/Cancel").status_code == 404
    assert raw.get(f"/Orders({doc_entry})/Cancel").status_code == 405
    order = raw.get(f"/Orders({doc_entry})").json()
    assert all(line["LineStatus"] == "bost_Close" for line in order["DocumentLines"])


def test_the_stand_in_reads_one_order_and_refuses_an_unknown_property(
    erp: ErpStandIn, client: ErpClient, raw: httpx.Client
) -> None:
    doc_entry = place_order(client)
    order = raw.get(f"/Orders({doc_entry})?$select=DocEntry,DocumentStatus,Cancelled").json()
    assert order == {"DocEntry": doc_entry, "DocumentStatus": "bost_Open", "Cancelled": "tNO"}
    refused = raw.get(f"/Orders({doc_entry})?$select=DocEntry,Nope")
    assert refused.status_code == 400 and erp_error(refused)["code"] == -1000
    assert raw.get("/Orders(42)").status_code == 404


def test_a_delivery_note_takes_stock_out_and_closes_the_order_when_nothing_is_left(
    erp: ErpStandIn, client: ErpClient, raw: httpx.Client
) -> None:
    doc_entry = place_order(client)
    before = erp.stock()["MUG-BLUE"]["01"]
    card_code = erp.orders()[0]["CardCode"]

    def deliver(*lines: dict[str, Any]) -> httpx.Response:
        return raw.post("/DeliveryNotes", json={"CardCode": card_code, "DocumentLines": list(lines)})

    assert deliver({"BaseType": 17, "BaseEntry": doc_entry, "BaseLine": 0, "Quantity": 1}).status_code == 201
    after = erp.stock()["MUG-BLUE"]["01"]
    assert (after["InStock"], after["Committed"]) == (before["InStock"] - 1, before["Committed"] - 1)
    assert raw.get(f"/Orders({doc_entry})").json()["DocumentStatus"] == "bost_Open"

    note = deliver(
        {"BaseType": 17, "BaseEntry": doc_entry, "BaseLine": 0},  # no Quantity: what is still open
        {"BaseType": 17, "BaseEntry": doc_entry, "BaseLine": 1},
    )
    assert note.status_code == 201 and [line["Quantity"] for line in note.json()["DocumentLines"]] == [1, 1]
    order = raw.get(f"/Orders({doc_entry})").json()
    assert order["DocumentStatus"] == "bost_Close" and order["Cancelled"] == "tNO"
    assert [line["RemainingOpenQuantity"] for line in order["DocumentLines"]] == [0, 0]
    assert erp.summary()["delivery_notes"] == 2


@pytest.mark.parametrize(
    ("card", "line"),
    [
        (None, {"BaseType": 13, "BaseEntry": 1, "BaseLine": 0}),  # based on an invoice, not an order
        (None, {"BaseType": 17, "BaseEntry": 9, "BaseLine": 0}),  # no such order
        (None, {"BaseType": 17, "BaseEntry": 1, "BaseLine": 5}),  # no such line
        (None, {"BaseType": 17, "BaseEntry": 1, "BaseLine": 0, "Quantity": 3}),  # more than was ordered
        (None, {"BaseType": 17, "BaseEntry": 1, "BaseLine": 0, "Quantity": 0}),
        ("C-SOMEONE-ELSE", {"BaseType": 17, "BaseEntry": 1, "BaseLine": 0}),
    ],
)
def test_the_stand_in_refuses_a_delivery_it_cannot_base_on_the_order_and_delivers_nothing(
    erp: ErpStandIn, client: ErpClient, raw: httpx.Client, card: str | None, line: dict[str, Any]
) -> None:
    assert place_order(client) == 1
    stock = erp.stock()
    body = {"CardCode": card or erp.orders()[0]["CardCode"], "DocumentLines": [line]}
    refused = raw.post("/DeliveryNotes", json=body)
    assert refused.status_code == 400 and erp_error(refused)
    assert erp.stock() == stock and erp.delivery_notes() == []


def test_a_cancelled_order_cannot_be_delivered(erp: ErpStandIn, client: ErpClient, raw: httpx.Client) -> None:
    doc_entry = place_order(client)
    assert client.cancel_order(doc_entry, IDS) == "cancelled"
    with httpx.Client(base_url=erp.root_url, timeout=10.0) as control:
        assert control.post("/_standin/orders/deliver", json={"DocEntry": doc_entry}).status_code == 409
        assert control.post("/_standin/orders/deliver", json={"DocEntry": 77}).status_code == 404
        assert control.post("/_standin/orders/deliver", json={"DocEntry": "1"}).status_code == 400
    line = {"BaseType": 17, "BaseEntry": doc_entry, "BaseLine": 0}
    refused = raw.post("/DeliveryNotes", json={"CardCode": erp.orders()[0]["CardCode"], "DocumentLines": [line]})
    assert refused.status_code == 400 and erp.delivery_notes() == []


# -- answers the stand-in never gives, from a transport that plays the Service Layer ---------
def scripted(cancel_status: int, cancel_code: int) -> tuple[ErpClient, list[str]]:
    """A Service Layer whose order always reads as open, and whose Cancel answers as told."""
    sent: list[str] = []

    def sl(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={}, headers={"Set-Cookie": "B1SESSION=s; Path=/b1s"})
        if request.method == "GET":
            return httpx.Response(200, json={"DocEntry": 3, "DocumentStatus": "bost_Open", "Cancelled": "tNO"})
        error = {"error": {"code": cancel_code, "message": {"lang": "en-us", "value": "refused"}}}
        return httpx.Response(cancel_status, json=error)

    settings = ErpSettings("http://127.0.0.1:9/b1s/v1", "DB", "manager", "pw")
    return ErpClient(settings, httpx.Client(transport=httpx.MockTransport(sl))), sent


def test_a_cancel_refused_for_an_order_that_still_reads_open_is_cancel_refused_with_the_erp_code() -> None:
    client, sent = scripted(400, -5002)
    with pytest.raises(OrderRefused) as refused:
        client.cancel_order(3, IDS)
    assert refused.value.reason == "cancel_refused" and refused.value.details["erp_code"] == -5002
    assert sent == ["POST Login", "GET Orders(3)", "POST Cancel", "GET Orders(3)"]


def test_a_cancel_answered_404_is_order_not_found() -> None:
    client, _ = scripted(404, -2028)
    with pytest.raises(OrderRefused) as refused:
        client.cancel_order(3, IDS)
    assert refused.value.reason == "order_not_found"


def test_an_answer_that_is_not_an_order_is_rejected() -> None:
    def sl(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={}, headers={"Set-Cookie": "B1SESSION=s; Path=/b1s"})
        return httpx.Response(200, json={"value": []})

    settings = ErpSettings("http://127.0.0.1:9/b1s/v1", "DB", "manager", "pw")
    client = ErpClient(settings, httpx.Client(transport=httpx.MockTransport(sl)))
    with pytest.raises(TargetRejected):
        client.get_order(3, IDS)
