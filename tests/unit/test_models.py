"""Canonical models, data hygiene, the Shopify mapping and the ERP document builders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from shared.connectors import shopify
from shared.connectors.erp import business_partner, order_reference, sales_order
from shared.errors import ValidationFailed
from shared.models import Customer, Money, normalise_email, normalise_phone, normalise_tax_id
from tests.sample import shopify_order


class TestHygiene:
    def test_email_trimmed_and_lower_cased(self) -> None:
        assert normalise_email("  Anna.Kowalska@Example.PL ") == "anna.kowalska@example.pl"

    @pytest.mark.parametrize("bad", ["", "anna", "anna@", "a b@example.com", "x@" + "a" * 260 + ".pl"])
    def test_bad_emails_rejected(self, bad: str) -> None:
        with pytest.raises(ValueError):
            normalise_email(bad)

    @pytest.mark.parametrize(
        ("raw", "country", "e164"),
        [
            ("601 234 567", "PL", "+48601234567"),
            ("+48 601-234-567", None, "+48601234567"),
            ("030 123456", "DE", "+4930123456"),
        ],
    )
    def test_phone_to_e164(self, raw: str, country: str | None, e164: str) -> None:
        assert normalise_phone(raw, country) == e164

    def test_invalid_phone_rejected(self) -> None:
        with pytest.raises(ValueError):
            normalise_phone("12", "PL")

    @pytest.mark.parametrize(("raw", "clean"), [("PL 526-025-09-95", "PL5260250995"), ("5260250995", "PL5260250995")])
    def test_vat_numbers_validated_and_compacted(self, raw: str, clean: str) -> None:
        assert normalise_tax_id(raw, "PL") == clean

    def test_wrong_vat_checksum_rejected(self) -> None:
        with pytest.raises(ValueError, match="tax id"):
            normalise_tax_id("PL5260250996", None)

    def test_money_refuses_floats(self) -> None:
        with pytest.raises(ValidationError):
            Money(amount=0.1, currency="PLN")
        assert Money(amount=Decimal("0.10"), currency="pln").currency == "PLN"

    def test_customer_needs_a_stable_key(self) -> None:
        with pytest.raises(ValidationError):
            Customer(first_name="Anna")

    def test_customer_code_is_deterministic_and_short(self) -> None:
        a = Customer(email="Anna@Example.pl ")
        b = Customer(email="anna@example.pl", first_name="Anna")
        assert a.code() == b.code()
        assert len(a.code()) <= 15
        with_tax = Customer(email="anna@example.pl", tax_id="PL5260250995")
        assert with_tax.stable_key == "tax:PL5260250995"
        assert with_tax.code() != a.code()


class TestShopifyMapping:
    def test_documented_payload_maps_completely(self) -> None:
        order = shopify.order_from_webhook(shopify_order())
        assert order.source_id == "820982911946154508"
        assert order.number == "#1001"
        assert order.currency == "PLN"
        assert order.customer.email == "anna.kowalska@example.pl"
        assert order.customer.tax_id == "PL5260250995"
        assert order.customer.phone == "+48601234567"
        assert order.taxes_included is True
        assert [line.sku for line in order.lines] == ["MUG-BLUE", "TEAPOT-L"]
        first = order.lines[0]
        assert first.unit_price == Money(amount=Decimal("60.00"), currency="PLN")
        assert first.quantity == Decimal(2)
        assert first.discount_percent == Decimal("10.0000")
        assert first.taxes[0].rate == Decimal("0.23")
        assert order.total.amount == Decimal("393.00")
        assert order.shipping and order.shipping[0].price.currency == "PLN"
        assert order.shipping_address is not None and order.shipping_address.country == "PL"
        assert order.business_key == "order:820982911946154508"

    def test_fingerprint_ignores_delivery_noise_but_not_content(self) -> None:
        a = shopify.order_from_webhook(shopify_order(updated_at="2026-11-21T11:00:00+01:00"))
        b = shopify.order_from_webhook(shopify_order())
        assert a.fingerprint() == b.fingerprint()
        changed = shopify_order()
        changed["line_items"][0]["quantity"] = 3
        assert shopify.order_from_webhook(changed).fingerprint() != b.fingerprint()

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda p: p.update(line_items=[]),
            lambda p: p.update(currency="zloty"),
            lambda p: p["line_items"][0].update(price="sixty"),
            lambda p: p["line_items"][0].update(price=None),
            lambda p: p["line_items"][0].update(sku=""),
            lambda p: p["line_items"][0].update(quantity=0),
            lambda p: p.update(email=None, contact_email=None, customer={}, note_attributes=[]),
            lambda p: p.update(note_attributes=[{"name": "vat_number", "value": "PL5260250996"}]),
            lambda p: p.pop("line_items"),
        ],
    )
    def test_invalid_orders_raise_validation_failed_with_ids(self, mutate: Any) -> None:
        payload = shopify_order()
        mutate(payload)
        with pytest.raises(ValidationFailed) as info:
            shopify.order_from_webhook(payload)
        assert info.value.entity_ids["shopify_order_id"] == "820982911946154508"
        assert "anna" not in info.value.message.lower()  # no personal data in errors

    @pytest.mark.parametrize("payload", [[], "order", {"no": "id"}, None])
    def test_not_an_order_at_all(self, payload: Any) -> None:
        with pytest.raises(ValidationFailed):
            shopify.order_from_webhook(payload)


class TestErpDocuments:
    def test_sales_order_follows_the_service_layer_shape(self) -> None:
        order = shopify.order_from_webhook(shopify_order())
        doc = sales_order(order, "C123")
        assert doc["CardCode"] == "C123"
        assert doc["NumAtCard"] == order_reference(order) == "shopify:820982911946154508"
        assert doc["DocDate"] == "2026-11-21"
        assert doc["DocCurrency"] == "PLN"
        line = doc["DocumentLines"][0]
        assert line == {
            "ItemCode": "MUG-BLUE",
            "ItemDescription": "Ceramic Mug",
            "Quantity": 2.0,
            "PriceAfterVAT": 60.0,
            "DiscountPercent": 10.0,
        }
        assert doc["DocumentAdditionalExpenses"][0]["LineTotal"] > 0

    def test_prices_before_tax_use_unit_price(self) -> None:
        order = shopify.order_from_webhook(shopify_order(taxes_included=False))
        assert "UnitPrice" in sales_order(order, "C1")["DocumentLines"][0]

    def test_business_partner(self) -> None:
        order = shopify.order_from_webhook(shopify_order())
        bp = business_partner(order.customer, order.billing_address, order.customer.code())
        assert bp["CardType"] == "cCustomer"
        assert bp["FederalTaxID"] == "PL5260250995"
        assert bp["EmailAddress"] == "anna.kowalska@example.pl"
        assert bp["BPAddresses"][0]["Country"] == "PL"


def test_the_documented_shopify_order_has_no_unknown_field_and_a_new_one_is_named() -> None:
    assert shopify.unknown_fields(shopify_order()) == []
    assert shopify.unknown_fields(shopify_order(loyalty_tier="gold", fraud_score=3)) == ["fraud_score", "loyalty_tier"]
    assert shopify.unknown_fields("not an order") == []
