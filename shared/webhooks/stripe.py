"""Stripe webhooks: ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``.

Signed content: ``<t>.<raw body>``; each ``v1`` is the lower-case hex HMAC-SHA256 of it, keyed
with the endpoint's signing secret as its UTF-8 bytes (the whole ``whsec_...`` string, as
Stripe's libraries key it: the part after ``whsec_`` is not decoded). While an endpoint secret is
being rolled, Stripe signs with the old and the new secret (two ``v1`` entries): any ``v1`` that
matches any active secret passes. ``v0`` (test-mode legacy) and unknown schemes are ignored.

The timestamp must lie within the tolerance in both directions (Stripe's libraries check only
the past; a timestamp from the future is no less a forgery). Stripe's default tolerance is 300 s.

Delivery id: the event's ``id`` (``evt_...``), read from the body once the signature has passed;
Stripe sends the same event id on every retry of an event. Topic: the event's ``type``
(None when it has none: the payment mapping refuses such an event).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from shared.webhooks.base import (
    MAX_ID_HEADER,
    MAX_SIGNATURE_HEADER,
    BadRequest,
    Headers,
    VerificationFailed,
    VerifiedDelivery,
    unix_seconds,
)

SIGNATURE_HEADER = "Stripe-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds: Stripe's libraries' default
MAX_SIGNATURES = 8  # v1 entries looked at; a rotation has two
MAX_TOPIC = 128
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,128}")


def signed_content(timestamp: int, raw_body: bytes) -> bytes:
    return f"{timestamp}.".encode() + raw_body


def signature(timestamp: int, raw_body: bytes, secret: str) -> str:
    """The ``v1`` value Stripe sends for ``raw_body`` at ``timestamp``, signed with ``secret``."""
    return hmac.new(secret.encode(), signed_content(timestamp, raw_body), hashlib.sha256).hexdigest()


def sign_header(raw_body: bytes, timestamp: int, *secrets: str) -> str:
    """A whole ``Stripe-Signature`` header: one ``v1`` per secret (two during a roll)."""
    parts = [f"t={timestamp}", *(f"{SCHEME}={signature(timestamp, raw_body, s)}" for s in secrets)]
    return ",".join(parts)


def parse_header(header: str) -> tuple[int, list[bytes]]:
    """(timestamp, the ``v1`` digests) of a ``Stripe-Signature`` header. VerificationFailed when it
    has no single usable timestamp or no well-formed ``v1`` entry."""
    timestamps: list[str] = []
    digests: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == SCHEME and len(digests) < MAX_SIGNATURES:
            value = value.strip()
            if _HEX_SHA256.fullmatch(value):
                digests.append(bytes.fromhex(value))
    if len(timestamps) != 1:
        raise VerificationFailed("signature header needs exactly one timestamp")
    timestamp = unix_seconds(timestamps[0])
    if timestamp is None:
        raise VerificationFailed("timestamp is not unix seconds")
    if not digests:
        raise VerificationFailed("no v1 signature")
    return timestamp, digests


def event_identity(raw_body: bytes) -> tuple[str, str | None]:
    """(event id, event type) of a verified body; BadRequest when the body is not a Stripe event
    with an id. A type that is missing or unusable is None (the flow decides what that means)."""
    try:
        event: Any = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise BadRequest("body is not JSON") from None
    if not isinstance(event, dict):
        raise BadRequest("body is not a JSON object")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or len(event_id) > MAX_ID_HEADER or not _EVENT_ID.fullmatch(event_id):
        raise BadRequest("event has no usable id")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        event_type = None
    return event_id, event_type


def _key(secret: object) -> bytes | None:
    """The HMAC key of a configured secret; None for one that cannot be a Stripe secret."""
    if not isinstance(secret, str) or not secret:
        return None
    try:
        return secret.encode()
    except UnicodeEncodeError:  # a lone surrogate: no secret Stripe issues
        return None


class StripeVerifier:
    scheme: ClassVar[str] = "stripe"
    kept_headers: ClassVar[tuple[str, ...]] = ()
    signature_headers: ClassVar[tuple[str, ...]] = (SIGNATURE_HEADER.lower(),)

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery:
        header = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not header:
            raise VerificationFailed("missing signature")
        if len(header) > MAX_SIGNATURE_HEADER:
            raise VerificationFailed("signature header too long")
        timestamp, given = parse_header(header)
        if abs(now - timestamp) > max(1, tolerance):
            raise VerificationFailed("timestamp outside the tolerance window")
        content = signed_content(timestamp, raw_body)
        matched = False
        for secret in secrets:
            key = _key(secret)
            if key is None:
                continue
            expected = hmac.new(key, content, hashlib.sha256).digest()
            for candidate in given:
                matched |= hmac.compare_digest(expected, candidate)  # no early exit
        if not matched:
            raise VerificationFailed("signature mismatch")
        event_id, event_type = event_identity(raw_body)
        return VerifiedDelivery(event_id, topic=event_type, timestamp=timestamp)
