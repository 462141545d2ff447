"""WooCommerce: the order resource of an ``order.*`` webhook -> canonical Order.

A webhook's body is the order exactly as the REST API (``/wc/v3/orders/<id>``) returns it. Money
fields are decimal strings; line and shipping amounts (``subtotal``, ``total``) are always without
tax, their tax beside them (``subtotal_tax``, ``total_tax``). ``prices_include_tax`` tells how the
shop priced: when true, the mapped unit prices are gross (amount plus its tax), as the customer saw
them, and ``Order.taxes_included`` says so. A line's ``price`` is not read: it is a JSON number
(a float) after discounts; the unit price is ``subtotal / quantity``, from strings.

Every delivery carries the whole order, so ``date_modified_gmt`` orders the deliveries of one
order (``order_version``); the status says what it means for Junction (``junction_event``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from shared.errors import ValidationFailed
from shared.models import Address, Customer, Money, Order, OrderLine, ShippingLine, TaxLine

SOURCE = "woocommerce"
CENT = Decimal("0.01")
UNIT_PRICE_PLACES = Decimal("0.0001")  # a unit price that does not divide into cents keeps 4 places

# The order properties of the REST API v3 documentation (woocommerce-rest-api-docs, "Order
# properties"), and the read-only ones current WooCommerce versions return beside them.
DOCUMENTED_FIELDS = frozenset(
    {
        "id",
        "parent_id",
        "number",
        "order_key",
        "created_via",
        "version",
        "status",
        "currency",
        "date_created",
        "date_created_gmt",
        "date_modified",
        "date_modified_gmt",
        "discount_total",
        "discount_tax",
        "shipping_total",
        "shipping_tax",
        "cart_tax",
        "total",
        "total_tax",
        "prices_include_tax",
        "customer_id",
        "customer_ip_address",
        "customer_user_agent",
        "customer_note",
        "billing",
        "shipping",
        "payment_method",
        "payment_method_title",
        "transaction_id",
        "date_paid",
        "date_paid_gmt",
        "date_completed",
        "date_completed_gmt",
        "cart_hash",
        "meta_data",
        "line_items",
        "tax_lines",
        "shipping_lines",
        "fee_lines",
        "coupon_lines",
        "refunds",
        "set_paid",
        "_links",
        # returned by current versions, not (yet) in the documentation's table
        "currency_symbol",
        "payment_url",
        "is_editable",
        "needs_payment",
        "needs_processing",
    }
)
# What the mapping reads; absent, the order cannot be mapped (or ordered) at all.
REQUIRED_FIELDS = (
    "id",
    "number",
    "status",
    "currency",
    "date_created_gmt",
    "date_modified_gmt",
    "prices_include_tax",
    "billing",
    "shipping",
    "line_items",
    "shipping_lines",
    "discount_total",
    "discount_tax",
    "total",
    "total_tax",
    "meta_data",
)
LINE_AMOUNTS = ("subtotal", "subtotal_tax", "total", "total_tax")
# Order meta keys VAT-number plugins use (EU VAT and Polish NIP checkout fields).
VAT_META_KEYS = frozenset(
    {
        "_billing_vat",
        "billing_vat",
        "_billing_vat_number",
        "billing_vat_number",
        "vat_number",
        "_vat_number",
        "_billing_eu_vat_number",
        "_billing_nip",
        "billing_nip",
        "nip",
    }
)
# WooCommerce's order statuses -> what they mean to Junction. ``pending`` (awaiting payment) and
# ``failed`` (payment failed) are not orders yet; ``refunded`` and anything else are not routed.
PLACED_STATUSES = frozenset({"processing", "on-hold", "completed"})
CANCELLED_STATUSES = frozenset({"cancelled"})


def _ids(payload: dict[str, Any]) -> dict[str, str]:
    return {"woocommerce_order_id": str(payload.get("id", "")), "order_number": str(payload.get("number") or "")}


def _require(payload: Any, fields: tuple[str, ...] = REQUIRED_FIELDS) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationFailed("payload is not a WooCommerce order")
    for name in fields:
        if payload.get(name) is None:
            raise ValidationFailed(f"missing field {name}", entity_ids=_ids(payload), details={"field": name})
    return payload


def unknown_fields(payload: Any) -> list[str]:
    """Top-level fields the documented order schema does not have: a shape change to look at.
    A required field that is missing raises ValidationFailed naming it."""
    return sorted(name for name in _require(payload) if name not in DOCUMENTED_FIELDS)


def order_status(payload: Any) -> str:
    """The order's status (``processing``, ``cancelled``, ... or a plugin's own)."""
    status = _require(payload, ("id", "status"))["status"]
    if not isinstance(status, str) or not status.strip():
        raise ValidationFailed("status is not a string", entity_ids=_ids(payload), details={"field": "status"})
    return status.strip()


def junction_event(payload: Any) -> str | None:
    """``order.created`` for a placed order, ``order.cancelled`` for a cancelled one, else None."""
    status = order_status(payload)
    if status in PLACED_STATUSES:
        return "order.created"
    if status in CANCELLED_STATUSES:
        return "order.cancelled"
    return None


def _gmt(value: Any, field: str) -> datetime:
    """WooCommerce's ``*_gmt`` dates (``2025-05-14T09:31:07``, no zone) as aware UTC datetimes."""
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a date")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field} is not a date") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def order_version(payload: Any) -> str:
    """``date_modified_gmt`` as ISO 8601 UTC: the stamp that orders the deliveries of one order
    (one-second resolution; a larger stamp is a newer state)."""
    _require(payload, ("id", "date_modified_gmt"))
    try:
        return _gmt(payload["date_modified_gmt"], "date_modified_gmt").isoformat(timespec="seconds")
    except ValueError as exc:
        raise ValidationFailed(str(exc), entity_ids=_ids(payload), details={"field": "date_modified_gmt"}) from None


