"""Signature schemes: every shape of bad signature is a 401, never anything else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from shared.webhooks import VERIFIERS, BadRequest, Headers, VerificationFailed, shopify, standard, verifier_for

SECRET = "shpss_0123456789abcdef"
OLD_SECRET = "shpss_retired_secret"
BODY = json.dumps({"id": 1, "email": "a@example.com"}, separators=(",", ":")).encode()
NOW = 1_700_000_000
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret


def shopify_headers(body: bytes = BODY, secret: str = SECRET, **extra: str) -> Headers:
    headers = {
        "X-Shopify-Hmac-Sha256": shopify.sign(body, secret),
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Topic": "orders/create",
    }
    headers.update(extra)
    return Headers(headers)


def verify_shopify(headers: Headers, body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,)) -> str:
    return verifier_for("shopify").verify(headers, body, list(secrets), now=NOW, tolerance=300).delivery_id


class TestShopify:
    def test_valid_signature_gives_delivery_id_and_topic(self) -> None:
        delivery = verifier_for("shopify").verify(shopify_headers(), BODY, [SECRET], now=NOW, tolerance=300)
        assert delivery.delivery_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        assert delivery.topic == "orders/create"

    def test_signature_matches_an_independent_computation(self) -> None:
        expected = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
        assert shopify.sign(BODY, SECRET) == expected

    def test_header_names_are_case_insensitive(self) -> None:
        lower = Headers({k.lower(): v for k, v in shopify_headers().items()})
        assert verify_shopify(lower)

    def test_any_active_secret_verifies_during_rotation(self) -> None:
        assert verify_shopify(shopify_headers(secret=OLD_SECRET), secrets=(SECRET, OLD_SECRET))

    @pytest.mark.parametrize(
        ("header", "detail"),
        [
            (None, "missing"),
            ("", "missing"),
            ("   ", "missing"),
            ("not base64 !!", "not base64"),
            (base64.b64encode(b"short").decode(), "wrong length"),
            ("sha256=" + shopify.sign(BODY, SECRET), "not base64"),
            ("A" * 5000, "too long"),
        ],
    )
    def test_malformed_signatures_fail(self, header: str | None, detail: str) -> None:
        raw = dict(shopify_headers().items())
        raw.pop("x-shopify-hmac-sha256")
        if header is not None:
            raw["X-Shopify-Hmac-Sha256"] = header
        with pytest.raises(VerificationFailed, match=detail):
            verify_shopify(Headers(raw))

    def test_signature_from_a_retired_secret_fails(self) -> None:
        with pytest.raises(VerificationFailed, match="mismatch"):
            verify_shopify(shopify_headers(secret=OLD_SECRET))

    def test_reserialised_json_body_fails(self) -> None:
        reserialised = json.dumps(json.loads(BODY), indent=2).encode()
        with pytest.raises(VerificationFailed, match="mismatch"):
            verify_shopify(shopify_headers(), body=reserialised)

    def test_one_changed_byte_fails(self) -> None:
        tampered = BODY.replace(b"a@", b"b@")
        with pytest.raises(VerificationFailed):
            verify_shopify(shopify_headers(), body=tampered)

    def test_missing_delivery_id_is_a_bad_request(self) -> None:
        raw = dict(shopify_headers().items())
        raw.pop("x-shopify-webhook-id")
        with pytest.raises(BadRequest):
            verify_shopify(Headers(raw))


def sw_headers(
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    ts: int = NOW,
    body: bytes = BODY,
    secrets: tuple[str, ...] = (SW_SECRET,),
) -> Headers:
    signature = " ".join(standard.sign(msg_id, ts, body, s) for s in secrets)
    return Headers({"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature})


def verify_sw(headers: Headers, body: bytes = BODY, secrets: tuple[str, ...] = (SW_SECRET,), now: int = NOW) -> str:
    return verifier_for("standard-webhooks").verify(headers, body, list(secrets), now=now, tolerance=300).delivery_id


class TestStandardWebhooks:
    def test_spec_example_vector(self) -> None:
        # From the Standard Webhooks specification's example.
        body = b'{"test": 2432232314}'
        sig = standard.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, SW_SECRET)
        assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def test_agrees_with_the_reference_library(self) -> None:
        headers = dict(sw_headers().items())
        reference = Webhook(SW_SECRET)
        reference_sig = reference.sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", _dt(NOW), BODY.decode())
        assert headers["webhook-signature"] == reference_sig

    def test_several_signatures_one_valid(self) -> None:
        other = "whsec_" + base64.b64encode(b"another-key-of-some-length").decode()
        headers = sw_headers(secrets=(other, SW_SECRET))
        assert verify_sw(headers) == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"

    def test_unknown_versions_are_ignored(self) -> None:
        raw = dict(sw_headers().items())
        raw["webhook-signature"] = "v1a,abc " + raw["webhook-signature"]
        assert verify_sw(Headers(raw))

    @pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
    def test_stale_and_future_timestamps_fail(self, offset: int) -> None:
        with pytest.raises(VerificationFailed, match="tolerance"):
            verify_sw(sw_headers(ts=NOW + offset))

    @pytest.mark.parametrize("offset", [-300, 0, 300])
    def test_timestamps_inside_the_window_pass(self, offset: int) -> None:
        assert verify_sw(sw_headers(ts=NOW + offset))

    @pytest.mark.parametrize(
        ("name", "value", "detail"),
        [
            ("webhook-signature", "", "missing"),
            ("webhook-signature", "v2,abc", "no v1"),
            ("webhook-signature", "v1,", "no v1"),
            ("webhook-signature", "v1,not base64!!", "no v1"),
            ("webhook-signature", "sha256=abcdef", "no v1"),
            ("webhook-timestamp", "", "missing"),
            ("webhook-timestamp", "yesterday", "unix seconds"),
            ("webhook-timestamp", "-5", "unix seconds"),
            ("webhook-timestamp", "1" * 20, "unix seconds"),
            ("webhook-id", "", "webhook-id"),
        ],
    )
    def test_malformed_headers_fail(self, name: str, value: str, detail: str) -> None:
        raw = dict(sw_headers().items())
        raw[name] = value
        with pytest.raises(VerificationFailed, match=detail):
            verify_sw(Headers(raw))

    def test_wrong_secret_fails(self) -> None:
        other = "whsec_" + base64.b64encode(b"retired").decode()
        with pytest.raises(VerificationFailed, match="mismatch"):
            verify_sw(sw_headers(secrets=(other,)))

    def test_signature_binds_the_message_id(self) -> None:
        raw = dict(sw_headers().items())
        raw["webhook-id"] = "msg_other"
        with pytest.raises(VerificationFailed, match="mismatch"):
            verify_sw(Headers(raw))

    def test_a_misconfigured_secret_is_skipped_not_crashed(self) -> None:
        assert verify_sw(sw_headers(), secrets=("whsec_***not-base64***", SW_SECRET))


header_values = st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=64).map(lambda b: b.hex()))


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["shopify", "standard-webhooks"]),
    sig=header_values,
    ts=header_values,
    msg_id=header_values,
    body=st.binary(max_size=512),
)
def test_fuzzed_headers_only_ever_reject_cleanly(
    scheme: str, sig: str | None, ts: str | None, msg_id: str | None, body: bytes
) -> None:
    raw = {
        k: v
        for k, v in {
            "X-Shopify-Hmac-Sha256": sig,
            "X-Shopify-Webhook-Id": msg_id,
            "webhook-signature": sig,
            "webhook-timestamp": ts,
            "webhook-id": msg_id,
        }.items()
        if v is not None
    }
    with pytest.raises((VerificationFailed, BadRequest)):
        verifier_for(scheme).verify(Headers(raw), body, [SW_SECRET], now=NOW, tolerance=300)


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# Superscript two (str.isdigit accepts it, int refuses it), Arabic-Indic and fullwidth digits
# (both accepted by int), and the separators int tolerates.
@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",
        "1700000000\u00b2",
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
        "\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10",
        "1_700_000_000",
        "+1700000000",
    ],
)
def test_timestamps_are_ascii_digits_only(value: str) -> None:
    raw = dict(sw_headers().items())
    raw["webhook-timestamp"] = value
    with pytest.raises(VerificationFailed):
        verify_sw(Headers(raw))


@pytest.mark.parametrize("scheme", sorted(VERIFIERS))
def test_verifiers_keep_their_provider_headers_but_never_signatures(scheme: str) -> None:
    verifier = VERIFIERS[scheme]
    # A scheme that signs in a header names it; one that signs inside the body (Przelewy24's
    # ``sign``) or cannot sign (ShipX: a path token) has none, and may keep no provider header.
    in_body_or_unsigned = {"przelewy24", "shipx"}
    assert bool(verifier.signature_headers) == (scheme not in in_body_or_unsigned)
    assert all(h == h.lower() for h in verifier.kept_headers + verifier.signature_headers)
    assert not set(verifier.kept_headers) & set(verifier.signature_headers)


def test_ingress_keeps_generic_topic_and_verifier_headers_only() -> None:
    from tests.unit.test_ingress_fakes import event, make_ingress

    ingress, sqs, _ = make_ingress("standard-webhooks", topic_header="X-Event-Type")
    assert (
        ingress.handle(event("standard-webhooks", b'{"a":1}', extra={"X-Shopify-Topic": "orders/create"}))["statusCode"]
        == 202
    )
    kept = json.loads(sqs.sent[0]["MessageBody"])["headers"]
    assert set(kept) == {"content-type", "webhook-id", "webhook-timestamp", "x-event-type"}
    assert kept["x-event-type"] == "invoice.paid"


def test_a_topic_header_that_names_a_signature_is_still_not_kept() -> None:
    from tests.unit.test_ingress_fakes import event, make_ingress

    ingress, sqs, _ = make_ingress("shopify", topic_header="X-Shopify-Hmac-Sha256")
    assert ingress.handle(event("shopify", b'{"a":1}'))["statusCode"] == 202
    assert "x-shopify-hmac-sha256" not in json.loads(sqs.sent[0]["MessageBody"])["headers"]
