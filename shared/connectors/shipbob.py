"""The warehouse's fulfilment API: ShipBob's public REST API (see docs/wms-contract.md).

- Auth: a Personal Access Token as ``Authorization: Bearer``; order calls also carry the
  ``shipbob_channel_id`` header. A 401/403 reads the secret again once (rotated token or channel);
  refused again, it is ``CredentialsRejected``.
- Orders: ``POST /<version>/order`` with ``reference_id`` = the Junction order key. ShipBob keeps
  reference ids unique within the account and refuses a second create with ``422``, so a retry
  after a lost answer cannot make a second pick request: the 422 is answered by a look-up
  (``GET /<version>/order?ReferenceIds=<ref>``) and the order found is returned.
- Cancel: ``POST /<version>/order/{id}:cancel``, refused once a shipment is picked, packed or
  shipped. A refusal is told apart by reading the order back: cancelled already, or too late.
- Inventory: ``GET /<version>/inventory-level/locations`` per SKU, fulfillable units per location.
- Rate limit: 150 requests a minute (sliding window); a 429 says when to come back in
  ``x-retry-after`` (seconds), which becomes ``RateLimited.retry_after``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import (
    ConfigurationError,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
    ValidationFailed,
)
from shared.http import HttpConnector, retry_after_seconds, transport_error
from shared.models import Order

TARGET = "shipbob"
API_VERSION = "2026-01"
ORDER_TYPE = "DTC"  # direct to consumer: the only type that needs no retailer program data
# ShipBob maps a shipping method name to a Ship Option (service level, carrier) on the merchant's
# Ship Option Mapping page, and maps a name it has never seen to Standard: the same default here.
DEFAULT_SHIPPING_METHOD = "Standard"
REFERENCE_MAX = 300  # reference_id: 1-300 characters
RATE_LIMIT_WINDOW_SECONDS = 60.0  # 150 requests per minute, sliding window
CANCELLED = "Cancelled"  # the order (and shipment) status once cancelled


@dataclass(frozen=True)
class ShipBobSettings:
    base_url: str  # e.g. https://api.shipbob.com (the API version is the client's)
    token: str = field(repr=False)  # a Personal Access Token: never in a log line or traceback
    channel_id: str  # the channel with write scopes, from GET /channel

    @classmethod
    def from_secret(cls, doc: Any) -> ShipBobSettings:
        try:
            settings = cls(
                base_url=str(doc["base_url"]).rstrip("/"),
                token=str(doc["token"]),
                channel_id=str(doc["channel_id"]),
            )
        except (KeyError, TypeError):
            raise ConfigurationError("ShipBob secret must hold base_url, token and channel_id") from None
        if not settings.token or not settings.channel_id.isdigit():
            raise ConfigurationError("ShipBob secret needs a token and a numeric channel_id")
        return settings


class OrderAlreadyPicked(TargetRejected):
    """ShipBob refused a cancel because the order is being fulfilled (picked, packed or shipped):
    only a return can undo it now, which is an operator's decision."""

    reason = "order_already_picked"


SettingsSource = Callable[[bool], ShipBobSettings]  # refresh -> settings (read again when True)


def order_reference(order: Order) -> str:
    """The Junction order key, ShipBob's ``reference_id``: ``<source>:<source order id>``."""
    return f"{order.source}:{order.source_id}"


def shipping_method(order: Order) -> str:
    """The carrier choice as the shop named it: the first shipping line's title (what the
    merchant recognises on ShipBob's mapping page), else its code, else ``Standard``."""
    for line in order.shipping:
        name = (line.title or line.code or "").strip()
        if name:
            return name
    return DEFAULT_SHIPPING_METHOD


