"""Webhook ingress: verify, key, enqueue, answer. The only work done before the sender's 202.

Imports stay within the standard library and the lean modules of ``shared`` (cold start).
Answers: 202 after SQS accepted the message; 401 for any verification failure; 400 for a
malformed request; 413 for an oversized one; 503 only when the secret store or the queue
could not be reached. Bad input never causes a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.aws import AwsError, AwsJsonClient, SecretCache, sqs_client
from shared.declaration import Integration, WebhookTrigger, secret_id
from shared.envelope import Envelope, message_attributes
from shared.observability import emit_metrics, get_logger, log
from shared.webhooks import (
    BadRequest,
    Headers,
    IngressRejection,
    PayloadTooLarge,
    VerificationFailed,
    verifier_for,
)

_logger = get_logger("junction.ingress")

# Provider headers worth keeping for the processor and for operators; never signatures.
KEPT_HEADERS = (
    "content-type",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
    "x-shopify-triggered-at",
    "x-shopify-event-id",
    "webhook-id",
    "webhook-timestamp",
)
SECRET_REFRESH_SECONDS = 30.0  # after a mismatch, re-read the secret at most this often


class ServiceUnavailable(Exception):
    """We could not persist or could not read our own configuration: the sender should retry."""


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
    }


def read_request(event: dict[str, Any], limit: int) -> tuple[Headers, bytes]:
    """Headers and the exact raw body bytes of an API Gateway (REST v1 or HTTP v2) proxy event."""
    if not isinstance(event, dict):
        raise BadRequest("event is not an object")
    raw_headers = event.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadRequest("headers are not an object")
    body = event.get("body")
    if body is None:
        return Headers(raw_headers), b""
    if not isinstance(body, str):
        raise BadRequest("body is not a string")
    if event.get("isBase64Encoded"):
        if len(body) > (limit * 4) // 3 + 4:
            raise PayloadTooLarge(f"encoded body of {len(body)} chars")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("body is not valid base64") from None
    else:
        raw = body.encode("utf-8", "surrogateescape")
    if len(raw) > limit:
        raise PayloadTooLarge(f"body of {len(raw)} bytes")
    return Headers(raw_headers), raw


class Ingress:
    """The ingress of one webhook integration, with its clients passed in."""

    def __init__(
        self,
        integration: Integration,
        *,
        stage: str,
        queue_url: str,
        sqs: AwsJsonClient,
        secrets: SecretCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if integration.webhook is None:
            raise ValueError(f"{integration.name} has no webhook trigger")
        self.integration = integration
        self.trigger: WebhookTrigger = integration.webhook
        self.verifier = verifier_for(self.trigger.scheme)
        self.secret_id = secret_id(stage, self.trigger.secret)
        self.queue_url = queue_url
        self.sqs = sqs
        self.secrets = secrets
        self.clock = clock
        self._last_refresh = float("-inf")

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        delivery_id = None
        try:
            headers, raw = read_request(event, self.trigger.max_body_bytes)
            delivery = self._verify(headers, raw)
            delivery_id = delivery.delivery_id
            try:
                payload = json.loads(raw)
            except ValueError:
                raise BadRequest("body is not JSON") from None
            if not isinstance(payload, dict):
                raise BadRequest("body is not a JSON object")
            envelope = self._envelope(headers, raw, delivery.delivery_id, delivery.topic)
            self._enqueue(envelope)
        except IngressRejection as rejection:
            return self._answer(rejection.status, rejection.public, rejection.detail, delivery_id, started)
        except ServiceUnavailable as exc:
            return self._answer(503, "temporarily unavailable, retry later", str(exc), delivery_id, started)
        self._outcome("accepted", 202, delivery_id, started, None)
        return _response(202, {"status": "accepted", "delivery_id": delivery_id})

    def _answer(self, status: int, public: str, detail: str, delivery_id: str | None, started: float) -> dict[str, Any]:
        outcome = {401: "unauthorized", 413: "too_large", 503: "unavailable"}.get(status, "bad_request")
        self._outcome(outcome, status, delivery_id, started, detail)
        return _response(status, {"error": public})

    def _outcome(self, outcome: str, status: int, delivery_id: str | None, started: float, detail: str | None) -> None:
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        log(
            _logger,
            level,
            "webhook " + outcome,
            integration=self.integration.name,
            delivery_id=delivery_id,
            status=status,
            detail=detail,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        emit_metrics(self.integration.name, {f"Webhook_{outcome}": 1})

    def _active_secrets(self) -> list[str]:
        try:
            doc = self.secrets.get_json(self.secret_id)
        except AwsError as exc:
            raise ServiceUnavailable(f"secret {self.secret_id}: {exc.code}") from exc
        except ValueError as exc:
            raise ServiceUnavailable(f"secret {self.secret_id} is not JSON") from exc
        values = doc.get("secrets") if isinstance(doc, dict) else None
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ServiceUnavailable(f'secret {self.secret_id} must be {{"secrets": ["..."]}}')
        return values

    def _verify(self, headers: Headers, raw: bytes) -> Any:
        verify = self.verifier.verify
        tolerance = self.trigger.timestamp_tolerance_seconds
        try:
            return verify(headers, raw, self._active_secrets(), now=self.clock(), tolerance=tolerance)
        except VerificationFailed:
            # A rotated secret may not be in our cache yet: re-read it, at most every 30 s.
            now = time.monotonic()
            if now - self._last_refresh < SECRET_REFRESH_SECONDS:
                raise
            self._last_refresh = now
            self.secrets.invalidate(self.secret_id)
            return verify(headers, raw, self._active_secrets(), now=self.clock(), tolerance=tolerance)

    def _envelope(self, headers: Headers, raw: bytes, delivery_id: str, topic: str | None) -> Envelope:
        body, encoding = Envelope.encode_body(raw)
        kept = {k: v for k, v in headers.items() if k in KEPT_HEADERS}
        if topic is None and self.trigger.topic_header:
            topic = headers.get(self.trigger.topic_header)
        return Envelope(
            integration=self.integration.name,
            delivery_id=delivery_id,
            idempotency_key=f"{self.integration.name}:{delivery_id}",
            source=self.integration.source,
            topic=topic,
            received_at=datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds"),
            body=body,
            body_encoding=encoding,
            headers=kept,
        )

    def _enqueue(self, envelope: Envelope) -> None:
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": envelope.to_json(),
            "MessageAttributes": message_attributes(envelope),
        }
        if self.integration.queue.fifo:
            # One group per delivery: no head-of-line blocking; SQS drops re-sent duplicates for 5 min.
            params["MessageGroupId"] = envelope.delivery_id[:128]
            params["MessageDeduplicationId"] = envelope.idempotency_key[:128]
        try:
            self.sqs.call("SendMessage", params)
        except AwsError as exc:
            raise ServiceUnavailable(f"enqueue failed: {exc.code}") from exc


def make_ingress_handler(
    integration: Integration, environ: Mapping[str, str] | None = None
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler; clients are created on the first call, from the environment (the
    process's, or ``environ`` where one process hosts several functions, as locally)."""
    holder: list[Ingress] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not holder:
            env = os.environ if environ is None else environ
            holder.append(
                Ingress(
                    integration,
                    stage=env["JUNCTION_STAGE"],
                    queue_url=env["JUNCTION_QUEUE_URL"],
                    sqs=sqs_client(),
                    secrets=SecretCache(),
                )
            )
        return holder[0].handle(event)

    return handler
