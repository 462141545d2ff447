"""A WooCommerce shop on the sending side: makes realistic order payloads (the REST API's order
resource, as ``order.*`` webhooks carry it) and delivers them as ``WC_Webhook::deliver`` does:
the ``X-WC-Webhook-*`` headers, base64(HMAC-SHA256(secret, body)) in ``X-WC-Webhook-Signature``,
a delivery id of ``wp_hash(webhook id . unix seconds)`` (the same for deliveries within one second).

WooCommerce does not redeliver: each delivery is one request. A 2xx, 301 or 302 answer is a
success and resets the webhook's failure count; any other answer, or none, adds one. A failure
while the count is already above 5 (``woocommerce_max_webhook_delivery_failures``) disables the
webhook, which then delivers nothing until it is activated again (``reactivate``). The ``retries``
option is a local knob, off by default, for runs that want a flaky ingress to be retried.

``ping`` sends what WooCommerce sends when a webhook is saved as active: ``webhook_id=<id>``,
form-encoded and unsigned; WooCommerce keeps the webhook only if the answer is exactly 200.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from junction_local.standins.shop import CATALOGUE, CUSTOMERS, Delivery
from shared.webhooks import woocommerce

SAMPLES = EVENTS / "woocommerce"  # order resources as the REST API documents them, one file per state
# The local shop's webhook secret: public on purpose, so anyone can sign a curl request.
SIGNING_SECRET = "local-woocommerce-webhook-secret"  # noqa: S105 - a fixed local value, never deployed
MAX_DELIVERY_FAILURES = 5  # woocommerce_max_webhook_delivery_failures
DELIVERY_TIMEOUT = 60.0  # seconds: WC_Webhook::deliver's MINUTE_IN_SECONDS
VAT_RATE = Decimal("0.23")
CENT = Decimal("0.01")
_WP_SALT = b"local-wordpress-nonce-salt"  # stands in for wp_salt(); only shapes the delivery ids


def _split_gross(gross: Decimal) -> tuple[Decimal, Decimal]:
    """(net, tax) of a gross amount at the Polish standard VAT rate, as WooCommerce rounds them."""
    net = (gross / (1 + VAT_RATE)).quantize(CENT)
    return net, gross - net


def _wc_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def make_order(
    order_id: int,
    *,
    skus: tuple[str, ...] = ("MUG-BLUE", "TEAPOT-L"),
    customer: int = 0,
    status: str = "processing",
) -> dict[str, Any]:
    """A documented-shape order (gross prices, 23% VAT, PLN) with its own id, lines and customer."""
    payload: dict[str, Any] = json.loads((SAMPLES / "order-created.json").read_text(encoding="utf-8"))
    first, last, email, vat, city, postcode, phone = CUSTOMERS[customer % len(CUSTOMERS)]
    template = payload["line_items"][0]
    lines, net_total, tax_total = [], Decimal(0), Decimal(0)
    for n, sku in enumerate(skus):
        title, variant, price = CATALOGUE.get(sku, ("Unlisted product", "", Decimal("10.00")))
        quantity = 1 + n % 2
        net, tax = _split_gross(price * quantity)
        line = copy.deepcopy(template)
        line.update(
            id=order_id * 10 + n,
            name=f"{title} - {variant}" if variant else title,
            sku=sku,
            quantity=quantity,
            subtotal=str(net),
            subtotal_tax=str(tax),
            total=str(net),
            total_tax=str(tax),
            taxes=[{"id": 1, "total": str(tax), "subtotal": str(tax)}],
            price=float(net / quantity),  # a JSON number in WooCommerce's schema; the mapping never reads it
            meta_data=[],
            parent_name=title,
        )
        lines.append(line)
        net_total += net
        tax_total += tax
    shipping = payload["shipping_lines"][0]
    shipping_net, shipping_tax = Decimal(shipping["total"]), Decimal(shipping["total_tax"])
    now = datetime.now(UTC)
    local = now.astimezone()
    for address in (payload["billing"], payload["shipping"]):
        address.update(first_name=first, last_name=last, city=city, postcode=postcode, phone=phone)
    payload["billing"]["email"] = email
    payload["tax_lines"][0].update(tax_total=str(tax_total), shipping_tax_total=str(shipping_tax))
    payload.update(
        id=order_id,
        number=str(order_id),
        status=status,
        customer_id=1000 + customer,
        order_key=f"wc_order_local{order_id}",
        date_created=_wc_date(local),
        date_created_gmt=_wc_date(now),
        date_modified=_wc_date(local),
        date_modified_gmt=_wc_date(now),
        line_items=lines,
        meta_data=[{"id": order_id * 10, "key": "_billing_nip", "value": vat}] if vat else [],
        cart_tax=str(tax_total),
        total_tax=str(tax_total + shipping_tax),
        total=str(net_total + tax_total + shipping_net + shipping_tax),
        payment_url=f"https://sklep.example.pl/zamowienie/order-pay/{order_id}/?pay_for_order=true",
        _links={
            "self": [{"href": f"https://sklep.example.pl/wp-json/wc/v3/orders/{order_id}"}],
            "collection": [{"href": "https://sklep.example.pl/wp-json/wc/v3/orders"}],
        },
    )
    return payload


def delivered(status: int) -> bool:
    """WooCommerce's success: a 2xx, 301 or 302 (``log_delivery``)."""
    return 200 <= status < 303


