"""Przelewy24's REST API v1: the verification of a paid transaction (see docs/payments-contract.md).

- Auth: HTTP Basic, the POS id as login and the REST API key ("klucz do raportów") as password.
  A 401 reads the secret again once (a rotated key); refused again, it is ``CredentialsRejected``.
- Verify: ``PUT /api/v1/transaction/verify`` with ``merchantId``, ``posId``, ``sessionId``,
  ``amount``, ``currency``, ``orderId`` and ``sign`` (SHA-384 of the PHP-encoded
  ``{"sessionId","orderId","amount","currency","crc"}``). Until it is verified, P24 keeps the
  money as the customer's advance payment. Success: ``200 {"data": {"status": "success"}}``.
  A refusal is ``400 {"error": ..., "code": 400}`` (a wrong amount, currency, session or sign).
- P24's documentation does not say what a second verify of a verified transaction answers, and
  a verify whose answer was lost is sent again. So a refusal is told apart by reading the
  transaction (``GET /api/v1/transaction/by/sessionId/{sessionId}``): status 2 ("payment made")
  with the same ``orderId``, amount and currency means it is verified already, a success.
- ``GET /api/v1/testAccess`` checks the credentials (``{"data": true}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import ConfigurationError, TargetRejected, TargetUnavailable
from shared.http import HttpConnector, classify_response, transport_error
from shared.webhooks.przelewy24 import sign_verify

TARGET = "przelewy24"
PAYMENT_MADE = 2  # transaction status: 0 no payment, 1 advance payment, 2 payment made, 3 returned
VERIFIED = "verified"
ALREADY_VERIFIED = "already_verified"


@dataclass(frozen=True)
class P24Settings:
    base_url: str  # https://secure.przelewy24.pl (sandbox: https://sandbox.przelewy24.pl)
    merchant_id: int
    pos_id: int
    api_key: str = field(repr=False)  # the REST API key: never in a log line or traceback
    crc: str = field(repr=False)  # the CRC key signing requests and notifications

    @classmethod
    def from_secret(cls, doc: Any) -> P24Settings:
        try:
            settings = cls(
                base_url=str(doc["base_url"]).rstrip("/"),
                merchant_id=_positive_int(doc["merchant_id"]),
                pos_id=_positive_int(doc["pos_id"]),
                api_key=str(doc["api_key"]),
                crc=str(doc["crc"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                "Przelewy24 secret must hold base_url, merchant_id, pos_id (integers), api_key and crc"
            ) from None
        if not settings.api_key or not settings.crc:
            raise ConfigurationError("Przelewy24 secret needs an api_key and a crc")
        return settings


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("not an integer")
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not an integer")
    number = int(value)
    if number <= 0:
        raise ValueError("not positive")
    return number


class VerificationRefused(TargetRejected):
    """P24 refused to verify the transaction and does not hold it as paid with these details
    (another amount, currency or order, or not paid): the payment is not confirmed."""

    reason = "p24_verification_refused"


SettingsSource = Callable[[bool], P24Settings]
Body = Callable[[P24Settings], dict[str, Any]]  # a request body made from the current settings


class Przelewy24Client(HttpConnector[P24Settings]):
    """``settings``: fixed settings, or a source read again (``source(True)``) when P24 refuses
    the API key, so a rotated key is picked up without a restart."""

    def verify_transaction(
        self, *, session_id: str, order_id: int, amount: int, currency: str, ids: dict[str, str]
    ) -> dict[str, Any]:
        """Confirm the paid transaction. Returns ``{"status": "verified" | "already_verified",
        "order_id", "session_id", "amount", "currency"}``; raises ``VerificationRefused`` when
        P24 refuses and does not hold the transaction as paid with these details."""
        fields = {"sessionId": session_id, "orderId": order_id, "amount": amount, "currency": currency}

        def body(s: P24Settings) -> dict[str, Any]:
            return {
                "merchantId": s.merchant_id,
                "posId": s.pos_id,
                "sessionId": session_id,
                "amount": amount,
                "currency": currency,
                "orderId": order_id,
                "sign": sign_verify(fields, s.crc),
            }

        response = self._request("PUT", "/api/v1/transaction/verify", ids, body=body, accept=(400,))
        outcome = {"order_id": order_id, "session_id": session_id, "amount": amount, "currency": currency}
        if response.status_code != 400:
            data = _object(response, ids).get("data")
            if isinstance(data, dict) and data.get("status") == "success":
                return {"status": VERIFIED, **outcome}
            raise TargetUnavailable(
                "Przelewy24 answered the verification without a success status",
                entity_ids=ids,
                details={"status": response.status_code, "target": TARGET},
            )
        refusal = _error(response)
        held = self.transaction_by_session(session_id, ids)
        if held is not None and _paid_as(held, order_id, amount, currency):
            return {"status": ALREADY_VERIFIED, **outcome}
        raise VerificationRefused(
            "Przelewy24 refused to verify the transaction: "
            + (
                "it holds none with this session"
                if held is None
                else f"it holds it with status {held.get('status')!r} and other details"
            ),
            entity_ids=ids,
            details={**refusal, "p24_status": None if held is None else held.get("status")},
        )

    def transaction_by_session(self, session_id: str, ids: dict[str, str]) -> dict[str, Any] | None:
        """The transaction P24 holds for ``session_id`` (its ``data``), or None (404)."""
        path = f"/api/v1/transaction/by/sessionId/{quote(session_id, safe='')}"
        response = self._request("GET", path, ids, accept=(404,))
        if response.status_code == 404:
            return None
        data = _object(response, ids).get("data")
        if not isinstance(data, dict):
            raise TargetUnavailable(
                "Przelewy24 answered the transaction query without data",
                entity_ids=ids,
                details={"status": response.status_code, "target": TARGET},
            )
        return data

    def test_access(self, ids: dict[str, str] | None = None) -> bool:
        """Whether P24 accepts the POS id and API key (``CredentialsRejected`` when it does not)."""
        response = self._request("GET", "/api/v1/testAccess", ids or {})
        return _object(response, ids or {}).get("data") is True

    # -- transport -------------------------------------------------------------------------
    def _send(self, method: str, path: str, ids: dict[str, str], body: Body | None) -> httpx.Response:
        s = self.settings
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body(s), ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(
                method,
                f"{s.base_url}{path}",
                content=content,
                headers=headers,
                auth=(str(s.pos_id), s.api_key),
                timeout=self.call_timeout(),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc

    def _request(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        *,
        body: Body | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send; statuses in ``accept`` are returned unclassified. A refused key (401) reads the
        secret again and sends once more (the body is made again from the new settings: its
        ids and its sign follow a rotated CRC key too)."""
        response = self.with_credentials(
            lambda: self._send(method, path, ids, body),
            ids,
            target=TARGET,
            refused="Przelewy24 refused the POS id or API key: check the przelewy24-api secret",
            statuses=(401,),
        )
        if response.status_code not in accept:
            try:
                classify_response(response, entity_ids=ids, target=TARGET)
            except TargetRejected as exc:
                exc.details.update(_error(response))
                raise
        return response


def _paid_as(held: dict[str, Any], order_id: int, amount: int, currency: str) -> bool:
    return (
        held.get("status") == PAYMENT_MADE
        and held.get("orderId") == order_id
        and held.get("amount") == amount
        and held.get("currency") == currency
    )


def _error(response: httpx.Response) -> dict[str, Any]:
    """Status, P24's error code and its (short, data-free) error text."""
    details: dict[str, Any] = {"status": response.status_code, "target": TARGET}
    try:
        payload = response.json()
    except ValueError:
        return details
    if isinstance(payload, dict):
        error, code = payload.get("error"), payload.get("code")
        if isinstance(error, str):
            details["error"] = error[:200]
        if isinstance(code, int | float) and not isinstance(code, bool):
            details["code"] = int(code)
    return details


def _object(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise TargetUnavailable(
            "Przelewy24 answered without a JSON object",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return payload
