"""Webhook ingress: verify, key, enqueue, answer. The only work done before the sender's 202.

Imports stay within the standard library and the lean modules of ``shared`` (cold start).
Answers: 202 after SQS accepted the message; 401 for any verification failure; 400 for a
malformed request; 413 for a body above the declared ``max_body_bytes``; 503 only when the
secret store, S3 or the queue could not be reached within the declared deadline; 500 only for
a bug of ours (logged with its traceback, never with payload data). Bad input never causes a 5xx.
A provider's ping (``Verifier.is_ping``: WooCommerce checks a URL before it saves a webhook) gets
200 and has no effect: nothing is verified, nothing is enqueued.

A body whose envelope does not fit one SQS message travels by claim check (``shared.claim_check``).
Every call (secret, S3, SQS, with their retries) shares one deadline, ``deadline_seconds`` of the
trigger, so the sender hears from us before its own timeout.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import claim_check
from shared.aws import AwsError, SecretCache, s3_client, sqs_client
from shared.declaration import Integration, WebhookTrigger, secret_id
from shared.envelope import SQS_MAX_MESSAGE_BYTES, Envelope, message_attributes, message_size
from shared.observability import emit_metrics, get_logger, log
from shared.webhooks import (
    BadRequest,
    Headers,
    IngressRejection,
    PayloadTooLarge,
    VerificationFailed,
    Verifier,
    ping_check,
    verifier_for,
)

_logger = get_logger("junction.ingress")

# Headers kept whatever the scheme; each verifier adds its provider's (``Verifier.kept_headers``).
GENERIC_KEPT_HEADERS = ("content-type",)
SECRET_REFRESH_SECONDS = 30.0  # after a mismatch, re-read the secret at most this often
ANSWER_RESERVE_SECONDS = 0.05  # of the deadline, kept for building and returning the answer
PAYLOAD_BUCKET_ENV = "JUNCTION_PAYLOAD_BUCKET"


def kept_header_names(verifier: Verifier, topic_header: str | None) -> frozenset[str]:
    """Generic headers, the declared topic header and the verifier's own; never a signature."""
    names = {*GENERIC_KEPT_HEADERS, *verifier.kept_headers}
    if topic_header:
        names.add(topic_header.lower())
    return frozenset(names - {h.lower() for h in verifier.signature_headers})


class QueueSender(Protocol):
    """What ingress needs of SQS (``shared.aws.AwsJsonClient``)."""

    def call(self, action: str, payload: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]: ...


