"""WooCommerce order webhooks: the verifier, the ping, the mapping of the order resource and the
local sender (against a local HTTP server that answers what each test needs)."""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from junction_local.events import apigw_event
from junction_local.standins import woocommerce as standin
from shared.connectors import woocommerce as wc
from shared.errors import ValidationFailed
from shared.ingress import Ingress
from shared.webhooks import BadRequest, Headers, VerificationFailed, verifier_for, woocommerce
from tests.unit.test_ingress_fakes import NOW, QUEUE_URL, StaticSecrets, StrictSqs, integration

SECRET = "wc_unit_secret_&_more"
OLD_SECRET = "wc_unit_secret_before_rotation"
PATH = "/webhooks/woocommerce/orders"
VERIFIER = verifier_for("woocommerce")


def load(name: str) -> dict[str, Any]:
    return standin.LOCAL.sample(name)


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def wc_headers(
    body: bytes, *, secret: str = SECRET, delivery_id: str | None = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
) -> dict[str, str]:
    sender = standin.WooCommerceStandIn("http://127.0.0.1:9/unused", secret)
    headers = sender.headers(body, delivery_id or "")
    if delivery_id is None:
        del headers["X-WC-Webhook-Delivery-ID"]
    return headers


def verify(body: bytes, headers: dict[str, str], secrets: list[str] | None = None) -> Any:
    return VERIFIER.verify(Headers(headers), body, secrets or [SECRET], now=NOW, tolerance=300)


# -- verifier ----------------------------------------------------------------------------------------
def test_a_correctly_signed_delivery_verifies_with_its_topic_and_delivery_id() -> None:
    body = body_of(load("order-created"))
    delivery = verify(body, wc_headers(body))
    assert delivery.topic == "order.created"
    assert delivery.delivery_id.startswith("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6:")


def test_deliveries_sharing_a_woocommerce_delivery_id_stay_apart_and_a_resend_stays_a_duplicate() -> None:
    first, second = body_of(load("order-created")), body_of(load("order-processing"))
    ids = [verify(b, wc_headers(b)).delivery_id for b in (first, second, first)]
    assert ids[0] != ids[1] and ids[0] == ids[2]


def test_a_wrong_signature_is_refused() -> None:
    body = body_of(load("order-created"))
    headers = wc_headers(body, secret="not-the-secret")
    with pytest.raises(VerificationFailed, match="mismatch"):
        verify(body, headers)


def test_a_body_changed_after_signing_is_refused() -> None:
    body = body_of(load("order-created"))
    headers = wc_headers(body)
    with pytest.raises(VerificationFailed):
        verify(body.replace(b'"375.99"', b'"0.99"'), headers)


@pytest.mark.parametrize("signed_with", [SECRET, OLD_SECRET])
def test_either_secret_verifies_during_a_rotation(signed_with: str) -> None:
    body = body_of(load("order-created"))
    assert verify(body, wc_headers(body, secret=signed_with), [SECRET, OLD_SECRET]).topic == "order.created"


def test_a_secret_stored_html_escaped_verifies_as_wordpress_decodes_it() -> None:
    body = body_of(load("order-created"))
    assert verify(body, wc_headers(body, secret=SECRET), ["wc_unit_secret_&amp;_more"])


def test_a_missing_delivery_id_is_a_bad_request() -> None:
    body = body_of(load("order-created"))
    with pytest.raises(BadRequest, match="Delivery-ID"):
        verify(body, wc_headers(body, delivery_id=None))


@pytest.mark.parametrize("signature", ["", "not base64!", "AAAA"])
def test_a_missing_or_malformed_signature_is_refused(signature: str) -> None:
    body = body_of(load("order-created"))
    headers = wc_headers(body) | {"X-WC-Webhook-Signature": signature}
    with pytest.raises(VerificationFailed):
        verify(body, headers)


