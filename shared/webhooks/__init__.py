"""Webhook signature schemes behind one interface. Add a scheme: write a verifier, list it here."""

from __future__ import annotations

from shared.webhooks.base import (
    BadRequest,
    Headers,
    IngressRejection,
    PayloadTooLarge,
    PingAware,
    VerificationFailed,
    VerifiedDelivery,
    Verifier,
    ping_check,
)
from shared.webhooks.przelewy24 import Przelewy24Verifier
from shared.webhooks.shipx import ShipXVerifier
from shared.webhooks.shopify import ShopifyVerifier
from shared.webhooks.standard import StandardWebhooksVerifier
from shared.webhooks.stripe import StripeVerifier
from shared.webhooks.woocommerce import WooCommerceVerifier

VERIFIERS: dict[str, Verifier] = {
    v.scheme: v
    for v in (
        ShopifyVerifier(),
        StandardWebhooksVerifier(),
        WooCommerceVerifier(),
        ShipXVerifier(),
        StripeVerifier(),
        Przelewy24Verifier(),
    )
}


def verifier_for(scheme: str) -> Verifier:
    try:
        return VERIFIERS[scheme]
    except KeyError:
        raise ValueError(f"no verifier for scheme {scheme!r}") from None


__all__ = [
    "VERIFIERS",
    "BadRequest",
    "Headers",
    "IngressRejection",
    "PayloadTooLarge",
    "PingAware",
    "VerificationFailed",
    "VerifiedDelivery",
    "Verifier",
    "ping_check",
    "verifier_for",
]
