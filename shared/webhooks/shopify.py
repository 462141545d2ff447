"""Shopify webhooks: ``X-Shopify-Hmac-Sha256`` is base64(HMAC-SHA256(app secret, raw body)).

Delivery id: ``X-Shopify-Webhook-Id`` (the same on every retry of one delivery).
Topic: ``X-Shopify-Topic`` (e.g. ``orders/create``). Shopify signs with the app's client secret;
after a rotation both the old and the new secret may sign for a while, so every active secret
is tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import ClassVar

from shared.webhooks.base import (
    MAX_SIGNATURE_HEADER,
    Headers,
    VerificationFailed,
    VerifiedDelivery,
    delivery_id_from,
)

SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
ID_HEADER = "X-Shopify-Webhook-Id"
TOPIC_HEADER = "X-Shopify-Topic"


def sign(raw_body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()).decode()


class ShopifyVerifier:
    scheme: ClassVar[str] = "shopify"
    kept_headers: ClassVar[tuple[str, ...]] = (
        "x-shopify-topic",
        "x-shopify-shop-domain",
        "x-shopify-api-version",
        "x-shopify-webhook-id",
        "x-shopify-triggered-at",
        "x-shopify-event-id",
    )
    signature_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER.lower(),)

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery:
        given = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not given:
            raise VerificationFailed("missing signature")
        if len(given) > MAX_SIGNATURE_HEADER:
            raise VerificationFailed("signature header too long")
        try:
            digest = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            raise VerificationFailed("signature is not base64") from None
        if len(digest) != hashlib.sha256().digest_size:
            raise VerificationFailed("signature has the wrong length")
        matched = False
        for secret in secrets:
            expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()
            matched |= hmac.compare_digest(expected, digest)  # no early exit: same work for every secret
        if not matched:
            raise VerificationFailed("signature mismatch")
        topic = (headers.get(TOPIC_HEADER) or "").strip() or None
        return VerifiedDelivery(delivery_id_from(headers, ID_HEADER), topic=topic)