@pytest.mark.parametrize(
    ("body", "headers", "ping"),
    [
        (b"webhook_id=17", {}, True),
        (b"webhook_id=", {}, False),
        (b"webhook_id=17&x=1", {}, False),
        (b"webhook_id=17\n", {}, False),
        (b'{"webhook_id":17}', {}, False),
        (b"webhook_id=17", {"X-WC-Webhook-Signature": "AAAA"}, False),
    ],
)
def test_only_the_exact_unsigned_ping_shape_is_a_ping(body: bytes, headers: dict[str, str], ping: bool) -> None:
    assert woocommerce.WooCommerceVerifier().is_ping(Headers(headers), body) is ping


# -- ingress --------------------------------------------------------------------------------------------
def make_ingress() -> tuple[Ingress, StrictSqs]:
    sqs = StrictSqs()
    ingress = Ingress(
        integration("woocommerce", topic_header="x-wc-webhook-topic"),
        stage="unit",
        queue_urls=[QUEUE_URL],
        sqs=sqs,
        secrets=StaticSecrets(SECRET),
        clock=lambda: NOW,
    )
    return ingress, sqs


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    seen: list[dict[str, float]] = []
    monkeypatch.setattr("shared.ingress.emit_metrics", lambda _name, values: seen.append(values))
    return seen


def test_the_ping_gets_a_200_and_enqueues_nothing(metrics: list[dict[str, float]]) -> None:
    ingress, sqs = make_ingress()
    event = apigw_event("POST", PATH, {"Content-Type": "application/x-www-form-urlencoded"}, b"webhook_id=17")
    answer = ingress.handle(event)
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == {"status": "pong"}
    assert sqs.sent == []
    assert metrics == [{"Webhook_ping": 1}]


def test_an_unsigned_form_body_that_is_not_the_ping_is_a_401(metrics: list[dict[str, float]]) -> None:
    ingress, sqs = make_ingress()
    event = apigw_event("POST", PATH, {"Content-Type": "application/x-www-form-urlencoded"}, b"webhook_id=17&a=b")
    assert ingress.handle(event)["statusCode"] == 401
    assert sqs.sent == [] and metrics == [{"Webhook_unauthorized": 1}]


def test_a_signed_order_is_enqueued_with_its_topic_and_without_its_signature() -> None:
    ingress, sqs = make_ingress()
    body = body_of(load("order-created"))
    answer = ingress.handle(apigw_event("POST", PATH, wc_headers(body), body))
    assert answer["statusCode"] == 202
    [message] = sqs.sent
    envelope = json.loads(message["MessageBody"])
    assert envelope["topic"] == "order.created"
    assert envelope["headers"]["x-wc-webhook-delivery-id"] == "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    assert "x-wc-webhook-signature" not in envelope["headers"]


# -- mapping -----------------------------------------------------------------------------------------------
def test_the_created_sample_maps_to_a_gross_priced_polish_order() -> None:
    order = wc.order_from_webhook(load("order-created"))
    assert (order.source, order.source_id, order.number, order.currency) == ("woocommerce", "4217", "4217", "PLN")
    assert order.taxes_included is True
    assert [(line.sku, line.unit_price.amount, line.quantity) for line in order.lines] == [
        ("MUG-BLUE", Decimal("60.00"), Decimal(2)),
        ("TEAPOT-L", Decimal("240.00"), Decimal(1)),
    ]
    assert order.lines[0].taxes[0].rate == Decimal("0.23") and order.lines[0].taxes[0].amount.amount == Decimal("22.44")
    assert order.shipping[0].price.amount == Decimal("15.99") and order.shipping[0].code == "flat_rate"
    assert (order.total.amount, order.total_tax.amount, order.subtotal.amount) == (
        Decimal("375.99"),
        Decimal("70.31"),
        Decimal("360.00"),
    )
    assert order.customer.email == "anna.kowalska@example.pl" and order.customer.phone == "+48601234567"
    assert order.billing_address is not None and order.billing_address.country == "PL"
    assert order.created_at.isoformat() == "2025-05-14T09:31:07+00:00"


