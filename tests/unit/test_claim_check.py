"""Claim checks and the SQS-safe envelope: every character a sender may put in JSON survives
the trip byte for byte, whatever the size; the queue only ever sees what SQS accepts."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared import claim_check
from shared.envelope import (
    SQS_MAX_MESSAGE_BYTES,
    ClaimCheck,
    Envelope,
    UnresolvedClaimCheck,
    message_attributes,
    message_size,
)
from shared.errors import MalformedEnvelope, PermanentError, StoreUnavailable
from tests.unit.test_ingress_fakes import BUCKET, SQS_ALLOWED, MemoryS3, NotFound, event, make_ingress


def _through_ingress(raw: bytes, scheme: str = "shopify", **kw: Any) -> tuple[Envelope, MemoryS3, dict[str, Any]]:
    ingress, sqs, s3 = make_ingress(scheme)
    answer = ingress.handle(event(scheme, raw, **kw))
    assert answer["statusCode"] == 202, answer
    [params] = sqs.sent
    return Envelope.from_json(params["MessageBody"]), s3, params


# Strings a sender may put in JSON, by JSON text: raw UTF-8 (lone surrogates written with
# surrogatepass: such bodies are not UTF-8 and travel base64), or \\u escapes of anything.
json_strings = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),  # every code point, surrogates included
        st.sampled_from(["\ufffe", "\uffff", "\x00", "\ud800", "\udfff", "🎉", '"', "\\", "\u2028", "\x7f"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_strings,
    ensure_ascii=st.booleans(),
    pad=st.sampled_from([0, 200_000, 262_000, 400_000]),
    base64_body=st.booleans(),
)
@example(value="\ufffe\x00\ud800🎉", ensure_ascii=False, pad=0, base64_body=False)
@example(value="\ufffe", ensure_ascii=False, pad=262_000, base64_body=False)
def test_every_json_string_survives_byte_for_byte(value: str, ensure_ascii: bool, pad: int, base64_body: bool) -> None:
    text = json.dumps({"id": 1, "note": value, "pad": "x" * pad}, ensure_ascii=ensure_ascii, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogatepass")
    envelope, s3, params = _through_ingress(raw, base64_body=base64_body)
    assert SQS_ALLOWED.fullmatch(params["MessageBody"])
    assert message_size(params["MessageBody"], params["MessageAttributes"]) <= SQS_MAX_MESSAGE_BYTES
    resolved = claim_check.resolve(envelope, s3)
    assert resolved.raw_body == raw
    assert resolved.payload()["note"] == value


def test_a_literal_u_fffe_used_to_be_refused_by_sqs() -> None:
    raw = '{"note":"\ufffe"}'.encode()
    envelope, _, params = _through_ingress(raw)
    assert "\ufffe" not in params["MessageBody"] and "\\ufffe" in params["MessageBody"]
    assert envelope.raw_body == raw


def test_header_values_sqs_refuses_are_escaped_too() -> None:
    envelope, _, params = _through_ingress(b'{"a":1}', extra={"X-Shopify-Shop-Domain": "shop\ud800\uffff.example"})
    assert SQS_ALLOWED.fullmatch(params["MessageBody"])
    assert envelope.headers["x-shopify-shop-domain"] == "shop\ud800\uffff.example"


def test_the_size_sqs_counts_includes_the_attributes() -> None:
    envelope = Envelope("i", "d", "i:d", "s", None, "2026-11-23T00:00:00.000+00:00", "body")
    attributes = message_attributes(envelope)
    expected = len(envelope.to_json().encode()) + sum(
        len(name) + len("String") + len(a["StringValue"]) for name, a in attributes.items()
    )
    assert message_size(envelope.to_json(), attributes) == expected


def test_an_envelope_that_fits_only_without_its_attributes_takes_a_claim_check() -> None:
    ingress, sqs, _s3 = make_ingress()
    probe = ingress._envelope(*_request_parts(b'{"p":""}'), "d-1", None)
    overhead = len(probe.to_json().encode()) - len(b'{"p":""}')
    raw = b'{"p":"' + b"x" * (SQS_MAX_MESSAGE_BYTES - overhead - 8 - 20) + b'"}'  # body alone fits
    assert len(ingress._envelope(*_request_parts(raw), "d-1", None).to_json().encode()) <= SQS_MAX_MESSAGE_BYTES
    assert ingress.handle(event("shopify", raw))["statusCode"] == 202
    assert Envelope.from_json(sqs.sent[0]["MessageBody"]).claim_check is not None


def _request_parts(raw: bytes) -> tuple[Any, bytes]:
    from shared.ingress import read_request

    return read_request(event("shopify", raw), 10**7)


# -- envelope versions -----------------------------------------------------------------------------
OLD_V1 = (
    '{"integration":"shopify-orders","delivery_id":"d-1","idempotency_key":"shopify-orders:d-1",'
    '"source":"shopify","topic":"orders/create","received_at":"2026-11-21T09:15:33.000+00:00",'
    '"body":"{\\"id\\":1}","body_encoding":"utf-8","headers":{"content-type":"application/json"},'
    '"replay_id":null,"v":1}'
)


def test_version_1_messages_are_still_read_and_written_the_same() -> None:
    envelope = Envelope.from_json(OLD_V1)
    assert envelope.payload() == {"id": 1} and envelope.claim_check is None
    assert envelope.to_json() == OLD_V1  # an inline envelope is written exactly as before


def test_the_pointer_form_is_what_records_and_replays_keep() -> None:
    raw = b'{"id": 7}'
    check = ClaimCheck(BUCKET, "payloads/k", len(raw), hashlib.sha256(raw).hexdigest())
    pointer = replace(Envelope.from_json(OLD_V1), body="", body_encoding="s3", claim_check=check, v=2)
    s3 = MemoryS3()
    s3.objects[(BUCKET, "payloads/k")] = raw
    resolved = claim_check.resolve(pointer, s3)
    assert resolved.payload() == {"id": 7}
    assert resolved.to_json() == pointer.to_json()  # loading the body does not grow the record
    replayed = Envelope.from_json(replace(resolved, replay_id="r-1").to_json())
    assert replayed.claim_check == check and not replayed.body_loaded
    assert claim_check.resolve(replayed, s3).raw_body == raw


def test_reading_an_unresolved_claim_check_is_a_clear_bug() -> None:
    pointer = Envelope.from_json(json.dumps({**json.loads(OLD_V1), "v": 2, "body": "", "claim_check": _doc()}))
    with pytest.raises(UnresolvedClaimCheck, match="resolve"):
        pointer.payload()


def _doc(**changes: Any) -> dict[str, Any]:
    return {"bucket": BUCKET, "key": "payloads/k", "size": 3, "sha256": "0" * 64, **changes}


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 2},  # version 2 without a claim check
        {"v": 1, "claim_check": _doc()},  # a claim check in a version 1 envelope
        {"v": 2, "claim_check": _doc(size=-1)},
        {"v": 2, "claim_check": _doc(size="3")},
        {"v": 2, "claim_check": {"bucket": BUCKET}},
        {"v": 3},
    ],
)
def test_malformed_envelopes_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(MalformedEnvelope):
        Envelope.from_json(json.dumps({**json.loads(OLD_V1), **doc}))


# -- resolve ---------------------------------------------------------------------------------------
def _stored(raw: bytes) -> tuple[Envelope, MemoryS3]:
    envelope, s3, _ = _through_ingress(raw)
    assert envelope.claim_check is not None
    return envelope, s3


BIG = json.dumps({"pad": "y" * 300_000}).encode()


def test_ingress_writes_the_raw_body_under_a_dated_key() -> None:
    envelope, s3 = _stored(BIG)
    assert envelope.claim_check is not None
    [(bucket, key)] = s3.objects
    assert bucket == BUCKET and key == envelope.claim_check.key
    delivery = hashlib.sha256(b"d-1").hexdigest()
    assert key == f"payloads/unit-shopify/2026/11/18/{delivery}/{hashlib.sha256(BIG).hexdigest()}"
    assert s3.objects[(bucket, key)] == BIG


def test_a_body_that_is_not_utf8_survives_the_claim_check() -> None:
    raw = b'{"pad":"' + b"z" * 300_000 + b'","bad":"\xed\xa0\x80"}'  # a lone surrogate in raw bytes
    envelope, s3 = _stored(raw)
    resolved = claim_check.resolve(envelope, s3)
    assert resolved.body_encoding == "base64" and base64.b64decode(resolved.body) == raw


def test_a_changed_object_is_corrupt_and_permanent() -> None:
    envelope, s3 = _stored(BIG)
    [location] = s3.objects
    s3.objects[location] = BIG.replace(b"y", b"Y", 1)
    with pytest.raises(claim_check.ClaimCheckCorrupt) as caught:
        claim_check.resolve(envelope, s3)
    assert isinstance(caught.value, PermanentError)


def test_a_missing_object_is_transient_for_a_while_then_permanent() -> None:
    envelope, s3 = _stored(BIG)
    s3.objects.clear()
    received = claim_check._epoch(envelope.received_at)
    with pytest.raises(claim_check.ClaimCheckUnavailable) as soon:
        claim_check.resolve(envelope, s3, now=received + 60)
    assert isinstance(soon.value, StoreUnavailable)
    with pytest.raises(claim_check.ClaimCheckMissing):
        claim_check.resolve(envelope, s3, now=received + claim_check.MISSING_GRACE_SECONDS + 1)


def test_s3_answering_403_for_a_missing_key_counts_as_missing() -> None:
    envelope, _ = _stored(BIG)

    class Forbidden:
        def get_object(self, **_: str) -> Any:
            raise NotFound("AccessDenied", 403)

    with pytest.raises(claim_check.ClaimCheckMissing):
        claim_check.resolve(envelope, Forbidden(), now=claim_check._epoch(envelope.received_at) + 10**6)


def test_an_s3_outage_is_transient() -> None:
    envelope, _ = _stored(BIG)

    class Down:
        def get_object(self, **_: str) -> Any:
            raise ConnectionError("endpoint unreachable")

    with pytest.raises(claim_check.ClaimCheckUnavailable):
        claim_check.resolve(envelope, Down())


# -- ingress outcomes around the claim check ---------------------------------------------------
def test_an_s3_outage_at_ingress_is_a_503_and_nothing_is_enqueued() -> None:
    ingress, sqs, s3 = make_ingress()
    s3.fail_puts = True
    answer = ingress.handle(event("shopify", BIG))
    assert answer["statusCode"] == 503 and sqs.sent == []


def test_no_bucket_configured_is_our_outage_not_the_senders_fault() -> None:
    ingress, _sqs, _ = make_ingress(bucket=None)
    assert ingress.handle(event("shopify", BIG))["statusCode"] == 503
    assert ingress.handle(event("shopify", b'{"small": true}'))["statusCode"] == 202  # inline needs no bucket


def test_above_the_declared_limit_is_413_for_both_body_encodings() -> None:
    ingress, sqs, _ = make_ingress(max_body_bytes=400_000)
    raw = json.dumps({"pad": "y" * 400_000}).encode()
    assert ingress.handle(event("shopify", raw))["statusCode"] == 413
    assert ingress.handle(event("shopify", raw, base64_body=True))["statusCode"] == 413
    assert sqs.sent == []