def order_from_webhook(payload: Any) -> Order:
    """Map an order resource; a missing or invalid field raises ValidationFailed."""
    order = _require(payload)
    ids = _ids(order)
    try:
        return _map(order)
    except ValidationError as exc:
        # Field paths and error types only: pydantic's messages can quote personal data.
        fields = sorted({".".join(str(p) for p in e["loc"]) + ":" + e["type"] for e in exc.errors()})
        raise ValidationFailed(f"invalid order: {', '.join(fields)[:500]}", entity_ids=ids) from None
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
        raise ValidationFailed(f"invalid order: {type(exc).__name__}: {exc}"[:500], entity_ids=ids) from None


def _amount(value: Any, field: str) -> Decimal:
    """A money string as Decimal; a float (or anything else) is refused, never rounded."""
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a decimal string")
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal string") from None
    if not amount.is_finite():
        raise ValueError(f"{field} is not a finite amount")
    return amount


def _quantity(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{field} is not a whole number")
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a whole number") from None


def _unit_price(line_amount: Decimal, quantity: Decimal) -> Decimal:
    unit = line_amount / quantity
    cents = unit.quantize(CENT)
    return cents if cents == unit else unit.quantize(UNIT_PRICE_PLACES)


def _rates(order: dict[str, Any]) -> dict[Any, tuple[str, Decimal | None]]:
    """rate id -> (label, rate as a fraction) from the order's ``tax_lines``."""
    rates: dict[Any, tuple[str, Decimal | None]] = {}
    for line in order.get("tax_lines") or []:
        percent = line.get("rate_percent")
        rate = None
        if isinstance(percent, int | float | str) and not isinstance(percent, bool):
            rate = Decimal(str(percent)) / 100  # a rate, not money: its float form is exact enough
        rates[line.get("rate_id")] = (str(line.get("label") or line.get("rate_code") or "tax"), rate)
    return rates


def _taxes(
    taxes: Any, base: Decimal, currency: str, rates: dict[Any, tuple[str, Decimal | None]], field: str
) -> tuple[TaxLine, ...]:
    mapped = []
    for tax in taxes or []:
        amount = _amount(tax.get("total"), f"{field}.taxes.total")
        label, rate = rates.get(tax.get("id"), ("tax", None))
        if rate is None:  # no rate_percent (older versions): the rate this amount implies
            rate = (amount / base).quantize(UNIT_PRICE_PLACES) if base else Decimal("0")
        mapped.append(TaxLine(title=label, rate=rate, amount=Money(amount=amount, currency=currency)))
    return tuple(mapped)


def _address(raw: Any) -> Address | None:
    if not isinstance(raw, dict) or not raw.get("address_1"):
        return None
    return Address(
        name=" ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or None,
        company=raw.get("company") or None,
        line1=raw["address_1"],
        line2=raw.get("address_2") or None,
        city=raw.get("city") or "",
        postal_code=raw.get("postcode") or None,
        region=raw.get("state") or None,
        country=raw.get("country") or "",
        phone=raw.get("phone") or None,
    )


def _vat_number(meta_data: Any) -> str | None:
    for meta in meta_data or []:
        if isinstance(meta, dict) and str(meta.get("key", "")).strip().lower() in VAT_META_KEYS:
            value = meta.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _lines(order: dict[str, Any], currency: str, gross: bool, rates: dict[Any, Any]) -> tuple[list[OrderLine], Decimal]:
    """The lines, and their sum after discounts (the order's subtotal, as Shopify's ``subtotal_price``)."""
    lines, subtotal_after = [], Decimal(0)
    for n, item in enumerate(order["line_items"]):
        field = f"line_items[{n}]"
        subtotal, subtotal_tax, total, total_tax = (_amount(item.get(a), f"{field}.{a}") for a in LINE_AMOUNTS)
        quantity = _quantity(item.get("quantity"), f"{field}.quantity")
        before = subtotal + subtotal_tax if gross else subtotal
        after = total + total_tax if gross else total
        discount = before - after
        subtotal_after += after
        lines.append(
            OrderLine(
                source_id=str(item["id"]) if item.get("id") is not None else None,
                sku=str(item.get("sku") or ""),
                title=str(item.get("name") or ""),
                quantity=quantity,
                unit_price=Money(amount=_unit_price(before, quantity), currency=currency),
                discount=Money(amount=discount, currency=currency) if discount else None,
                taxes=_taxes(item.get("taxes"), total, currency, rates, field),
            )
        )
    return lines, subtotal_after


def _shipping(order: dict[str, Any], currency: str, gross: bool, rates: dict[Any, Any]) -> tuple[ShippingLine, ...]:
    mapped = []
    for n, line in enumerate(order["shipping_lines"]):
        field = f"shipping_lines[{n}]"
        total = _amount(line.get("total"), f"{field}.total")
        tax = _amount(line.get("total_tax"), f"{field}.total_tax")
        mapped.append(
            ShippingLine(
                title=str(line.get("method_title") or "shipping"),
                code=line.get("method_id") or None,
                price=Money(amount=total + tax if gross else total, currency=currency),
                taxes=_taxes(line.get("taxes"), total, currency, rates, field),
            )
        )
    return tuple(mapped)


def _map(order: dict[str, Any]) -> Order:
    if order.get("fee_lines"):
        # Fees (cash on delivery, packaging) have no place in the canonical order: refuse rather
        # than hand on lines that do not add up to the total.
        raise ValueError("fee_lines are not mapped")
    currency = str(order["currency"])
    gross = order["prices_include_tax"]
    if not isinstance(gross, bool):
        raise ValueError("prices_include_tax is not a boolean")
    rates = _rates(order)
    billing_raw = order["billing"] if isinstance(order["billing"], dict) else {}
    billing = _address(billing_raw)
    shipping = _address(order["shipping"])
    known = billing or shipping
    customer_id = order.get("customer_id")
    customer = Customer(
        source_id=str(customer_id) if customer_id else None,  # 0: a guest
        email=billing_raw.get("email") or None,
        first_name=billing_raw.get("first_name") or None,
        last_name=billing_raw.get("last_name") or None,
        company=billing_raw.get("company") or None,
        phone=billing_raw.get("phone") or None,
        tax_id=_vat_number(order["meta_data"]),
        country=known.country if known else None,
    )
    lines, subtotal = _lines(order, currency, gross, rates)
    discount = _amount(order["discount_total"], "discount_total")
    if gross:
        discount += _amount(order["discount_tax"], "discount_tax")
    return Order(
        source=SOURCE,
        source_id=str(order["id"]),
        number=str(order["number"]),
        created_at=_gmt(order["date_created_gmt"], "date_created_gmt"),
        currency=currency,
        customer=customer,
        billing_address=billing,
        shipping_address=shipping,
        lines=tuple(lines),
        shipping=_shipping(order, currency, gross, rates),
        discount_codes=tuple(str(c["code"]) for c in order.get("coupon_lines") or [] if c.get("code")),
        subtotal=Money(amount=subtotal, currency=currency),
        total_tax=Money(amount=_amount(order["total_tax"], "total_tax"), currency=currency),
        total_discounts=Money(amount=discount, currency=currency),
        total=Money(amount=_amount(order["total"], "total"), currency=currency),
        taxes_included=gross,
        note=order.get("customer_note") or None,
    )
