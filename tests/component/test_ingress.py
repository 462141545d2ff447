"""The webhook answers, against moto: 202 only once SQS holds the message; nothing else enqueues."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

from shared import claim_check
from shared.aws import AwsError, SecretCache, s3_client, secretsmanager_client, sqs_client
from shared.declaration import Target, queue_name
from shared.envelope import SQS_MAX_MESSAGE_BYTES, Envelope
from shared.ingress import Ingress, QueueSender
from shared.webhooks import shopify
from tests.component.harness import REGION, SHOP_OLD_SECRET, SHOP_SECRET, STAGE, TARGET, Pipeline, shopify_headers
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import body as serialise
from tests.sample import shopify_order

BODY = serialise(shopify_order())
BUCKET = "junction-test-payloads"
assert INTEGRATION.webhook is not None
MAX_BODY = INTEGRATION.webhook.max_body_bytes
# What SQS accepts in a message (its documented character set).
SQS_ALLOWED = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


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
    assert envelope["idempotency_key"] == "shopify-orders:d-1"
    assert envelope["topic"] == "orders/create"
    assert "x-shopify-hmac-sha256" not in envelope["headers"]  # signatures are not kept
    attrs = message["MessageAttributes"]
    assert attrs["junction-idempotency-key"]["StringValue"] == "shopify-orders:d-1"


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
        ("too large", b"{" + b" " * MAX_BODY + b"}", 413),
        ("nested deeper than the parser's stack", b"[" * 200_000 + b"]" * 200_000, 400),
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


# -- several targets: every target's queue gets each delivery ------------------------------------
class QueueOutage:
    """The ingress's SQS client, with chosen queues that cannot be reached."""

    def __init__(self, inner: QueueSender) -> None:
        self.inner = inner
        self.down: set[str] = set()

    def call(self, action: str, payload: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]:
        if action == "SendMessage" and payload.get("QueueUrl") in self.down:
            raise AwsError("sqs", action, 0, "ConnectTimeout", "injected: the queue cannot be reached")
        return self.inner.call(action, payload, deadline=deadline)


@pytest.fixture
def two_targets(pipeline: Pipeline) -> tuple[Ingress, QueueOutage, str]:
    """The real ingress of the integration with a second target ("wms") whose queue is made here;
    its first target's queue is the pipeline's, drained by the pipeline's real processor."""
    integration = replace(INTEGRATION, targets=(TARGET, Target("wms")))
    wms = pipeline.boto_sqs.create_queue(QueueName=queue_name(STAGE, integration, integration.target("wms")))
    sqs = QueueOutage(sqs_client())
    ingress = Ingress(
        integration,
        stage=STAGE,
        queue_urls=[pipeline.queue_url, wms["QueueUrl"]],
        sqs=sqs,
        secrets=SecretCache(secretsmanager_client()),
        s3=s3_client(),
        payload_bucket=pipeline.resources.payload_bucket,
    )
    return ingress, sqs, wms["QueueUrl"]


def on_queue(pipeline: Pipeline, url: str) -> list[dict[str, Any]]:
    got = pipeline.boto_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return list(got.get("Messages", []))


def test_two_targets_each_get_every_accepted_delivery(
    pipeline: Pipeline, two_targets: tuple[Ingress, QueueOutage, str]
) -> None:
    ingress, _, wms = two_targets
    assert _post(ingress, BODY, "d-two")[0] == 202
    [erp_message] = on_queue(pipeline, pipeline.queue_url)
    [wms_message] = on_queue(pipeline, wms)
    assert erp_message["Body"] == wms_message["Body"]
    assert Envelope.from_json(erp_message["Body"]).raw_body == BODY
    for message in (erp_message, wms_message):
        assert message["MessageAttributes"]["junction-idempotency-key"]["StringValue"] == "shopify-orders:d-two"


