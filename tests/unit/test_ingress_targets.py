"""A webhook integration with several targets: ingress hands every accepted delivery to each
target's queue, and answers 202 only once every one of them holds it. A send that fails is a
503: the sender retries the whole delivery, and the targets that already had it see a duplicate
(same delivery id, same idempotency key), which their own idempotency scope absorbs."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shared.declaration import QueueSettings, Target
from shared.envelope import Envelope
from shared.ingress import Ingress
from tests.unit.test_ingress_fakes import (
    BUCKET,
    SHOP_SECRET,
    MemoryS3,
    StaticSecrets,
    StrictSqs,
    event,
    integration,
    make_ingress,
    queue_url,
)

TARGETS = ("erp", "wms")
BODY = json.dumps({"id": 42, "note": "zażółć"}).encode()
BIG = json.dumps({"pad": "y" * 300_000}).encode()


def by_queue(sqs: StrictSqs) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for params in sqs.sent:
        out.setdefault(params["QueueUrl"], []).append(params)
    return out


def test_an_accepted_delivery_is_on_every_targets_queue() -> None:
    ingress, sqs, _ = make_ingress(targets=TARGETS)
    answer = ingress.handle(event("shopify", BODY, "d-both"))
    assert answer["statusCode"] == 202
    assert [p["QueueUrl"] for p in sqs.sent] == [queue_url(t) for t in TARGETS]  # declaration order
    first, second = sqs.sent
    assert first["MessageBody"] == second["MessageBody"]
    assert first["MessageAttributes"] == second["MessageAttributes"]
    envelope = Envelope.from_json(first["MessageBody"])
    assert envelope.raw_body == BODY and envelope.idempotency_key == "unit-shopify:d-both"


def test_a_failed_send_to_the_second_queue_is_a_503_and_the_senders_retry_reaches_both() -> None:
    ingress, sqs, _ = make_ingress(targets=TARGETS)
    sqs.unreachable.add(queue_url("wms"))
    answer = ingress.handle(event("shopify", BODY, "d-retry"))
    assert answer["statusCode"] == 503 and "retry" in json.loads(answer["body"])["error"]
    assert [p["QueueUrl"] for p in sqs.sent] == [queue_url("erp")]  # the first has it already
    sqs.unreachable.clear()
    assert ingress.handle(event("shopify", BODY, "d-retry"))["statusCode"] == 202  # the sender retries
    queues = by_queue(sqs)
    assert len(queues[queue_url("erp")]) == 2 and len(queues[queue_url("wms")]) == 1
    # The erp target sees the same delivery twice: one idempotency key, which its scope absorbs.
    keys = {Envelope.from_json(p["MessageBody"]).idempotency_key for p in sqs.sent}
    assert keys == {"unit-shopify:d-retry"}


def test_a_failed_send_to_the_first_queue_is_a_503_before_the_second_is_tried() -> None:
    ingress, sqs, _ = make_ingress(targets=TARGETS)
    sqs.unreachable.add(queue_url("erp"))
    assert ingress.handle(event("shopify", BODY, "d-first"))["statusCode"] == 503
    assert sqs.sent == []


def test_a_claim_checked_body_is_stored_once_and_every_queue_gets_the_same_pointer() -> None:
    ingress, sqs, s3 = make_ingress(targets=TARGETS)
    assert ingress.handle(event("shopify", BIG, "d-big"))["statusCode"] == 202
    assert len(s3.objects) == 1
    pointers = [Envelope.from_json(p["MessageBody"]).claim_check for p in sqs.sent]
    assert len(pointers) == 2 and pointers[0] is not None and pointers[0] == pointers[1]


def test_each_queue_is_sent_to_as_its_kind_wants() -> None:
    """A FIFO target's queue needs a group and a deduplication id; a standard queue refuses them."""
    base = integration(targets=TARGETS)
    sqs = StrictSqs()
    ingress = Ingress(
        replace(base, targets=(base.targets[0], Target("wms", queue=QueueSettings(fifo=True)))),
        stage="unit",
        queue_urls=[queue_url("erp"), queue_url("wms") + ".fifo"],
        sqs=sqs,
        secrets=StaticSecrets(SHOP_SECRET),
        s3=MemoryS3(),
        payload_bucket=BUCKET,
    )
    assert ingress.handle(event("shopify", BODY, "d-kinds"))["statusCode"] == 202
    standard, ordered = sqs.sent
    assert "MessageGroupId" not in standard and "MessageDeduplicationId" not in standard
    assert ordered["MessageGroupId"] == "d-kinds"
    assert ordered["MessageDeduplicationId"] == "unit-shopify:d-kinds"


def test_one_queue_url_per_target_or_the_ingress_refuses_to_start() -> None:
    for urls in ([queue_url("erp")], [queue_url(t) for t in (*TARGETS, "extra")]):
        with pytest.raises(ValueError, match="one queue URL per target"):
            Ingress(
                integration(targets=TARGETS),
                stage="unit",
                queue_urls=urls,
                sqs=StrictSqs(),
                secrets=StaticSecrets(SHOP_SECRET),
            )
