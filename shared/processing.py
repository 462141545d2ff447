"""SQS batch processing: idempotency, delivery, and the outcome of every message by error type.

For each record of a Lambda SQS batch:
- success, or a duplicate of an effect already made -> not reported (Lambda deletes it);
- ``TransientError`` (and any unexpected exception) -> its visibility timeout is set to the
  backoff delay (full jitter, at least ``Retry-After``) and it is reported as a batch item
  failure; at the last allowed receive it is dead-lettered with reason ``retries_exhausted``;
- ``PermanentError`` -> sent to the DLQ with its reason, entity ids and attempt count, then not
  reported. If that send fails, it is reported instead: a message is never dropped.
One poison message never holds back the others: each record is handled on its own.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.aws import AwsError, AwsJsonClient, SecretCache, dynamodb_client, item_to_ddb, sqs_client
from shared.declaration import Integration, RetryPolicy
from shared.envelope import CARRIED_ATTRIBUTES, Envelope
from shared.errors import JunctionError, PermanentError, StoreUnavailable, TransientError
from shared.idempotency import IdempotencyStore, target_key
from shared.observability import emit_metrics, get_logger, log

_logger = get_logger("junction.processor")
TRACE_TTL_DAYS = 90
SAFETY_MARGIN_MS = 5_000  # stop taking new records when less than this remains of the invocation


@dataclass(frozen=True)
class Prepared:
    """An event mapped and validated, ready to deliver."""

    business_key: str  # e.g. "order:820982911946154508"
    entity_id: str  # e.g. "shopify-order:820982911946154508" (trace key)
    fingerprint: str  # hash of the content that matters, for payload validation
    entity_ids: dict[str, str]
    data: Any


@dataclass(frozen=True)
class Attempt:
    """What a delivery needs to know about the attempt it is."""

    idempotency_key: str  # send to the target as Idempotency-Key
    receive_count: int
    maybe_delivered: bool  # an earlier attempt may have reached the target: look before creating


class Flow(Protocol):
    """The integration-specific part: map an envelope, then deliver it."""

    def prepare(self, envelope: Envelope) -> Prepared: ...

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]: ...


def backoff_seconds(policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random) -> int:
    """Full-jitter exponential backoff, never shorter than the target's ``Retry-After``."""
    ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** max(0, attempt - 1))
    delay = rng.uniform(policy.base_delay_seconds, max(policy.base_delay_seconds, ceiling))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return int(min(max(delay, 1), 43_200))


@dataclass
class RecordResult:
    message_id: str
    outcome: str  # delivered | duplicate | dead_lettered | retry_scheduled | deferred
    failed: bool
    reason: str | None = None
    entity_ids: dict[str, str] = field(default_factory=dict)


