"""Przelewy24 on the sending side: the transaction notifications P24 posts to a transaction's
``urlStatus`` once the customer has paid (JSON, signed in its ``sign`` field with the CRC key),
from the sample in tests/events/przelewy24/.

P24 notifies only for transactions a shop registered and a customer paid. Given the URL of the
P24 API stand-in (``api_url``), the sender keeps to that: ``send`` has the stand-in register the
transaction (as the shop did at checkout) when it does not hold it yet, lets the customer pay it
there (P24 gives it its ``orderId``) and posts exactly the notification P24 would, so the verify
hop finds the transaction it is told about. Without ``api_url`` (a unit test, a forgery) the
sender signs and posts the payload it is given. ``send_raw`` sends bytes and headers as they are.

A notification not answered with a 2xx is sent again (``retries``, backoff from ``retry_delay``);
the same notification keeps its ``orderId`` and ``sessionId``, so it is the same delivery.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from junction_local.standins import EVENTS, SourceStandIn, WebhookPoster
from junction_local.standins.przelewy24_api import CRC, DEFAULT_METHOD_ID, FIRST_ORDER_ID, MERCHANT_ID, POS_ID
from junction_local.standins.shop import Delivery
from shared.webhooks.przelewy24 import sign_notification

SAMPLES = EVENTS / "przelewy24"
USER_AGENT = "Przelewy24"


def notification(
    n: int,
    *,
    amount: int | None = None,
    currency: str = "PLN",
    source: str = "woocommerce",
    attempt: str | None = None,
    crc: str = CRC,
) -> dict[str, Any]:
    """A signed notification of the payment of order ``n`` of ``source``: ``sessionId`` is the
    order reference (``woocommerce:727``), ``#<attempt>`` appended for a repeated attempt."""
    doc: dict[str, Any] = json.loads((SAMPLES / "transaction-notification.json").read_text(encoding="utf-8"))
    session = f"{source}:{n}" + (f"#{attempt}" if attempt else "")
    paid = amount if amount is not None else 10_000 + (n % 50) * 1_999
    doc.update(
        merchantId=MERCHANT_ID,
        posId=POS_ID,
        sessionId=session,
        amount=paid,
        originAmount=paid,
        currency=currency,
        orderId=FIRST_ORDER_ID + n,
        methodId=DEFAULT_METHOD_ID,
        statement=f"p24-{n % 1_000_000:06d}-{session[:20]}",
    )
    doc["sign"] = sign_notification(doc, crc)
    return doc


class Przelewy24NotificationStandIn(WebhookPoster):
    """Posts P24 transaction notifications to one ``urlStatus``. Thread-safe."""

    def __init__(
        self,
        webhook_url: str,
        secret: str,
        *,
        api_url: str | None = None,
        retries: int = 4,
        retry_delay: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(webhook_url, timeout)
        self.crc = secret
        self.api_url = api_url.rstrip("/") if api_url else None
        self.retries = retries
        self.retry_delay = retry_delay
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT}

    def settle(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The notification P24 sends for the payment ``payload`` describes: registered at the API
        stand-in when it is not yet, paid there, signed by it."""
        if self.api_url is None:
            return {**payload, "sign": sign_notification(payload, self.crc)}
        checkout = {
            "amount": payload["originAmount"],
            "currency": payload["currency"],
            "urlStatus": f"http://{self.host}:{self.port}{self.path}",
        }
        with httpx.Client(timeout=self.timeout) as api:
            paid = api.post(
                f"{self.api_url}/_standin/pay",
                json={
                    "sessionId": payload["sessionId"],
                    "amount": payload["amount"],
                    "methodId": payload["methodId"],
                    "register": checkout,
                },
            )
        paid.raise_for_status()
        settled: dict[str, Any] = paid.json()
        return settled

    def send(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True, topic: str | None = None
    ) -> Delivery:
        """Notify the payment ``payload`` describes; retried until a 2xx."""
        settled = self.settle(payload)
        body = json.dumps(settled, ensure_ascii=False, separators=(",", ":")).encode()
        order_id = settled.get("orderId")
        delivery = Delivery(delivery_id or f"{order_id}:{settled.get('sessionId')}", None)
        with self._lock:
            self.deliveries.append(delivery)
        for attempt in range(self.retries + 1 if retry else 1):
            status, ms = self.post(body, self.headers(body, delivery.delivery_id))
            delivery.attempts.append(status)
            delivery.latencies_ms.append(ms)
            if 200 <= status < 300:
                break
            if attempt < self.retries:
                time.sleep(self.retry_delay * (2**attempt))
        return delivery

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Delivery:
        """A request as-is (a forged or malformed notification)."""
        status, ms = self.post(body, headers)
        delivery = Delivery("", None, [status], [ms])
        with self._lock:
            self.deliveries.append(delivery)
        return delivery


def _event(n: int) -> dict[str, Any]:
    return notification(n)


LOCAL = SourceStandIn(
    system="przelewy24",
    fills="przelewy24-crc",
    signing_secret=CRC,
    samples=SAMPLES,
    event=_event,
    sender=Przelewy24NotificationStandIn,
    api="przelewy24",  # notifications name transactions the P24 API stand-in holds
)
