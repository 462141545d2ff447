"""The ERP's sales-order API, modelled on SAP Business One Service Layer (see docs/erp-contract.md).

- Session: ``POST /Login`` {CompanyDB, UserName, Password} sets the ``B1SESSION`` cookie; on a
  401 we log in again once.
- Customers are BusinessPartners found or created by a deterministic CardCode derived from the
  customer's stable key (tax id, else email): the same customer is never created twice, even
  when two orders race, because the second create fails with "already exists" and we read it.
- Sales orders: ``POST /Orders`` with an ``Idempotency-Key`` header; ``NumAtCard`` carries the
  shop's order reference, so a retry can also find an order the ERP already holds.
- Cancelling: ``POST /Orders(<DocEntry>)/Cancel`` after a look at the order, since the Service
  Layer refuses to cancel a document that is already cancelled, or closed by a delivery.
- Stock: ``GET /Items`` filtered on ``UpdateDate`` alone, ordered by ItemCode, one page at a time
  behind ``odata.nextLink``. Paging by offset while stock changes can repeat an item but never
  skip one, so the reader deduplicates (by ``item_version``) rather than trusting the pages.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeGuard
from urllib.parse import quote

import httpx

from shared.errors import ConfigurationError, CredentialsRejected, TargetRejected, ValidationFailed
from shared.http import HttpConnector, classify_response, transport_error
from shared.models import Address, Customer, Order

TARGET = "erp"
ERR_ALREADY_EXISTS = -2035  # "This entry already exists in the following tables"
ERR_NOT_FOUND = -2028  # "No matching records found"
FREIGHT_EXPENSE_CODE = 1
# What a stock read needs of an item, and nothing more: the Service Layer sends every field
# of an item (hundreds) unless told otherwise.
ITEM_SELECT = "ItemCode,UpdateDate,UpdateTime,ItemWarehouseInfoCollection"
# What deciding about a cancel needs of an order: its state, and its lines (how much of each is
# still open, so a partly delivered order is known before a Cancel is sent).
ORDER_SELECT = "DocEntry,DocNum,NumAtCard,DocumentStatus,Cancelled,DocumentLines"
# The outcomes of ``ErpClient.cancel_order``, and the reasons of its refusals (DLQ groups).
CANCELLED = "cancelled"
ALREADY_CANCELLED = "already_cancelled"
ORDER_DELIVERED = "order_delivered"
ORDER_NOT_FOUND = "order_not_found"
CANCEL_REFUSED = "cancel_refused"


@dataclass(frozen=True)
class ErpSettings:
    base_url: str  # e.g. https://erp.example.com:50000/b1s/v1
    company_db: str
    username: str
    password: str = field(repr=False)  # never in a log line or a traceback's locals

    @classmethod
    def from_secret(cls, doc: Any) -> ErpSettings:
        try:
            return cls(
                base_url=str(doc["base_url"]).rstrip("/"),
                company_db=str(doc["company_db"]),
                username=str(doc["username"]),
                password=str(doc["password"]),
            )
        except (KeyError, TypeError):
            raise ConfigurationError("ERP secret must hold base_url, company_db, username and password") from None


def error_code(response: httpx.Response) -> int | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, int) else None


class OrderRefused(TargetRejected):
    """The ERP will not do what was asked of one sales order: a business error (dead-lettered),
    whose ``reason`` says why (``order_delivered``, ``order_not_found``, ``cancel_refused``)."""

    def __init__(self, message: str, *, reason: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


def _num(value: Decimal, places: str = "0.01") -> float:
    # The Service Layer takes JSON numbers; two decimals are exact in a float's shortest repr.
    return float(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


KNOWN_CUSTOMER_SECONDS = 600.0
KNOWN_CUSTOMERS_MAX = 10_000


def order_reference(order: Order) -> str:
    return f"{order.source}:{order.source_id}"


@dataclass(frozen=True)
class ItemsPage:
    """One page of a stock read: raw Service Layer items, and the link to the next page (None
    on the last one)."""

    items: list[dict[str, Any]]
    next_link: str | None


@dataclass(frozen=True)
class WarehouseStock:
    """An item's quantities in one warehouse, exact. SAP may allow negative stock (when the
    company permits it), so negative numbers are valid quantities here."""

    in_stock: Decimal
    committed: Decimal  # reserved by open sales orders
    ordered: Decimal  # expected from open purchase orders

    @property
    def available(self) -> Decimal:
        """What can still be sold: on hand less what open sales orders have committed."""
        return self.in_stock - self.committed


SettingsSource = Callable[[bool], ErpSettings]  # refresh -> settings (read again when True)


class ErpClient(HttpConnector[ErpSettings]):
    """``settings``: fixed settings, or a source that reads them again (``source(True)``) when the
    ERP refuses the login, so rotated credentials are picked up without a restart."""

    def __init__(self, settings: ErpSettings | SettingsSource, http: httpx.Client | None = None) -> None:
        super().__init__(settings, http)
        self._logged_in = False
        self._known: dict[str, float] = {}  # card code -> when the ERP was last seen to have it

    # -- transport -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self.settings.base_url + path
        content = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        timeout = self.call_timeout()
        try:
            return self.http.request(method, url, content=content, headers=all_headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc

    def _login_once(self, ids: dict[str, str]) -> httpx.Response:
        return self._send(
            "POST",
            "/Login",
            ids,
            body={
                "CompanyDB": self.settings.company_db,
                "UserName": self.settings.username,
                "Password": self.settings.password,
            },
        )

    def login(self, ids: dict[str, str] | None = None) -> None:
        """Open a session. A refused login reads the credentials again once (they may have been
        rotated) and retries; refused again, it is ``CredentialsRejected``: retried later, and the
        target's circuit breaker counts it, since no order can get through."""
        ids = ids or {}
        response = self._login_once(ids)
        if response.status_code == 401:
            self.reload_settings()
            response = self._login_once(ids)
        if response.status_code == 401:
            raise CredentialsRejected("ERP login refused: check the ERP credentials secret", entity_ids=ids)
        classify_response(response, entity_ids=ids, target=TARGET)
        self._logged_in = True

    def request(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send with a session; statuses in ``accept`` are returned to the caller unclassified."""
        if not self._logged_in:
            self.login(ids)
        response = self._send(method, path, ids, body=body, headers=headers)
        if response.status_code == 401:  # session expired: log in again, once
            self._logged_in = False
            self.login(ids)
            response = self._send(method, path, ids, body=body, headers=headers)
        if response.status_code not in accept:
            classify_response(response, entity_ids=ids, target=TARGET)
        return response

    # -- business partners -----------------------------------------------------------------
    def get_customer(self, card_code: str, ids: dict[str, str]) -> dict[str, Any] | None:
        response = self.request("GET", f"/BusinessPartners('{quote(card_code)}')", ids, accept=(404,))
        return None if response.status_code == 404 else dict(response.json())

    def ensure_customer(self, customer: Customer, address: Address | None, ids: dict[str, str]) -> str:
        """The customer's CardCode, creating the business partner if the ERP does not have it.

        Card codes seen to exist are remembered for ``KNOWN_CUSTOMER_SECONDS`` (a warm function
        skips the lookup for a returning customer); ``forget_customer`` drops one that the ERP
        no longer knows."""
        card_code = customer.code()
        seen = self._known.get(card_code)
        if seen is not None and time.monotonic() - seen < KNOWN_CUSTOMER_SECONDS:
            return card_code
        if self.get_customer(card_code, ids) is not None:
            self._remember(card_code)
            return card_code
        response = self.request(
            "POST",
            "/BusinessPartners",
            ids,
            body=business_partner(customer, address, card_code),
            accept=(400, 409),
        )
        if response.status_code in (400, 409):
            if error_code(response) == ERR_ALREADY_EXISTS:  # created meanwhile by a concurrent order
                self._remember(card_code)
                return card_code
            raise TargetRejected(
                "ERP refused the customer",
                entity_ids=ids,
                details={"status": response.status_code, "erp_code": error_code(response)},
            )
        self._remember(card_code)
        return card_code

    def _remember(self, card_code: str) -> None:
        if len(self._known) >= KNOWN_CUSTOMERS_MAX:
            self._known.clear()
        self._known[card_code] = time.monotonic()

    def forget_customer(self, card_code: str) -> bool:
        """Drop a remembered card code; True if it was remembered (the caller may try again)."""
        return self._known.pop(card_code, None) is not None

    # -- sales orders ----------------------------------------------------------------------
    def find_order(self, reference: str, ids: dict[str, str]) -> dict[str, Any] | None:
        escaped = reference.replace("'", "''")
        query = quote(f"NumAtCard eq '{escaped}'")
        response = self.request("GET", f"/Orders?$filter={query}", ids)
        values = response.json().get("value") or []
        return dict(values[0]) if values else None

    def create_order(self, order: Order, card_code: str, idempotency_key: str, ids: dict[str, str]) -> dict[str, Any]:
        response = self.request(
            "POST",
            "/Orders",
            ids,
            body=sales_order(order, card_code),
            headers={"Idempotency-Key": idempotency_key},
            accept=(400, 409, 422),
        )
        if response.status_code in (400, 409, 422):
            raise TargetRejected(
                "ERP refused the sales order",
                entity_ids=ids,
                details={"status": response.status_code, "erp_code": error_code(response)},
            )
        return dict(response.json())

    def get_order(self, doc_entry: int, ids: dict[str, str]) -> dict[str, Any] | None:
        """The sales order's state (``ORDER_SELECT``), or None when the ERP has no such order."""
        path = f"/Orders({_doc_entry(doc_entry)})?$select={ORDER_SELECT}"
        response = self.request("GET", path, ids, accept=(404,))
        if response.status_code == 404:
            return None
        return _order_body(response, ids)

    def cancel_order(self, doc_entry: int, ids: dict[str, str]) -> str:
        """Cancel the sales order: ``"cancelled"``, or ``"already_cancelled"`` when it was (a
        repeated cancel sends nothing, since the Service Layer refuses to cancel twice).

        The order is read first and the decision taken on its state, never on an error's text:
        closed without being cancelled, or with a line partly delivered, it is ``OrderRefused``
        with reason ``order_delivered``; unknown, reason ``order_not_found``. A Cancel refused
        anyway (a delivery or a cancel that came in between) reads the order again to say which.
        Transient failures are ``TargetUnavailable``/``RateLimited`` as for every call: a retry
        after a Cancel that committed unseen finds the order cancelled."""
        ids = {**ids, "erp_doc_entry": str(_doc_entry(doc_entry))}
        outcome = self._cancel_outcome(self.get_order(doc_entry, ids), doc_entry, ids)
        if outcome is not None:
            return outcome
        response = self.request("POST", f"/Orders({doc_entry})/Cancel", ids, accept=(400, 404))
        if response.status_code == 404:
            raise _not_found(doc_entry, ids)
        if response.status_code == 400:
            outcome = self._cancel_outcome(self.get_order(doc_entry, ids), doc_entry, ids)
            if outcome is not None:
                return outcome
            raise OrderRefused(
                "ERP refused to cancel an open sales order",
                reason=CANCEL_REFUSED,
                entity_ids=ids,
                details={"status": 400, "erp_code": error_code(response)},
            )
        return CANCELLED

    @staticmethod
    def _cancel_outcome(order: dict[str, Any] | None, doc_entry: int, ids: dict[str, str]) -> str | None:
        """What the order's state decides without a Cancel; None while it can still be cancelled."""
        if order is None:
            raise _not_found(doc_entry, ids)
        if order.get("Cancelled") == "tYES":
            return ALREADY_CANCELLED
        closed = order.get("DocumentStatus") == "bost_Close"
        if closed or _partly_delivered(order):
            raise OrderRefused(
                "ERP sales order is delivered and cannot be cancelled",
                reason=ORDER_DELIVERED,
                entity_ids=ids,
                details={"document_status": order.get("DocumentStatus"), "closed": closed},
            )
        return None

    # -- stock -----------------------------------------------------------------------------
    def items_page(
        self,
        updated_since: date,
        *,
        page_size: int,
        next_link: str | None = None,
        ids: dict[str, str] | None = None,
    ) -> ItemsPage:
        """One page of the items updated on or after ``updated_since`` (a date: the Service
        Layer's ``UpdateDate`` holds no time), in ItemCode order. The first call builds the
        query; later calls pass the page's ``next_link`` back exactly as the ERP gave it.

        Raises ``RateLimited`` (429, with its Retry-After), ``TargetUnavailable`` (5xx, timeout),
        ``TargetRejected`` (a refused query, or an answer that is not a page of items),
        ``CredentialsRejected``; an expired session is renewed once on the way."""
        ids = ids or {}
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError("ERP page size must be a positive integer", entity_ids=ids)
        path = self._next_path(next_link, ids) if next_link is not None else items_query(updated_since)
        response = self.request(
            "GET", path, ids, headers={"Prefer": f"odata.maxpagesize={page_size}"}, accept=(400, 404)
        )
        if response.status_code in (400, 404):
            raise TargetRejected(
                "ERP refused the items query",
                entity_ids=ids,
                details={"status": response.status_code, "erp_code": error_code(response)},
            )
        return _items_page(response, ids)

    def _next_path(self, link: str, ids: dict[str, str]) -> str:
        """The path of a next link below the service root. The Service Layer gives it relative
        (``Items?...``); an absolute or root-relative link is accepted only if it stays on the
        ERP's own ``Items``, so a forged link cannot send the session cookie elsewhere."""
        root = self.settings.base_url + "/"
        root_path = httpx.URL(root).path
        if link.startswith(("http://", "https://")):
            relative = link[len(root) :] if link.startswith(root) else None
        elif link.startswith("/"):
            relative = link[len(root_path) :] if link.startswith(root_path) else None
        else:
            relative = link
        if relative is None or not relative.startswith("Items?"):
            raise TargetRejected("ERP gave a next link outside its Items collection", entity_ids=ids)
        return "/" + relative


def _doc_entry(doc_entry: int) -> int:
    if isinstance(doc_entry, bool) or not isinstance(doc_entry, int) or doc_entry < 1:
        raise ValueError("an ERP DocEntry is a positive integer")
    return doc_entry


def _not_found(doc_entry: int, ids: dict[str, str]) -> OrderRefused:
    return OrderRefused(
        "ERP has no such sales order", reason=ORDER_NOT_FOUND, entity_ids=ids, details={"doc_entry": doc_entry}
    )


def _order_body(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("DocEntry"), int):
        raise TargetRejected("ERP answered the order lookup without an order", entity_ids=ids)
    return dict(body)


def _partly_delivered(order: Mapping[str, Any]) -> bool:
    """True when a line has had some of its quantity delivered (less of it is open than was
    ordered): SAP closes such an order but will not cancel it. Lines without the two numbers
    say nothing, and the Cancel's own answer decides."""
    lines = order.get("DocumentLines")
    for line in lines if isinstance(lines, list) else ():
        if not isinstance(line, Mapping):
            continue
        ordered, still_open = line.get("Quantity"), line.get("RemainingOpenQuantity")
        if _quantity(ordered) and _quantity(still_open) and still_open < ordered:
            return True
    return False


def _quantity(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def items_query(updated_since: date) -> str:
    """The first page's path: items whose ``UpdateDate`` is on or after the day, by ItemCode.

    Only the date is filtered. ``UpdateTime`` is a separate field that the Service Layer compares
    on its own, so adding ``and UpdateTime ge '...'`` would drop every item changed on a later
    day at an earlier hour."""
    day = (updated_since.date() if isinstance(updated_since, datetime) else updated_since).isoformat()
    condition = quote(f"UpdateDate ge '{day}'", safe="'")
    return f"/Items?$select={ITEM_SELECT}&$filter={condition}&$orderby=ItemCode"


def _items_page(response: httpx.Response, ids: dict[str, str]) -> ItemsPage:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TargetRejected("ERP answered the items query without a JSON object", entity_ids=ids)
    values = body.get("value")
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise TargetRejected("ERP answered the items query without a list of items", entity_ids=ids)
    link = body.get("odata.nextLink", body.get("@odata.nextLink"))
    if link is not None and not isinstance(link, str):
        raise TargetRejected("ERP answered the items query with an unreadable next link", entity_ids=ids)
    return ItemsPage(items=[dict(v) for v in values], next_link=link or None)


_SL_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:T00:00:00(?:\.0+)?(?:Z|[+-]00:00)?)?")
_SL_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")
QUANTITY_FIELDS = (("InStock", "in_stock"), ("Committed", "committed"), ("Ordered", "ordered"))


def _item_ids(item: Mapping[str, Any]) -> dict[str, str]:
    code = item.get("ItemCode") if isinstance(item, Mapping) else None
    return {"item": code} if isinstance(code, str) and code else {}


def item_version(item: Mapping[str, Any]) -> str:
    """The item's update stamp as one sortable, fixed-width string, "YYYY-MM-DDTHH:MM:SS".

    The Service Layer keeps the stamp as two fields, ``UpdateDate`` ("2026-11-23", or
    "2026-11-23T00:00:00Z" in its OData v4 flavour) and ``UpdateTime`` ("10:15:30"). Joined, two
    versions compare as the moments do, so a reader can tell a repeat from a change. Raises
    ValidationFailed when either field is missing or unreadable."""
    ids = _item_ids(item)
    if not isinstance(item, Mapping):
        raise ValidationFailed("ERP item is not an object", entity_ids=ids)
    day = item.get("UpdateDate")
    match = _SL_DATE.fullmatch(day) if isinstance(day, str) else None
    if match is None or not _parses(date.fromisoformat, match.group(1)):
        raise ValidationFailed("ERP item has no readable UpdateDate", entity_ids=ids, details={"field": "UpdateDate"})
    clock = item.get("UpdateTime")
    if not isinstance(clock, str) or _SL_TIME.fullmatch(clock) is None or not _parses(_time_of_day, clock):
        raise ValidationFailed("ERP item has no readable UpdateTime", entity_ids=ids, details={"field": "UpdateTime"})
    return f"{match.group(1)}T{clock}"


def _time_of_day(value: str) -> object:
    return datetime.strptime(value, "%H:%M:%S")


def _parses(parse: Callable[[str], object], value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def parse_stock(item: Mapping[str, Any]) -> dict[str, WarehouseStock]:
    """The item's quantities per warehouse code, as exact decimals.

    Raises ValidationFailed for a malformed collection: not a list, an entry without a
    WarehouseCode or with a warehouse twice, a quantity that is missing or not a finite number.
    Negative quantities are numbers like any other."""
    ids = _item_ids(item)
    rows = item.get("ItemWarehouseInfoCollection") if isinstance(item, Mapping) else None
    if not isinstance(rows, list):
        raise ValidationFailed(
            "ERP item has no ItemWarehouseInfoCollection list",
            entity_ids=ids,
            details={"field": "ItemWarehouseInfoCollection"},
        )
    stock: dict[str, WarehouseStock] = {}
    for index, row in enumerate(rows):
        code = row.get("WarehouseCode") if isinstance(row, Mapping) else None
        if not isinstance(row, Mapping) or not isinstance(code, str) or not code:
            raise ValidationFailed(
                f"ERP item's warehouse line {index} has no WarehouseCode", entity_ids=ids, details={"line": index}
            )
        if code in stock:
            raise ValidationFailed(
                f"ERP item lists warehouse {code} twice", entity_ids=ids, details={"warehouse": code}
            )
        quantities: dict[str, Decimal] = {}
        for sl_name, name in QUANTITY_FIELDS:
            value = row.get(sl_name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValidationFailed(
                    f"ERP item's {sl_name} in warehouse {code} is not a number",
                    entity_ids=ids,
                    details={"warehouse": code, "field": sl_name},
                )
            quantities[name] = Decimal(str(value))
        stock[code] = WarehouseStock(**quantities)
    return stock


def business_partner(customer: Customer, address: Address | None, card_code: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "CardCode": card_code,
        "CardName": customer.display_name[:100],
        "CardType": "cCustomer",
        "EmailAddress": customer.email,
        "FederalTaxID": customer.tax_id,
        "Phone1": customer.phone,
    }
    if address:
        doc["BPAddresses"] = [
            {
                "AddressName": "Bill to",
                "AddressType": "bo_BillTo",
                "Street": address.line1 + (f", {address.line2}" if address.line2 else ""),
                "City": address.city,
                "ZipCode": address.postal_code,
                "State": address.region,
                "Country": address.country,
            }
        ]
    return {k: v for k, v in doc.items() if v is not None}


def sales_order(order: Order, card_code: str) -> dict[str, Any]:
    price_field = "PriceAfterVAT" if order.taxes_included else "UnitPrice"
    day = order.created_at.date().isoformat()
    doc: dict[str, Any] = {
        "CardCode": card_code,
        "DocDate": day,
        "DocDueDate": day,
        "NumAtCard": order_reference(order),
        "DocCurrency": order.currency,
        "Comments": f"{order.source} order {order.number}",
        "DocumentLines": [
            {
                "ItemCode": line.sku,
                "ItemDescription": line.title[:100],
                "Quantity": _num(line.quantity, "0.0001"),
                price_field: _num(line.unit_price.amount),
                "DiscountPercent": _num(line.discount_percent, "0.0001"),
            }
            for line in order.lines
        ],
    }
    if order.shipping:
        doc["DocumentAdditionalExpenses"] = [
            {"ExpenseCode": FREIGHT_EXPENSE_CODE, "LineTotal": _num(s.price.amount), "Remarks": s.title[:100]}
            for s in order.shipping
        ]
    if order.shipping_address:
        a = order.shipping_address
        doc["AddressExtension"] = {
            "ShipToStreet": a.line1 + (f", {a.line2}" if a.line2 else ""),
            "ShipToCity": a.city,
            "ShipToZipCode": a.postal_code,
            "ShipToCountry": a.country,
        }
    return doc
