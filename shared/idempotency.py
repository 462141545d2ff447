"""Idempotency records on DynamoDB, keyed on the business key of an effect.

A record goes IN_PROGRESS (with an expiry tied to the function timeout) before the effect and
COMPLETED (with the result) after it. Another delivery of the same key finds the record and
becomes a no-op; the same key with a different payload fingerprint is a conflict. A failed
attempt deletes its IN_PROGRESS record so the retry can run; a crashed one leaves it to expire,
and the retry that takes it over knows the effect may already have happened.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.aws import AwsError, AwsJsonClient, item_from_ddb, item_to_ddb
from shared.errors import IdempotencyConflict, InProgressElsewhere, StoreUnavailable

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Claim:
    """The result of trying to start an effect."""

    key: str
    duplicate_of: dict[str, Any] | None = None  # the COMPLETED record when this is a duplicate
    taken_over: bool = False  # an expired IN_PROGRESS record was replaced: the effect may exist

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


def target_key(record_key: str) -> str:
    """The ``Idempotency-Key`` sent to a target for a record key: stable, opaque, header-safe."""
    return hashlib.sha256(record_key.encode()).hexdigest()[:40]


class IdempotencyStore:
    def __init__(
        self,
        ddb: AwsJsonClient,
        table: str,
        *,
        ttl_days: int,
        in_progress_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.ttl_seconds = ttl_days * 86_400
        self.in_progress_seconds = in_progress_seconds
        self.clock = clock

    def _call(self, action: str, params: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            return self.ddb.call(action, params)
        except AwsError as exc:
            if exc.code == "ConditionalCheckFailedException":
                raise
            raise StoreUnavailable(f"idempotency store: {action} {exc.code}", details={"key": key}) from exc

    def begin(self, key: str, fingerprint: str, entity_ids: dict[str, str]) -> Claim:
        now = self.clock()
        item = {
            "id": key,
            "status": IN_PROGRESS,
            "fingerprint": fingerprint,
            "in_progress_until": int(now + self.in_progress_seconds),
            "expires_at": int(now + self.ttl_seconds),
        }
        try:
            result = self._call(
                "PutItem",
                {
                    "TableName": self.table,
                    "Item": item_to_ddb(item),
                    "ConditionExpression": "attribute_not_exists(id) OR (#s = :p AND in_progress_until < :now)",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":p": {"S": IN_PROGRESS}, ":now": {"N": str(int(now))}},
                    "ReturnValues": "ALL_OLD",
                },
                key,
            )
        except AwsError:  # the condition failed: a record exists and is not an expired claim
            existing = self.get(key)
            if existing is None:  # expired by TTL between our two calls: try once more
                return self.begin(key, fingerprint, entity_ids)
            if existing.get("fingerprint") != fingerprint:
                raise IdempotencyConflict(
                    "the same idempotency key arrived with a different payload",
                    entity_ids=entity_ids,
                    details={"key": key},
                ) from None
            if existing.get("status") == COMPLETED:
                return Claim(key, duplicate_of=existing)
            raise InProgressElsewhere(
                "another attempt holds this key",
                retry_after=max(1.0, float(existing.get("in_progress_until", now)) - now),
                entity_ids=entity_ids,
            ) from None
        old = result.get("Attributes")
        if old and item_from_ddb(old).get("fingerprint") not in (None, fingerprint):
            self.release(key)
            raise IdempotencyConflict(
                "the same idempotency key arrived with a different payload",
                entity_ids=entity_ids,
                details={"key": key},
            )
        return Claim(key, taken_over=bool(old))

    def get(self, key: str) -> dict[str, Any] | None:
        result = self._call(
            "GetItem", {"TableName": self.table, "Key": {"id": {"S": key}}, "ConsistentRead": True}, key
        )
        return item_from_ddb(result["Item"]) if result.get("Item") else None

    def complete(self, key: str, result: dict[str, str], envelope_json: str) -> None:
        """Mark the effect done, keeping its result and the event (for an operator's replay)."""
        self._call(
            "UpdateItem",
            {
                "TableName": self.table,
                "Key": {"id": {"S": key}},
                "UpdateExpression": "SET #s = :c, #r = :r, envelope = :e, completed_at = :t REMOVE in_progress_until",
                "ExpressionAttributeNames": {"#s": "status", "#r": "result"},
                "ExpressionAttributeValues": {
                    ":c": {"S": COMPLETED},
                    ":r": {"M": {k: {"S": v} for k, v in result.items()}},
                    ":e": {"S": envelope_json},
                    ":t": {"N": str(int(self.clock()))},
                },
            },
            key,
        )

    def release(self, key: str) -> None:
        """Drop an IN_PROGRESS claim after a failed attempt (never a COMPLETED record)."""
        try:
            self.ddb.call(
                "DeleteItem",
                {
                    "TableName": self.table,
                    "Key": {"id": {"S": key}},
                    "ConditionExpression": "#s = :p",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":p": {"S": IN_PROGRESS}},
                },
            )
        except AwsError:
            pass  # the claim expires by itself after in_progress_seconds