class WooCommerceStandIn(WebhookPoster):
    """One webhook of a shop, delivering to one URL. Thread-safe; one keep-alive connection per thread."""

    def __init__(
        self,
        webhook_url: str,
        secret: str,
        *,
        webhook_id: int = 17,
        topic: str = "order.created",
        source_url: str = "https://sklep.example.pl/",
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float = DELIVERY_TIMEOUT,
        max_failures: int = MAX_DELIVERY_FAILURES,
    ) -> None:
        super().__init__(webhook_url, timeout)
        self.secret = secret
        self.webhook_id = webhook_id
        self.topic = topic
        self.source_url = source_url
        self.retries = retries
        self.retry_delay = retry_delay
        self.max_failures = max_failures
        self.failure_count = 0
        self.status = "active"  # active | disabled (by failures)
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def new_delivery_id(self) -> str:
        """``wp_hash(webhook id . unix seconds)``: repeats for deliveries within one second."""
        data = f"{self.webhook_id}{int(time.time())}".encode()
        return hmac.new(_WP_SALT, data, hashlib.md5).hexdigest()

    def headers(self, body: bytes, delivery_id: str, *, topic: str | None = None) -> dict[str, str]:
        topic = topic or self.topic
        resource, _, event = topic.partition(".")
        return {
            "Content-Type": "application/json",
            "User-Agent": "WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)",
            "X-WC-Webhook-Source": self.source_url,
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": woocommerce.sign(body, self.secret),
            "X-WC-Webhook-ID": str(self.webhook_id),
            "X-WC-Webhook-Delivery-ID": delivery_id,
        }

    def _count(self, status: int) -> None:
        """``log_delivery`` and ``failed_delivery``: reset on success, disable past the threshold."""
        with self._lock:
            if delivered(status):
                self.failure_count = 0
            elif self.failure_count > self.max_failures:
                self.status = "disabled"
            else:
                self.failure_count += 1

    def _attempt(self, delivery: Delivery, body: bytes, headers: dict[str, str]) -> int:
        status, ms = self.post(body, headers)
        delivery.attempts.append(status)
        delivery.latencies_ms.append(ms)
        self._count(status)
        return status

    def _record(self, delivery: Delivery) -> Delivery:
        with self._lock:
            self.deliveries.append(delivery)
        return delivery

    def send(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True, topic: str | None = None
    ) -> Delivery:
        """Deliver an order webhook: one request, as WooCommerce (more only with ``retries``).
        A disabled webhook sends nothing: the delivery has no attempts."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = self._record(Delivery(delivery_id or self.new_delivery_id(), payload.get("id")))
        for attempt in range(self.retries + 1 if retry else 1):
            if self.status != "active":
                break
            if delivered(self._attempt(delivery, body, self.headers(body, delivery.delivery_id, topic=topic))):
                break
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """A request as-is (bad signatures, malformed bodies); it counts toward the failures."""
        delivery = self._record(Delivery(headers.get("X-WC-Webhook-Delivery-ID", ""), None))
        self._attempt(delivery, body, headers)
        return delivery

    def ping(self) -> bool:
        """The check of a newly saved webhook; True when the URL answered exactly 200."""
        body = f"webhook_id={self.webhook_id}".encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)",
        }
        status, _ = self.post(body, headers)
        return status == 200

    def reactivate(self) -> None:
        """What an admin does to a disabled webhook (status back to active)."""
        with self._lock:
            self.status = "active"


def _event(n: int) -> dict[str, Any]:
    return make_order(n, customer=n % len(CUSTOMERS), skus=("MUG-BLUE", "CUP-SET-4"))


LOCAL = SourceStandIn(
    system="woocommerce",
    fills="woocommerce-webhook",
    signing_secret=SIGNING_SECRET,
    samples=SAMPLES,
    event=_event,
    sender=WooCommerceStandIn,
)
