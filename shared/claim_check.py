"""Claim checks: the one module that writes and reads message bodies kept in S3.

A signed body whose envelope does not fit one SQS message (256 KiB, body and attributes
together) is stored in S3 by the ingress, and the queue carries a version 2 envelope that
points at it. Processors call ``resolve`` first; the flow then reads ``envelope.payload()`` /
``envelope.raw_body`` as for any other message.

Object key: ``payloads/<integration>/<YYYY>/<MM>/<DD>/<sha256(delivery id)>/<sha256(body)>``:
the day the ingress received it (for lifecycle rules and operators), the delivery id hashed
(it is the sender's text), and the body's digest, so a later write can never change the bytes
an earlier pointer promised. The content is the raw body, byte for byte.

Writing uses the lean client (``shared.aws.S3Client``, ingress cold start); reading takes any
client with boto3's ``get_object(Bucket=..., Key=...)``. Stdlib only, no botocore import:
boto3's errors are told apart by their ``response`` (status and code), as botocore documents.

A missing object: S3 is strongly consistent, so an object our ingress wrote is readable once
``PutObject`` returned. Missing anyway means deleted (lifecycle expiry, an operator) or a wrong
bucket. For ``MISSING_GRACE_SECONDS`` after the ingress received the event it is treated as
transient (``ClaimCheckUnavailable``: a restore, a replication catching up, a bucket being
fixed), later as permanent (``ClaimCheckMissing``, dead-lettered with its reason). S3 answers
403 instead of 404 when the reader may not list the bucket, so 403 counts as missing too.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from shared.envelope import ClaimCheck, Envelope
from shared.errors import PermanentError, StoreUnavailable

MISSING_GRACE_SECONDS = 900.0
KEY_PREFIX = "payloads"


class ClaimCheckUnavailable(StoreUnavailable):
    """S3 could not be read (or the object is not there yet): retry later."""

    reason = "claim_check_unavailable"


class ClaimCheckMissing(PermanentError):
    """The claim-check object is gone for good (expired or deleted)."""

    reason = "claim_check_missing"


class ClaimCheckCorrupt(PermanentError):
    """The object's bytes are not the ones the envelope promised (size or digest differ)."""

    reason = "claim_check_corrupt"


class ObjectWriter(Protocol):
    def put_object(
        self, bucket: str, key: str, body: bytes, *, content_type: str = ..., deadline: float | None = ...
    ) -> Any: ...


def object_key(envelope: Envelope, raw: bytes) -> str:
    day = envelope.received_at[:10].replace("-", "/")  # "2026-11-23T..." -> "2026/11/23"
    delivery = hashlib.sha256(envelope.delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}/{envelope.integration}/{day}/{delivery}/{hashlib.sha256(raw).hexdigest()}"


def store(s3: ObjectWriter, bucket: str, envelope: Envelope, raw: bytes, *, deadline: float | None = None) -> Envelope:
    """Write ``raw`` (the exact signed body) to S3 and return the pointer envelope to enqueue.

    Raises ``shared.aws.AwsError`` when S3 cannot be written (the ingress answers 503)."""
    key = object_key(envelope, raw)
    s3.put_object(bucket, key, raw, content_type="application/octet-stream", deadline=deadline)
    check = ClaimCheck(bucket=bucket, key=key, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    return replace(envelope, body="", body_encoding="s3", claim_check=check, v=2)


def resolve(envelope: Envelope, s3: Any, *, now: float | None = None) -> Envelope:
    """The envelope with its body loaded from S3 (the same envelope when it has no claim check).

    ``s3`` is a boto3 S3 client. Raises ``ClaimCheckUnavailable`` (transient),
    ``ClaimCheckMissing`` or ``ClaimCheckCorrupt`` (permanent)."""
    check = envelope.claim_check
    if check is None or envelope.body_loaded:
        return envelope
    ids = {"delivery_id": envelope.delivery_id}
    try:
        answer = s3.get_object(Bucket=check.bucket, Key=check.key)
        raw = answer["Body"].read()
    except Exception as exc:  # classified by the status and code boto3 attaches
        status, code = _status_and_code(exc)
        if status in (403, 404) or code in ("NoSuchKey", "NoSuchBucket", "AccessDenied"):
            age = (time.time() if now is None else now) - _epoch(envelope.received_at)
            if age < MISSING_GRACE_SECONDS:
                raise ClaimCheckUnavailable(f"claim-check object not found yet ({code})", entity_ids=ids) from exc
            raise ClaimCheckMissing(
                f"claim-check object {check.key} not found ({code})", entity_ids=ids, details={"key": check.key}
            ) from exc
        raise ClaimCheckUnavailable(f"claim-check read failed ({code})", entity_ids=ids) from exc
    if not isinstance(raw, bytes) or len(raw) != check.size or hashlib.sha256(raw).hexdigest() != check.sha256:
        raise ClaimCheckCorrupt(f"claim-check object {check.key} differs from its envelope", entity_ids=ids)
    body, encoding = Envelope.encode_body(raw)
    return replace(envelope, body=body, body_encoding=encoding)


def _status_and_code(exc: Exception) -> tuple[int, str]:
    response = getattr(exc, "response", None)  # botocore.exceptions.ClientError
    if isinstance(response, dict):
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        return int(meta.get("HTTPStatusCode") or 0), str(error.get("Code") or type(exc).__name__)
    status = getattr(exc, "status", 0)  # shared.aws.AwsError
    code = getattr(exc, "code", None)
    return (status if isinstance(status, int) else 0), str(code or type(exc).__name__)


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0  # unknown age: treat as old
