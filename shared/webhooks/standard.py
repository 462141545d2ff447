"""Standard Webhooks (as used by Svix and others).

Headers: ``webhook-id``, ``webhook-timestamp`` (unix seconds), ``webhook-signature``: one or
more space-separated ``v1,<base64 HMAC-SHA256>`` entries (other versions are ignored). Signed
content: ``{id}.{timestamp}.{raw body}``. Secrets look like ``whsec_<base64 key>``; the HMAC key
is the decoded part. The timestamp must lie within the tolerance in both directions.
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
    unix_seconds,
)

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    encoded = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None


def sign(msg_id: str, timestamp: int, raw_body: bytes, secret: str) -> str:
    """The ``v1,<base64>`` signature for one secret."""
    content = f"{msg_id}.{timestamp}.".encode() + raw_body
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class StandardWebhooksVerifier:
    scheme: ClassVar[str] = "standard-webhooks"
    kept_headers: ClassVar[tuple[str, ...]] = ("webhook-id", "webhook-timestamp")
    signature_headers: ClassVar[tuple[str, ...]] = ("webhook-signature",)

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery:
        msg_id = delivery_id_from(headers, "webhook-id", VerificationFailed)
        raw_ts = (headers.get("webhook-timestamp") or "").strip()
        header = (headers.get("webhook-signature") or "").strip()
        if not raw_ts or not header:
            raise VerificationFailed("missing timestamp or signature")
        if len(header) > MAX_SIGNATURE_HEADER:
            raise VerificationFailed("signature header too long")
        timestamp = unix_seconds(raw_ts)
        if timestamp is None:
            raise VerificationFailed("timestamp is not unix seconds")
        if abs(now - timestamp) > max(1, tolerance):
            raise VerificationFailed("timestamp outside the tolerance window")
        given: list[bytes] = []
        for entry in header.split(" "):
            version, _, value = entry.partition(",")
            if version != "v1" or not value:
                continue
            try:
                given.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not given:
            raise VerificationFailed("no v1 signature")
        content = f"{msg_id}.{timestamp}.".encode() + raw_body
        matched = False
        for secret in secrets:
            try:
                key = secret_key(secret)
            except ValueError:
                continue
            expected = hmac.new(key, content, hashlib.sha256).digest()
            for candidate in given:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise VerificationFailed("signature mismatch")
        return VerifiedDelivery(msg_id, timestamp=timestamp)
