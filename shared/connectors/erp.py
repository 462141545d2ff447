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
- Payments, refunds, deliveries and returns of a sales order: ``IncomingPayments`` (on account),
  ``VendorPayments`` to the customer, ``DeliveryNotes`` and ``Returns`` based on their documents,
  each found by its reference (``U_JunctionRef``; a delivery by the order's NumAtCard) before it is
  made, since the Service Layer ignores Idempotency-Key.
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
TRANSFER_ACCOUNT_KEY = "transfer_account_"  # secret keys: transfer_account_stripe, ...
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
    # The G/L account each payment provider's money is booked to ({"stripe": "11300"}): the
    # secret's optional ``transfer_account_<provider>`` keys.
    transfer_accounts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_secret(cls, doc: Any) -> ErpSettings:
        try:
            return cls(
                base_url=str(doc["base_url"]).rstrip("/"),
                company_db=str(doc["company_db"]),
                username=str(doc["username"]),
                password=str(doc["password"]),
                transfer_accounts={
                    str(k)[len(TRANSFER_ACCOUNT_KEY) :]: str(v)
                    for k, v in doc.items()
                    if str(k).startswith(TRANSFER_ACCOUNT_KEY) and v
                },
            )
        except (KeyError, TypeError, AttributeError):
            raise ConfigurationError("ERP secret must hold base_url, company_db, username and password") from None

    def transfer_account(self, provider: str) -> str:
        """The account ``provider``'s payments and refunds go to; ConfigurationError if unset."""
        account = self.transfer_accounts.get(provider)
        if not account:
            raise ConfigurationError(
                f"ERP secret has no {TRANSFER_ACCOUNT_KEY}{provider}: the account its payments are booked to"
            )
        return account


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

    # -- payments, refunds, deliveries and returns (docs/erp-contract.md) ------------------
    def _read(self, path: str, ids: dict[str, str]) -> dict[str, Any] | None:
        response = self.request("GET", path, ids, accept=(404,))
        if response.status_code == 404:
            return None
        return _order_body(response, ids)

    def _post_document(self, collection: str, body: dict[str, Any], ids: dict[str, str], what: str) -> dict[str, Any]:
        response = self.request("POST", f"/{collection}", ids, body=body, accept=(400, 404, 409, 422))
        if response.status_code >= 400:
            raise _refused(f"ERP refused the {what}", DOCUMENT_REFUSED, ids, response)
        return _order_body(response, ids)

    # -- incoming payments -----------------------------------------------------------------
    def find_incoming_payment(self, reference: str, ids: dict[str, str]) -> dict[str, Any] | None:
        """The live (not cancelled) incoming payment carrying ``reference``, or None."""
        condition = f"{REF_FIELD} eq {_quoted(_check_reference(reference))}"
        response = self.request("GET", _filter("IncomingPayments", condition, PAYMENT_SELECT), ids)
        return _first(response, ids, "incoming payment")

    def create_incoming_payment(self, payment: IncomingPayment, ids: dict[str, str]) -> dict[str, Any]:
        """Book the payment on account of the order's customer (``POST /IncomingPayments``). The
        caller looks it up first (``find_incoming_payment``): the Service Layer would book it twice."""
        body = _payment_body(
            card_code=payment.card_code,
            reference=payment.reference,
            amount=payment.amount,
            currency=payment.currency,
            day=payment.paid_on,
            account=payment.transfer_account,
            remarks=payment.remarks or f"{payment.reference} for sales order {payment.order_doc_entry}",
            journal=f"Payment {payment.reference}",
        )
        return self._post_document("IncomingPayments", body, ids, "incoming payment")

    def get_incoming_payment(self, doc_entry: int, ids: dict[str, str]) -> dict[str, Any] | None:
        return self._read(f"/IncomingPayments({_doc_entry(doc_entry)})?$select={PAYMENT_SELECT}", ids)

    # -- refunds ---------------------------------------------------------------------------
    def find_refund(self, reference: str, ids: dict[str, str]) -> dict[str, Any] | None:
        """The live outgoing payment to the customer carrying ``reference``, or None."""
        condition = f"{REF_FIELD} eq {_quoted(_check_reference(reference))}"
        response = self.request("GET", _filter("VendorPayments", condition, PAYMENT_SELECT), ids)
        return _first(response, ids, "refund")

    def refunded_total(self, payment_reference: str, ids: dict[str, str]) -> Decimal:
        """What the live refunds of a payment add up to (those whose reference starts with
        ``<payment reference>#refund:``)."""
        prefix = _check_reference(payment_reference) + "#refund:"
        condition = f"startswith({REF_FIELD},{_quoted(prefix)})"
        response = self.request("GET", _filter("VendorPayments", condition, PAYMENT_SELECT), ids)
        try:
            values = response.json().get("value")
        except (ValueError, AttributeError):
            values = None
        if not isinstance(values, list):
            raise TargetRejected("ERP answered the refunds look-up without a list", entity_ids=ids)
        return sum(
            (_amount(v.get("TransferSum")) for v in values if isinstance(v, dict) and v.get("Cancelled") != "tYES"),
            Decimal(0),
        )

    def create_refund(self, refund: CustomerRefund, ids: dict[str, str]) -> dict[str, Any]:
        """Pay the refund back to the customer (``POST /VendorPayments`` with DocType rCustomer)
        after checking it against its payment: the payment must exist and be live, in the same
        currency, and the refunds (this one included) may not exceed it. The caller looks the
        refund up first (``find_refund``)."""
        if not refund.reference.startswith(refund.payment_reference + "#refund:"):
            raise ValueError("a refund's reference starts with '<payment reference>#refund:'")
        amount = _money(refund.amount)
        payment = self.get_incoming_payment(refund.payment_doc_entry, ids)
        if payment is None:
            raise _refused(
                "ERP has no such incoming payment", PAYMENT_NOT_FOUND, ids, doc_entry=refund.payment_doc_entry
            )
        if payment.get("Cancelled") == "tYES":
            raise _refused("the incoming payment is cancelled", PAYMENT_CANCELLED, ids)
        if payment.get("DocCurrency") != refund.currency:
            raise _refused(
                "the refund's currency differs from the payment's",
                CURRENCY_MISMATCH,
                ids,
                payment_currency=payment.get("DocCurrency"),
                refund_currency=refund.currency,
            )
        paid = _amount(payment.get("TransferSum"))
        already = self.refunded_total(refund.payment_reference, ids)
        if already + amount > paid:
            raise _refused(
                "the refunds would exceed the payment",
                REFUND_EXCEEDS_PAYMENT,
                ids,
                paid=str(paid),
                refunded=str(already),
                refund=str(amount),
            )
        body = _payment_body(
            card_code=refund.card_code,
            reference=refund.reference,
            amount=amount,
            currency=refund.currency,
            day=refund.refunded_on,
            account=refund.transfer_account,
            remarks=refund.remarks
            or f"{refund.reference} of payment {refund.payment_doc_entry}, sales order {refund.order_doc_entry}",
            journal=f"Refund {refund.reference}",
        )
        return self._post_document("VendorPayments", body, ids, "refund")

    # -- deliveries ------------------------------------------------------------------------
    def _order_for_delivery(self, order_doc_entry: int, ids: dict[str, str]) -> dict[str, Any]:
        order = self._read(f"/Orders({_doc_entry(order_doc_entry)})?$select={ORDER_FOR_DELIVERY}", ids)
        if order is None:
            raise _not_found(order_doc_entry, ids)
        return order

    def find_delivery(
        self, order_doc_entry: int, ids: dict[str, str], *, order_reference: str | None = None
    ) -> dict[str, Any] | None:
        """The live delivery note based on the sales order, or None. A delivery copies the order's
        NumAtCard, so notes are looked up by it (``order_reference``, read from the order when not
        given) and kept if a line is based on the order (BaseType 17, BaseEntry)."""
        entry = _doc_entry(order_doc_entry)
        if order_reference is None:
            order_reference = str(self._order_for_delivery(entry, ids).get("NumAtCard") or "")
        condition = f"NumAtCard eq {_quoted(order_reference)}"
        response = self.request("GET", _filter("DeliveryNotes", condition, DELIVERY_SELECT), ids)
        try:
            values = response.json().get("value")
        except (ValueError, AttributeError):
            values = None
        if not isinstance(values, list):
            raise TargetRejected("ERP answered the delivery look-up without a list", entity_ids=ids)
        for note in values:
            if not isinstance(note, dict) or note.get("Cancelled") == "tYES":
                continue
            lines = note.get("DocumentLines")
            if any(
                isinstance(line, dict) and line.get("BaseType") == SALES_ORDER_TYPE and line.get("BaseEntry") == entry
                for line in (lines if isinstance(lines, list) else ())
            ):
                return dict(note)
        return None

    def create_delivery(
        self, order_doc_entry: int, *, reference: str, tracking_number: str, ids: dict[str, str]
    ) -> dict[str, Any]:
        """A delivery note of everything still open on the sales order (``POST /DeliveryNotes``,
        lines with BaseType 17, BaseEntry, BaseLine), with its TrackingNumber and reference. A
        delivery note already based on the order is returned instead (looked up first). A
        cancelled order is ``OrderRefused`` ``order_cancelled``; one closed without such a note
        (delivered or closed by hand) ``order_delivered``."""
        ids = {**ids, "erp_doc_entry": str(_doc_entry(order_doc_entry))}
        order = self._order_for_delivery(order_doc_entry, ids)
        existing = self.find_delivery(order_doc_entry, ids, order_reference=str(order.get("NumAtCard") or ""))
        if existing is not None:
            return existing
        if order.get("Cancelled") == "tYES":
            raise _refused("the sales order is cancelled: nothing to deliver", ORDER_CANCELLED, ids)
        lines = [
            {
                "BaseType": SALES_ORDER_TYPE,
                "BaseEntry": order_doc_entry,
                "BaseLine": line.get("LineNum"),
                "Quantity": line.get("RemainingOpenQuantity"),
            }
            for line in order.get("DocumentLines") or ()
            if isinstance(line, dict)
            and line.get("LineStatus", "bost_Open") == "bost_Open"
            and _quantity(line.get("RemainingOpenQuantity"))
            and line["RemainingOpenQuantity"] > 0
        ]
        if order.get("DocumentStatus") == "bost_Close" or not lines:
            raise _refused("the sales order has nothing left to deliver", ORDER_DELIVERED, ids)
        body = {
            "CardCode": order.get("CardCode"),
            "NumAtCard": order.get("NumAtCard"),
            "TrackingNumber": tracking_number[:100],
            REF_FIELD: _check_reference(reference),
            "DocumentLines": lines,
        }
        return self._post_document("DeliveryNotes", body, ids, "delivery note")

    def get_delivery(self, delivery_doc_entry: int, ids: dict[str, str]) -> dict[str, Any] | None:
        return self._read(f"/DeliveryNotes({_doc_entry(delivery_doc_entry)})?$select={DELIVERY_SELECT}", ids)

    def _live_delivery(self, delivery_doc_entry: int, ids: dict[str, str]) -> dict[str, Any]:
        note = self.get_delivery(delivery_doc_entry, ids)
        if note is None:
            raise _refused("ERP has no such delivery note", DELIVERY_NOT_FOUND, ids, doc_entry=delivery_doc_entry)
        if note.get("Cancelled") == "tYES":
            raise _refused("the delivery note is cancelled", DELIVERY_CANCELLED, ids)
        return note

    def mark_delivered(self, delivery_doc_entry: int, ids: dict[str, str]) -> str:
        """Set the delivery note's U_ShipStatus to "delivered" (a PATCH of that one field):
        ``"delivered"``, or ``"already_delivered"`` / ``"already_returned"`` when it says so already
        (nothing is sent: a carrier status never goes back)."""
        ids = {**ids, "erp_delivery_doc_entry": str(_doc_entry(delivery_doc_entry))}
        note = self._live_delivery(delivery_doc_entry, ids)
        status = note.get(SHIP_STATUS_FIELD)
        if status == DELIVERED:
            return ALREADY_DELIVERED
        if status == RETURNED:
            return ALREADY_RETURNED
        self._set_ship_status(note, DELIVERED, ids)
        return DELIVERED

    # -- returns ---------------------------------------------------------------------------
    def find_return(self, reference: str, ids: dict[str, str]) -> dict[str, Any] | None:
        condition = f"{REF_FIELD} eq {_quoted(_check_reference(reference))}"
        response = self.request("GET", _filter("Returns", condition, "DocEntry,DocNum,Cancelled," + REF_FIELD), ids)
        return _first(response, ids, "return")

    def create_return(self, delivery_doc_entry: int, *, reference: str, ids: dict[str, str]) -> dict[str, Any]:
        """A return of everything the delivery note delivered (``POST /Returns``, lines with
        BaseType 15, BaseEntry, BaseLine), looked up first by its reference; the delivery's
        U_ShipStatus then says "returned"."""
        ids = {**ids, "erp_delivery_doc_entry": str(_doc_entry(delivery_doc_entry))}
        note = self._live_delivery(delivery_doc_entry, ids)
        existing = self.find_return(reference, ids)
        if existing is not None:
            self._set_ship_status(note, RETURNED, ids)  # an earlier attempt may have stopped before it
            return existing
        lines = [
            {
                "BaseType": DELIVERY_NOTE,
                "BaseEntry": delivery_doc_entry,
                "BaseLine": line.get("LineNum"),
                "Quantity": line.get("Quantity"),
            }
            for line in note.get("DocumentLines") or ()
            if isinstance(line, dict)
        ]
        body = {
            "CardCode": note.get("CardCode"),
            "NumAtCard": note.get("NumAtCard"),
            REF_FIELD: _check_reference(reference),
            "DocumentLines": lines,
        }
        created = self._post_document("Returns", body, ids, "return")
        self._set_ship_status(note, RETURNED, ids)
        return created

    def _set_ship_status(self, note: dict[str, Any], status: str, ids: dict[str, str]) -> None:
        if note.get(SHIP_STATUS_FIELD) == status:
            return
        entry = _doc_entry(int(note["DocEntry"]))
        response = self.request(
            "PATCH", f"/DeliveryNotes({entry})", ids, body={SHIP_STATUS_FIELD: status}, accept=(400, 404)
        )
        if response.status_code >= 400:
            raise _refused(f"ERP refused to mark the delivery {status}", DOCUMENT_REFUSED, ids, response)

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


# -- payments, refunds, deliveries and returns -------------------------------------------------
# Every document Junction adds for a payment, a refund or a return carries the effect's reference
# in the user-defined field U_JunctionRef (docs/erp-contract.md, "Documents Junction adds"): the
# Service Layer ignores Idempotency-Key, so a retry finds what an earlier attempt made by it.
REF_FIELD = "U_JunctionRef"
SHIP_STATUS_FIELD = "U_ShipStatus"  # a delivery's carrier status: "delivered" or "returned"
DELIVERED = "delivered"
RETURNED = "returned"
ALREADY_DELIVERED = "already_delivered"
ALREADY_RETURNED = "already_returned"
DELIVERY_NOTE = 15  # BoObjectTypes: a return line's BaseType
SALES_ORDER_TYPE = 17  # BoObjectTypes: a delivery line's BaseType
TRANSFER_REFERENCE_MAX = 27  # Payments.TransferReference (TrsfrRef)
JOURNAL_REMARKS_MAX = 50  # Payments.JournalRemarks
REMARKS_MAX = 254  # Payments.Remarks (Comments)
REF_MAX = 100  # the size of U_JunctionRef
PAYMENT_SELECT = f"DocEntry,DocNum,CardCode,DocCurrency,TransferSum,Cancelled,{REF_FIELD}"
DELIVERY_SELECT = (
    f"DocEntry,DocNum,CardCode,NumAtCard,DocumentStatus,Cancelled,TrackingNumber,{REF_FIELD},"
    f"{SHIP_STATUS_FIELD},DocumentLines"
)
ORDER_FOR_DELIVERY = "DocEntry,DocNum,CardCode,NumAtCard,DocCurrency,DocumentStatus,Cancelled,DocumentLines"
# Reasons of refusals of these documents (DLQ groups), besides those of cancel_order.
CURRENCY_MISMATCH = "currency_mismatch"
ORDER_CANCELLED = "order_cancelled"
REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"
PAYMENT_NOT_FOUND = "payment_not_found"
PAYMENT_CANCELLED = "payment_cancelled"
DELIVERY_NOT_FOUND = "delivery_not_found"
DELIVERY_CANCELLED = "delivery_cancelled"
DOCUMENT_REFUSED = "document_refused"


@dataclass(frozen=True)
class IncomingPayment:
    """Money received for a sales order, booked as a payment on account of the order's customer.

    ``reference`` is the provider's unique reference (``stripe:pi_...``, ``przelewy24:<orderId>``):
    it goes to U_JunctionRef, by which the payment is found again."""

    card_code: str
    order_doc_entry: int
    reference: str
    amount: Decimal
    currency: str
    paid_on: date
    transfer_account: str
    remarks: str = ""


@dataclass(frozen=True)
class CustomerRefund:
    """Money paid back to the customer against an incoming payment (an outgoing payment to the
    customer). ``reference`` starts with the payment's: ``<payment reference>#refund:<refund id>``."""

    card_code: str
    order_doc_entry: int
    payment_doc_entry: int
    payment_reference: str
    reference: str
    amount: Decimal
    currency: str
    refunded_on: date
    transfer_account: str
    remarks: str = ""


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _filter(collection: str, condition: str, select: str) -> str:
    return f"/{collection}?$select={select}&$filter={quote(condition, safe='')}"


def _check_reference(reference: str) -> str:
    if not isinstance(reference, str) or not reference or len(reference) > REF_MAX:
        raise ValueError(f"a document reference is a string of 1 to {REF_MAX} characters")
    return reference


def _money(amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError("an amount is a positive, finite Decimal")
    return amount


def _transfer_reference(reference: str) -> str:
    """The provider's own id, as a bank statement line would show it (``pi_...``), cut to the field."""
    return reference.split(":", 1)[-1].split("#", 1)[0][:TRANSFER_REFERENCE_MAX]


def _payment_body(
    *,
    card_code: str,
    reference: str,
    amount: Decimal,
    currency: str,
    day: date,
    account: str,
    remarks: str,
    journal: str,
) -> dict[str, Any]:
    return {
        "DocType": "rCustomer",
        "CardCode": card_code,
        "DocDate": day.isoformat(),
        "DocCurrency": currency,
        "TransferAccount": account,
        "TransferSum": _num(_money(amount)),
        "TransferDate": day.isoformat(),
        "TransferReference": _transfer_reference(reference),
        "Remarks": remarks[:REMARKS_MAX],
        "JournalRemarks": journal[:JOURNAL_REMARKS_MAX],
        REF_FIELD: _check_reference(reference),
    }


def _first(response: httpx.Response, ids: dict[str, str], what: str) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        body = None
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise TargetRejected(f"ERP answered the {what} look-up without a list", entity_ids=ids)
    live = [v for v in values if v.get("Cancelled") != "tYES"]
    return dict(live[0]) if live else None


def _refused(
    message: str, reason: str, ids: dict[str, str], response: httpx.Response | None = None, **details: Any
) -> OrderRefused:
    if response is not None:
        details = {"status": response.status_code, "erp_code": error_code(response), **details}
    return OrderRefused(message, reason=reason, entity_ids=ids, details=details)


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Decimal(0)
    return Decimal(str(value))
