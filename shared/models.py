"""Canonical models: the shape every connector maps to and from.

Data hygiene happens here, once: emails trimmed and lower-cased, phone numbers in E.164,
ISO 3166-1 alpha-2 countries, ISO 4217 currencies, tax ids validated where present, money as
Decimal with its currency (never float). Invalid data raises ``ValueError`` inside pydantic,
which connectors turn into ``shared.errors.ValidationFailed`` with entity ids and no personal data.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValueError("not a valid email address")
    return email


@functools.lru_cache(maxsize=4096)
def normalise_phone(value: str, country: str | None = None) -> str:
    """E.164, using ``country`` as the region for numbers written without a country code."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_tax_id(value: str, country: str | None) -> str:
    """An EU VAT number (with or without its country prefix) or a national tax id, validated.

    Only the module for the country at hand is imported: python-stdnum is slow to import whole.
    """
    from stdnum.util import get_cc_module  # resolves country aliases (pl -> nip, fr -> tva)

    compact = re.sub(r"[\s.\-/]", "", value).upper()
    prefix = compact[:2] if compact[:2].isalpha() else (country or "").upper()
    number = compact[2:] if compact[:2].isalpha() else compact
    module_name = {"GR": "gr", "EL": "gr"}.get(prefix, prefix.lower())
    if not re.fullmatch(r"[a-z]{2}", module_name):
        raise ValueError("tax id without a country")
    vat = get_cc_module(module_name, "vat")
    if vat is None:  # a country python-stdnum has no VAT module for: keep it, unvalidated
        return prefix + number
    try:
        return prefix + str(vat.validate(number))
    except Exception as exc:  # stdnum raises its own ValidationError subclasses
        raise ValueError("not a valid tax id") from exc


def _currency(value: str) -> str:
    value = value.strip().upper()
    if not _CURRENCY.match(value):
        raise ValueError("currency must be an ISO 4217 code")
    return value


def _country(value: str) -> str:
    value = value.strip().upper()
    if not _COUNTRY.match(value):
        raise ValueError("country must be an ISO 3166-1 alpha-2 code")
    return value


Currency = Annotated[str, AfterValidator(_currency)]
Country = Annotated[str, AfterValidator(_country)]


class Canonical(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Money(Canonical):
    amount: Decimal
    currency: Currency

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("money must be a string or Decimal, never a float")
        return value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("amount must be finite")
        return value


class Address(Canonical):
    name: str | None = None
    company: str | None = None
    line1: str
    line2: str | None = None
    city: str
    postal_code: str | None = None
    region: str | None = None
    country: Country
    phone: str | None = None

    @model_validator(mode="after")
    def _phone_e164(self) -> Address:
        if self.phone:
            object.__setattr__(self, "phone", normalise_phone(self.phone, self.country))
        return self


class Customer(Canonical):
    source_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    phone: str | None = None
    tax_id: str | None = None
    country: Country | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value else None

    @model_validator(mode="after")
    def _hygiene(self) -> Customer:
        if self.phone:
            object.__setattr__(self, "phone", normalise_phone(self.phone, self.country))
        if self.tax_id:
            object.__setattr__(self, "tax_id", normalise_tax_id(self.tax_id, self.country))
        if not (self.email or self.tax_id):
            raise ValueError("a customer needs an email or a tax id (the stable key)")
        return self

    @property
    def display_name(self) -> str:
        person = " ".join(p for p in (self.first_name, self.last_name) if p)
        return self.company or person or (self.email or self.tax_id or "customer")

    @property
    def stable_key(self) -> str:
        """What identifies this customer across systems: the tax id if known, else the email."""
        return f"tax:{self.tax_id}" if self.tax_id else f"email:{self.email}"

    def code(self, prefix: str = "C", length: int = 15) -> str:
        """A deterministic customer code of at most ``length`` chars derived from the stable key."""
        digest = hashlib.sha256(self.stable_key.encode()).hexdigest().upper()
        return prefix + digest[: length - len(prefix)]


class TaxLine(Canonical):
    title: str
    rate: Decimal = Field(ge=0, le=1)
    amount: Money


class OrderLine(Canonical):
    source_id: str | None = None
    sku: str = Field(min_length=1, max_length=50)
    title: str
    quantity: Decimal = Field(gt=0)
    unit_price: Money
    discount: Money | None = None  # total discount on the line
    taxes: tuple[TaxLine, ...] = ()

    @property
    def discount_percent(self) -> Decimal:
        gross = self.unit_price.amount * self.quantity
        if not self.discount or gross == 0:
            return Decimal("0")
        return (self.discount.amount / gross * 100).quantize(Decimal("0.0001"))


class ShippingLine(Canonical):
    title: str
    code: str | None = None
    price: Money
    taxes: tuple[TaxLine, ...] = ()


class Order(Canonical):
    source: str  # "shopify"
    source_id: str
    number: str  # what people call it: "#1001"
    created_at: datetime
    currency: Currency
    customer: Customer
    billing_address: Address | None = None
    shipping_address: Address | None = None
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    shipping: tuple[ShippingLine, ...] = ()
    discount_codes: tuple[str, ...] = ()
    subtotal: Money
    total_tax: Money
    total_discounts: Money
    total: Money
    taxes_included: bool
    note: str | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> Order:
        amounts = [self.subtotal, self.total_tax, self.total_discounts, self.total]
        amounts += [line.unit_price for line in self.lines]
        amounts += [s.price for s in self.shipping]
        if any(m.currency != self.currency for m in amounts):
            raise ValueError("all amounts must be in the order currency")
        return self

    @property
    def entity_id(self) -> str:
        return f"{self.source}-order:{self.source_id}"  # order_entity_id of its reference

    @property
    def business_key(self) -> str:
        return f"order:{self.source_id}"

    def fingerprint(self) -> str:
        """A hash of the content that matters, for idempotency payload validation."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def order_entity_id(order_reference: str) -> str:
    """An order's reference at every target (``shopify:123``, as the ERP's NumAtCard and the
    warehouse's reference_id carry it) -> its entity id across Junction (``shopify-order:123``,
    ``Order.entity_id``): the key of its trace and cross-reference. ValueError for a string that
    is no reference."""
    source, sep, source_id = order_reference.partition(":")
    if not (sep and source and source_id):
        raise ValueError(f"not an order reference: {order_reference[:80]!r}")
    return f"{source}-order:{source_id}"
