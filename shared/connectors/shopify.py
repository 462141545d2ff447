"""Shopify: the ``orders/create`` webhook payload -> canonical Order.

Follows Shopify's documented order resource: money fields are decimal strings, the presentment
currency is ``currency``, line items carry ``price``, ``quantity``, ``total_discount``,
``discount_allocations`` and ``tax_lines``; ``shipping_lines`` carry their own price and taxes;
``note_attributes`` may hold a VAT number given at checkout.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from shared.errors import ValidationFailed
from shared.models import Address, Customer, Money, Order, OrderLine, ShippingLine, TaxLine

SOURCE = "shopify"
# The order resource's top-level fields as Shopify documents them (Admin REST API, Order): a field
# outside this set is a shape change to look at (logged and counted, never dropped).
DOCUMENTED_FIELDS = frozenset(
    [
        "id",
        "admin_graphql_api_id",
        "app_id",
        "billing_address",
        "browser_ip",
        "buyer_accepts_marketing",
        "cancel_reason",
        "cancelled_at",
        "cart_token",
        "checkout_id",
        "checkout_token",
        "client_details",
        "closed_at",
        "company",
        "confirmation_number",
        "confirmed",
        "contact_email",
        "created_at",
        "currency",
        "current_subtotal_price",
        "current_subtotal_price_set",
        "current_total_additional_fees_set",
        "current_total_discounts",
        "current_total_discounts_set",
        "current_total_duties_set",
        "current_total_price",
        "current_total_price_set",
        "current_total_tax",
        "current_total_tax_set",
        "customer",
        "customer_locale",
        "device_id",
        "discount_applications",
        "discount_codes",
        "duties_included",
        "email",
        "estimated_taxes",
        "financial_status",
        "fulfillment_status",
        "fulfillments",
        "landing_site",
        "landing_site_ref",
        "line_items",
        "location_id",
        "merchant_business_entity_id",
        "merchant_of_record_app_id",
        "name",
        "note",
        "note_attributes",
        "number",
        "order_number",
        "order_status_url",
        "original_total_additional_fees_set",
        "original_total_duties_set",
        "payment_gateway_names",
        "payment_terms",
        "phone",
        "po_number",
        "presentment_currency",
        "processed_at",
        "reference",
        "referring_site",
        "refunds",
        "returns",
        "shipping_address",
        "shipping_lines",
        "source_identifier",
        "source_name",
        "source_url",
        "subtotal_price",
        "subtotal_price_set",
        "tags",
        "tax_exempt",
        "tax_lines",
        "taxes_included",
        "test",
        "token",
        "total_cash_rounding_payment_adjustment_set",
        "total_cash_rounding_refund_adjustment_set",
        "total_discounts",
        "total_discounts_set",
        "total_line_items_price",
        "total_line_items_price_set",
        "total_outstanding",
        "total_price",
        "total_price_set",
        "total_shipping_price_set",
        "total_tax",
        "total_tax_set",
        "total_tip_received",
        "total_weight",
        "updated_at",
        "user_id",
    ]
)
VAT_ATTRIBUTE_NAMES = frozenset({"vat", "vat_number", "vat number", "nip", "tax_id", "tax id"})


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field} is missing")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal") from None


def _money(value: Any, currency: str, field: str) -> Money:
    return Money(amount=_decimal(value, field), currency=currency)


def _taxes(lines: Any, currency: str) -> tuple[TaxLine, ...]:
    return tuple(
        TaxLine(
            title=str(t.get("title") or "tax"),
            rate=_decimal(t.get("rate", "0"), "tax_lines.rate"),
            amount=_money(t.get("price"), currency, "tax_lines.price"),
        )
        for t in (lines or [])
    )


def _address(raw: Any) -> Address | None:
    if not isinstance(raw, dict) or not raw.get("address1"):
        return None
    return Address(
        name=raw.get("name") or " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or None,
        company=raw.get("company") or None,
        line1=raw["address1"],
        line2=raw.get("address2") or None,
        city=raw.get("city") or "",
        postal_code=raw.get("zip") or None,
        region=raw.get("province_code") or raw.get("province") or None,
        country=raw.get("country_code") or "",
        phone=raw.get("phone") or None,
    )


def _vat_number(payload: dict[str, Any], billing: dict[str, Any] | None) -> str | None:
    for attribute in payload.get("note_attributes") or []:
        if isinstance(attribute, dict) and str(attribute.get("name", "")).strip().lower() in VAT_ATTRIBUTE_NAMES:
            value = str(attribute.get("value") or "").strip()
            if value:
                return value
    return None


def unknown_fields(payload: Any) -> list[str]:
    """Top-level fields the documented order resource does not have (a shape change)."""
    return sorted(k for k in payload if k not in DOCUMENTED_FIELDS) if isinstance(payload, dict) else []


def order_from_webhook(payload: Any) -> Order:
    """Map an ``orders/create`` payload; any invalid field raises ValidationFailed."""
    if not isinstance(payload, dict) or "id" not in payload:
        raise ValidationFailed("payload is not a Shopify order")
    order_id = str(payload["id"])
    ids = {"shopify_order_id": order_id, "order_number": str(payload.get("name") or "")}
    try:
        return _map(payload, order_id)
    except ValidationError as exc:
        # Field paths and error types only: pydantic's messages can quote personal data.
        fields = sorted({".".join(str(p) for p in e["loc"]) + ":" + e["type"] for e in exc.errors()})
        raise ValidationFailed(f"invalid order: {', '.join(fields)[:500]}", entity_ids=ids) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationFailed(f"invalid order: {type(exc).__name__}: {exc}"[:500], entity_ids=ids) from None


def _map(payload: dict[str, Any], order_id: str) -> Order:
    currency = str(payload.get("currency") or "")
    raw_customer: dict[str, Any] = payload["customer"] if isinstance(payload.get("customer"), dict) else {}
    billing_raw = payload.get("billing_address") if isinstance(payload.get("billing_address"), dict) else None
    shipping_raw = payload.get("shipping_address") if isinstance(payload.get("shipping_address"), dict) else None
    billing = _address(billing_raw)
    shipping = _address(shipping_raw)
    known = billing or shipping
    country = known.country if known else None
    customer = Customer(
        source_id=str(raw_customer["id"]) if raw_customer.get("id") is not None else None,
        email=payload.get("email") or payload.get("contact_email") or raw_customer.get("email") or None,
        first_name=raw_customer.get("first_name") or (billing_raw or {}).get("first_name") or None,
        last_name=raw_customer.get("last_name") or (billing_raw or {}).get("last_name") or None,
        company=(billing_raw or {}).get("company") or None,
        phone=payload.get("phone") or raw_customer.get("phone") or None,
        tax_id=_vat_number(payload, billing_raw),
        country=country,
    )
    lines = []
    for item in payload.get("line_items") or []:
        allocated = sum(
            (_decimal(a.get("amount"), "discount_allocations.amount") for a in item.get("discount_allocations") or []),
            Decimal("0"),
        )
        discount = allocated or _decimal(item.get("total_discount") or "0", "total_discount")
        lines.append(
            OrderLine(
                source_id=str(item.get("id")) if item.get("id") is not None else None,
                sku=str(item.get("sku") or ""),
                title=str(item.get("title") or item.get("name") or ""),
                quantity=_decimal(item.get("quantity"), "quantity"),
                unit_price=_money(item.get("price"), currency, "price"),
                discount=Money(amount=discount, currency=currency) if discount else None,
                taxes=_taxes(item.get("tax_lines"), currency),
            )
        )
    shipping_lines = tuple(
        ShippingLine(
            title=str(s.get("title") or "shipping"),
            code=s.get("code") or None,
            price=_money(s.get("price"), currency, "shipping_lines.price"),
            taxes=_taxes(s.get("tax_lines"), currency),
        )
        for s in payload.get("shipping_lines") or []
    )
    return Order(
        source=SOURCE,
        source_id=order_id,
        number=str(payload.get("name") or f"#{payload.get('order_number', order_id)}"),
        created_at=payload.get("created_at"),
        currency=currency,
        customer=customer,
        billing_address=billing,
        shipping_address=shipping,
        lines=tuple(lines),
        shipping=shipping_lines,
        discount_codes=tuple(str(d.get("code")) for d in payload.get("discount_codes") or [] if d.get("code")),
        subtotal=_money(payload.get("subtotal_price"), currency, "subtotal_price"),
        total_tax=_money(payload.get("total_tax") or "0", currency, "total_tax"),
        total_discounts=_money(payload.get("total_discounts") or "0", currency, "total_discounts"),
        total=_money(payload.get("total_price"), currency, "total_price"),
        taxes_included=bool(payload.get("taxes_included")),
        note=payload.get("note") or None,
    )
