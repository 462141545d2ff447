"""The payment and shipment flows into the ERP, run against the ERP stand-in in-process: what each
event makes there, once, what waits for what, and what is refused as a business error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from functions.payments import to_erp as payments
from functions.shipping import to_erp as shipping
from junction_local.standins.erp import LOCAL, ErpStandIn
from shared.connectors import shopify
from shared.connectors.erp import ErpClient, ErpSettings, OrderRefused
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, ValidationFailed
from shared.processing import Attempt, FlowContext
from tests.sample import shopify_order

EVENTS = Path(__file__).parent.parent / "events"
SOURCE_ID = 820982911946154508
REFERENCE = f"shopify:{SOURCE_ID}"


class FakeDynamo:
    """Keeps what the cross-reference writes."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        for requests in RequestItems.values():
            self.items.extend(r["PutRequest"]["Item"] for r in requests)
        return {}

    def hop_ids(self, hop_suffix: str) -> dict[str, str]:
        for item in self.items:
            if item["sk"]["S"].endswith(hop_suffix) and "ids" in item:
                return {k: v["S"] for k, v in item["ids"]["M"].items()}
        raise AssertionError(f"no cross-reference item for {hop_suffix}")


class FakeSecrets:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def get_json(self, secret_id: str, *, refresh: bool = False) -> dict[str, Any]:
        return dict(self.doc)


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
def ddb() -> FakeDynamo:
    return FakeDynamo()


def context(erp: ErpStandIn, ddb: FakeDynamo, integration: str) -> FlowContext:
    return FlowContext(
        integration=SimpleNamespace(name=integration),  # type: ignore[arg-type]
        target=SimpleNamespace(name="erp", rate=None),  # type: ignore[arg-type]
        stage="test",
        secrets=FakeSecrets(LOCAL.credentials(erp.root_url)),  # type: ignore[arg-type]
        ddb=ddb,
        state_table="state",
    )


def attempt(maybe_delivered: bool = False) -> Attempt:
    return Attempt(idempotency_key="k", number=2 if maybe_delivered else 1, maybe_delivered=maybe_delivered)


def place_order(erp: ErpStandIn, currency: str = "PLN") -> dict[str, Any]:
    client = ErpClient(ErpSettings.from_secret(LOCAL.credentials(erp.root_url)), httpx.Client(timeout=10.0))
    order = shopify.order_from_webhook(shopify_order(id=SOURCE_ID, currency=currency))
    card_code = client.ensure_customer(order.customer, order.billing_address, {})
    created = client.create_order(order, card_code, "k", {})
    client.close()
    return created


def stripe_envelope(name: str, **changes: Any) -> Envelope:
    body = json.loads((EVENTS / "stripe" / name).read_text())
    body["data"]["object"]["metadata"]["order_reference"] = REFERENCE
    obj = body["data"]["object"]
    for key, value in changes.items():
        obj[key] = value
    if "amount" in changes and "refunds" in obj:
        obj["refunds"]["data"][0]["amount"] = changes["amount"]
    return Envelope(
        "stripe-payments", body["id"], f"stripe-payments:{body['id']}", "stripe", None, "", json.dumps(body)
    )


def run(flow: Any, envelope: Envelope, maybe_delivered: bool = False) -> dict[str, str]:
    prepared = flow.prepare(envelope)
    result: dict[str, str] = flow.deliver(prepared, attempt(maybe_delivered))
    return result


