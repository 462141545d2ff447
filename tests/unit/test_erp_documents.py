"""Payments, refunds, deliveries and returns of a sales order: the ERP client against the stand-in,
which refuses what the Service Layer refuses (unknown properties, a vendor's card code, an unknown
account, over-delivery, over-return, a cancelled order) and keeps every document for the checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from junction_local.standins.erp import COMPANY_DB, PASSWORD, TRANSFER_ACCOUNTS, USERNAME, ErpStandIn
from shared.connectors import shopify
from shared.connectors.erp import (
    ALREADY_DELIVERED,
    DELIVERED,
    CustomerRefund,
    ErpClient,
    ErpSettings,
    IncomingPayment,
    OrderRefused,
)
from shared.errors import ConfigurationError, RateLimited, TargetUnavailable
from tests.sample import shopify_order

LOGIN = {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": PASSWORD}
IDS = {"order": "test"}
ACCOUNT = TRANSFER_ACCOUNTS[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ErpStandIn]:
    with ErpStandIn() as standin:
        yield standin


@pytest.fixture
def erp(server: ErpStandIn) -> ErpStandIn:
    server.set_behaviour("ok")
    server.reset()
    return server


@pytest.fixture
def client(erp: ErpStandIn) -> Iterator[ErpClient]:
    erp_client = ErpClient(
        ErpSettings(erp.url, COMPANY_DB, USERNAME, PASSWORD), httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0))
    )
    yield erp_client
    erp_client.close()


@pytest.fixture
def raw(erp: ErpStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=erp.url, timeout=10.0) as http:
        assert http.post("/Login", json=LOGIN).status_code == 200
        yield http


def place_order(client: ErpClient, source_id: int = 7001) -> dict[str, Any]:
    order = shopify.order_from_webhook(shopify_order(id=source_id))
    card_code = client.ensure_customer(order.customer, order.billing_address, IDS)
    created = client.create_order(order, card_code, f"key-{source_id}", IDS)
    return created


def payment_of(order: dict[str, Any], amount: str = "100.00", reference: str = "stripe:pi_1") -> IncomingPayment:
    return IncomingPayment(
        card_code=order["CardCode"],
        order_doc_entry=order["DocEntry"],
        reference=reference,
        amount=Decimal(amount),
        currency=order["DocCurrency"],
        paid_on=date(2026, 12, 6),
        transfer_account=ACCOUNT,
    )


def refund_of(order: dict[str, Any], payment: dict[str, Any], amount: str, refund_id: str = "re_1") -> CustomerRefund:
    return CustomerRefund(
        card_code=order["CardCode"],
        order_doc_entry=order["DocEntry"],
        payment_doc_entry=payment["DocEntry"],
        payment_reference="stripe:pi_1",
        reference=f"stripe:pi_1#refund:{refund_id}",
        amount=Decimal(amount),
        currency=order["DocCurrency"],
        refunded_on=date(2026, 12, 7),
        transfer_account=ACCOUNT,
    )


# -- incoming payments -------------------------------------------------------------------------
def test_a_payment_is_booked_on_account_with_its_reference_and_found_by_it(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    assert client.find_incoming_payment("stripe:pi_1", IDS) is None

    made = client.create_incoming_payment(payment_of(order, "123.45"), IDS)

    found = client.find_incoming_payment("stripe:pi_1", IDS)
    assert found is not None and found["DocEntry"] == made["DocEntry"]
    [held] = erp.incoming_payments()
    assert held["TransferSum"] == 123.45 and held["U_JunctionRef"] == "stripe:pi_1"
    assert held["DocType"] == "rCustomer" and held["CardCode"] == order["CardCode"]
    assert held["TransferReference"] == "pi_1" and str(order["DocEntry"]) in held["Remarks"]
    assert erp.summary()["incoming_payments"] == 1


def test_a_reference_with_a_quote_is_escaped_in_the_filter(client: ErpClient) -> None:
    order = place_order(client)
    client.create_incoming_payment(payment_of(order, reference="stripe:pi_o'brien"), IDS)
    assert client.find_incoming_payment("stripe:pi_o'brien", IDS) is not None
    assert client.find_incoming_payment("stripe:pi_o", IDS) is None


def test_the_erp_refuses_a_payment_to_an_unknown_account_or_partner(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    bad_account = IncomingPayment(**{**payment_of(order).__dict__, "transfer_account": "99999"})
    with pytest.raises(OrderRefused) as refused:
        client.create_incoming_payment(bad_account, IDS)
    assert refused.value.reason == "document_refused" and refused.value.details["status"] == 400
    bad_partner = IncomingPayment(**{**payment_of(order).__dict__, "card_code": "CNOBODY"})
    with pytest.raises(OrderRefused):
        client.create_incoming_payment(bad_partner, IDS)
    assert erp.incoming_payments() == []


def test_the_stand_in_refuses_what_the_service_layer_refuses(client: ErpClient, raw: httpx.Client) -> None:
    order = place_order(client)
    good = {
        "CardCode": order["CardCode"],
        "DocCurrency": "PLN",
        "TransferAccount": ACCOUNT,
        "TransferSum": 10.0,
        "U_JunctionRef": "x:1",
    }
    assert raw.post("/IncomingPayments", json=good).status_code == 201
    for change in (
        {"Unknown": 1},
        {"TransferSum": 0},
        {"TransferSum": True},
        {"DocCurrency": "XXX"},
        {"TransferReference": "x" * 28},
        {"U_JunctionRef": "x" * 101},
        {"DocDate": "2026-13-01"},
        {"DocType": "rAccount"},
    ):
        answer = raw.post("/IncomingPayments", json={**good, **change})
        assert answer.status_code == 400, change
        assert isinstance(answer.json()["error"]["code"], int)
    # Query options the client does not use are refused, not tolerated.
    assert raw.get("/IncomingPayments", params={"$filter": "TransferSum gt 5"}).status_code == 400
    assert raw.get("/IncomingPayments", params={"$select": "Nope"}).status_code == 400
    assert raw.get("/IncomingPayments(99)").status_code == 404


def test_payment_calls_need_a_session(erp: ErpStandIn) -> None:
    with httpx.Client(base_url=erp.url, timeout=10.0) as http:
        answer = http.get("/IncomingPayments")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == 301


def test_an_erp_that_is_down_or_rate_limited_is_a_transient_error(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    erp.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        client.find_incoming_payment("stripe:pi_1", IDS)
    erp.set_behaviour("rate_limited", retry_after=7, count=1)
    with pytest.raises(RateLimited) as limited:
        client.create_incoming_payment(payment_of(order), IDS)
    assert limited.value.retry_after == 7
    assert erp.incoming_payments() == []


def test_a_payment_committed_whose_answer_was_lost_is_found_by_its_reference(
    erp: ErpStandIn, client: ErpClient
) -> None:
    order = place_order(client)
    erp.set_behaviour("accept_then_hang", delay=3, count=1)
    with client.bounded(lambda wanted: 0.5), pytest.raises(TargetUnavailable):
        client.create_incoming_payment(payment_of(order), IDS)
    assert client.find_incoming_payment("stripe:pi_1", IDS) is not None
    assert len(erp.incoming_payments()) == 1


# -- refunds -----------------------------------------------------------------------------------
def test_refunds_up_to_the_payment_are_made_once_each_and_beyond_it_refused(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    payment = client.create_incoming_payment(payment_of(order, "100.00"), IDS)

    first = client.create_refund(refund_of(order, payment, "30.00", "re_1"), IDS)
    found = client.find_refund("stripe:pi_1#refund:re_1", IDS)
    assert found is not None and found["DocEntry"] == first["DocEntry"]
    assert client.find_refund("stripe:pi_1#refund:re_2", IDS) is None
    assert client.refunded_total("stripe:pi_1", IDS) == Decimal("30")
    client.create_refund(refund_of(order, payment, "70.00", "re_2"), IDS)
    assert client.refunded_total("stripe:pi_1", IDS) == Decimal("100")

    with pytest.raises(OrderRefused) as refused:
        client.create_refund(refund_of(order, payment, "0.01", "re_3"), IDS)
    assert refused.value.reason == "refund_exceeds_payment"
    [one, two] = erp.refunds()
    assert one["DocEntry"] == first["DocEntry"] and one["DocType"] == "rCustomer"
    assert (one["TransferSum"], two["TransferSum"]) == (30.0, 70.0)
    assert erp.summary()["refunds"] == 2


def test_a_refund_in_another_currency_or_of_an_unknown_payment_is_refused(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    payment = client.create_incoming_payment(payment_of(order), IDS)
    other = CustomerRefund(**{**refund_of(order, payment, "1.00").__dict__, "currency": "EUR"})
    with pytest.raises(OrderRefused) as refused:
        client.create_refund(other, IDS)
    assert refused.value.reason == "currency_mismatch"
    unknown = CustomerRefund(**{**refund_of(order, payment, "1.00").__dict__, "payment_doc_entry": 42})
    with pytest.raises(OrderRefused) as missing:
        client.create_refund(unknown, IDS)
    assert missing.value.reason == "payment_not_found"
    assert erp.refunds() == []


def test_a_refund_reference_must_name_its_payment(client: ErpClient) -> None:
    order = place_order(client)
    payment = client.create_incoming_payment(payment_of(order), IDS)
    wrong = CustomerRefund(**{**refund_of(order, payment, "1.00").__dict__, "reference": "stripe:re_1"})
    with pytest.raises(ValueError):
        client.create_refund(wrong, IDS)


def test_a_missing_transfer_account_is_a_configuration_error() -> None:
    settings = ErpSettings.from_secret(
        {"base_url": "http://x", "company_db": "D", "username": "u", "password": "p", "transfer_account_stripe": "1"}
    )
    assert settings.transfer_account("stripe") == "1"
    with pytest.raises(ConfigurationError):
        settings.transfer_account("przelewy24")


# -- deliveries and returns --------------------------------------------------------------------
def test_a_delivery_copies_the_open_lines_and_is_made_once(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    entry = order["DocEntry"]
    assert client.find_delivery(entry, IDS) is None

    note = client.create_delivery(entry, reference="shopify:7001#shipped#1", tracking_number="TN1", ids=IDS)
    again = client.create_delivery(entry, reference="shopify:7001#shipped#1", tracking_number="TN1", ids=IDS)

    assert again["DocEntry"] == note["DocEntry"]
    [held] = erp.delivery_notes()
    assert held["TrackingNumber"] == "TN1" and held["NumAtCard"] == order["NumAtCard"]
    assert held["U_JunctionRef"] == "shopify:7001#shipped#1"
    assert [(line["BaseType"], line["BaseEntry"], line["BaseLine"]) for line in held["DocumentLines"]] == [
        (17, entry, n) for n in range(len(order["DocumentLines"]))
    ]
    assert client.get_order(entry, IDS)["DocumentStatus"] == "bost_Close"  # type: ignore[index]


def test_a_delivery_made_by_the_warehouse_is_found_and_not_made_again(erp: ErpStandIn, client: ErpClient) -> None:
    order = place_order(client)
    erp.deliver_order(order["DocEntry"])
    found = client.create_delivery(order["DocEntry"], reference="r#shipped#1", tracking_number="TN", ids=IDS)
    assert found["DocEntry"] == 1 and len(erp.delivery_notes()) == 1


def test_a_cancelled_order_refuses_a_delivery(erp: ErpStandIn, client: ErpClient, raw: httpx.Client) -> None:
    order = place_order(client)
    client.cancel_order(order["DocEntry"], IDS)
    with pytest.raises(OrderRefused) as refused:
        client.create_delivery(order["DocEntry"], reference="r#shipped#1", tracking_number="TN", ids=IDS)
    assert refused.value.reason == "order_cancelled"
    line = {"BaseType": 17, "BaseEntry": order["DocEntry"], "BaseLine": 0}
    answer = raw.post("/DeliveryNotes", json={"CardCode": order["CardCode"], "DocumentLines": [line]})
    assert answer.status_code == 400 and erp.delivery_notes() == []


def test_the_stand_in_refuses_over_delivery_and_unknown_properties(client: ErpClient, raw: httpx.Client) -> None:
    order = place_order(client)
    quantity = order["DocumentLines"][0]["Quantity"]
    line = {"BaseType": 17, "BaseEntry": order["DocEntry"], "BaseLine": 0}
    over = raw.post(
        "/DeliveryNotes", json={"CardCode": order["CardCode"], "DocumentLines": [{**line, "Quantity": quantity + 1}]}
    )
    assert over.status_code == 400
    extra = raw.post("/DeliveryNotes", json={"CardCode": order["CardCode"], "Shipped": True, "DocumentLines": [line]})
    assert extra.status_code == 400


def test_delivered_is_marked_once_and_a_bad_status_is_refused(
    erp: ErpStandIn, client: ErpClient, raw: httpx.Client
) -> None:
    order = place_order(client)
    note = client.create_delivery(order["DocEntry"], reference="r#shipped#1", tracking_number="TN", ids=IDS)
    assert client.mark_delivered(note["DocEntry"], IDS) == DELIVERED
    assert client.mark_delivered(note["DocEntry"], IDS) == ALREADY_DELIVERED
    assert erp.summary()["deliveries_delivered"] == 1
    answer = raw.patch(f"/DeliveryNotes({note['DocEntry']})", json={"U_ShipStatus": "lost"})
    assert answer.status_code == 400
    with pytest.raises(OrderRefused) as refused:
        client.mark_delivered(99, IDS)
    assert refused.value.reason == "delivery_not_found"


def test_a_return_takes_the_goods_back_once(erp: ErpStandIn, client: ErpClient, raw: httpx.Client) -> None:
    order = place_order(client)
    note = client.create_delivery(order["DocEntry"], reference="r#shipped#1", tracking_number="TN", ids=IDS)
    stock = erp.stock()["MUG-BLUE"]["01"]["InStock"]

    made = client.create_return(note["DocEntry"], reference="r#returned#1", ids=IDS)
    again = client.create_return(note["DocEntry"], reference="r#returned#1", ids=IDS)

    assert again["DocEntry"] == made["DocEntry"] and len(erp.returns()) == 1
    [held] = erp.returns()
    assert {(line["BaseType"], line["BaseEntry"]) for line in held["DocumentLines"]} == {(15, note["DocEntry"])}
    mugs = next(line["Quantity"] for line in note["DocumentLines"] if line["ItemCode"] == "MUG-BLUE")
    assert erp.stock()["MUG-BLUE"]["01"]["InStock"] == stock + mugs
    assert erp.delivery_notes()[0]["U_ShipStatus"] == "returned"
    # Nothing is left to return: the Service Layer would refuse a second return of the same lines.
    line = {"BaseType": 15, "BaseEntry": note["DocEntry"], "BaseLine": 0}
    assert raw.post("/Returns", json={"CardCode": order["CardCode"], "DocumentLines": [line]}).status_code == 400
    wrong_base = {"BaseType": 17, "BaseEntry": order["DocEntry"], "BaseLine": 0}
    assert raw.post("/Returns", json={"CardCode": order["CardCode"], "DocumentLines": [wrong_base]}).status_code == 400
