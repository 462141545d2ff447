"""The webhook answers, against moto: 202 only once SQS holds the message; nothing else enqueues."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from shared.envelope import Envelope
from shared.webhooks import shopify
from tests.component.harness import REGION, SHOP_OLD_SECRET, SHOP_SECRET, Pipeline, shopify_headers
from tests.sample import body as serialise
from tests.sample import shopify_order

BODY = serialise(shopify_order())


def queued(pipeline: Pipeline) -> list[dict[str, Any]]:
    got = pipeline.boto_sqs.receive_message(
        QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    return list(got.get("Messages", []))


def test_accepted_webhook_is_on_the_queue_with_its_keys(pipeline: Pipeline) -> None:
    status, answer = pipeline.post(BODY, shopify_headers(BODY, "d-1"))
    assert status == 202 and answer == {"status": "accepted", "delivery_id": "d-1"}
    [message] = queued(pipeline)
    envelope = json.loads(message["Body"])
    assert envelope["idempotency_key"] == "shop-orders-to-erp:d-1"
    assert envelope["topic"] == "orders/create"
    assert "x-shopify-hmac-sha256" not in envelope["headers"]  # signatures are not kept
    attrs = message["MessageAttributes"]
    assert attrs["junction-idempotency-key"]["StringValue"] == "shop-orders-to-erp:d-1"


def test_base64_encoded_body_is_verified_on_its_decoded_bytes(pipeline: Pipeline) -> None:
    raw = "Zażółć gęślą jaźń".encode()
    payload = serialise(shopify_order(note=raw.decode()))
    status, _ = pipeline.post(payload, shopify_headers(payload, "d-b64"), base64_body=True)
    assert status == 202
    envelope = Envelope.from_json(queued(pipeline)[0]["Body"])
    assert envelope.raw_body == payload  # byte for byte what the shop sent


def test_the_previous_secret_still_verifies_during_rotation(pipeline: Pipeline) -> None:
    assert pipeline.post(BODY, shopify_headers(BODY, "d-old", SHOP_OLD_SECRET))[0] == 202


def test_a_newly_rotated_secret_is_picked_up_without_a_restart(pipeline: Pipeline) -> None:
    assert pipeline.post(BODY, shopify_headers(BODY, "d-warm"))[0] == 202  # the cache is warm now
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.put_secret_value(SecretId="junction/test/shopify-webhook", SecretString=json.dumps({"secrets": ["shpss_new"]}))
    assert pipeline.post(BODY, shopify_headers(BODY, "d-new", "shpss_new"))[0] == 202


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def _bad_signature_cases() -> list[tuple[str, bytes, dict[str, str]]]:
    good = shopify_headers(BODY, "d-bad")
    reserialised = json.dumps(json.loads(BODY), indent=1).encode()
    return [
        ("missing", BODY, _without(good, "X-Shopify-Hmac-Sha256")),
        ("empty", BODY, {**good, "X-Shopify-Hmac-Sha256": ""}),
        ("wrong scheme prefix", BODY, {**good, "X-Shopify-Hmac-Sha256": "sha256=" + shopify.sign(BODY, SHOP_SECRET)}),
        ("not base64", BODY, {**good, "X-Shopify-Hmac-Sha256": "%%%not-base64%%%"}),
        ("hex instead of base64", BODY, {**good, "X-Shopify-Hmac-Sha256": "ab" * 32}),
        ("wrong secret", BODY, {**good, "X-Shopify-Hmac-Sha256": shopify.sign(BODY, "shpss_attacker")}),
        ("retired secret", BODY, {**good, "X-Shopify-Hmac-Sha256": shopify.sign(BODY, "shpss_retired_long_ago")}),
        ("re-serialised body", reserialised, good),
        ("truncated body", BODY[:-1], good),
    ]


@pytest.mark.parametrize(
    ("case", "body", "headers"), _bad_signature_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_signatures_get_401_and_nothing_is_enqueued(
    pipeline: Pipeline, case: str, body: bytes, headers: dict[str, str]
) -> None:
    status, answer = pipeline.post(body, headers)
    assert status == 401, case
    assert answer == {"error": "signature verification failed"}
    assert queued(pipeline) == []


@pytest.mark.parametrize(
    ("case", "body", "status"),
    [
        ("not json", b"{not json", 400),
        ("json array", b"[1,2,3]", 400),
        ("empty body", b"", 400),
        ("too large", b"{" + b" " * (256 * 1024) + b"}", 413),
    ],
)
def test_malformed_requests(pipeline: Pipeline, case: str, body: bytes, status: int) -> None:
    headers = shopify_headers(body, f"d-{case}")
    assert pipeline.post(body, headers)[0] == status
    assert queued(pipeline) == []


def test_missing_delivery_id_is_a_400(pipeline: Pipeline) -> None:
    status, _ = pipeline.post(BODY, _without(shopify_headers(BODY, "x"), "X-Shopify-Webhook-Id"))
    assert status == 400
    assert queued(pipeline) == []


def test_a_queue_that_cannot_be_reached_is_a_503_so_the_sender_retries(pipeline: Pipeline) -> None:
    pipeline.boto_sqs.delete_queue(QueueUrl=pipeline.queue_url)
    status, answer = pipeline.post(BODY, shopify_headers(BODY, "d-503"))
    assert status == 503 and "retry" in answer["error"]


def test_an_unreadable_secret_is_a_503_not_a_401(pipeline: Pipeline) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.delete_secret(SecretId="junction/test/shopify-webhook", ForceDeleteWithoutRecovery=True)
    status, _ = pipeline.post(BODY, shopify_headers(BODY, "d-nosecret"))
    assert status == 503
    assert queued(pipeline) == []
