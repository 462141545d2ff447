"""A Shopify stand-in on the sending side: makes realistic ``orders/create`` payloads and
delivers them as Shopify does: signed with the app secret (``X-Shopify-Hmac-Sha256``), one
``X-Shopify-Webhook-Id`` per delivery kept across its retries, retried on any non-2xx answer
or timeout. It keeps every delivery attempt so the demo and tests can check what happened.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from shared.webhooks import shopify

SAMPLES = EVENTS / "shopify"  # Shopify's documented payloads, one file per topic
# The local shop's webhook signing secret: documented in the README so anyone can sign a curl request.
SIGNING_SECRET = "shpss_local_demo_secret"  # noqa: S105 - a fixed local value, never deployed
CATALOGUE = {
    "MUG-BLUE": ("Ceramic Mug", "Blue", Decimal("60.00")),
    "MUG-RED": ("Ceramic Mug", "Red", Decimal("60.00")),
    "TEAPOT-L": ("Cast Iron Teapot", "Large", Decimal("240.00")),
    "TEAPOT-S": ("Cast Iron Teapot", "Small", Decimal("180.00")),
    "CUP-SET-4": ("Espresso Cups", "Set of 4", Decimal("96.00")),
    "KETTLE-STEEL": ("Steel Kettle", "Steel", Decimal("310.00")),
}
CUSTOMERS = [
    ("Anna", "Kowalska", "anna.kowalska@example.pl", "PL5260250995", "Warszawa", "00-590", "+48601234567"),
    ("Jan", "Nowak", "jan.nowak@example.pl", None, "Kraków", "31-042", "+48602345678"),
    ("Maria", "Wiśniewska", "maria.w@example.pl", None, "Gdańsk", "80-831", "+48603456789"),
    ("Piotr", "Zieliński", "piotr@zielinski-studio.pl", "PL7740001454", "Poznań", "61-701", "+48604567890"),
]


def make_order(order_id: int, *, skus: tuple[str, ...] = ("MUG-BLUE", "TEAPOT-L"), customer: int = 0) -> dict[str, Any]:
    """A documented-shape orders/create payload with its own id, lines and customer."""
    payload: dict[str, Any] = json.loads((SAMPLES / "orders-create.json").read_text(encoding="utf-8"))
    first, last, email, vat, city, postcode, phone = CUSTOMERS[customer % len(CUSTOMERS)]
    template = payload["line_items"][0]
    lines, subtotal, tax = [], Decimal(0), Decimal(0)
    for n, sku in enumerate(skus):
        title, variant, price = CATALOGUE.get(sku, ("Unlisted product", "", Decimal("10.00")))
        line = copy.deepcopy(template)
        quantity = 1 + n % 2
        line_tax = (price * quantity * Decimal("23") / Decimal("123")).quantize(Decimal("0.01"))
        line.update(
            id=order_id * 10 + n,
            sku=sku,
            title=title,
            variant_title=variant,
            name=f"{title} - {variant}",
            price=str(price),
            quantity=quantity,
            total_discount="0.00",
            discount_allocations=[],
            tax_lines=[{"channel_liable": False, "price": str(line_tax), "rate": 0.23, "title": "VAT"}],
        )
        lines.append(line)
        subtotal += price * quantity
        tax += line_tax
    shipping = Decimal(payload["shipping_lines"][0]["price"])
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for address in (payload["billing_address"], payload["shipping_address"]):
        address.update(first_name=first, last_name=last, name=f"{first} {last}", city=city, zip=postcode, phone=phone)
    payload["customer"].update(id=1000 + customer, email=email, first_name=first, last_name=last, phone=phone)
    payload.update(
        id=order_id,
        admin_graphql_api_id=f"gid://shopify/Order/{order_id}",
        name=f"#{order_id}",
        order_number=order_id,
        email=email,
        contact_email=email,
        phone=phone,
        created_at=now,
        processed_at=now,
        updated_at=now,
        line_items=lines,
        discount_codes=[],
        discount_applications=[],
        note_attributes=[{"name": "vat_number", "value": vat}] if vat else [],
        subtotal_price=str(subtotal),
        total_line_items_price=str(subtotal),
        total_discounts="0.00",
        total_tax=str(tax),
        total_price=str(subtotal + shipping),
    )
    return payload


@dataclass
class Delivery:
    delivery_id: str
    order_id: int | None
    attempts: list[int] = field(default_factory=list)  # HTTP status per attempt (0 = no answer)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.attempts[-1] if self.attempts else 0


class ShopStandIn(WebhookPoster):
    """Sends webhooks to one URL. Thread-safe; one keep-alive connection per thread."""

    def __init__(
        self,
        webhook_url: str,
        secret: str,
        *,
        shop_domain: str = "junction-demo.myshopify.com",
        retries: int = 4,
        retry_delay: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(webhook_url, timeout)
        self.secret = secret
        self.shop_domain = shop_domain
        self.retries = retries
        self.retry_delay = retry_delay
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def headers(self, body: bytes, delivery_id: str, *, topic: str = "orders/create") -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": shopify.sign(body, self.secret),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-Api-Version": "2025-10",
            "X-Shopify-Webhook-Id": delivery_id,
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }

    def send(
        self,
        payload: dict[str, Any],
        *,
        delivery_id: str | None = None,
        retry: bool = True,
        topic: str | None = None,
    ) -> Delivery:
        """Deliver an order webhook (``orders/create``, ``orders/cancelled``); like Shopify, retry
        the same delivery id until a 2xx."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = Delivery(delivery_id or f"{uuid.uuid4()}", payload.get("id"))
        with self._lock:
            self.deliveries.append(delivery)
        for attempt in range(self.retries + 1 if retry else 1):
            status, ms = self.post(body, self.headers(body, delivery.delivery_id, topic=topic or "orders/create"))
            delivery.attempts.append(status)
            delivery.latencies_ms.append(ms)
            if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 429)):
                break  # accepted, or refused for good (Shopify keeps retrying; locally we stop)
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """A request as-is (bad signatures, malformed bodies)."""
        status, ms = self.post(body, headers)
        delivery = Delivery(headers.get("X-Shopify-Webhook-Id", ""), None, [status], [ms])
        with self._lock:
            self.deliveries.append(delivery)
        return delivery


def _event(n: int) -> dict[str, Any]:
    return make_order(n, customer=n % len(CUSTOMERS), skus=("MUG-BLUE", "CUP-SET-4"))


LOCAL = SourceStandIn(
    system="shopify",
    fills="shopify-webhook",
    signing_secret=SIGNING_SECRET,
    samples=SAMPLES,
    event=_event,
    sender=ShopStandIn,
)
