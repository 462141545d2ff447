"""Stripe on the sending side: makes realistic events (``payment_intent.succeeded`` for an order,
``charge.refunded``) from the documented samples in tests/events/stripe/, and delivers them as
Stripe does: ``Stripe-Signature: t=<now>,v1=<hex>`` (one ``v1`` per signing secret while a secret
is being rolled), the event's ``id`` the same on every retry, a fresh timestamp and signature on
each attempt, retried on any answer that is not a 2xx (Stripe retries for up to three days with
an exponential backoff; locally ``retries`` times from ``retry_delay`` seconds).

``forge`` sends one attempt signed with a chosen timestamp and secret (an expired, a future or a
wrongly signed delivery); ``send_raw`` sends bytes and headers as they are.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from junction_local.standins.shop import Delivery
from shared.webhooks import stripe

SAMPLES = EVENTS / "stripe"  # Stripe's documented event shapes, one file per event type
# The local endpoint's signing secret: public on purpose, so anyone can sign a curl request.
SIGNING_SECRET = "whsec_local_stripe_endpoint_secret"  # noqa: S105 - a fixed local value, never deployed
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def _ids(n: int) -> dict[str, str]:
    """Stripe-shaped ids for the payment of order ``n`` (distinct per n, stable across runs)."""
    tail = f"{n:012d}"
    return {
        "pi": f"pi_3QxLoc{tail}",
        "ch": f"ch_3QxLoc{tail}",
        "pm": f"pm_1QxLoc{tail}",
    }


def payment_succeeded(
    n: int, *, amount: int | None = None, currency: str = "pln", source: str = "woocommerce"
) -> dict[str, Any]:
    """A ``payment_intent.succeeded`` event paying order ``n`` of ``source`` (``amount`` in minor
    units). Its metadata carry the order reference and, as the WooCommerce Stripe Gateway does,
    the shop's ``order_id``."""
    event: dict[str, Any] = json.loads((SAMPLES / "payment-intent-succeeded.json").read_text(encoding="utf-8"))
    ids = _ids(n)
    received = amount if amount is not None else 10_000 + (n % 50) * 1_999
    intent = event["data"]["object"]
    intent.update(
        id=ids["pi"],
        amount=received,
        amount_received=received,
        client_secret=f"{ids['pi']}_secret_local",
        currency=currency,
        description=f"Sklep Example - Order {n}",
        latest_charge=ids["ch"],
        payment_method=ids["pm"],
        created=int(time.time()) - 5,
        metadata={"order_reference": f"{source}:{n}", "order_id": str(n), "site_url": "https://sklep.example.pl"},
    )
    event.update(id=f"evt_3QxLoc{n:012d}PI", created=int(time.time()))
    return event


def charge_refunded(
    n: int,
    *,
    refunded: int,
    amount: int | None = None,
    currency: str = "pln",
    refund: int = 1,
    with_refunds: bool = False,
) -> dict[str, Any]:
    """A ``charge.refunded`` event for the payment of order ``n``: ``refunded`` is the charge's
    total refunded so far (minor units), the last refund ``re_...`` number ``refund``. As Stripe
    sends it from API version 2022-11-15 on, the Charge carries no ``refunds`` list; with
    ``with_refunds``, as an endpoint pinned to an older version gets it, it does (and says
    which refund this is)."""
    event: dict[str, Any] = json.loads((SAMPLES / "charge-refunded.json").read_text(encoding="utf-8"))
    ids = _ids(n)
    paid = event["data"]["object"]["amount"] if amount is None else amount
    charge = event["data"]["object"]
    template = charge["refunds"]["data"][0]
    refund_doc = copy.deepcopy(template)
    refund_doc.update(
        id=f"re_3QxLoc{n:012d}{refund:02d}",
        amount=refunded,
        charge=ids["ch"],
        payment_intent=ids["pi"],
        currency=currency,
        created=int(time.time()),
    )
    charge.update(
        id=ids["ch"],
        amount=paid,
        amount_captured=paid,
        amount_refunded=refunded,
        currency=currency,
        payment_intent=ids["pi"],
        payment_method=ids["pm"],
        refunded=refunded >= paid,
        description=f"Sklep Example - Order {n}",
        metadata={"order_reference": f"woocommerce:{n}", "order_id": str(n), "site_url": "https://sklep.example.pl"},
    )
    charge["refunds"].update(data=[refund_doc], total_count=1, url=f"/v1/charges/{ids['ch']}/refunds")
    event.update(id=f"evt_3QxLoc{n:012d}R{refund:02d}", created=int(time.time()))
    if with_refunds:
        event["api_version"] = "2022-08-01"
    else:
        del charge["refunds"]
        event["api_version"] = "2024-06-20"
    return event


class StripeStandIn(WebhookPoster):
    """One webhook endpoint of a Stripe account, delivering to one URL. Thread-safe."""

    def __init__(
        self,
        webhook_url: str,
        secret: str,
        *,
        extra_secrets: tuple[str, ...] = (),
        retries: int = 4,
        retry_delay: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(webhook_url, timeout)
        self.secrets = (secret, *extra_secrets)  # two while a secret is being rolled
        self.retries = retries
        self.retry_delay = retry_delay
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def headers(
        self, body: bytes, delivery_id: str, *, timestamp: int | None = None, secrets: tuple[str, ...] | None = None
    ) -> dict[str, str]:
        """What Stripe sends with ``body``: signed at ``timestamp`` (now) with every active secret."""
        at = int(time.time()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Cache-Control": "no-cache",
            "Stripe-Signature": stripe.sign_header(body, at, *(secrets or self.secrets)),
        }

    def _record(self, delivery: Delivery) -> Delivery:
        with self._lock:
            self.deliveries.append(delivery)
        return delivery

    def send(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True, topic: str | None = None
    ) -> Delivery:
        """Deliver an event; like Stripe, sign each attempt anew and retry until a 2xx."""
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode()  # Stripe sends pretty JSON
        delivery = self._record(Delivery(delivery_id or str(payload.get("id", "")), _order_of(payload)))
        for attempt in range(self.retries + 1 if retry else 1):
            status, ms = self.post(body, self.headers(body, delivery.delivery_id))
            delivery.attempts.append(status)
            delivery.latencies_ms.append(ms)
            if 200 <= status < 300:
                break
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def forge(self, payload: dict[str, Any], *, timestamp: int | None = None, secret: str | None = None) -> Delivery:
        """One attempt signed at ``timestamp`` with ``secret`` (the endpoint's own by default)."""
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        headers = self.headers(body, "", timestamp=timestamp, secrets=(secret,) if secret is not None else None)
        status, ms = self.post(body, headers)
        return self._record(Delivery(str(payload.get("id", "")), _order_of(payload), [status], [ms]))

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """A request as-is (bad signatures, malformed bodies)."""
        status, ms = self.post(body, headers)
        return self._record(Delivery("", None, [status], [ms]))


def _order_of(event: dict[str, Any]) -> int | None:
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    order_id = ((obj or {}).get("metadata") or {}).get("order_id") if isinstance(obj, dict) else None
    return int(order_id) if isinstance(order_id, str) and order_id.isascii() and order_id.isdigit() else None


def _event(n: int) -> dict[str, Any]:
    return payment_succeeded(n)


LOCAL = SourceStandIn(
    system="stripe",
    fills="stripe-webhook",
    signing_secret=SIGNING_SECRET,
    samples=SAMPLES,
    event=_event,
    sender=StripeStandIn,
)
