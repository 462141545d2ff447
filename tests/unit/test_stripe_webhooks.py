"""Stripe webhook signatures: ``Stripe-Signature: t=<ts>,v1=<hex>``, verified against every active
endpoint secret, within 300 s either way; the event id is the delivery id. And the Stripe sender
stand-in: it signs each attempt as Stripe does and retries on a non-2xx.

Stripe publishes no fixed signature vector: its documentation gives the recipe ("Verify
manually": HMAC-SHA256 of ``<t>.<payload>`` with the endpoint secret, hex) and its libraries test
with generated headers. The vector below takes the payload and secret of stripe-python's
``tests/test_webhook.py`` (``DUMMY_WEBHOOK_PAYLOAD``, ``whsec_test_secret``), signed at t=1700000000
by that recipe with ``openssl dgst -sha256 -hmac whsec_test_secret`` (not by our code).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions.payments.events import payment_from_envelope
from junction_local.standins.stripe import LOCAL, StripeStandIn, charge_refunded, payment_succeeded
from shared.envelope import Envelope
from shared.webhooks import VERIFIERS, BadRequest, Headers, VerificationFailed, stripe
from shared.webhooks.base import MAX_SIGNATURE_HEADER

PAYLOAD = b"""{
  "id": "evt_test_webhook",
  "object": "event",
  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }
}"""
SECRET = "whsec_test_secret"
ROLLED = "whsec_rolled_secret"
T = 1_700_000_000
V1 = "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"  # openssl, SECRET
V1_ROLLED = "f28c3c0fa6bd2adfc9a6adb8e9e4e5c14c4d4564eeb3d895e877a0bb63fff45d"  # openssl, ROLLED
# Stripe's documented v0 example value: a legacy test-mode scheme, never checked.
V0 = "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
VERIFIER = VERIFIERS["stripe"]
BODY = json.dumps({"id": "evt_1NkLoc2eZvKYlo2C", "object": "event", "type": "payment_intent.succeeded"}).encode()


def verify(header: str | None, body: bytes = PAYLOAD, secrets: tuple[str, ...] = (SECRET,), now: float = T) -> Any:
    headers = Headers({} if header is None else {"Stripe-Signature": header})
    return VERIFIER.verify(headers, body, list(secrets), now=now, tolerance=300)


def header_for(body: bytes, timestamp: int = T, *secrets: str) -> str:
    return stripe.sign_header(body, timestamp, *(secrets or (SECRET,)))


# -- the vector ---------------------------------------------------------------------------------
def test_the_recipe_gives_the_vector() -> None:
    assert stripe.signature(T, PAYLOAD, SECRET) == V1
    assert stripe.sign_header(PAYLOAD, T, SECRET, ROLLED) == f"t={T},v1={V1},v1={V1_ROLLED}"


def test_the_vector_verifies() -> None:
    assert verify(f"t={T},v1={V1}").delivery_id == "evt_test_webhook"


def test_the_vector_verifies_with_its_event_id_and_type() -> None:
    body = PAYLOAD.replace(b'"object": "event",', b'"object": "event", "type": "terminal.reader.action_succeeded",')
    delivery = verify(header_for(body), body)
    assert (delivery.delivery_id, delivery.topic, delivery.timestamp) == (
        "evt_test_webhook",
        "terminal.reader.action_succeeded",
        T,
    )


def test_the_whole_whsec_string_is_the_key_not_its_decoded_part() -> None:
    encoded = "whsec_" + base64.b64encode(b"k" * 24).decode()
    decoded_key = base64.b64decode(encoded[len("whsec_") :])
    wrong = hmac.new(decoded_key, f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    with pytest.raises(VerificationFailed):
        verify(f"t={T},v1={wrong}", BODY, (encoded,))
    assert verify(header_for(BODY, T, encoded), BODY, (encoded,)).delivery_id == "evt_1NkLoc2eZvKYlo2C"


# -- rotation -----------------------------------------------------------------------------------
def test_during_a_roll_either_secret_verifies_and_any_v1_may_match() -> None:
    rolled_body = PAYLOAD.replace(b'"event",', b'"event", "type": "charge.refunded",')
    both = header_for(rolled_body, T, SECRET, ROLLED)
    assert verify(both, rolled_body, (ROLLED,)).delivery_id == "evt_test_webhook"  # the second v1
    assert verify(both, rolled_body, (SECRET,)).delivery_id == "evt_test_webhook"
    only_new = header_for(rolled_body, T, ROLLED)
    assert verify(only_new, rolled_body, ("whsec_retired", ROLLED)).topic == "charge.refunded"


def test_a_secret_no_longer_active_does_not_verify() -> None:
    with pytest.raises(VerificationFailed):
        verify(header_for(BODY, T, "whsec_retired"), BODY, (SECRET, ROLLED))


# -- forgeries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("index", [0, 10, len(BODY) - 1])
def test_one_changed_byte_of_the_body_fails(index: int) -> None:
    forged = bytearray(BODY)
    forged[index] ^= 0x01
    with pytest.raises(VerificationFailed):
        verify(header_for(BODY), bytes(forged))


def test_re_serialised_json_fails() -> None:
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    with pytest.raises(VerificationFailed):
        verify(header_for(BODY), pretty)


def test_a_signature_moved_to_another_timestamp_fails() -> None:
    with pytest.raises(VerificationFailed):
        verify(f"t={T + 1},v1={stripe.signature(T, BODY, SECRET)}", BODY)


def test_v0_alone_is_never_enough() -> None:
    with pytest.raises(VerificationFailed, match="no v1"):
        verify(f"t={T},v0={V0}", PAYLOAD)
    assert verify(f"t={T},v1={V1},v0={V0}").delivery_id == "evt_test_webhook"


# -- the window ---------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_inside_300_seconds_either_way_passes(offset: int) -> None:
    assert verify(header_for(BODY, T + offset), BODY).timestamp == T + offset


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_beyond_300_seconds_either_way_fails(offset: int) -> None:
    with pytest.raises(VerificationFailed, match="tolerance"):
        verify(header_for(BODY, T + offset), BODY)


def test_a_tolerance_of_zero_does_not_switch_the_window_off() -> None:
    with pytest.raises(VerificationFailed):
        VERIFIER.verify(Headers({"Stripe-Signature": header_for(BODY, T - 5)}), BODY, [SECRET], now=T, tolerance=0)


# -- malformed headers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "bad_header",
        f"v1={V1}",  # no timestamp
        f"t=,v1={V1}",
        f"t=abc,v1={V1}",
        f"t=\u00b2,v1={V1}",  # a superscript two is no digit of a timestamp
        f"t={T}",  # no signature
        f"t={T},v1=",
        f"t={T},v1={V1[:-2]}",  # short
        f"t={T},v1={V1}00",  # long
        f"t={T},v1={V1.upper()}",  # Stripe's hex is lower case
        f"t={T},v1={'z' * 64}",
        f"t={T};v1={V1}",
        f"t={T},v1={V1},t={T}",  # two timestamps: which one was signed?
        f"t={T},t={T + 1},v1={V1}",
        f"t={T},v1={V1}," + "x" * MAX_SIGNATURE_HEADER,  # too long to look at
    ],
)
def test_malformed_headers_are_401(header: str | None) -> None:
    with pytest.raises(VerificationFailed):
        verify(header)


def test_duplicate_and_unknown_parts_are_tolerated() -> None:
    assert verify(f"t={T},v1={V1},v1={V1}").delivery_id == "evt_test_webhook"
    assert verify(f"t={T}, v1={'0' * 64}, v1={V1}, v2=abc, scheme=x").delivery_id == "evt_test_webhook"
    assert verify(f"t={T},v1={V1},junk").delivery_id == "evt_test_webhook"


def test_only_the_first_signatures_are_looked_at() -> None:
    decoys = ",".join(f"v1={'0' * 64}" for _ in range(stripe.MAX_SIGNATURES))
    with pytest.raises(VerificationFailed):
        verify(f"t={T},{decoys},v1={V1}")


# -- the body once verified -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"evt_1"',
        b'{"type": "payment_intent.succeeded"}',
        b'{"id": 12, "type": "payment_intent.succeeded"}',
        b'{"id": "pi_123", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_1 2", "type": "payment_intent.succeeded"}',
        b'{"id": "evt_' + b"1" * 300 + b'", "type": "payment_intent.succeeded"}',
        b"[" * 100_000,
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        verify(header_for(body), body)


@pytest.mark.parametrize(
    "body", [b'{"id": "evt_123"}', b'{"id": "evt_123", "type": ""}', b'{"id": "evt_123", "type": 7}']
)
def test_an_event_without_a_usable_type_has_no_topic(body: bytes) -> None:
    delivery = verify(header_for(body), body)
    assert (delivery.delivery_id, delivery.topic) == ("evt_123", None)


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(VerificationFailed):
        verify(f"t={T},v1={'0' * 64}", b"not json")


# -- samples and events -------------------------------------------------------------------------
def _envelope(event: dict[str, Any]) -> Envelope:
    return Envelope(
        integration="stripe-payments",
        delivery_id=event["id"],
        idempotency_key=f"stripe-payments:{event['id']}",
        source="stripe",
        topic=event["type"],
        received_at="2026-01-01T00:00:00Z",
        body=json.dumps(event),
    )


def test_the_samples_are_stripe_events_the_payment_mapping_reads() -> None:
    succeeded = LOCAL.sample("payment-intent-succeeded")
    paid = payment_from_envelope(_envelope(succeeded))
    assert paid is not None
    assert (paid.kind, paid.order_reference, paid.amount_minor, paid.currency) == (
        "payment",
        "woocommerce:727",
        35999,
        "PLN",
    )
    refunded = payment_from_envelope(_envelope(LOCAL.sample("charge-refunded")))
    assert refunded is not None
    assert (refunded.kind, refunded.refund_id, refunded.amount_minor) == ("refund", "re_3QxLoc2eZvKYlo2C0f4Gh5Jk", 6000)
    assert refunded.provider_payment_id == succeeded["data"]["object"]["id"]


def test_events_for_distinct_orders_are_distinct_and_tie_payment_to_refund() -> None:
    first, second = payment_succeeded(1), payment_succeeded(2)
    assert first["id"] != second["id"]
    assert first["data"]["object"]["id"] != second["data"]["object"]["id"]
    assert first["data"]["object"]["metadata"]["order_reference"] == "woocommerce:1"
    refund = charge_refunded(1, refunded=500)
    assert refund["data"]["object"]["payment_intent"] == first["data"]["object"]["id"]
    # As current API versions send it: the total refunded, no refunds list; pinned older: the list.
    assert "refunds" not in refund["data"]["object"] and refund["data"]["object"]["amount_refunded"] == 500
    older = charge_refunded(1, refunded=500, with_refunds=True)
    assert older["data"]["object"]["refunds"]["data"][0]["id"].startswith("re_")
    body = json.dumps(refund).encode()
    assert verify(header_for(body), body).topic == "charge.refunded"


# -- the sender ---------------------------------------------------------------------------------
class Endpoint:
    """A webhook endpoint on 127.0.0.1 that answers the statuses it is given, in order, and keeps
    every request's headers and body."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.requests.append(({k: v for k, v in self.headers.items()}, body))
                status = endpoint.statuses.pop(0) if endpoint.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/stripe/events"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    running = Endpoint([])
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_the_sender_signs_each_attempt_and_retries_until_a_2xx(endpoint: Endpoint) -> None:
    endpoint.statuses[:] = [500, 503, 200]
    sender = StripeStandIn(endpoint.url, SECRET, retries=4, retry_delay=0.0)
    event = payment_succeeded(7)
    delivery = sender.send(event)
    assert delivery.attempts == [500, 503, 200]
    assert delivery.delivery_id == event["id"]
    for headers, body in endpoint.requests:
        checked = VERIFIER.verify(Headers(headers), body, [SECRET], now=float(T), tolerance=10**10)
        assert checked.delivery_id == event["id"]  # the same event id on every retry