def test_a_failed_send_to_the_second_target_is_a_503_and_the_retry_is_absorbed_by_the_first(
    pipeline: Pipeline, two_targets: tuple[Ingress, QueueOutage, str]
) -> None:
    ingress, sqs, wms = two_targets
    sqs.down.add(wms)
    status, answer = _post(ingress, BODY, "d-half")
    assert status == 503 and "retry" in answer["error"]  # the sender retries the delivery
    assert pipeline.queue_depth() == 1  # the first target has it already
    sqs.down.clear()
    assert _post(ingress, BODY, "d-half")[0] == 202  # the sender's retry: the same delivery id
    assert len(on_queue(pipeline, wms)) == 1
    assert pipeline.queue_depth() == 2
    pipeline.drain()  # the first target's processor sees the delivery twice ...
    assert len(pipeline.erp.orders()) == 1  # ... and its idempotency makes one sales order
    hops = pipeline.trace(f"shopify-order:{shopify_order()['id']}")
    assert sorted(h["outcome"] for h in hops) == ["delivered", "duplicate"]
    assert pipeline.dlq() == []


def test_an_unreadable_secret_is_a_503_not_a_401(pipeline: Pipeline) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.delete_secret(SecretId="junction/test/shopify-webhook", ForceDeleteWithoutRecovery=True)
    status, _ = pipeline.post(BODY, shopify_headers(BODY, "d-nosecret"))
    assert status == 503
    assert queued(pipeline) == []


# -- bodies above one SQS message: claim check in S3 ---------------------------------------------
@pytest.fixture
def s3(pipeline: Pipeline) -> Any:
    """The claim-check bucket (the local provisioning may have made it already)."""
    client = boto3.client("s3", region_name=REGION)
    try:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})  # type: ignore[typeddict-item]
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


@pytest.fixture
def ingress(pipeline: Pipeline, s3: Any) -> Iterator[Ingress]:
    """The real ingress with a claim-check bucket, on the pipeline's queue."""
    yield Ingress(
        INTEGRATION,
        stage=STAGE,
        queue_urls=[pipeline.queue_url],
        sqs=sqs_client(),
        secrets=SecretCache(secretsmanager_client()),
        s3=s3_client(),
        payload_bucket=BUCKET,
    )


def _post(ingress: Ingress, body: bytes, delivery_id: str) -> tuple[int, dict[str, Any]]:
    from junction_local.events import apigw_event

    assert INTEGRATION.webhook is not None
    response = ingress.handle(apigw_event("POST", INTEGRATION.webhook.path, shopify_headers(body, delivery_id), body))
    return int(response["statusCode"]), json.loads(response["body"])


