"""The ingress answers within its declared deadline even when AWS hangs: the secret read, the
S3 put and the SQS send with its retries all share it, and running out is our 503."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from shared.aws import SecretCache, s3_client, secretsmanager_client, sqs_client
from shared.ingress import Ingress
from tests.unit.test_aws import HangingServer
from tests.unit.test_ingress_fakes import BUCKET, QUEUE_URL, MemoryS3, StaticSecrets, StrictSqs, event, integration

MARGIN = 0.25  # seconds beyond the deadline allowed for building the answer on a busy machine
BIG = json.dumps({"pad": "y" * 300_000}).encode()


def _ingress(deadline: float, *, sqs: Any = None, secrets: Any = None, s3: Any = None) -> Ingress:
    return Ingress(
        integration("shopify", deadline_seconds=deadline),
        stage="unit",
        queue_urls=[QUEUE_URL],
        sqs=sqs or StrictSqs(),
        secrets=secrets or StaticSecrets("shpss_unit_secret_0001"),
        s3=s3 or MemoryS3(),
        payload_bucket=BUCKET,
    )


def _timed(ingress: Ingress, body: bytes = b'{"id": 1}') -> tuple[int, float]:
    started = time.monotonic()
    answer = ingress.handle(event("shopify", body))
    return int(answer["statusCode"]), time.monotonic() - started


@pytest.mark.parametrize("deadline", [0.6, 3.0])
def test_a_hanging_queue_is_a_503_within_the_deadline(deadline: float) -> None:
    with HangingServer() as server:
        # Generous per-attempt timeouts and retries: without the deadline this took 3 x 5 s.
        sqs = sqs_client(endpoint=server.url, timeout=5.0, max_attempts=3)
        status, took = _timed(_ingress(deadline, sqs=sqs))
    assert status == 503
    assert took <= deadline + MARGIN


def test_a_hanging_secret_store_is_a_503_within_the_deadline() -> None:
    with HangingServer() as server:
        secrets = SecretCache(secretsmanager_client(endpoint=server.url, timeout=5.0))
        sqs = StrictSqs()
        status, took = _timed(_ingress(0.6, secrets=secrets, sqs=sqs))
    assert (status, sqs.sent) == (503, [])
    assert took <= 0.6 + MARGIN


def test_a_hanging_bucket_is_a_503_within_the_deadline_and_nothing_is_enqueued() -> None:
    with HangingServer() as server:
        sqs = StrictSqs()
        status, took = _timed(_ingress(0.6, sqs=sqs, s3=s3_client(endpoint=server.url, timeout=5.0)), BIG)
    assert (status, sqs.sent) == (503, [])
    assert took <= 0.6 + MARGIN


def test_the_deadline_is_shared_not_per_call() -> None:
    """A slow secret read leaves less time for the queue, not a fresh deadline."""

    class SlowSecrets(StaticSecrets):
        def get_json(self, secret_id: str, *, deadline: float | None = None) -> Any:
            time.sleep(0.4)
            return super().get_json(secret_id, deadline=deadline)

    with HangingServer() as server:
        sqs = sqs_client(endpoint=server.url, timeout=5.0)
        status, took = _timed(_ingress(0.6, sqs=sqs, secrets=SlowSecrets("shpss_unit_secret_0001")))
    assert status == 503 and took <= 0.6 + MARGIN
