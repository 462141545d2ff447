"""The idempotent consumer's records on DynamoDB, keyed on the business key of an effect.

A record goes through three states:

- ``IN_PROGRESS``: an attempt holds the key until ``in_progress_until`` (the end of its
  invocation). Another delivery of the key meanwhile waits (``InProgressElsewhere``).
- ``ATTEMPTED``: an attempt ended without a confirmed outcome. It may have reached the target
  (a timeout after the target committed, a crash, a lost answer), so the record is never
  deleted: every later attempt, however its message arrived (a retry, a second delivery id, a
  redrive), takes it over knowing that the effect may already exist, and looks before it creates.
- ``COMPLETED``: the effect exists; its result is kept, with the event for an operator's replay.
  Another delivery of the key is a duplicate and does nothing.

The same key with a different payload fingerprint is a conflict in every state. An attempt owns
its claim through a random token, so a slow attempt whose claim lapsed cannot overwrite the
state written by the attempt that took over.

Powertools' idempotency utility is not used here: it deletes its record when the function
raises, which forgets an attempt that may have reached the target (docs/decisions.md, and
tests/component/test_powertools_idempotency.py shows it).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.aws import item_from_ddb
from shared.errors import IdempotencyConflict, InProgressElsewhere, StoreUnavailable

IN_PROGRESS = "IN_PROGRESS"
ATTEMPTED = "ATTEMPTED"
COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Claim:
    """The result of trying to start an effect."""

    key: str
    token: str = ""
    fingerprint: str = ""
    attempts: int = 1
    claimed_at: float = 0.0
    duplicate_of: dict[str, Any] | None = None  # the COMPLETED record when this is a duplicate
    # An earlier attempt exists whose outcome is unknown: the effect may already exist.
    maybe_delivered: bool = False
    # The latest moment an earlier attempt may have reached the target (epoch seconds), if known:
    # a lookup that finds nothing is trusted only once the target has had time to commit it.
    reached_at: float | None = None

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


def target_key(record_key: str) -> str:
    """The ``Idempotency-Key`` sent to a target for a record key: stable, opaque, header-safe."""
    return hashlib.sha256(record_key.encode()).hexdigest()[:40]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class IdempotencyStore:
    def __init__(
        self,
        ddb: Any,
        table: str,
        *,
        ttl_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.ttl_seconds = ttl_days * 86_400
        self.clock = clock

    def _call(self, action: str, key: str, **params: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self.ddb, action)(TableName=self.table, **params)
            return result
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise
            raise StoreUnavailable(f"idempotency store: {action} {_code(exc)}", details={"key": key}) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"idempotency store: {action} {type(exc).__name__}", details={"key": key}) from exc

    def begin(self, key: str, fingerprint: str, entity_ids: dict[str, str], *, hold_seconds: float) -> Claim:
        """Claim ``key`` for an attempt that may run for ``hold_seconds``."""
        now = self.clock()
        token = secrets.token_hex(8)
        try:
            result = self._call(
                "update_item",
                key,
                Key={"id": {"S": key}},
                UpdateExpression=(
                    "SET #s = :p, fingerprint = :f, in_progress_until = :until, claimed_at = :now, "
                    "claim_token = :token, expires_at = :exp, attempts = if_not_exists(attempts, :zero) + :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(id) OR "
                    "(fingerprint = :f AND (#s = :a OR (#s = :p AND in_progress_until < :now)))"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":p": {"S": IN_PROGRESS},
                    ":a": {"S": ATTEMPTED},
                    ":f": {"S": fingerprint},
                    ":until": {"N": str(int(now + hold_seconds) + 1)},
                    ":now": {"N": str(int(now))},
                    ":token": {"S": token},
                    ":exp": {"N": str(int(now + self.ttl_seconds))},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError:  # the condition failed: a record exists that we may not take
            existing = self.get(key)
            if existing is None:  # expired by TTL between our two calls: try once more
                return self.begin(key, fingerprint, entity_ids, hold_seconds=hold_seconds)
            if existing.get("fingerprint") != fingerprint:
                raise IdempotencyConflict(
                    "the same idempotency key arrived with a different payload",
                    entity_ids=entity_ids,
                    details={"key": key, "status": existing.get("status")},
                ) from None
            if existing.get("status") == COMPLETED:
                return Claim(key, duplicate_of=existing)
            raise InProgressElsewhere(
                "another attempt holds this key",
                retry_after=max(1.0, float(existing.get("in_progress_until", now)) - now),
                entity_ids=entity_ids,
            ) from None
        old = item_from_ddb(result["Attributes"]) if result.get("Attributes") else None
        if old is None:
            return Claim(key, token=token, fingerprint=fingerprint, claimed_at=float(int(now)))
        reached = old.get("reached_at")
        if old.get("status") == IN_PROGRESS:  # that attempt died mid-way: it may have reached the target
            reached = max(float(reached or 0), float(old.get("claimed_at") or now))
        return Claim(
            key,
            token=token,
            fingerprint=fingerprint,
            claimed_at=float(int(now)),
            attempts=int(old.get("attempts") or 0) + 1,
            maybe_delivered=True,
            reached_at=float(reached) if reached else None,
        )

    def get(self, key: str) -> dict[str, Any] | None:
        result = self._call("get_item", key, Key={"id": {"S": key}}, ConsistentRead=True)
        return item_from_ddb(result["Item"]) if result.get("Item") else None

    def complete_many(self, done: list[tuple[Claim, dict[str, str], str]]) -> list[Claim]:
        """Mark effects done, keeping each result and event (for an operator's replay), 25 to a
        BatchWriteItem: one call per batch of messages instead of one per message. Returns the
        claims that could not be recorded. Unconditional: the effect exists, whoever holds the
        claim now; a record left IN_PROGRESS lapses and the next attempt looks the effect up."""
        failed: list[Claim] = []
        now = int(self.clock())
        for start in range(0, len(done), 25):
            chunk = done[start : start + 25]
            by_key = {claim.key: claim for claim, _, _ in chunk}
            requests = [
                {"PutRequest": {"Item": self._completed_item(claim, result, envelope_json, now)}}
                for claim, result, envelope_json in chunk
            ]
            for _ in range(3):
                try:
                    answer = self.ddb.batch_write_item(RequestItems={self.table: requests})
                except (ClientError, BotoCoreError):
                    break
                requests = (answer.get("UnprocessedItems") or {}).get(self.table) or []
                if not requests:
                    break
            failed.extend(by_key[r["PutRequest"]["Item"]["id"]["S"]] for r in requests)
        return failed

    def _completed_item(self, claim: Claim, result: dict[str, str], envelope_json: str, now: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": {"S": claim.key},
            "status": {"S": COMPLETED},
            "fingerprint": {"S": claim.fingerprint},
            "result": {"M": {k: {"S": v} for k, v in result.items()}},
            # Compressed: a record is billed a write unit per started KB, and an order's JSON
            # compresses about 3.5 to 1 (a 6.6 KB Shopify order: 7 write units as text, 2 here).
            EVENT_ATTRIBUTE: {"B": pack_event(envelope_json)},
            "claimed_at": {"N": str(int(claim.claimed_at))},
            "completed_at": {"N": str(now)},
            "attempts": {"N": str(claim.attempts)},
            "expires_at": {"N": str(int(now + self.ttl_seconds))},
        }
        if claim.reached_at is not None:
            item["reached_at"] = {"N": f"{claim.reached_at:.3f}"}
        return item

    def attempted(self, claim: Claim, reason: str, reached_at: float | None) -> None:
        """Record that our attempt ended without a confirmed outcome; never deletes the record.

        ``reached_at``: the latest moment this or an earlier attempt may have reached the target.

        Only our own claim is changed: if it lapsed and another attempt took the key over, or
        the effect completed meanwhile, that state stands. A failure here is harmless: the
        IN_PROGRESS claim lapses by itself and the next attempt takes it over the same way."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"id": {"S": claim.key}},
                UpdateExpression=(
                    "SET #s = :a, attempted_at = :t, last_reason = :r"
                    + (", reached_at = :reached" if reached_at is not None else "")
                    + " REMOVE in_progress_until, claim_token"
                ),
                ConditionExpression="#s = :p AND claim_token = :token",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":a": {"S": ATTEMPTED},
                    ":p": {"S": IN_PROGRESS},
                    ":t": {"N": str(int(self.clock()))},
                    ":r": {"S": reason[:100]},
                    ":token": {"S": claim.token},
                    **({":reached": {"N": f"{reached_at:.3f}"}} if reached_at is not None else {}),
                },
            )
        except (ClientError, BotoCoreError):
            pass


EVENT_ATTRIBUTE = "event_z"  # the kept event, zlib-compressed JSON (``pack_event``)


def pack_event(envelope_json: str) -> bytes:
    return zlib.compress(envelope_json.encode("utf-8"), 6)


def kept_event_json(item: Mapping[str, Any]) -> str | None:
    """The event a completed record kept for replay, as JSON: from ``event_z`` (compressed), or
    from ``envelope`` (text, as records written before compression keep it); None if neither."""
    packed = item.get(EVENT_ATTRIBUTE)
    if isinstance(packed, bytes | bytearray):
        try:
            return zlib.decompress(packed).decode("utf-8")
        except (zlib.error, UnicodeDecodeError):
            return None
    text = item.get("envelope")
    return str(text) if text else None
