"""Fuzzing the payment verifiers: whatever bytes and headers arrive, the Stripe and Przelewy24
verifiers raise only ``VerificationFailed`` (401) or ``BadRequest`` (400); and what they accept
is exactly what was signed with an active secret.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.webhooks import VERIFIERS, BadRequest, Headers, VerificationFailed, stripe
from shared.webhooks.przelewy24 import NOTIFICATION_FIELDS, sign_notification

NOW = 1_700_000_000
STRIPE_SECRET = "whsec_fuzz_secret"
CRC = "fuzz-crc-key"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

TRICKY = ["\u00b2", "\u0663", "\uff11", "\u2028", "\u2029", "\x00", "\ud800", "\ufffe", " ", ",", "=", "/", '"', "\\"]
text = st.lists(st.one_of(st.characters(codec=None), st.sampled_from(TRICKY)), max_size=30).map("".join)
hex64 = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70)
stripe_part = st.one_of(
    st.tuples(
        st.sampled_from(["t", "v1", "v0", "v2", "", " t", "T"]), st.one_of(text, hex64, st.integers().map(str))
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    text,
)
stripe_header = st.one_of(
    st.lists(stripe_part, max_size=8).map(",".join),
    text,
    st.just("t=" + "9" * 5000),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["id", "type", "object", "data"]) | text, json_value, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    st.just(b"[" * 5_000),  # deeper than the JSON parser's stack
)
secrets = st.lists(st.one_of(text, st.just(STRIPE_SECRET), st.just(CRC)), max_size=3)


def outcome(scheme: str, headers: dict[str, str], body: bytes, active: list[str]) -> str:
    try:
        VERIFIERS[scheme].verify(Headers(headers), body, active, now=NOW, tolerance=300)
    except (VerificationFailed, BadRequest) as rejection:
        return str(rejection.status)
    return "verified"


# -- Stripe -------------------------------------------------------------------------------------
@FAST
@given(header=stripe_header, body=bodies, active=secrets)
def test_stripe_raises_only_our_rejections(header: str, body: bytes, active: list[str]) -> None:
    outcome("stripe", {"Stripe-Signature": header}, body, active)


@FAST
@given(body=bodies, offset=st.integers(-1000, 1000), extra=st.lists(stripe_part, max_size=3))
def test_a_stripe_signature_passes_only_inside_the_window(body: bytes, offset: int, extra: list[str]) -> None:
    header = ",".join([stripe.sign_header(body, NOW + offset, STRIPE_SECRET), *extra])
    result = outcome("stripe", {"Stripe-Signature": header}, body, [STRIPE_SECRET])
    if abs(offset) > 300 or any(part.strip().startswith("t=") for part in extra):  # a second timestamp
        assert result == "401"
    else:
        assert result in ("verified", "400")  # 400: signed, but not a Stripe event


@FAST
@given(body=bodies, flip=st.integers(min_value=0))
def test_a_stripe_body_changed_after_signing_never_verifies(body: bytes, flip: int) -> None:
    if not body:
        return
    changed = bytearray(body)
    changed[flip % len(body)] ^= 0x20
    header = stripe.sign_header(body, NOW, STRIPE_SECRET)
    assert outcome("stripe", {"Stripe-Signature": header}, bytes(changed), [STRIPE_SECRET]) != "verified"


# -- Przelewy24 ---------------------------------------------------------------------------------
field_value = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    text,
    st.lists(st.integers(), max_size=2),
)
notification_like = st.fixed_dictionaries(
    {},
    optional={name: field_value for name in (*NOTIFICATION_FIELDS, "sign")},
)


def encodable(value: str) -> bool:
    """What P24 could have encoded: no lone surrogates."""
    return not any("\ud800" <= c <= "\udfff" for c in value)


valid_fields = st.fixed_dictionaries(
    {
        "merchantId": st.integers(0, 2**63 - 1),
        "posId": st.integers(0, 2**63 - 1),
        "sessionId": text.filter(lambda s: 1 <= len(s) <= 100 and s.isprintable() and encodable(s)),
        "amount": st.integers(0, 2**63 - 1),
        "originAmount": st.integers(0, 2**63 - 1),
        "currency": st.sampled_from(["PLN", "EUR", "CZK"]),
        "orderId": st.integers(0, 2**63 - 1),
        "methodId": st.integers(0, 10_000),
        "statement": text.filter(encodable),
    }
)


@FAST
@given(body=bodies, active=secrets)
def test_przelewy24_raises_only_our_rejections_for_any_bytes(body: bytes, active: list[str]) -> None:
    outcome("przelewy24", {}, body, active)


@FAST
@given(doc=notification_like, active=secrets)
def test_przelewy24_raises_only_our_rejections_for_near_notifications(doc: dict[str, Any], active: list[str]) -> None:
    result = outcome("przelewy24", {}, json.dumps(doc).encode(), active)
    assert result in ("400", "401")  # a random sign never matches


@FAST
@given(fields=valid_fields, pretty=st.booleans())
def test_whatever_text_p24_signs_verifies_and_its_delivery_is_order_and_session(
    fields: dict[str, Any], pretty: bool
) -> None:
    doc = {**fields, "sign": sign_notification(fields, CRC)}
    body = json.dumps(doc, ensure_ascii=not pretty, indent=2 if pretty else None).encode()
    delivery = VERIFIERS["przelewy24"].verify(Headers({}), body, ["other", CRC], now=NOW, tolerance=300)
    assert delivery.delivery_id == f"{fields['orderId']}:{fields['sessionId']}"


@FAST
@given(fields=valid_fields, name=st.sampled_from(NOTIFICATION_FIELDS), other=field_value)
def test_a_notification_field_changed_after_signing_never_verifies(
    fields: dict[str, Any], name: str, other: Any
) -> None:
    if other == fields[name] and type(other) is type(fields[name]):
        return
    doc = {**fields, "sign": sign_notification(fields, CRC), name: other}
    assert outcome("przelewy24", {}, json.dumps(doc).encode(), [CRC]) in ("400", "401")
