"""The signed routes are deployed on an HTTP API (payload format 2.0): the ingress reads its
events as it reads REST ones: header names lower-cased, the body as text or base64, the same
answers for the same requests."""

from __future__ import annotations

import base64
import json

import pytest

from junction_local.events import http_api_event
from shared.envelope import Envelope
from tests.unit.test_ingress_fakes import make_ingress, signed_headers

BODY = json.dumps({"id": 42, "note": "zażółć"}, ensure_ascii=False).encode()


def test_a_signed_delivery_in_a_v2_event_is_accepted_with_its_headers_kept() -> None:
    ingress, sqs, _ = make_ingress("shopify")
    event = http_api_event("POST", "/webhooks/shopify", signed_headers("shopify", BODY, "d-v2"), BODY)
    assert event["version"] == "2.0" and all(k == k.lower() for k in event["headers"])
    answer = ingress.handle(event)
    assert answer["statusCode"] == 202
    envelope = Envelope.from_json(sqs.sent[0]["MessageBody"])
    assert envelope.raw_body == BODY and envelope.delivery_id == "d-v2"
    assert envelope.topic == "orders/create"
    assert "x-shopify-hmac-sha256" not in envelope.headers  # a signature is never kept


def test_a_base64_body_in_a_v2_event_is_verified_on_its_exact_bytes() -> None:
    ingress, sqs, _ = make_ingress("standard-webhooks")
    raw = b'{"a": "\\u00ff"}'
    event = http_api_event("POST", "/webhooks/standard-webhooks", signed_headers("standard-webhooks", raw), raw)
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    assert ingress.handle(event)["statusCode"] == 202
    assert Envelope.from_json(sqs.sent[0]["MessageBody"]).raw_body == raw


@pytest.mark.parametrize("tamper", ["body", "signature"])
def test_a_tampered_v2_delivery_is_a_401(tamper: str) -> None:
    ingress, sqs, _ = make_ingress("shopify")
    headers = signed_headers("shopify", BODY, "d-bad")
    body = BODY
    if tamper == "body":
        body = BODY.replace(b"42", b"43")
    else:
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(b"x" * 32).decode()
    assert ingress.handle(http_api_event("POST", "/webhooks/shopify", headers, body))["statusCode"] == 401
    assert sqs.sent == []


def test_repeated_headers_are_joined_and_cookies_kept_apart_as_the_http_api_does() -> None:
    event = http_api_event("POST", "/x", {"X-A": "1", "x-a": "2", "Cookie": "a=1; b=2"}, b"")
    assert event["headers"] == {"x-a": "1,2"} and event["cookies"] == ["a=1", "b=2"]
    assert "body" not in event
