"""The warehouse (WMS) on the sending side: makes ``order.packed`` events (the body
functions/shipping/events.py documents) and delivers them as a Standard Webhooks sender does:
``webhook-id`` (one per message, kept across its retries), ``webhook-timestamp`` (unix seconds,
signed again on each attempt) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body`` with the ``whsec_`` secret's key), retried with backoff on any non-2xx
answer or none. It keeps every delivery attempt so the demo and tests can check what happened.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from typing import Any

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from junction_local.standins.shop import CUSTOMERS, Delivery
from shared.webhooks import standard

SAMPLES = EVENTS / "wms"  # order.packed bodies, one file per service
# The local warehouse's signing secret: public on purpose, so anyone can sign a curl request.
SIGNING_SECRET = "whsec_bG9jYWwtd21zLXdlYmhvb2stc2lnbmluZy1zZWNyZXQ="  # noqa: S105 - a fixed local value
LOCKERS = ("KRA010", "WAW22A", "POZ08A", "GDA117M")


def make_packed(
    order_reference: str, *, service: str = "locker", customer: int = 0, order_number: str | None = None
) -> dict[str, Any]:
    """An ``order.packed`` event for one order: to a locker (a template parcel) or by courier
    (dimensions and weight, to the customer's address)."""
    name = "order-packed-locker" if service == "locker" else "order-packed-courier"
    event: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    first, last, email, _vat, city, postcode, phone = CUSTOMERS[customer % len(CUSTOMERS)]
    data = event["data"]
    data.update(
        order_reference=order_reference,
        order_number=order_number or f"#{order_reference.partition(':')[2][-6:]}",
    )
    receiver = data["receiver"]
    receiver.update(name=f"{first} {last}", email=email, phone=phone)
    if service == "locker":
        data["target_point"] = LOCKERS[customer % len(LOCKERS)]
    else:
        receiver["address"] = {**copy.deepcopy(receiver["address"]), "city": city, "post_code": postcode}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event["timestamp"] = data["packed_at"] = now
    return event


class WmsStandIn(WebhookPoster):
    """Sends ``order.packed`` to one URL. Thread-safe; one keep-alive connection per thread."""

    def __init__(
        self,
        webhook_url: str,
        secret: str,
        *,
        retries: int = 4,
        retry_delay: float = 1.0,
        timeout: float = 15.0,
        clock: Any = time.time,
    ) -> None:
        super().__init__(webhook_url, timeout)
        standard.secret_key(secret)  # a whsec_ secret, or ValueError now rather than on each send
        self.secret = secret
        self.retries = retries
        self.retry_delay = retry_delay
        self.clock = clock
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        timestamp = int(self.clock())
        return {
            "Content-Type": "application/json",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard.sign(delivery_id, timestamp, body, self.secret),
        }

    def send(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True, topic: str | None = None
    ) -> Delivery:
        """Deliver one event; retried with the same ``webhook-id`` until a 2xx."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        delivery = Delivery(delivery_id or f"msg_{uuid.uuid4().hex}", None)
        with self._lock:
            self.deliveries.append(delivery)
        for attempt in range(self.retries + 1 if retry else 1):
            status, ms = self.post(body, self.headers(body, delivery.delivery_id))
            delivery.attempts.append(status)
            delivery.latencies_ms.append(ms)
            if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 429)):
                break
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """A request as-is (bad signatures, malformed bodies)."""
        status, ms = self.post(body, headers)
        delivery = Delivery(headers.get("webhook-id", ""), None, [status], [ms])
        with self._lock:
            self.deliveries.append(delivery)
        return delivery


def _event(n: int) -> dict[str, Any]:
    return make_packed(f"shopify:{n}", service="locker" if n % 2 == 0 else "courier", customer=n)


LOCAL = SourceStandIn(
    system="wms",
    fills="wms-webhook",
    signing_secret=SIGNING_SECRET,
    samples=SAMPLES,
    event=_event,
    sender=WmsStandIn,
)
