"""Stripe and Przelewy24 events mapped to payment events: the routed types, the ignored ones,
malformed payloads (a clear ValidationFailed), unverified P24 payments, and exact amounts."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from functions.payments.events import PaymentEvent, payment_from_envelope, to_decimal
from shared.envelope import Envelope
from shared.errors import ValidationFailed

EVENTS = Path(__file__).parent.parent / "events"
VERIFIED = {
    "p24_order_id": "300000001",
    "p24_session_id": "woocommerce:727",
    "p24_verified": "yes",
    "amount_minor": "35999",
    "currency": "PLN",
    "order_reference": "woocommerce:727",
}


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return doc


def envelope(body: Any, source: str = "stripe", upstream: dict[str, str] | None = None) -> Envelope:
    raw = body if isinstance(body, str) else json.dumps(body)
    return Envelope(
        integration=f"{source}-payments",
        delivery_id="d-1",
        idempotency_key=f"{source}-payments:d-1",
        source=source,
        topic=None,
        received_at="2026-12-06T21:00:00Z",
        body=raw,
        upstream=dict(upstream or {}),
    )


def parsed(body: Any, source: str = "stripe", upstream: dict[str, str] | None = None) -> PaymentEvent:
    event = payment_from_envelope(envelope(body, source, upstream))
    assert event is not None
    return event


# -- Stripe ------------------------------------------------------------------------------------
def test_a_succeeded_payment_intent_is_a_payment_of_the_amount_received() -> None:
    event = parsed(sample("stripe/payment-intent-succeeded.json"))
    assert (event.kind, event.provider, event.provider_payment_id) == (
        "payment",
        "stripe",
        "pi_3QxLoc2eZvKYlo2C0mV5cR7d",
    )
    assert event.order_reference == "woocommerce:727" and event.entity_id == "woocommerce-order:727"
    assert event.amount == Decimal("359.99") and event.currency == "PLN"
    assert event.business_key == "stripe:pi_3QxLoc2eZvKYlo2C0mV5cR7d#payment"
    assert event.reference == "stripe:pi_3QxLoc2eZvKYlo2C0mV5cR7d"


def test_a_refunded_charge_is_a_refund_of_its_newest_refund() -> None:
    body = sample("stripe/charge-refunded.json")
    event = parsed(body)
    assert (event.kind, event.refund_id, event.amount_minor) == ("refund", "re_3QxLoc2eZvKYlo2C0f4Gh5Jk", 6000)
    assert event.provider_payment_id == "pi_3QxLoc2eZvKYlo2C0mV5cR7d"
    assert event.business_key == "stripe:pi_3QxLoc2eZvKYlo2C0mV5cR7d#refund:re_3QxLoc2eZvKYlo2C0f4Gh5Jk"

    second = copy.deepcopy(body)
    older = second["data"]["object"]["refunds"]["data"][0]
    newer = {**older, "id": "re_second", "amount": 1000, "created": older["created"] + 60}
    second["data"]["object"]["refunds"]["data"] = [newer, older]
    event = parsed(second)
    assert (event.refund_id, event.amount_minor) == ("re_second", 1000)


def test_a_failed_refund_and_other_event_types_are_not_routed() -> None:
    body = sample("stripe/charge-refunded.json")
    body["data"]["object"]["refunds"]["data"][0]["status"] = "failed"
    assert payment_from_envelope(envelope(body)) is None
    other = sample("stripe/payment-intent-succeeded.json")
    other["type"] = "payment_intent.created"
    assert payment_from_envelope(envelope(other)) is None


def test_the_woocommerce_gateway_metadata_names_the_order() -> None:
    body = sample("stripe/payment-intent-succeeded.json")
    del body["data"]["object"]["metadata"]["order_reference"]
    assert parsed(body).order_reference == "woocommerce:727"
    del body["data"]["object"]["metadata"]["site_url"]
    with pytest.raises(ValidationFailed, match="names no order"):
        payment_from_envelope(envelope(body))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("data", "object", "amount_received"), "35999", "amount_received"),
        (("data", "object", "amount_received"), 0, "amount_received"),
        (("data", "object", "amount_received"), 359.99, "amount_received"),
        (("data", "object", "amount_received"), True, "amount_received"),
        (("data", "object", "currency"), None, "currency"),
        (("data", "object", "currency"), "zł", "currency"),
        (("data", "object", "id"), "ch_123", "id"),
        (("data", "object", "metadata", "order_reference"), "not a reference", "order_reference"),
        (("data", "object"), "x", "data.object"),
        (("created",), "yesterday", "created"),
    ],
)
def test_a_malformed_stripe_event_says_what_is_wrong(path: tuple[str, ...], value: Any, message: str) -> None:
    body = sample("stripe/payment-intent-succeeded.json")
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationFailed, match=message):
        payment_from_envelope(envelope(body))


def test_a_refunded_charge_without_its_refunds_list_is_a_refund_up_to_its_total() -> None:
    # API versions from 2022-11-15 leave the refunds out: the charge's total refunded so far counts.
    body = sample("stripe/charge-refunded.json")
    del body["data"]["object"]["refunds"]
    body["data"]["object"]["amount_refunded"] = 5_000
    event = parsed(body)
    assert (event.kind, event.cumulative, event.amount_minor) == ("refund", True, 5_000)
    assert event.refund_id == "refunded-to-5000"
    assert event.reference.endswith("#refund:refunded-to-5000")  # one key per total: a repeat is a duplicate


def test_a_refunds_list_without_refunds_is_refused_clearly() -> None:
    body = sample("stripe/charge-refunded.json")
    body["data"]["object"]["refunds"]["data"] = []
    with pytest.raises(ValidationFailed, match="without refunds"):
        payment_from_envelope(envelope(body))


@pytest.mark.parametrize("raw", ["not json", "[]", '{"data": {}}', '{"type": 5}'])
def test_a_body_that_is_no_event_is_a_validation_failure(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        payment_from_envelope(envelope(raw))


# -- Przelewy24 --------------------------------------------------------------------------------
def test_a_verified_p24_notification_is_a_payment_of_its_order() -> None:
    event = parsed(sample("przelewy24/transaction-notification.json"), "przelewy24", VERIFIED)
    assert (event.kind, event.provider, event.provider_payment_id) == ("payment", "przelewy24", "300000001")
    assert event.amount == Decimal("359.99") and event.order_reference == "woocommerce:727"
    assert event.business_key == "przelewy24:300000001#payment"


def test_a_session_suffix_is_not_part_of_the_order_reference() -> None:
    body = {**sample("przelewy24/transaction-notification.json"), "sessionId": "woocommerce:727#2"}
    event = parsed(body, "przelewy24", {**VERIFIED, "p24_session_id": "woocommerce:727#2"})
    assert event.order_reference == "woocommerce:727"


@pytest.mark.parametrize(
    "upstream",
    [
        {},
        {**VERIFIED, "p24_verified": "no"},
        {k: v for k, v in VERIFIED.items() if k != "p24_verified"},
    ],
)
def test_an_unverified_p24_notification_is_never_paid(upstream: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed, match="not verified"):
        payment_from_envelope(envelope(sample("przelewy24/transaction-notification.json"), "przelewy24", upstream))


@pytest.mark.parametrize(
    "upstream",
    [
        {**VERIFIED, "amount_minor": "35998"},
        {**VERIFIED, "currency": "EUR"},
        {**VERIFIED, "p24_order_id": "300000002"},
        {k: v for k, v in VERIFIED.items() if k != "amount_minor"},
    ],
)
def test_a_notification_that_differs_from_what_p24_verified_is_refused(upstream: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed, match="differs from what Przelewy24 verified"):
        payment_from_envelope(envelope(sample("przelewy24/transaction-notification.json"), "przelewy24", upstream))


@pytest.mark.parametrize(
    ("field", "value"), [("sessionId", "order 727"), ("orderId", "300000001"), ("amount", -1), ("amount", 1.5)]
)
def test_a_malformed_p24_notification_is_refused(field: str, value: Any) -> None:
    body = {**sample("przelewy24/transaction-notification.json"), field: value}
    with pytest.raises(ValidationFailed, match=field):
        payment_from_envelope(envelope(body, "przelewy24", VERIFIED))


# -- amounts -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("minor", "currency", "amount"),
    [
        (35999, "PLN", "359.99"),
        (1, "eur", "0.01"),
        (100, "USD", "1.00"),
        (500, "JPY", "500"),
        (12345, "KWD", "12.345"),
        (10**15 + 1, "PLN", "10000000000000.01"),
    ],
)
def test_minor_units_become_exact_decimals(minor: int, currency: str, amount: str) -> None:
    value = to_decimal(minor, currency)
    assert value == Decimal(amount) and str(value) == amount


def test_a_float_is_never_an_amount() -> None:
    with pytest.raises(TypeError):
        to_decimal(1.5, "PLN")  # type: ignore[arg-type]