def test_the_sender_signs_with_both_secrets_during_a_roll(endpoint: Endpoint) -> None:
    sender = StripeStandIn(endpoint.url, ROLLED, extra_secrets=(SECRET,), retry_delay=0.0)
    sender.send(payment_succeeded(8))
    headers, body = endpoint.requests[0]
    assert headers["Stripe-Signature"].count("v1=") == 2
    VERIFIER.verify(Headers(headers), body, [SECRET], now=float(T), tolerance=10**10)


def test_forged_deliveries_carry_the_chosen_timestamp_and_secret(endpoint: Endpoint) -> None:
    sender = StripeStandIn(endpoint.url, SECRET, retry_delay=0.0)
    sender.forge(payment_succeeded(9), timestamp=T - 3600)
    sender.forge(payment_succeeded(9), secret="whsec_attacker")
    (old_headers, old_body), (forged_headers, forged_body) = endpoint.requests
    with pytest.raises(VerificationFailed, match="tolerance"):
        VERIFIER.verify(Headers(old_headers), old_body, [SECRET], now=float(T), tolerance=300)
    with pytest.raises(VerificationFailed, match="mismatch"):
        VERIFIER.verify(Headers(forged_headers), forged_body, [SECRET], now=float(T), tolerance=10**10)


def test_the_sender_stops_after_its_retries(endpoint: Endpoint) -> None:
    endpoint.statuses[:] = [500] * 10
    delivery = StripeStandIn(endpoint.url, SECRET, retries=2, retry_delay=0.0).send(payment_succeeded(10))
    assert delivery.attempts == [500, 500, 500]