class SecretSource(Protocol):
    """What ingress needs of the secret store (``shared.aws.SecretCache``)."""

    def get_json(self, secret_id: str, *, deadline: float | None = None) -> Any: ...

    def invalidate(self, secret_id: str) -> None: ...


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
    if event.get("isBase64Encoded") is True:
        if len(body) > (limit * 4) // 3 + 4:
            raise PayloadTooLarge(f"encoded body of {len(body)} chars")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("body is not valid base64") from None
    else:
        if len(body) > limit:  # every character is at least one byte
            raise PayloadTooLarge(f"body of {len(body)} chars")
        try:
            raw = body.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate no byte sequence decodes to
            raise BadRequest("body is not encodable text") from None
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
        queue_urls: Sequence[str],
        sqs: QueueSender,
        secrets: SecretSource,
        clock: Callable[[], float] = time.time,
        s3: claim_check.ObjectWriter | None = None,
        payload_bucket: str | None = None,
        max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
    ) -> None:
        if integration.webhook is None:
            raise ValueError(f"{integration.name} has no webhook trigger")
        self.integration = integration
        self.trigger: WebhookTrigger = integration.webhook
        self.verifier = verifier_for(self.trigger.scheme)
        self.secret_id = secret_id(stage, self.trigger.secret)
        entry = integration.entry_targets
        if len(queue_urls) != len(entry):
            raise ValueError(f"{integration.name}: one queue URL per target after no other ({len(entry)})")
        # Every such target's queue gets the delivery: each target is its own pipeline (a target
        # after another gets it from that target's processor).
        self.queues = [(url, target.queue.fifo) for url, target in zip(queue_urls, entry, strict=True)]
        self.sqs = sqs
        self.secrets = secrets
        self.clock = clock
        self._s3 = s3
        self.payload_bucket = payload_bucket if payload_bucket is not None else os.environ.get(PAYLOAD_BUCKET_ENV)
        self.max_message_bytes = max_message_bytes
        self.kept_headers = kept_header_names(self.verifier, self.trigger.topic_header)
        self.is_ping = ping_check(self.verifier)
        self.path_token = self.trigger.path_token
        self._last_refresh = float("-inf")

    @property
    def s3(self) -> claim_check.ObjectWriter:
        if self._s3 is None:
            self._s3 = s3_client()
        return self._s3

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = time.monotonic() + max(0.0, self.trigger.deadline_seconds - ANSWER_RESERVE_SECONDS)
        delivery_id = None
        try:
            headers, raw = read_request(event, self.trigger.max_body_bytes)
            if self.is_ping(headers, raw):
                # The provider checking the URL before it saves a webhook: a 200, and no effect.
                self._outcome("ping", 200, None, started, None)
                return _response(200, {"status": "pong"})
            if self.path_token is not None:
                self._check_path_token(event, deadline)
            delivery = self._verify(headers, raw, deadline)
            delivery_id = delivery.delivery_id
            try:
                payload = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
                raise BadRequest("body is not JSON") from None
            if not isinstance(payload, dict):
                raise BadRequest("body is not a JSON object")
            envelope = self._envelope(headers, raw, delivery.delivery_id, delivery.topic)
            claim_checked = self._enqueue(envelope, raw, deadline)
        except IngressRejection as rejection:
            return self._answer(rejection.status, rejection.public, rejection.detail, delivery_id, started)
        except ServiceUnavailable as exc:
            return self._answer(503, "temporarily unavailable, retry later", str(exc), delivery_id, started)
        except Exception as exc:  # a bug of ours: never let it become the platform's 502
            return self._crashed(exc, delivery_id, started)
        status = self.trigger.accepted_status
        self._outcome("accepted", status, delivery_id, started, None, claim_check=claim_checked or None)
        return _response(status, {"status": "accepted", "delivery_id": delivery_id})

    def _answer(self, status: int, public: str, detail: str, delivery_id: str | None, started: float) -> dict[str, Any]:
        outcome = {401: "unauthorized", 413: "too_large", 503: "unavailable"}.get(status, "bad_request")
        self._outcome(outcome, status, delivery_id, started, detail)
        return _response(status, {"error": public})

    def _crashed(self, exc: Exception, delivery_id: str | None, started: float) -> dict[str, Any]:
        import traceback  # only on this path: it costs cold-start time

        # The frames and the exception type, not its message: a message may quote the payload.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        self._outcome("error", 500, delivery_id, started, type(exc).__name__, traceback=frames)
        return _response(500, {"error": "internal error"})

    def _outcome(
        self, outcome: str, status: int, delivery_id: str | None, started: float, detail: str | None, **extra: Any
    ) -> None:
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
            **{k: v for k, v in extra.items() if v is not None},
        )
        emit_metrics(self.integration.name, {f"Webhook_{outcome}": 1})

    def _active_secrets(self, deadline: float | None) -> list[str]:
        try:
            doc = self.secrets.get_json(self.secret_id, deadline=deadline)
        except AwsError as exc:
            raise ServiceUnavailable(f"secret {self.secret_id}: {exc.code}") from exc
        except ValueError as exc:
            raise ServiceUnavailable(f"secret {self.secret_id} is not JSON") from exc
        values = doc.get("secrets") if isinstance(doc, dict) else None
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ServiceUnavailable(f'secret {self.secret_id} must be {{"secrets": ["..."]}}')
        try:
            for value in values:
                value.encode()  # a lone surrogate ("\\ud800" in the JSON) has no bytes to sign with
        except UnicodeEncodeError:
            raise ServiceUnavailable(f"secret {self.secret_id} holds text that is not UTF-8") from None
        return values

    def _check_path_token(self, event: dict[str, Any], deadline: float | None) -> None:
        """The secret token in the path (a provider that cannot sign): compared in constant time
        with every active value, read again once after a mismatch, as signatures are."""
        params = event.get("pathParameters")
        given = params.get(self.path_token) if isinstance(params, dict) and self.path_token else None
        if not isinstance(given, str) or not given or len(given) > 256:
            raise VerificationFailed("missing path token")
        for refresh in (False, True):
            if refresh:
                now = time.monotonic()
                if now - self._last_refresh < SECRET_REFRESH_SECONDS:
                    break
                self._last_refresh = now
                self.secrets.invalidate(self.secret_id)
            matched = False
            for value in self._active_secrets(deadline):
                matched |= hmac.compare_digest(value.encode(), given.encode("utf-8", "surrogateescape"))
            if matched:
                return
        raise VerificationFailed("path token mismatch")

    def _verify(self, headers: Headers, raw: bytes, deadline: float | None) -> Any:
        verify = self.verifier.verify
        tolerance = self.trigger.timestamp_tolerance_seconds
        try:
            return verify(headers, raw, self._active_secrets(deadline), now=self.clock(), tolerance=tolerance)
        except VerificationFailed:
            # A rotated secret may not be in our cache yet: re-read it, at most every 30 s.
            now = time.monotonic()
            if now - self._last_refresh < SECRET_REFRESH_SECONDS:
                raise
            self._last_refresh = now
            self.secrets.invalidate(self.secret_id)
            return verify(headers, raw, self._active_secrets(deadline), now=self.clock(), tolerance=tolerance)

    def _envelope(self, headers: Headers, raw: bytes, delivery_id: str, topic: str | None) -> Envelope:
        body, encoding = Envelope.encode_body(raw)
        kept = {k: v for k, v in headers.items() if k in self.kept_headers}
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

    def _enqueue(self, envelope: Envelope, raw: bytes, deadline: float | None) -> bool:
        """Send the envelope, or a claim check when it does not fit one message; True for a claim check."""
        attributes = message_attributes(envelope)
        # The envelope is never smaller than the body: skip building what cannot fit.
        text = envelope.to_json() if len(raw) < self.max_message_bytes else None
        claim_checked = text is None or message_size(text, attributes) > self.max_message_bytes
        if claim_checked:
            envelope = self._claim_check(envelope, raw, deadline)
            text = envelope.to_json()
        # One send per target. A failed send answers 503 and the sender retries the delivery: the
        # targets that already have it see a duplicate, which their idempotency absorbs.
        for queue_url, fifo in self.queues:
            params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": text, "MessageAttributes": attributes}
            if fifo:
                # One group per delivery: no head-of-line blocking; SQS drops re-sent duplicates for 5 min.
                params["MessageGroupId"] = envelope.delivery_id[:128]
                params["MessageDeduplicationId"] = envelope.idempotency_key[:128]
            try:
                self.sqs.call("SendMessage", params, deadline=deadline)
            except AwsError as exc:
                raise ServiceUnavailable(f"enqueue failed: {exc.code}") from exc
        return claim_checked

    def _claim_check(self, envelope: Envelope, raw: bytes, deadline: float | None) -> Envelope:
        if not self.payload_bucket:
            raise ServiceUnavailable(f"body needs a claim check and {PAYLOAD_BUCKET_ENV} is not set")
        try:
            return claim_check.store(self.s3, self.payload_bucket, envelope, raw, deadline=deadline)
        except AwsError as exc:
            raise ServiceUnavailable(f"claim check failed: {exc.code}") from exc


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
                    queue_urls=env["JUNCTION_QUEUE_URLS"].split(","),
                    sqs=sqs_client(),
                    secrets=SecretCache(),
                    payload_bucket=env.get(PAYLOAD_BUCKET_ENV) or "",
                )
            )
        return holder[0].handle(event)

    return handler