def test_a_discounted_b2b_order_carries_its_nip_coupon_and_gross_discount() -> None:
    order = wc.order_from_webhook(load("order-processing"))
    assert order.customer.tax_id == "PL7740001454" and order.customer.company == "Zieliński Studio sp. z o.o."
    assert order.discount_codes == ("wiosna10",)
    [line] = order.lines
    assert line.unit_price.amount == Decimal("310.00")
    assert line.discount is not None and line.discount.amount == Decimal("31.00")
    assert order.total_discounts.amount == Decimal("31.00") and order.total.amount == Decimal("291.99")


def test_a_shop_pricing_without_tax_maps_net_prices() -> None:
    payload = load("order-created")
    payload["prices_include_tax"] = False
    order = wc.order_from_webhook(payload)
    assert order.taxes_included is False
    assert [line.unit_price.amount for line in order.lines] == [Decimal("48.78"), Decimal("195.12")]
    assert order.shipping[0].price.amount == Decimal("13.00")


def test_a_unit_price_that_does_not_divide_into_cents_keeps_four_places() -> None:
    payload = load("order-created")
    payload["line_items"][0].update(
        quantity=3, subtotal="100.00", subtotal_tax="0.00", total="100.00", total_tax="0.00"
    )
    assert wc.order_from_webhook(payload).lines[0].unit_price.amount == Decimal("33.3333")


def test_money_is_decimal_everywhere_and_a_float_amount_is_refused() -> None:
    order = wc.order_from_webhook(load("order-created"))
    amounts = [order.total, order.subtotal, order.total_tax, order.total_discounts]
    amounts += [line.unit_price for line in order.lines] + [s.price for s in order.shipping]
    assert all(type(m.amount) is Decimal for m in amounts)
    payload = load("order-created")
    payload["line_items"][0]["total"] = 97.56
    with pytest.raises(ValidationFailed, match=r"line_items\[0\]\.total is not a decimal string"):
        wc.order_from_webhook(payload)


@pytest.mark.parametrize("field", ["date_modified_gmt", "line_items", "total", "billing", "currency"])
def test_a_missing_required_field_is_named(field: str) -> None:
    payload = load("order-created")
    del payload[field]
    with pytest.raises(ValidationFailed, match=f"missing field {field}") as raised:
        wc.order_from_webhook(payload)
    assert raised.value.entity_ids == {"woocommerce_order_id": "4217", "order_number": "4217"}
    with pytest.raises(ValidationFailed, match=field):
        wc.unknown_fields(payload)


def test_invalid_data_fails_with_ids_and_no_personal_data() -> None:
    payload = load("order-created")
    payload["billing"]["email"] = "anna.kowalska(at)example.pl"
    payload["billing"]["phone"] = "call me"
    with pytest.raises(ValidationFailed) as raised:
        wc.order_from_webhook(payload)
    text = raised.value.message + json.dumps(raised.value.entity_ids)
    assert raised.value.entity_ids["woocommerce_order_id"] == "4217"
    assert "kowalska" not in text.lower() and "call me" not in text


def test_fee_lines_are_refused_rather_than_dropped() -> None:
    payload = load("order-created")
    payload["fee_lines"] = [{"id": 1, "name": "Pobranie", "total": "5.00", "total_tax": "1.15"}]
    with pytest.raises(ValidationFailed, match="fee_lines"):
        wc.order_from_webhook(payload)


def test_unknown_top_level_fields_are_reported() -> None:
    assert wc.unknown_fields(load("order-created")) == []
    payload = load("order-created") | {"loyalty_points": 12, "_shipment_tracking": []}
    assert wc.unknown_fields(payload) == ["_shipment_tracking", "loyalty_points"]


@pytest.mark.parametrize(
    ("sample", "status", "event"),
    [
        ("order-created", "processing", "order.created"),
        ("order-processing", "processing", "order.created"),
        ("order-cancelled", "cancelled", "order.cancelled"),
        ("order-pending", "pending", None),
    ],
)
def test_statuses_and_what_they_mean_to_junction(sample: str, status: str, event: str | None) -> None:
    payload = load(sample)
    assert wc.order_status(payload) == status and wc.junction_event(payload) == event