# -- payments ----------------------------------------------------------------------------------
def test_a_payment_is_booked_once_against_its_order(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    order = place_order(erp)
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    envelope = stripe_envelope("payment-intent-succeeded.json")
    assert flow.prepare(envelope).business_key == "stripe:pi_3QxLoc2eZvKYlo2C0mV5cR7d#payment"

    ids = run(flow, envelope)
    again = run(flow, envelope, maybe_delivered=True)

    assert ids == again and ids["payment_status"] == "paid"
    assert ids["erp_doc_entry"] == str(order["DocEntry"])
    [payment] = erp.incoming_payments()
    assert str(payment["DocEntry"]) == ids["erp_payment_doc_entry"]
    assert payment["TransferSum"] == 359.99 and payment["TransferAccount"] == "11300"
    assert payment["CardCode"] == order["CardCode"]
    recorded = ddb.hop_ids("stripe-payments/erp#payment")
    assert recorded["stripe_payment_intent_id"] == "pi_3QxLoc2eZvKYlo2C0mV5cR7d"
    assert recorded["erp_payment_doc_entry"] == ids["erp_payment_doc_entry"]


def test_a_payment_waits_for_its_order(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    with pytest.raises(AwaitingPrerequisite) as waiting:
        run(flow, stripe_envelope("payment-intent-succeeded.json"))
    assert waiting.value.reason == "awaiting_order" and erp.incoming_payments() == []


def test_a_payment_in_another_currency_is_refused(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    place_order(erp)
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    with pytest.raises(OrderRefused) as refused:
        run(flow, stripe_envelope("payment-intent-succeeded.json", currency="eur"))
    assert refused.value.reason == "currency_mismatch" and erp.incoming_payments() == []


def test_a_refund_waits_for_its_payment_then_is_made_once(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    place_order(erp)
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    refund = stripe_envelope("charge-refunded.json")
    with pytest.raises(AwaitingPrerequisite) as waiting:
        run(flow, refund)
    assert waiting.value.reason == "awaiting_payment"

    run(flow, stripe_envelope("payment-intent-succeeded.json"))
    ids = run(flow, refund)
    assert run(flow, refund, maybe_delivered=True) == ids

    assert ids["payment_status"] == "partially_refunded"
    [made] = erp.refunds()
    assert made["TransferSum"] == 60.0 and str(made["DocEntry"]) == ids["erp_refund_doc_entry"]
    assert ddb.hop_ids("#refund:re_3QxLoc2eZvKYlo2C0f4Gh5Jk")["payment_status"] == "partially_refunded"


def totals(amount_refunded: int, n: int) -> Envelope:
    """A ``charge.refunded`` as current Stripe API versions send it: no refunds list, the total."""
    body = json.loads(stripe_envelope("charge-refunded.json", amount_refunded=amount_refunded).body)
    del body["data"]["object"]["refunds"]
    body["id"] = f"evt_total_{n}"
    return Envelope(
        "stripe-payments", body["id"], f"stripe-payments:{body['id']}", "stripe", None, "", json.dumps(body)
    )


def test_refund_totals_in_any_order_bring_the_erp_to_stripes_total_once(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    place_order(erp)
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    run(flow, stripe_envelope("payment-intent-succeeded.json"))
    # Two partial refunds (30.00, then 20.00 more): their events arrive newest first, and again.
    newest = run(flow, totals(5_000, 2))
    assert newest["payment_status"] == "partially_refunded"
    older = run(flow, totals(3_000, 1))  # overtaken: the ERP already holds more
    assert older["refund"] == "already_covered"
    assert run(flow, totals(5_000, 3), maybe_delivered=True)["erp_refund_doc_entry"] == newest["erp_refund_doc_entry"]
    assert [r["TransferSum"] for r in erp.refunds()] == [50.0]
    # A third refund later: the next total adds only the difference.
    run(flow, totals(6_000, 4))
    assert sorted(r["TransferSum"] for r in erp.refunds()) == [10.0, 50.0]


def test_a_full_refund_marks_the_payment_refunded_and_more_is_refused(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    place_order(erp)
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    run(flow, stripe_envelope("payment-intent-succeeded.json"))
    assert run(flow, stripe_envelope("charge-refunded.json", amount=35999))["payment_status"] == "refunded"
    body = json.loads(stripe_envelope("charge-refunded.json").body)
    body["data"]["object"]["refunds"]["data"][0].update(id="re_more", amount=1)
    more = Envelope("stripe-payments", "e2", "stripe-payments:e2", "stripe", None, "", json.dumps(body))
    with pytest.raises(OrderRefused) as refused:
        run(flow, more)
    assert refused.value.reason == "refund_exceeds_payment" and len(erp.refunds()) == 1


def test_an_event_type_not_routed_has_no_effect(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    flow = payments.build(context(erp, ddb, "stripe-payments"))
    body = json.loads(stripe_envelope("payment-intent-succeeded.json").body)
    body["type"] = "customer.created"
    seen = erp.requests_seen()
    assert run(flow, Envelope("s", "e", "s:e", "stripe", None, "", json.dumps(body))) == {"routed": "no"}
    assert erp.requests_seen() == seen


def test_a_verified_p24_payment_is_booked_to_its_account(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    place_order(erp)
    flow = payments.build(context(erp, ddb, "przelewy24-payments"))
    body = {**json.loads((EVENTS / "przelewy24" / "transaction-notification.json").read_text()), "sessionId": REFERENCE}
    upstream = {"p24_order_id": str(body["orderId"]), "p24_verified": "yes", "amount_minor": str(body["amount"])}
    upstream["currency"] = body["currency"]
    envelope = Envelope(
        "p", "n1", "p:n1", "przelewy24", None, "2026-12-06T21:00:00Z", json.dumps(body), upstream=upstream
    )
    ids = run(flow, envelope)
    [payment] = erp.incoming_payments()
    assert payment["TransferAccount"] == "11310" and payment["U_JunctionRef"] == f"przelewy24:{body['orderId']}"
    assert ids["payment_status"] == "paid"
    with pytest.raises(ValidationFailed):
        flow.prepare(Envelope("p", "n2", "p:n2", "przelewy24", None, "", json.dumps(body), upstream={}))


# -- shipments ---------------------------------------------------------------------------------
def upstream(event: str, status: str, tracking: str = "600000000000000600000001") -> dict[str, str]:
    return {
        "order_reference": REFERENCE,
        "inpost_shipment_id": "600000001",
        "tracking_number": tracking,
        "tracking_url": "https://inpost.pl/sledzenie-przesylek?number=" + tracking,
        "inpost_service": "inpost_locker_standard",
        "inpost_status": status,
        "shipment_event": event,
    }


def shipment(ups: dict[str, str], delivery: str = "d") -> Envelope:
    return Envelope("inpost-tracking", delivery, f"i:{delivery}", "inpost", None, "", "{}", upstream=ups)


def test_shipped_delivered_and_returned_reach_the_erp_once_each(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    order = place_order(erp)
    flow = shipping.build(context(erp, ddb, "inpost-shipments"))
    shipped = shipment(upstream("shipped", "confirmed"))
    assert flow.prepare(shipped).business_key == f"{REFERENCE}#shipped#600000001"

    made = run(flow, shipped)
    assert run(flow, shipped, maybe_delivered=True) == made
    [note] = erp.delivery_notes()
    assert (
        note["TrackingNumber"] == "600000000000000600000001" and str(note["DocEntry"]) == made["erp_delivery_doc_entry"]
    )
    assert {line["BaseEntry"] for line in note["DocumentLines"]} == {order["DocEntry"]}

    delivered = run(flow, shipment(upstream("status", "delivered")))
    assert delivered["erp_delivery_status"] == "delivered"
    assert run(flow, shipment(upstream("status", "delivered")))["erp_delivery_status"] == "already_delivered"

    returned = run(flow, shipment(upstream("status", "returned_to_sender")))
    assert run(flow, shipment(upstream("status", "returned_to_sender")), maybe_delivered=True) == returned
    assert len(erp.returns()) == 1 and erp.delivery_notes()[0]["U_ShipStatus"] == "returned"
    assert ddb.hop_ids("inpost-shipments/erp#returned")["erp_return_doc_entry"] == returned["erp_return_doc_entry"]


def test_other_statuses_and_no_effect_hops_change_nothing(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    flow = shipping.build(context(erp, ddb, "inpost-tracking"))
    seen = erp.requests_seen()
    assert run(flow, shipment(upstream("status", "out_for_delivery"))) == {"effect": "none"}
    assert run(flow, shipment({"effect": "none"})) == {"effect": "none"}
    assert erp.requests_seen() == seen


def test_a_shipment_waits_for_its_order_and_a_status_for_its_delivery(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    flow = shipping.build(context(erp, ddb, "inpost-shipments"))
    with pytest.raises(AwaitingPrerequisite) as waiting:
        run(flow, shipment(upstream("shipped", "confirmed")))
    assert waiting.value.reason == "awaiting_order"
    place_order(erp)
    with pytest.raises(AwaitingPrerequisite) as no_delivery:
        run(flow, shipment(upstream("status", "delivered")))
    assert no_delivery.value.reason == "awaiting_delivery"


def test_a_cancelled_order_refuses_the_delivery(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    order = place_order(erp)
    client = ErpClient(ErpSettings.from_secret(LOCAL.credentials(erp.root_url)), httpx.Client(timeout=10.0))
    client.cancel_order(order["DocEntry"], {})
    flow = shipping.build(context(erp, ddb, "inpost-shipments"))
    with pytest.raises(OrderRefused) as refused:
        run(flow, shipment(upstream("shipped", "confirmed")))
    assert refused.value.reason == "order_cancelled" and erp.delivery_notes() == []


def test_malformed_upstream_ids_are_a_validation_failure(erp: ErpStandIn, ddb: FakeDynamo) -> None:
    flow = shipping.build(context(erp, ddb, "inpost-shipments"))
    for broken in (
        {**upstream("shipped", "confirmed"), "order_reference": "727"},
        {**upstream("shipped", "confirmed"), "tracking_number": ""},
        {**upstream("shipped", "confirmed"), "shipment_event": "packed"},
    ):
        with pytest.raises(ValidationFailed):
            flow.prepare(shipment(broken))