class BatchProcessor:
    def __init__(
        self,
        integration: Integration,
        flow: Flow,
        *,
        sqs: AwsJsonClient,
        ddb: AwsJsonClient,
        queue_url: str,
        dlq_url: str,
        idempotency_table: str,
        state_table: str,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.integration = integration
        self.flow = flow
        self.sqs = sqs
        self.ddb = ddb
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.state_table = state_table
        self.clock = clock
        self.rng = rng or random.Random()
        self._local = threading.local()  # one handler may serve concurrent invocations locally
        self.store = IdempotencyStore(
            ddb,
            idempotency_table,
            ttl_days=integration.idempotency_ttl_days,
            in_progress_seconds=integration.processor.timeout_seconds,
            clock=clock,
        )

    # -- the batch -------------------------------------------------------------------------
    def process(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        results: list[RecordResult] = []
        self._local.history = history = []  # trace items of this invocation, written together at the end
        try:
            for record in event.get("Records") or []:
                remaining = getattr(context, "get_remaining_time_in_millis", None)
                if remaining is not None and remaining() < SAFETY_MARGIN_MS:
                    results.append(RecordResult(record["messageId"], "deferred", failed=True))
                    continue
                results.append(self.process_record(record))
            if any(r.outcome == "delivered" for r in results):
                history.append(
                    {"pk": f"status#{self.integration.name}", "sk": "last_success", "at": _iso(self.clock())}
                )
        finally:
            self._local.history = None
            self._write_history(history)
        counts: dict[str, float] = {}
        for r in results:
            counts[f"Message_{r.outcome}"] = counts.get(f"Message_{r.outcome}", 0) + 1
        if counts:
            emit_metrics(self.integration.name, counts)
        return {"batchItemFailures": [{"itemIdentifier": r.message_id} for r in results if r.failed]}

    # -- one record ------------------------------------------------------------------------
    def process_record(self, record: dict[str, Any]) -> RecordResult:
        message_id = str(record.get("messageId"))
        attempts = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        envelope: Envelope | None = None
        prepared: Prepared | None = None
        started = time.perf_counter()
        try:
            envelope = Envelope.from_json(str(record.get("body", "")))
            prepared = self.flow.prepare(envelope)
            key = self.record_key(prepared, envelope)
            claim = self.store.begin(key, prepared.fingerprint, prepared.entity_ids)
            if claim.is_duplicate:
                previous = (claim.duplicate_of or {}).get("result") or {}
                self._trace(envelope, prepared, "duplicate", attempts, target_ids=previous)
                return self._done(message_id, "duplicate", prepared, started)
            try:
                target_ids = self.flow.deliver(
                    prepared,
                    Attempt(target_key(key), attempts, maybe_delivered=attempts > 1 or claim.taken_over),
                )
            except BaseException:
                self.store.release(key)
                raise
            try:
                self.store.complete(key, target_ids, envelope.to_json())
            except AwsError as exc:  # delivered, not recorded: the retry finds the order by reference
                raise StoreUnavailable(f"could not record completion: {exc.code}") from exc
            self._trace(envelope, prepared, "delivered", attempts, target_ids=target_ids)
            return self._done(message_id, "delivered", prepared, started, target_ids=target_ids)
        except PermanentError as err:
            return self._dead_letter(record, err, err.reason, attempts, envelope, prepared)
        except TransientError as err:
            return self._retry(record, err, err.reason, attempts, envelope, prepared, err.retry_after)
        except Exception as err:  # a bug: retry with backoff, then dead-letter with its type
            log(_logger, logging.ERROR, "unexpected error", message_id=message_id, error=type(err).__name__)
            wrapped = JunctionError(f"unexpected {type(err).__name__}: {err}"[:1000])
            return self._retry(record, wrapped, "unexpected_error", attempts, envelope, prepared, None)

    def _done(
        self,
        message_id: str,
        outcome: str,
        prepared: Prepared,
        started: float,
        target_ids: dict[str, str] | None = None,
    ) -> RecordResult:
        log(
            _logger,
            logging.INFO,
            f"message {outcome}",
            integration=self.integration.name,
            message_id=message_id,
            **prepared.entity_ids,
            **(target_ids or {}),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return RecordResult(message_id, outcome, failed=False, entity_ids=prepared.entity_ids)

    def _ids(self, err: JunctionError, envelope: Envelope | None, prepared: Prepared | None) -> dict[str, str]:
        ids = dict(prepared.entity_ids) if prepared else {}
        ids.update(err.entity_ids)
        if envelope:
            ids.setdefault("delivery_id", envelope.delivery_id)
        return ids

    def _retry(
        self,
        record: dict[str, Any],
        err: JunctionError,
        reason: str,
        attempts: int,
        envelope: Envelope | None,
        prepared: Prepared | None,
        retry_after: float | None,
    ) -> RecordResult:
        message_id = str(record.get("messageId"))
        if attempts >= self.integration.queue.max_receive_count:
            exhausted = JunctionError(f"retries exhausted after {attempts} attempts; last error: {err.message}"[:1000])
            exhausted.entity_ids = err.entity_ids
            return self._dead_letter(record, exhausted, "retries_exhausted", attempts, envelope, prepared, last=reason)
        delay = backoff_seconds(self.integration.retry, attempts, retry_after, self.rng)
        try:
            self.sqs.call(
                "ChangeMessageVisibility",
                {"QueueUrl": self.queue_url, "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": delay},
            )
        except (AwsError, KeyError):
            delay = -1  # the queue's visibility timeout applies instead
        ids = self._ids(err, envelope, prepared)
        log(
            _logger,
            logging.WARNING,
            "message retry scheduled",
            integration=self.integration.name,
            message_id=message_id,
            reason=reason,
            error=err.message[:300],
            attempts=attempts,
            delay_s=delay,
            **ids,
        )
        if envelope and prepared:
            self._trace(envelope, prepared, "retry_scheduled", attempts, reason=reason)
        return RecordResult(message_id, "retry_scheduled", failed=True, reason=reason, entity_ids=ids)

    def _dead_letter(
        self,
        record: dict[str, Any],
        err: JunctionError,
        reason: str,
        attempts: int,
        envelope: Envelope | None,
        prepared: Prepared | None,
        last: str | None = None,
    ) -> RecordResult:
        message_id = str(record.get("messageId"))
        ids = self._ids(err, envelope, prepared)
        attributes = {
            "junction-reason": {"DataType": "String", "StringValue": reason},
            "junction-error": {"DataType": "String", "StringValue": (err.message or reason)[:1000]},
            "junction-entity-ids": {"DataType": "String", "StringValue": json.dumps(ids, sort_keys=True)},
            "junction-attempts": {"DataType": "Number", "StringValue": str(attempts)},
            "junction-integration": {"DataType": "String", "StringValue": self.integration.name},
            "junction-failed-at": {"DataType": "String", "StringValue": _iso(self.clock())},
        }
        if last:
            attributes["junction-last-reason"] = {"DataType": "String", "StringValue": last}
        for name in CARRIED_ATTRIBUTES:
            value = ((record.get("messageAttributes") or {}).get(name) or {}).get("stringValue")
            if value:
                attributes[name] = {"DataType": "String", "StringValue": value}
        params: dict[str, Any] = {
            "QueueUrl": self.dlq_url,
            "MessageBody": str(record.get("body", "")),
            "MessageAttributes": attributes,
        }
        if self.integration.queue.fifo:
            params["MessageGroupId"] = str((record.get("attributes") or {}).get("MessageGroupId") or message_id)
            params["MessageDeduplicationId"] = message_id
        try:
            self.sqs.call("SendMessage", params)
        except AwsError as exc:
            log(_logger, logging.ERROR, "dead-letter send failed", message_id=message_id, error=exc.code)
            return RecordResult(message_id, "retry_scheduled", failed=True, reason=reason, entity_ids=ids)
        log(
            _logger,
            logging.ERROR,
            "message dead-lettered",
            integration=self.integration.name,
            message_id=message_id,
            reason=reason,
            error=err.message[:300],
            attempts=attempts,
            **ids,
        )
        if envelope and prepared:
            self._trace(envelope, prepared, "dead_lettered", attempts, reason=reason)
        return RecordResult(message_id, "dead_lettered", failed=False, reason=reason, entity_ids=ids)

    def record_key(self, prepared: Prepared, envelope: Envelope) -> str:
        """The idempotency record key: one business effect per integration (per replay, if any)."""
        key = f"{self.integration.name}#{prepared.business_key}"
        return key + f"#replay:{envelope.replay_id}" if envelope.replay_id else key

    # -- history ---------------------------------------------------------------------------
    def _trace(
        self,
        envelope: Envelope,
        prepared: Prepared,
        outcome: str,
        attempts: int,
        *,
        target_ids: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        now = self.clock()
        item: dict[str, Any] = {
            "pk": f"trace#{prepared.entity_id}",
            # A random suffix keeps two hops of the same millisecond apart.
            "sk": f"{_iso(now)}#{self.integration.name}#{outcome}#{self.rng.getrandbits(32):08x}",
            "integration": self.integration.name,
            "outcome": outcome,
            "delivery_id": envelope.delivery_id,
            "idempotency_key": envelope.idempotency_key,
            "attempts": attempts,
            "latency_ms": _latency_ms(envelope.received_at, now),
            "entity_ids": prepared.entity_ids,
            "expires_at": int(now + TRACE_TTL_DAYS * 86_400),
            # The idempotency record (which keeps the event for replay) of this business effect.
            "record_key": self.record_key(prepared, envelope),
        }
        if target_ids:
            item["target_ids"] = {k: str(v) for k, v in target_ids.items()}
        if reason:
            item["reason"] = reason
        if envelope.replay_id:
            item["replay_id"] = envelope.replay_id
        history = getattr(self._local, "history", None)
        if history is not None:
            history.append(item)
        else:
            self._write_history([item])

    def _write_history(self, items: list[dict[str, Any]]) -> None:
        """Trace and status items, 25 to a BatchWriteItem. History is best effort: a failure is
        logged and never fails a message whose business effect has happened."""
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item_to_ddb(i)}} for i in items[start : start + 25]]
            for _ in range(3):
                try:
                    result = self.ddb.call("BatchWriteItem", {"RequestItems": {self.state_table: requests}})
                except AwsError as exc:
                    log(_logger, logging.WARNING, "history write failed", error=exc.code, items=len(requests))
                    break
                requests = (result.get("UnprocessedItems") or {}).get(self.state_table) or []
                if not requests:
                    break


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _latency_ms(received_at: str, now: float) -> int | None:
    try:
        return int((now - datetime.fromisoformat(received_at).timestamp()) * 1000)
    except ValueError:
        return None


def make_sqs_handler(
    integration: Integration,
    flow_factory: Callable[[SecretCache, str], Flow],
    environ: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler. Clients and the flow are built on the first call, from the environment;
    ``flow_factory(secrets, stage)`` builds the integration's flow."""
    holder: list[BatchProcessor] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not holder:
            env = os.environ if environ is None else environ
            stage = env["JUNCTION_STAGE"]
            holder.append(
                BatchProcessor(
                    integration,
                    flow_factory(SecretCache(), stage),
                    sqs=sqs_client(),
                    ddb=dynamodb_client(),
                    queue_url=env["JUNCTION_QUEUE_URL"],
                    dlq_url=env["JUNCTION_DLQ_URL"],
                    idempotency_table=env["JUNCTION_IDEMPOTENCY_TABLE"],
                    state_table=env["JUNCTION_STATE_TABLE"],
                )
            )
        return holder[0].process(event, context)

    return handler
