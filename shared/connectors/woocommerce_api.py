"""The shop's WooCommerce REST API (v3), the part that takes tracking back to an order (see
docs/woocommerce-contract.md, "REST API: tracking back to the order").

- Auth: the REST API key's consumer key and secret as HTTP Basic auth, which WooCommerce accepts
  over HTTPS only (over plain HTTP it wants OAuth 1.0a signatures): a ``base_url`` that is not
  https is refused, except a loopback address (the local stand-in). A 401/403 reads the secret
  again once (a rotated key); refused again, it is ``CredentialsRejected``.
- ``get_order``: ``GET /wp-json/wc/v3/orders/{id}``; ``update_order``: ``PUT`` of the same path
  (``status``, ``meta_data``); ``notes`` / ``add_note``: ``GET`` / ``POST .../orders/{id}/notes``.
- Errors are WordPress REST errors ``{"code", "message", "data": {"status"}}`` and are told apart by
  status and ``code``, never by message: an unknown order (``woocommerce_rest_shop_order_invalid_id``
  or ``woocommerce_rest_order_invalid_id``, 404) is ``OrderNotFound``, another 4xx is
  ``TargetRejected``, a 429 ``RateLimited`` (WooCommerce sets no limit of its own; a host or WAF
  in front of it may), 5xx and timeouts ``TargetUnavailable``.
- Tracking meta: ``_wc_shipment_tracking_items``, the list the WooCommerce Shipment Tracking
  extension keeps (and other tracking plugins read): ``{tracking_provider,
  custom_tracking_provider, custom_tracking_link, tracking_number, date_shipped, tracking_id}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from shared.errors import (
    ConfigurationError,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
)
from shared.http import HttpConnector, retry_after_seconds, transport_error

TARGET = "woocommerce"
API_PREFIX = "/wp-json/wc/v3"
TRACKING_META = "_wc_shipment_tracking_items"
# The REST error codes of an order id WooCommerce does not know (the order and notes endpoints
# name it differently).
UNKNOWN_ORDER_CODES = frozenset({"woocommerce_rest_shop_order_invalid_id", "woocommerce_rest_order_invalid_id"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class WooCommerceSettings:
    base_url: str  # the site's root, e.g. https://shop.example.com (the REST prefix is the client's)
    consumer_key: str = field(repr=False)  # never in a log line or a traceback's locals
    consumer_secret: str = field(repr=False)

    @classmethod
    def from_secret(cls, doc: Any) -> WooCommerceSettings:
        fields = ("base_url", "consumer_key", "consumer_secret")
        if not isinstance(doc, dict):
            raise ConfigurationError("WooCommerce API secret must be an object holding " + ", ".join(fields))
        missing = [name for name in fields if not isinstance(doc.get(name), str) or not doc[name].strip()]
        if missing:
            raise ConfigurationError("WooCommerce API secret lacks " + ", ".join(missing), details={"missing": missing})
        base_url = doc["base_url"].strip().rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
            raise ConfigurationError("WooCommerce base_url must be https: Basic auth is accepted over HTTPS only")
        return cls(base_url, doc["consumer_key"].strip(), doc["consumer_secret"].strip())


SettingsSource = Callable[[bool], WooCommerceSettings]  # refresh -> settings (read again when True)


class OrderNotFound(TargetRejected):
    """WooCommerce has no order with this id: the order reference names an order of another shop,
    or one deleted since."""

    reason = "shop_order_not_found"


def tracking_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    """The order's Shipment Tracking items (``_wc_shipment_tracking_items``), [] when it has none."""
    for meta in order.get("meta_data") or []:
        if isinstance(meta, dict) and meta.get("key") == TRACKING_META:
            value = meta.get("value")
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
            if isinstance(value, dict):  # a PHP array with non-sequential keys comes back as an object
                return [item for item in value.values() if isinstance(item, dict)]
            return []
    return []


def tracking_item(provider: str, number: str, url: str, shipped_at: int) -> dict[str, Any]:
    """One Shipment Tracking item for a carrier the extension may not list (a custom provider with
    its own link). ``tracking_id`` is derived from the number, so writing it again is the same item."""
    return {
        "tracking_provider": "",
        "custom_tracking_provider": provider,
        "custom_tracking_link": url,
        "tracking_number": number,
        "date_shipped": int(shipped_at),
        "tracking_id": hashlib.sha256(f"{provider}:{number}".encode()).hexdigest()[:32],
    }