def order_body(
    order: Order, reference_id: str, location_id: int | None, tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The create-order body. Raises ValidationFailed for an order no warehouse can ship: no
    ship-to address, or a quantity that is not a whole number of units."""
    ids = {"order": order.entity_id}
    _check_reference(reference_id, ids)
    address = order.shipping_address
    if address is None:
        raise ValidationFailed("order has no shipping address to fulfil to", entity_ids=ids)
    products = []
    for index, line in enumerate(order.lines):
        if line.quantity != line.quantity.to_integral_value():
            raise ValidationFailed(
                f"line {index} quantity is not a whole number of units", entity_ids=ids, details={"line": index}
            )
        products.append(
            {"reference_id": line.sku, "name": line.title[:400] or line.sku, "quantity": int(line.quantity)}
        )
    customer = order.customer
    recipient: dict[str, Any] = {
        "name": address.name or address.company or customer.display_name,
        "address": {
            "address1": address.line1,
            "address2": address.line2,
            "company_name": address.company,
            "city": address.city,
            "state": address.region,
            "zip_code": address.postal_code,
            "country": address.country,
        },
        "email": customer.email,
        "phone_number": address.phone or customer.phone,
    }
    body: dict[str, Any] = {
        "reference_id": reference_id,
        "order_number": order.number,
        "type": ORDER_TYPE,
        "shipping_method": shipping_method(order),
        "recipient": recipient,
        "products": products,
        "purchase_date": order.created_at.isoformat(),
        "financials": {"total_price": float(order.total.amount.quantize(Decimal("0.01")))},
    }
    if location_id is not None:
        body["location_id"] = location_id
    if tags:  # ShipBob's order tags: what the warehouse sees next to the order (the ERP document)
        body["tags"] = [{"name": name, "value": value} for name, value in tags.items()]
    return body


def _check_reference(reference_id: str, ids: dict[str, str]) -> None:
    # ReferenceIds is a comma-separated filter: a comma inside a reference could never be found.
    if not 1 <= len(reference_id) <= REFERENCE_MAX or "," in reference_id:
        raise ValidationFailed(f"reference_id must be 1-{REFERENCE_MAX} characters without a comma", entity_ids=ids)


class ShipBobClient(HttpConnector[ShipBobSettings]):
    """``settings``: fixed settings, or a source that reads them again (``source(True)``) when
    ShipBob refuses the token, so a rotated token is picked up without a restart."""

    # -- orders ----------------------------------------------------------------------------
    def find_order(self, reference_id: str, ids: dict[str, str]) -> dict[str, Any] | None:
        """The order holding ``reference_id``, or None: the look-up before a create whose earlier
        attempt may have reached ShipBob."""
        _check_reference(reference_id, ids)
        response = self._request("GET", "/order", ids, params={"ReferenceIds": reference_id})
        found = [o for o in _list(response, ids) if isinstance(o, dict) and o.get("reference_id") == reference_id]
        return dict(found[0]) if found else None

    def get_order(self, order_id: int | str, ids: dict[str, str]) -> dict[str, Any] | None:
        response = self._request("GET", f"/order/{quote(str(order_id))}", ids, accept=(404,))
        return None if response.status_code == 404 else _object(response, ids)

    def create_order(
        self,
        order: Order,
        reference_id: str,
        location_id: int | None,
        ids: dict[str, str],
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create the pick request; ShipBob's answer (with its order ``id``). A 422 is ShipBob's
        duplicate-reference refusal: the order it holds already is looked up and returned. A
        422 with no such order is a refusal of the content (``TargetRejected``)."""
        body = order_body(order, reference_id, location_id, tags)
        response = self._request("POST", "/order", ids, body=body, accept=(422,))
        if response.status_code != 422:
            return _object(response, ids)
        existing = self.find_order(reference_id, ids)
        if existing is not None:
            return existing
        raise TargetRejected(
            "ShipBob refused the order (422) and holds none with its reference",
            entity_ids=ids,
            details=_problem(response),
        )

    def cancel_order(self, order_id: int | str, ids: dict[str, str]) -> str:
        """Cancel the order and its shipments: "cancelled", or "already_cancelled" when it was.
        Raises ``OrderAlreadyPicked`` (a ``TargetRejected``) once fulfilment has begun."""
        path = f"/order/{quote(str(order_id))}:cancel"
        response = self._request("POST", path, ids, accept=(400, 409, 422))
        if response.status_code < 400 and _all_cancelled(_object(response, ids)):
            return "cancelled"
        current = self.get_order(order_id, ids)
        status = current.get("status") if current else None
        if status == CANCELLED:
            return "already_cancelled"
        raise OrderAlreadyPicked(
            "ShipBob refused to cancel: the order is being fulfilled",
            entity_ids=ids,
            details={**_problem(response), "order_status": status},
        )

    # -- inventory -------------------------------------------------------------------------
    def inventory_by_location(self, skus: Iterable[str], ids: dict[str, str]) -> dict[str, dict[int, int]]:
        """Fulfillable units (on hand less committed to orders) per SKU and location id. A SKU
        ShipBob does not know maps to ``{}``. One request per distinct SKU."""
        stock: dict[str, dict[int, int]] = {}
        for sku in dict.fromkeys(skus):
            response = self._request("GET", "/inventory-level/locations", ids, params={"SearchBy": sku})
            levels: dict[int, int] = {}
            for item in _items(response, ids):
                if item.get("sku") != sku:  # SearchBy is a search, not an exact filter
                    continue
                for location in item.get("locations") or []:
                    location_id, quantity = _level(location)
                    if location_id is not None:
                        levels[location_id] = levels.get(location_id, 0) + quantity
            stock[sku] = levels
        return stock

    # -- transport -------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, ids: dict[str, str], params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        s = self.settings
        headers = {
            "Authorization": f"Bearer {s.token}",
            "shipbob_channel_id": s.channel_id,
            "Accept": "application/json",
        }
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(
                method,
                f"{s.base_url}/{API_VERSION}{path}",
                params=params,
                content=content,
                headers=headers,
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
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send; statuses in ``accept`` are returned unclassified. A refused token or channel
        (401/403) reads the secret again and sends once more."""
        response = self.with_credentials(
            lambda: self._send(method, path, ids, params, body),
            ids,
            target=TARGET,
            refused="ShipBob refused the token or channel: check the shipbob-api secret",
        )
        if response.status_code not in accept:
            _classify(response, ids)
        return response


def _classify(response: httpx.Response, ids: dict[str, str]) -> None:
    """Raise the right error for a failed answer, by status; return quietly for 2xx/3xx."""
    status = response.status_code
    if status < 400:
        return
    details = _problem(response)
    if status == 429:
        wait = retry_after_seconds(response.headers.get("x-retry-after") or response.headers.get("Retry-After"))
        raise RateLimited(
            f"{TARGET} rate limited (429)",
            # Without a hint, the oldest call leaves the sliding window within a minute.
            retry_after=wait if wait is not None else RATE_LIMIT_WINDOW_SECONDS,
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
    raise TargetRejected(f"{TARGET} rejected the request ({status})", entity_ids=ids, details=details)


def _problem(response: httpx.Response) -> dict[str, Any]:
    """Status and the names of the fields ShipBob complained about; never the messages, which
    may quote the recipient's data."""
    details: dict[str, Any] = {"status": response.status_code, "target": TARGET}
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return details
    if isinstance(errors, dict):
        details["fields"] = sorted(str(k) for k in errors)[:20]
    return details


def _object(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise TargetUnavailable(
            "ShipBob answered without a JSON object",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return payload


def _list(response: httpx.Response, ids: dict[str, str]) -> list[Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, list):
        raise TargetUnavailable(
            "ShipBob answered an order list without a JSON array",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return payload


def _items(response: httpx.Response, ids: dict[str, str]) -> list[dict[str, Any]]:
    payload = _object(response, ids)
    items = payload.get("items")
    if not isinstance(items, list):
        raise TargetUnavailable(
            "ShipBob answered the inventory query without items",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return [i for i in items if isinstance(i, dict)]


def _level(location: Any) -> tuple[int | None, int]:
    """(location id, fulfillable units) of one location entry; (None, 0) when unreadable."""
    if not isinstance(location, dict):
        return None, 0
    location_id, quantity = location.get("location_id"), location.get("fulfillable_quantity")
    if isinstance(location_id, bool) or not isinstance(location_id, int):
        return None, 0
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        return None, 0
    return location_id, max(quantity, 0)


def _all_cancelled(answer: dict[str, Any]) -> bool:
    """A 200 reports each shipment's cancel; the order is cancelled only if all of them were."""
    results = answer.get("canceled_shipment_results") or []
    return all(isinstance(r, dict) and r.get("is_success") is True for r in results)