def order_of_size(size: int, note: str = "") -> bytes:
    """A signed-order-shaped body of exactly ``size`` bytes: line items repeated, then padded."""
    order = shopify_order(note=note)
    item = order["line_items"][0]
    items: list[dict[str, Any]] = []
    while True:  # grow by estimate, not one item at a time (each round serialises the order)
        current = len(serialise({**order, "line_items": items}))
        missing = size - 2_000 - current
        if missing <= 0:
            break
        per_item = len(serialise(item)) + 100
        for _ in range(max(1, missing // per_item)):
            line = copy.deepcopy(item)
            line["id"] = item["id"] + len(items) + 1
            line["title"] = f'Line {len(items)} "quoted" \\ back\nslash ünïcødé 🎉'
            items.append(line)
    base = serialise({**order, "line_items": items, "pad": ""})
    raw = base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')
    assert len(raw) == size
    return raw


def _single_message(pipeline: Pipeline) -> dict[str, Any]:
    [message] = queued(pipeline)
    assert SQS_ALLOWED.fullmatch(message["Body"]), "SQS refuses characters in this body"
    return message


def test_a_900_kib_order_travels_by_claim_check_and_resolves_to_the_exact_bytes(
    pipeline: Pipeline, ingress: Ingress, s3: Any
) -> None:
    raw = order_of_size(900 * 1024)
    status, answer = _post(ingress, raw, "d-big")
    assert (status, answer) == (202, {"status": "accepted", "delivery_id": "d-big"})
    message = _single_message(pipeline)
    assert len(message["Body"].encode()) < 4096  # the pointer, not the body
    envelope = Envelope.from_json(message["Body"])
    assert envelope.v == 2 and envelope.claim_check is not None
    assert envelope.claim_check.key.startswith(f"payloads/{INTEGRATION.name}/")
    assert message["MessageAttributes"]["junction-idempotency-key"]["StringValue"] == "shopify-orders:d-big"
    resolved = claim_check.resolve(envelope, s3)
    assert resolved.raw_body == raw  # byte for byte what the shop signed
    assert resolved.payload()["id"] == shopify_order()["id"]
    assert Envelope.from_json(resolved.to_json()) == envelope  # what an idempotency record keeps


@pytest.mark.parametrize("size", [220 * 1024, 240 * 1024, 256 * 1024 - 200, 256 * 1024])
def test_bodies_whose_envelope_outgrows_a_message_are_accepted(
    pipeline: Pipeline, ingress: Ingress, s3: Any, size: int
) -> None:
    """The raw body fits 256 KiB, its JSON-escaped envelope does not: once 503 forever."""
    raw = order_of_size(size)
    assert _post(ingress, raw, f"d-{size}")[0] == 202
    message = _single_message(pipeline)
    assert len(message["Body"].encode()) < SQS_MAX_MESSAGE_BYTES - 100
    envelope = Envelope.from_json(message["Body"])
    assert (envelope.claim_check is not None) == (size >= 240 * 1024)  # 220 KiB still fits, escaped
    assert claim_check.resolve(envelope, s3).raw_body == raw


def test_a_body_that_fits_stays_inline(pipeline: Pipeline, ingress: Ingress, s3: Any) -> None:
    raw = order_of_size(100 * 1024)
    assert _post(ingress, raw, "d-small")[0] == 202
    message = _single_message(pipeline)
    envelope = Envelope.from_json(message["Body"])
    assert envelope.v == 1 and envelope.claim_check is None and envelope.raw_body == raw
    assert len(message["Body"].encode()) <= SQS_MAX_MESSAGE_BYTES
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_declared_limit_is_the_line_between_202_and_413(pipeline: Pipeline, ingress: Ingress, s3: Any) -> None:
    assert _post(ingress, order_of_size(MAX_BODY + 1), "d-over")[0] == 413
    assert queued(pipeline) == []
    raw = order_of_size(MAX_BODY)
    assert _post(ingress, raw, "d-max")[0] == 202
    envelope = Envelope.from_json(_single_message(pipeline)["Body"])
    assert claim_check.resolve(envelope, s3).raw_body == raw


def test_characters_sqs_refuses_are_escaped_and_survive(pipeline: Pipeline, ingress: Ingress, s3: Any) -> None:
    note = "\ufffe \uffff nul:\u0000 \U0001f389 zażółć"
    raw = serialise(shopify_order(note=note)).replace(b"\\u0000", b"\\u0000")
    raw = raw.replace(b'"note":"', b'"note":"\\ud800 lone, ')  # a lone surrogate escape in the JSON text
    assert "\ufffe".encode() in raw
    assert _post(ingress, raw, "d-chars")[0] == 202
    envelope = Envelope.from_json(_single_message(pipeline)["Body"])
    assert envelope.raw_body == raw
    assert envelope.payload()["note"].startswith("\ud800 lone, \ufffe \uffff nul:\x00")


def test_an_unreachable_bucket_is_a_503_and_nothing_is_enqueued(pipeline: Pipeline, ingress: Ingress, s3: Any) -> None:
    s3.delete_bucket(Bucket=BUCKET)
    status, answer = _post(ingress, order_of_size(400 * 1024), "d-nobucket")
    assert status == 503 and "retry" in answer["error"]
    assert queued(pipeline) == []


def test_a_missing_claim_check_object_is_transient_then_permanent(
    pipeline: Pipeline, ingress: Ingress, s3: Any
) -> None:
    assert _post(ingress, order_of_size(300 * 1024), "d-gone")[0] == 202
    envelope = Envelope.from_json(_single_message(pipeline)["Body"])
    assert envelope.claim_check is not None
    s3.delete_object(Bucket=BUCKET, Key=envelope.claim_check.key)
    with pytest.raises(claim_check.ClaimCheckUnavailable):
        claim_check.resolve(envelope, s3)
    later = pipeline.clock() + claim_check.MISSING_GRACE_SECONDS + 1
    with pytest.raises(claim_check.ClaimCheckMissing) as caught:
        claim_check.resolve(envelope, s3, now=later)
    assert caught.value.entity_ids == {"delivery_id": "d-gone"}
