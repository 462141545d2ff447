"""WooCommerce webhooks: ``X-WC-Webhook-Signature`` is base64(HMAC-SHA256(webhook secret, raw body)).

Headers (``WC_Webhook::deliver``): ``X-WC-Webhook-Source`` (the shop's home URL), ``-Topic``
(``order.created``), ``-Resource`` (``order``), ``-Event`` (``created``), ``-Signature``, ``-ID``
(the webhook's id) and ``-Delivery-ID``. WordPress stores the secret HTML-escaped and WooCommerce
signs with ``wp_specialchars_decode(secret)``, so both the stored and the decoded form are tried.

Delivery id: WooCommerce makes it ``wp_hash(webhook id . unix seconds)``: two deliveries of one
webhook within the same second carry the same id (a bulk status change fires several at once).
Our id is that header plus a digest of the signed body: the deliveries of different orders stay
apart, and the same body sent again stays a duplicate.

Ping: when a webhook is saved as active, WooCommerce posts the form body ``webhook_id=<id>``,
unsigned, and saves the webhook only if the answer is exactly 200. ``is_ping`` recognises that
exact shape and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import ClassVar

from shared.webhooks.base import (
    MAX_SIGNATURE_HEADER,
    Headers,
    VerificationFailed,
    VerifiedDelivery,
    delivery_id_from,
)

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
DELIVERY_ID_HEADER = "X-WC-Webhook-Delivery-ID"
TOPIC_HEADER = "X-WC-Webhook-Topic"
BODY_DIGEST_CHARS = 16  # hex chars of the body's SHA-256 appended to the delivery id

_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
# wp_specialchars_decode($secret, ENT_QUOTES): one pass, so "&amp;lt;" becomes "&lt;", not "<".
_WP_ENTITIES = {
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&#039;": "'",
    "&#x27;": "'",
}
_WP_ENTITY = re.compile("|".join(re.escape(e) for e in _WP_ENTITIES), re.IGNORECASE)


def signing_keys(secret: str) -> tuple[bytes, ...]:
    """The HMAC keys one configured secret stands for: as stored, and as WordPress decodes it."""
    decoded = _WP_ENTITY.sub(lambda m: _WP_ENTITIES[m.group(0).lower()], secret)
    return (secret.encode(),) if decoded == secret else (secret.encode(), decoded.encode())


def sign(raw_body: bytes, secret: str) -> str:
    """The signature WooCommerce sends for ``raw_body`` (``secret`` as WordPress decodes it)."""
    key = signing_keys(secret)[-1]
    return base64.b64encode(hmac.new(key, raw_body, hashlib.sha256).digest()).decode()


class WooCommerceVerifier:
    scheme: ClassVar[str] = "woocommerce"
    kept_headers: ClassVar[tuple[str, ...]] = (
        "x-wc-webhook-source",
        "x-wc-webhook-topic",
        "x-wc-webhook-resource",
        "x-wc-webhook-event",
        "x-wc-webhook-id",
        "x-wc-webhook-delivery-id",
    )
    signature_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER.lower(),)

    def is_ping(self, headers: Headers, raw_body: bytes) -> bool:
        """WooCommerce's check of a new webhook's URL: ``webhook_id=<digits>``, with no signature."""
        return headers.get(SIGNATURE_HEADER) is None and _PING.fullmatch(raw_body) is not None

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
            for key in signing_keys(secret):
                expected = hmac.new(key, raw_body, hashlib.sha256).digest()
                matched |= hmac.compare_digest(expected, digest)  # no early exit: same work for every secret
        if not matched:
            raise VerificationFailed("signature mismatch")
        delivery = delivery_id_from(headers, DELIVERY_ID_HEADER)
        body_digest = hashlib.sha256(raw_body).hexdigest()[:BODY_DIGEST_CHARS]
        topic = (headers.get(TOPIC_HEADER) or "").strip() or None
        return VerifiedDelivery(f"{delivery}:{body_digest}", topic=topic)