@pytest.mark.parametrize(
    ("status", "event"),
    [("on-hold", "order.created"), ("completed", "order.created"), ("failed", None), ("refunded", None)],
)
def test_other_statuses(status: str, event: str | None) -> None:
    assert wc.junction_event(load("order-created") | {"status": status}) == event


def test_the_version_orders_the_cancellation_after_the_creation() -> None:
    created, cancelled = wc.order_version(load("order-created")), wc.order_version(load("order-cancelled"))
    assert created == "2025-05-14T09:31:08+00:00" and cancelled == "2025-05-15T07:02:44+00:00"
    assert cancelled > created


def test_a_version_that_is_not_a_date_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="date_modified_gmt"):
        wc.order_version(load("order-created") | {"date_modified_gmt": "yesterday"})


# -- the local sender -----------------------------------------------------------------------------------------
class Receiver:
    """A local endpoint answering the next status of ``answers`` (the last one repeats)."""

    def __init__(self) -> None:
        self.answers = [202]
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_the_sender_signs_as_woocommerce_and_the_verifier_accepts_it(receiver: Receiver) -> None:
    sender = standin.WooCommerceStandIn(receiver.url, SECRET, timeout=5)
    order = standin.LOCAL.event(7)
    assert sender.send(order).status == 202
    [(headers, body)] = receiver.requests
    assert verify(body, headers).topic == "order.created"
    assert headers["X-WC-Webhook-Resource"] == "order" and headers["X-WC-Webhook-Event"] == "created"
    assert wc.order_from_webhook(json.loads(body)).source_id == "7"


def test_distinct_events_are_distinct_orders() -> None:
    orders = [wc.order_from_webhook(standin.LOCAL.event(n)) for n in range(3)]
    assert len({o.source_id for o in orders}) == 3


def test_the_sender_pings_as_a_new_webhook_does(receiver: Receiver) -> None:
    sender = standin.WooCommerceStandIn(receiver.url, SECRET, webhook_id=42, timeout=5)
    receiver.answers = [200]
    assert sender.ping() is True
    [(headers, body)] = receiver.requests
    assert body == b"webhook_id=42" and "X-WC-Webhook-Signature" not in headers
    receiver.answers = [202]  # WooCommerce wants exactly 200
    assert sender.ping() is False


def test_a_failing_endpoint_disables_the_webhook_at_woocommerces_threshold(receiver: Receiver) -> None:
    sender = standin.WooCommerceStandIn(receiver.url, SECRET, timeout=5)
    receiver.answers = [500]
    for n in range(6):  # counted up to 6: still active
        assert sender.send(standin.LOCAL.event(n)).attempts == [500]  # one request each: no redelivery
    assert (sender.failure_count, sender.status) == (6, "active")
    sender.send(standin.LOCAL.event(6))  # a failure while the count is above 5
    assert sender.status == "disabled"
    assert sender.send(standin.LOCAL.event(7)).attempts == []
    assert len(receiver.requests) == 7


def test_a_success_resets_the_failure_count(receiver: Receiver) -> None:
    sender = standin.WooCommerceStandIn(receiver.url, SECRET, timeout=5)
    receiver.answers = [503, 401, 202]
    for n in range(3):
        sender.send(standin.LOCAL.event(n))
    assert sender.failure_count == 0 and sender.status == "active"


def test_the_local_retry_knob_resends_the_same_delivery(receiver: Receiver) -> None:
    sender = standin.WooCommerceStandIn(receiver.url, SECRET, retries=2, retry_delay=0, timeout=5)
    receiver.answers = [503, 202]
    delivery = sender.send(copy.deepcopy(standin.LOCAL.event(1)))
    assert delivery.attempts == [503, 202]
    ids = {headers["X-WC-Webhook-Delivery-ID"] for headers, _ in receiver.requests}
    assert ids == {delivery.delivery_id}