class WooCommerceApi(HttpConnector[WooCommerceSettings]):
    """``settings``: fixed settings, or a source that reads them again (``source(True)``) when
    WooCommerce refuses the key, so a rotated key is picked up without a restart."""

    def get_order(self, order_id: int | str, ids: dict[str, str]) -> dict[str, Any]:
        return _object(self._request("GET", f"/orders/{_id(order_id)}", ids), ids)

    def update_order(self, order_id: int | str, changes: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
        """``PUT`` the changes (``status``, ``meta_data``: ``[{"key", "value"}]``, which replaces the
        key's value); the order as WooCommerce holds it after."""
        return _object(self._request("PUT", f"/orders/{_id(order_id)}", ids, body=changes), ids)

    def notes(self, order_id: int | str, ids: dict[str, str]) -> list[dict[str, Any]]:
        """Every note of the order, newest first (the endpoint does not page)."""
        response = self._request("GET", f"/orders/{_id(order_id)}/notes", ids, params={"type": "any"})
        payload = _json(response)
        if not isinstance(payload, list):
            raise TargetUnavailable(
                "WooCommerce answered the notes without a JSON array", entity_ids=ids, details=_problem(response)
            )
        return [n for n in payload if isinstance(n, dict)]

    def add_note(self, order_id: int | str, note: str, *, customer_note: bool, ids: dict[str, str]) -> dict[str, Any]:
        """Add a note (``customer_note``: shown to the customer, who is emailed); the note created."""
        if not note.strip():
            raise ValueError("an order note needs text")
        body = {"note": note, "customer_note": customer_note}
        return _object(self._request("POST", f"/orders/{_id(order_id)}/notes", ids, body=body), ids)

    # -- transport -------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, ids: dict[str, str], params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        s = self.settings
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(
                method,
                f"{s.base_url}{API_PREFIX}{path}",
                params=params,
                content=content,
                headers=headers,
                auth=(s.consumer_key, s.consumer_secret),
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
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        response = self.with_credentials(
            lambda: self._send(method, path, ids, params, body),
            ids,
            target=TARGET,
            refused="WooCommerce refused the REST API key: check the woocommerce-api secret",
            details=_problem,
        )
        _classify(response, ids)
        return response


def _id(order_id: int | str) -> str:
    text = str(order_id)
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"a WooCommerce order id is a positive integer, not {text!r}")
    return quote(text)


def _classify(response: httpx.Response, ids: dict[str, str]) -> None:
    status = response.status_code
    if status < 400:
        return
    details = _problem(response)
    if status == 429:
        raise RateLimited(
            f"{TARGET} rate limited (429)",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            entity_ids=ids,
            details=details,
        )
    if status >= 500 or status == 408:
        raise TargetUnavailable(
            f"{TARGET} unavailable ({status})",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            entity_ids=ids,
            details=details,
        )
    if status == 404 and details.get("code") in UNKNOWN_ORDER_CODES:
        raise OrderNotFound("WooCommerce has no such order", entity_ids=ids, details=details)
    raise TargetRejected(f"{TARGET} rejected the request ({status})", entity_ids=ids, details=details)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _problem(response: httpx.Response) -> dict[str, Any]:
    """Status and the REST error's code (and the names of invalid parameters); never the
    message, which may quote the customer's data."""
    details: dict[str, Any] = {"status": response.status_code, "target": TARGET}
    payload = _json(response)
    if isinstance(payload, dict) and isinstance(payload.get("code"), str):
        details["code"] = payload["code"]
        data = payload.get("data")
        params = data.get("params") if isinstance(data, dict) else None
        if isinstance(params, dict):
            details["params"] = sorted(str(k) for k in params)[:20]
        elif isinstance(params, list):
            details["params"] = [str(p) for p in params][:20]
    return details


def _object(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    payload = _json(response)
    if not isinstance(payload, dict):
        raise TargetUnavailable(
            "WooCommerce answered without a JSON object", entity_ids=ids, details=_problem(response)
        )
    return payload
