"""InPost ShipX on the sending side: its status webhooks, unsigned, to a URL whose last path
segment is a secret token (``/webhooks/inpost/{token}``). The sender puts its token (or a given
wrong one) in place of ``{token}``. ShipX sends no delivery id and no signature: the body is all.
Retried on any non-2xx answer or none (a local knob; ShipX's own retry policy is not documented).
The ShipX API stand-in (junction_local/standins/inpost.py) posts the same body when a shipment
moves; this sender lets a test or the demo send any status, forged or old ones included.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from junction_local.standins.inpost import ORGANIZATION_ID, status_webhook
from junction_local.standins.shop import Delivery

SAMPLES = EVENTS / "inpost"
# The local path token: public on purpose (a local URL anyone may call). Deployed, it is 32+
# random characters in the inpost-webhook-token secret.
PATH_TOKEN = "local-inpost-webhook-path-token-0123456789"  # noqa: S105 - a fixed local value
PLACEHOLDER = "{token}"


class InPostWebhookSender(WebhookPoster):
    """Sends ShipX webhooks to one URL template. Thread-safe; one keep-alive connection per thread
    and token."""

    def __init__(
        self, webhook_url: str, secret: str, *, retries: int = 2, retry_delay: float = 0.5, timeout: float = 10.0
    ) -> None:
        if PLACEHOLDER not in webhook_url:
            raise ValueError(f"the ShipX webhook URL ends with {PLACEHOLDER}")
        super().__init__(webhook_url.replace(PLACEHOLDER, secret), timeout)
        self.template = webhook_url
        self.token = secret
        self.retries = retries
        self.retry_delay = retry_delay
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._others: dict[str, WebhookPoster] = {}

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": "InPost-ShipX-Webhooks"}

    def _poster(self, token: str | None) -> WebhookPoster:
        if token is None or token == self.token:
            return self
        with self._lock:
            if token not in self._others:
                self._others[token] = WebhookPoster(self.template.replace(PLACEHOLDER, token), self.timeout)
            return self._others[token]

    def send(
        self,
        payload: dict[str, Any],
        *,
        delivery_id: str | None = None,
        retry: bool = True,
        topic: str | None = None,
        token: str | None = None,
    ) -> Delivery:
        """Deliver one webhook body, with the sender's path token or ``token`` in its place."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        shipment = (payload.get("payload") or {}).get("shipment_id") if isinstance(payload, dict) else None
        delivery = Delivery(delivery_id or f"shipx-{shipment}-{time.time_ns()}", None)
        with self._lock:
            self.deliveries.append(delivery)
        poster = self._poster(token)
        for attempt in range(self.retries + 1 if retry else 1):
            status, ms = poster.post(body, self.headers(body, delivery.delivery_id))
            delivery.attempts.append(status)
            delivery.latencies_ms.append(ms)
            if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 429)):
                break
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def send_raw(self, body: bytes, headers: dict[str, str], *, token: str | None = None) -> Delivery:
        """A request as-is (a malformed body, a wrong token)."""
        status, ms = self._poster(token).post(body, headers)
        delivery = Delivery("", None, [status], [ms])
        with self._lock:
            self.deliveries.append(delivery)
        return delivery


def make_status(shipment_id: int, status: str, tracking_number: str | None = None) -> dict[str, Any]:
    """ShipX's ``shipment_status_changed`` body for one shipment."""
    return status_webhook(shipment_id, status, tracking_number, organization_id=int(ORGANIZATION_ID), at=time.time())


def _event(n: int) -> dict[str, Any]:
    return make_status(600_000_000 + n, "delivered", f"6{600_000_000 + n:023d}"[:24])


LOCAL = SourceStandIn(
    system="inpost",
    fills="inpost-webhook-token",
    signing_secret=PATH_TOKEN,
    samples=SAMPLES,
    event=_event,
    sender=InPostWebhookSender,
)
