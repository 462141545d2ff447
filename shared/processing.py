"""The SQS consumer of every integration: idempotent consumer, redelivery policy, dead letter
channel and circuit breaker, around one integration-specific ``Flow``.

For each record of a Lambda SQS batch (Powertools' batch utility runs the loop and builds the
partial batch response):

- success, or a duplicate of an effect already made: not reported (Lambda deletes it);
- ``TransientError`` (and any unexpected exception): redelivered later with full-jitter
  backoff, at least ``Retry-After``, through the message's visibility timeout, for as long as
  the integration's retry horizon allows, measured in time since the first attempt and never in
  SQS receive counts. A message whose receive count nears the queue's ``maxReceiveCount`` is sent
  again as a fresh message that carries its retry start, so SQS's own redrive (the safety net
  for crashing functions) never takes a message that is merely waiting;
- while the target's circuit breaker is open, messages wait without calling the target;
- ``PermanentError`` or an exhausted horizon: sent to the DLQ with its reason, entity ids and
  attempt count, then deleted at once (a function timeout re-runs the batch; it must not
  dead-letter the same message twice). If that send fails, the message is kept: never dropped.
- Records that would start too close to the invocation's deadline are put off (reported as
  failures, so Lambda keeps them); the HTTP calls of the records that run are bounded by the
  time left (``Attempt.timeout``).

An attempt that may have reached the target is never forgotten (shared/idempotency.py): every
later delivery of the same business effect looks before it creates, and trusts an empty lookup
only after the target has had ``retry.settle_seconds`` to commit a slow earlier attempt.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor as PowertoolsBatchProcessor,
)
from aws_lambda_powertools.utilities.batch import (
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared import claim_check, state_keys
from shared.aws import item_to_ddb
from shared.breaker import CLOSED, BreakerView, CircuitBreaker
from shared.declaration import FOLLOWER_QUEUES_ENV, Integration, RetryPolicy, Target
from shared.envelope import CARRIED_ATTRIBUTES, Envelope, message_attributes
from shared.errors import (
    AwaitingPrerequisite,
    CredentialsRejected,
    DeadlineReached,
    IdempotencyConflict,
    JunctionError,
    OutcomeUnsettled,
    PermanentError,
    RateLimited,
    SourceItemRejected,
    StoreUnavailable,
    TargetUnavailable,
    TransientError,
    error_class,
)
from shared.idempotency import Claim, IdempotencyStore, target_key
from shared.parameters import Secrets

logger = Logger(service="junction-processor")
# Powertools writes its own JSON lines; the Lambda runtime's root handler would print each twice.
logging.getLogger(logger.name).propagate = False
TRACE_TTL_DAYS = 90
# Time kept back at the end of an invocation for recording outcomes (idempotency record, DLQ
# send, visibility change, history): the AWS clients' timeouts and retries fit in it.
RESERVE_SECONDS = 6.0
# A record is started only if this much of the invocation remains.
MIN_START_SECONDS = RESERVE_SECONDS + 4.0
MAX_VISIBILITY = 43_200  # SQS's limit for a visibility timeout (12 h)
MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds (15 min)
# Client-side parameter validation off: the services validate every request themselves, and
# botocore's walk over each batch write's items cost 0.5 ms of CPU per message (make bench-local,
# processor CPU per event 4.2 -> 3.7 ms).
AWS_CONFIG = Config(
    connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"}, parameter_validation=False
)

# The topic of a message a poller makes of a source item it could not read (shared/polling.py).
REJECTED_TOPIC = "junction.rejected"

# Message attributes the redelivery policy writes on a message it sends again.
RETRY_SINCE = "junction-retry-since"  # epoch seconds of the first attempt; the horizon counts from it
PRIOR_RECEIVES = "junction-prior-receives"  # receives before this copy was sent (backoff grows on)
NOT_BEFORE = "junction-not-before"  # epoch seconds; a delay longer than SQS's DelaySeconds allows


@dataclass(frozen=True)
class Prepared:
    """An event mapped and validated, ready to deliver."""

    business_key: str  # e.g. "order:820982911946154508"
    entity_id: str  # e.g. "shopify-order:820982911946154508" (trace key)
    fingerprint: str  # hash of the content that matters, for payload validation
    entity_ids: dict[str, str]
    data: Any


@dataclass(frozen=True)
class RejectedItem:
    key: str
    payload: dict[str, Any]
    reason: str  # machine-readable: "unmapped_sku", "offer_refused"
    error: str


@dataclass
class Attempt:
    """What a delivery needs to know about the attempt it is."""

    idempotency_key: str  # send to the target as Idempotency-Key (most targets ignore it)
    number: int  # 1 for the first attempt; grows with every redelivery
    maybe_delivered: bool  # an earlier attempt may have reached the target: look before creating
    reached_at: float | None = None  # when an earlier attempt may last have reached the target
    settle_seconds: float = 0.0
    deadline: float = float("inf")  # time.monotonic() by which the delivery must have returned
    clock: Callable[[], float] = time.time
    creating_at: float | None = None  # set by ``creating()``
    rejected: list[RejectedItem] = field(default_factory=list)  # set by ``reject()``

    def reject(self, key: str, payload: dict[str, Any], reason: str, error: str) -> None:
        """One item of a message that the target cannot take (an unmapped SKU, an offer the
        marketplace refused): it goes to the DLQ on its own, as a message of just that item
        (``payload``), with its reason; the rest of the message is delivered. Redriven once the
        cause is fixed, it is delivered like any other."""
        self.rejected.append(RejectedItem(key, payload, reason, error))

    def creating(self) -> None:
        """Call right before the call that creates the effect at the target (the one a lost answer
        would make ambiguous). From here on, a failure means the effect may exist."""
        self.creating_at = self.clock()

    def require_settled(self) -> None:
        """Call after a lookup found nothing, before creating: an earlier attempt that may still
        be committing at a slow target must first have had ``settle_seconds``."""
        if not self.maybe_delivered or self.reached_at is None:
            return
        wait = self.reached_at + self.settle_seconds - self.clock()
        if wait > 0:
            raise OutcomeUnsettled(
                "an earlier attempt may still be committing at the target; looking again later",
                retry_after=wait,
            )

    def timeout(self, wanted: float) -> float:
        """The timeout for one call to the target: ``wanted``, cut to the time left."""
        left = self.deadline - time.monotonic()
        if left < 1.0:
            raise DeadlineReached("no time left in this invocation for another call to the target")
        return min(wanted, left)


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
    return int(min(max(delay, 1), MAX_VISIBILITY))


@dataclass
class RecordResult:
    message_id: str
    outcome: str  # delivered | duplicate | dead_lettered | retry_scheduled | waiting | deferred
    failed: bool  # reported as a batch item failure (Lambda keeps the message)
    error_class: str | None = None  # a dead letter's: "business" or "system" (``error_class``)


class _Reported(Exception):
    """Raised to Powertools' batch loop for a record that must stay on the queue."""


@dataclass(frozen=True)
class _Completion:
    """A delivered effect whose record is written at the end of the batch."""

    claim: Claim
    target_ids: dict[str, str]
    envelope: Envelope
    prepared: Prepared
    record: dict[str, Any]
    attempts: int

    def recorded(self) -> tuple[Claim, dict[str, str], str]:
        return self.claim, self.target_ids, self.envelope.to_json()


@dataclass
class _Invocation:
    """State of one invocation: its deadline, the breaker as last seen, what to record."""

    deadline: float
    breaker: BreakerView
    probing: bool = False
    results: list[RecordResult] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    breaker_opened: int = 0
    rejected_items: int = 0
    rate_limited: int = 0  # attempts the target answered with a 429 (or its own throttling)
    target_ms: list[float] = field(default_factory=list)  # each call of the flow's deliver
    completions: list[_Completion] = field(default_factory=list)  # recorded at the end of the batch

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()


def _attribute(record: Mapping[str, Any], name: str) -> str | None:
    value = ((record.get("messageAttributes") or {}).get(name) or {}).get("stringValue")
    return str(value) if value is not None else None


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class BatchProcessor:
    def __init__(
        self,
        integration: Integration,
        target: Target,
        flow: Flow,
        *,
        sqs: Any,
        ddb: Any,
        queue_url: str,
        dlq_url: str,
        idempotency_table: str,
        state_table: str,
        s3: Any = None,
        payload_bucket: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        follower_queue_urls: tuple[str, ...] = (),
    ) -> None:
        self.integration = integration
        self.target = target
        self.flow = flow
        self.sqs = sqs
        self.ddb = ddb
        self.s3 = s3
        self.payload_bucket = payload_bucket
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        # The queues of the targets after this one (``Target.after``): each delivery is sent on.
        self.follower_queue_urls = follower_queue_urls
        self.state_table = state_table
        self.clock = clock
        self.rng = rng or random.Random()
        self.store = IdempotencyStore(ddb, idempotency_table, ttl_days=target.idempotency_ttl_days, clock=clock)
        self.breaker = CircuitBreaker(
            ddb,
            state_table,
            integration.name,
            target.name,
            target.breaker,
            probe_seconds=target.processor.timeout_seconds,
            clock=clock,
        )

    @property
    def hop(self) -> str:
        """How trace items name this processor: ``<integration>/<target>``."""
        return f"{self.integration.name}/{self.target.name}"

    # -- the batch -------------------------------------------------------------------------
    def process(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        if not event.get("Records"):
            return {"batchItemFailures": []}
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        seconds = remaining() / 1000 if remaining else float(self.target.processor.timeout_seconds)
        inv = _Invocation(deadline=time.monotonic() + seconds, breaker=self.breaker.read())
        processor: PowertoolsBatchProcessor | SqsFifoPartialProcessor
        if self.target.queue.fifo:
            processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        else:
            processor = PowertoolsBatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)

        def record_handler(record: SQSRecord) -> None:
            result = self.process_record(record.raw_event, inv)
            inv.results.append(result)
            if result.failed:
                raise _Reported(result.outcome)

        try:
            answer = process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
            failures = [{"itemIdentifier": str(f["itemIdentifier"])} for f in answer.get("batchItemFailures", [])]
            response: dict[str, Any] = {"batchItemFailures": failures + self._complete(inv)}
        finally:
            if any(r.outcome == "delivered" for r in inv.results):
                pk, sk = state_keys.last_success(self.integration.name, self.target.name)
                inv.history.append({"pk": pk, "sk": sk, "at": _iso(self.clock())})
            self._write_history(inv.history)
            self._emit_metrics(inv)
        return response

    def _complete(self, inv: _Invocation) -> list[dict[str, str]]:
        """Record the batch's delivered effects as COMPLETED, in one write. A message whose record
        could not be written is reported as failed: it comes back, takes over the claim as a
        possible effect, finds the order by its reference and records it then."""
        if not inv.completions:
            return []
        failed = {c.key for c in self.store.complete_many([c.recorded() for c in inv.completions])}
        out: list[dict[str, str]] = []
        for done in inv.completions:
            if done.claim.key not in failed:
                self._trace(inv, done.envelope, done.prepared, "delivered", done.attempts, target_ids=done.target_ids)
                continue
            self.store.attempted(done.claim, "completion_not_recorded", self.clock())
            message_id = str(done.record.get("messageId"))
            logger.warning("delivered, but its completion was not recorded", extra={"message_id": message_id})
            self._trace(inv, done.envelope, done.prepared, "retry_scheduled", done.attempts, reason="store_unavailable")
            out.append({"itemIdentifier": message_id})
        return out

    def _emit_metrics(self, inv: _Invocation) -> None:
        counts: dict[str, int] = {}
        for r in inv.results:
            counts[f"Message_{r.outcome}"] = counts.get(f"Message_{r.outcome}", 0) + 1
            if r.error_class:
                name = f"Message_{r.outcome}_{r.error_class}"
                counts[name] = counts.get(name, 0) + 1
        if inv.breaker_opened:
            counts["Breaker_opened"] = inv.breaker_opened
        if inv.rejected_items:
            counts["Message_rejected_item"] = inv.rejected_items
        if inv.rate_limited:
            counts["Message_rate_limited"] = inv.rate_limited
        # Items a version gate refused (older than what the target already has), as flows report them.
        stale = sum(_number(c.target_ids.get("stale"), 0) for c in inv.completions)
        if stale:
            counts["Item_stale"] = int(stale)
        if not counts and not inv.target_ms:
            return
        metrics = EphemeralMetrics(namespace="Junction")
        metrics.add_dimension(name="Integration", value=self.integration.name)
        metrics.add_dimension(name="Target", value=self.target.name)
        for name, value in counts.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        # The dashboards' p50/p99 of the target: each deliver call, as it took.
        for ms in inv.target_ms:
            metrics.add_metric(name="Target_latency_ms", unit=MetricUnit.Milliseconds, value=round(ms, 1))
        # The breaker as this batch left it: 1 open (or probing), 0 closed.
        metrics.add_metric(name="Breaker_open", unit=MetricUnit.Count, value=int(inv.breaker.state != CLOSED))
        metrics.flush_metrics()

    # -- one record ------------------------------------------------------------------------
    def process_record(self, record: dict[str, Any], inv: _Invocation) -> RecordResult:
        message_id = str(record.get("messageId"))
        receives = int(_number((record.get("attributes") or {}).get("ApproximateReceiveCount"), 1))
        attempt_number = receives + int(_number(_attribute(record, PRIOR_RECEIVES), 0))
        envelope: Envelope | None = None
        prepared: Prepared | None = None
        started = time.perf_counter()
        now = self.clock()
        not_before = _number(_attribute(record, NOT_BEFORE), 0)
        if not_before > now + 1:
            return self._redeliver(record, inv, int(not_before - now), "waiting")
        if inv.seconds_left() < MIN_START_SECONDS:
            return self._redeliver(record, inv, 1, "deferred")
        try:
            envelope = Envelope.from_json(str(record.get("body", "")))
            if envelope.claim_check is not None:
                envelope = claim_check.resolve(envelope, self._s3())
            if envelope.topic == REJECTED_TOPIC:
                raise _rejected_at_source(envelope)
            prepared = self.flow.prepare(envelope)
            logger.thread_safe_append_keys(correlation_id=envelope.delivery_id, **prepared.entity_ids)
            wait = self._breaker_wait(inv)
            if wait > 0:
                return self._redeliver(record, inv, int(wait * self.rng.uniform(1.0, 1.2)) + 1, "waiting")
            key = self.record_key(prepared, envelope)
            earlier = next((c for c in inv.completions if c.claim.key == key), None)
            if earlier is not None:  # made earlier in this batch; its record is written at the end
                if earlier.claim.fingerprint != prepared.fingerprint:
                    raise IdempotencyConflict(
                        "the same idempotency key arrived with a different payload", entity_ids=prepared.entity_ids
                    )
                self._trace(inv, envelope, prepared, "duplicate", attempt_number, target_ids=earlier.target_ids)
                return self._done(message_id, "duplicate", prepared, started)
            claim = self.store.begin(
                key, prepared.fingerprint, prepared.entity_ids, hold_seconds=max(1.0, inv.seconds_left())
            )
            if claim.is_duplicate:
                previous = (claim.duplicate_of or {}).get("result") or {}
                self._trace(inv, envelope, prepared, "duplicate", attempt_number, target_ids=previous)
                return self._done(message_id, "duplicate", prepared, started)
            target_ids, rejected = self._deliver(inv, claim, prepared, attempt_number, envelope)
            if rejected:
                self._dead_letter_items(record, inv, envelope, rejected, attempt_number)
            # Recorded (and traced) with the batch's other completions, in one write: _complete.
            inv.completions.append(_Completion(claim, target_ids, envelope, prepared, record, attempt_number))
            return self._done(message_id, "delivered", prepared, started, target_ids=target_ids)
        except PermanentError as err:
            return self._dead_letter(record, inv, err, err.reason, attempt_number, envelope, prepared)
        except TransientError as err:
            return self._retry(record, inv, err, err.reason, attempt_number, envelope, prepared, err.retry_after)
        except Exception as err:  # a bug: retry with backoff, then dead-letter with its type
            # The traceback's frames, not the exception's text: that may quote payload data.
            logger.error(
                "unexpected error",
                extra={
                    "message_id": message_id,
                    "error": type(err).__name__,
                    "traceback": "".join(traceback.format_tb(err.__traceback__)),
                },
            )
            wrapped = JunctionError(f"unexpected {type(err).__name__}"[:1000])
            return self._retry(record, inv, wrapped, "unexpected_error", attempt_number, envelope, prepared, None)
        finally:
            logger.thread_safe_clear_keys()

    def _breaker_wait(self, inv: _Invocation) -> float:
        """Seconds this message must wait for the breaker; 0 to go ahead (maybe as the probe)."""
        view = inv.breaker
        if view.state == CLOSED or inv.probing:
            return 0.0
        wait = view.wait_seconds(self.clock())
        if wait > 0:
            return wait
        if self.breaker.try_probe(view):
            inv.probing = True
            logger.info("circuit breaker probing", extra={"target": self.target.name})
            return 0.0
        inv.breaker = self.breaker.read()
        return max(1.0, inv.breaker.wait_seconds(self.clock()))

    def _deliver(
        self, inv: _Invocation, claim: Claim, prepared: Prepared, number: int, envelope: Envelope
    ) -> tuple[dict[str, str], list[RejectedItem]]:
        attempt = Attempt(
            target_key(claim.key),
            number,
            maybe_delivered=claim.maybe_delivered,
            reached_at=claim.reached_at,
            settle_seconds=self.target.retry.settle_seconds,
            deadline=inv.deadline - RESERVE_SECONDS,
            clock=self.clock,
        )
        called = time.perf_counter()
        try:
            try:
                target_ids = self.flow.deliver(prepared, attempt)
            finally:
                inv.target_ms.append((time.perf_counter() - called) * 1000)
            self._forward(envelope, target_ids)
        except BaseException as exc:
            reason = exc.reason if isinstance(exc, JunctionError) else "unexpected_error"
            if isinstance(exc, RateLimited):
                inv.rate_limited += 1
            # Once the create was sent, only a refusal proves that the effect was not made: a 4xx
            # or 429 answer, or our own deadline before sending. A timeout or 5xx proves nothing.
            refused = isinstance(exc, PermanentError | RateLimited | DeadlineReached)
            sent = attempt.creating_at is not None and not refused
            self.store.attempted(claim, reason, attempt.creating_at if sent else claim.reached_at)
            if isinstance(exc, TargetUnavailable | CredentialsRejected):
                before = inv.breaker
                inv.breaker = self.breaker.failure(before, probing=inv.probing)
                inv.probing = False
                if inv.breaker.open_until > before.open_until:
                    inv.breaker_opened += 1
                    logger.warning(
                        "circuit breaker opened",
                        extra={"target": self.target.name, "open_seconds": inv.breaker.open_seconds},
                    )
            raise
        self.breaker.success(inv.breaker)
        if inv.breaker.state != CLOSED or inv.breaker.failures:
            inv.breaker = BreakerView()
            inv.probing = False
        return target_ids, attempt.rejected

    def _forward(self, envelope: Envelope, target_ids: dict[str, str]) -> None:
        """Send the delivery on to the targets after this one, with the ids it made, before it is
        recorded complete: a failed send fails the delivery, whose retry finds the effect made
        (looked up, or ``already``) and sends again; the followers' idempotency absorbs a repeat."""
        if not self.follower_queue_urls:
            return
        sent = replace(envelope, upstream={**envelope.upstream, **target_ids})
        params = {"MessageBody": sent.to_json(), "MessageAttributes": message_attributes(sent)}
        for url in self.follower_queue_urls:
            try:
                self.sqs.send_message(QueueUrl=url, **params)
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(
                    f"sending on to the targets after {self.target.name}: {type(exc).__name__}"
                ) from exc

    def _done(
        self,
        message_id: str,
        outcome: str,
        prepared: Prepared,
        started: float,
        target_ids: dict[str, str] | None = None,
    ) -> RecordResult:
        logger.info(
            f"message {outcome}",
            extra={
                "integration": self.integration.name,
                "message_id": message_id,
                **(target_ids or {}),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return RecordResult(message_id, outcome, failed=False)

    def _ids(self, err: JunctionError, envelope: Envelope | None, prepared: Prepared | None) -> dict[str, str]:
        ids = dict(prepared.entity_ids) if prepared else {}
        ids.update(err.entity_ids)
        if envelope:
            ids.setdefault("delivery_id", envelope.delivery_id)
        return ids

    # -- redelivery policy ---------------------------------------------------------------
    def retry_since(self, record: Mapping[str, Any]) -> float:
        """When this message's retries started (epoch seconds): carried by a message we sent
        again, else its first receive from this queue (a redrive starts a new horizon)."""
        carried = _attribute(record, RETRY_SINCE)
        if carried is not None:
            return _number(carried, self.clock())
        attributes = record.get("attributes") or {}
        first = attributes.get("ApproximateFirstReceiveTimestamp") or attributes.get("SentTimestamp")
        return _number(first, self.clock() * 1000) / 1000

    def _retry(
        self,
        record: dict[str, Any],
        inv: _Invocation,
        err: JunctionError,
        reason: str,
        attempts: int,
        envelope: Envelope | None,
        prepared: Prepared | None,
        retry_after: float | None,
    ) -> RecordResult:
        horizon = self.target.retry.horizon_seconds
        elapsed = self.clock() - self.retry_since(record)
        if elapsed >= horizon:
            if isinstance(err, AwaitingPrerequisite):
                # What it waited for never came (a payment whose order never reached the ERP): a
                # business error, under the reason it waited with.
                waited = JunctionError(
                    f"still waiting {int(elapsed)} s after the first attempt (horizon {horizon} s, "
                    f"{attempts} attempts): {err.message}"[:1000],
                    entity_ids=err.entity_ids,
                )
                return self._dead_letter(record, inv, waited, reason, attempts, envelope, prepared, last=reason)
            exhausted = JunctionError(
                f"retries exhausted: still failing {int(elapsed)} s after the first attempt "
                f"(horizon {horizon} s, {attempts} attempts); last error: {err.message}"[:1000],
                entity_ids=err.entity_ids,
            )
            return self._dead_letter(
                record, inv, exhausted, "retries_exhausted", attempts, envelope, prepared, last=reason
            )
        delay = backoff_seconds(self.target.retry, attempts, retry_after, self.rng)
        result = self._redeliver(record, inv, delay, "retry_scheduled")
        ids = self._ids(err, envelope, prepared)
        logger.warning(
            "message retry scheduled",
            extra={
                "integration": self.integration.name,
                "message_id": result.message_id,
                "reason": reason,
                "error": err.message[:300],
                "attempts": attempts,
                "delay_s": delay,
                **ids,
            },
        )
        if envelope and prepared:
            self._trace(inv, envelope, prepared, "retry_scheduled", attempts, reason=reason)
        return result

    def _redeliver(self, record: dict[str, Any], inv: _Invocation, delay: int, outcome: str) -> RecordResult:
        """Make the message come back in ``delay`` seconds without nearing SQS's redrive: through
        its visibility timeout, or, when its receive count nears ``maxReceiveCount``, as a new
        message carrying its retry start (sent first, then the old one deleted)."""
        message_id = str(record.get("messageId"))
        receives = int(_number((record.get("attributes") or {}).get("ApproximateReceiveCount"), 1))
        delay = max(1, min(int(delay), MAX_VISIBILITY))
        if receives < self.target.queue.max_receive_count - 1:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=delay
                )
            except (ClientError, BotoCoreError, KeyError):
                pass  # the queue's visibility timeout applies instead
            return RecordResult(message_id, outcome, failed=True)
        attributes = self._carried(record)
        attributes[RETRY_SINCE] = {"DataType": "Number", "StringValue": f"{self.retry_since(record):.3f}"}
        prior = receives + int(_number(_attribute(record, PRIOR_RECEIVES), 0))
        attributes[PRIOR_RECEIVES] = {"DataType": "Number", "StringValue": str(prior)}
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": str(record.get("body", "")),
            "MessageAttributes": attributes,
        }
        if delay > MAX_DELAY_SECONDS or self.target.queue.fifo:
            attributes[NOT_BEFORE] = {"DataType": "Number", "StringValue": f"{self.clock() + delay:.3f}"}
        if self.target.queue.fifo:
            params.update(self._fifo_params(record, f"{message_id}:{prior}"))
        else:
            params["DelaySeconds"] = min(delay, MAX_DELAY_SECONDS)
        try:
            self.sqs.send_message(**params)
        except (ClientError, BotoCoreError):
            return RecordResult(message_id, outcome, failed=True)  # kept; SQS redrives at worst
        self._delete(record)
        return RecordResult(message_id, outcome, failed=False)

    def _carried(self, record: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name in CARRIED_ATTRIBUTES:
            value = _attribute(record, name)
            if value:
                out[name] = {"DataType": "String", "StringValue": value}
        return out

    def _fifo_params(self, record: Mapping[str, Any], dedup: str) -> dict[str, str]:
        group = str((record.get("attributes") or {}).get("MessageGroupId") or record.get("messageId"))
        return {"MessageGroupId": group, "MessageDeduplicationId": dedup[:128]}

    def _delete(self, record: Mapping[str, Any]) -> None:
        """Delete a handled message now: if the invocation then times out, the batch re-runs
        without it. Lambda deletes it anyway when the batch returns."""
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        except (ClientError, BotoCoreError, KeyError):
            pass

    # -- dead letter channel -------------------------------------------------------------
    def _dead_letter(
        self,
        record: dict[str, Any],
        inv: _Invocation,
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
            "junction-error-class": {"DataType": "String", "StringValue": error_class(reason)},
            "junction-error": {"DataType": "String", "StringValue": (err.message or reason)[:1000]},
            "junction-entity-ids": {"DataType": "String", "StringValue": json.dumps(ids, sort_keys=True)},
            "junction-attempts": {"DataType": "Number", "StringValue": str(attempts)},
            "junction-integration": {"DataType": "String", "StringValue": self.integration.name},
            "junction-target": {"DataType": "String", "StringValue": self.target.name},
            "junction-failed-at": {"DataType": "String", "StringValue": _iso(self.clock())},
            **self._carried(record),
        }
        if last:
            attributes["junction-last-reason"] = {"DataType": "String", "StringValue": last}
        params: dict[str, Any] = {
            "QueueUrl": self.dlq_url,
            "MessageBody": str(record.get("body", "")),
            "MessageAttributes": attributes,
        }
        if self.target.queue.fifo:
            params.update(self._fifo_params(record, message_id))
        try:
            self.sqs.send_message(**params)
        except (ClientError, BotoCoreError) as exc:
            logger.error("dead-letter send failed", extra={"message_id": message_id, "error": type(exc).__name__})
            return RecordResult(message_id, "retry_scheduled", failed=True)
        self._delete(record)
        logger.error(
            "message dead-lettered",
            extra={
                "integration": self.integration.name,
                "message_id": message_id,
                "reason": reason,
                "error": err.message[:300],
                "attempts": attempts,
                **ids,
            },
        )
        if envelope and prepared:
            self._trace(inv, envelope, prepared, "dead_lettered", attempts, reason=reason, last_reason=last)
        return RecordResult(message_id, "dead_lettered", failed=False, error_class=error_class(reason))

    def _dead_letter_items(
        self, record: dict[str, Any], inv: _Invocation, envelope: Envelope, items: list[RejectedItem], attempts: int
    ) -> None:
        """Send the items a delivery could not take to the DLQ, one message each, before the
        message is recorded as done. A failed send fails the message: it comes back whole, and
        what was delivered is absorbed again (version gates, target idempotency)."""
        entries = []
        for n, item in enumerate(items):
            raw = json.dumps({"changes": [item.payload]}, separators=(",", ":"), default=str).encode()
            body, encoding = Envelope.encode_body(raw)
            single = replace(
                envelope,
                delivery_id=f"{envelope.delivery_id}:{item.key}"[:200],
                idempotency_key=f"{envelope.idempotency_key}:{item.key}"[:200],
                body=body,
                body_encoding=encoding,
                claim_check=None,
            )
            entries.append(
                {
                    "Id": str(n),
                    "MessageBody": single.to_json(),
                    "MessageAttributes": {
                        "junction-reason": {"DataType": "String", "StringValue": item.reason},
                        "junction-error-class": {"DataType": "String", "StringValue": error_class(item.reason)},
                        "junction-error": {"DataType": "String", "StringValue": item.error[:1000] or item.reason},
                        "junction-entity-ids": {"DataType": "String", "StringValue": json.dumps({"key": item.key})},
                        "junction-attempts": {"DataType": "Number", "StringValue": str(attempts)},
                        "junction-integration": {"DataType": "String", "StringValue": self.integration.name},
                        "junction-target": {"DataType": "String", "StringValue": self.target.name},
                        "junction-failed-at": {"DataType": "String", "StringValue": _iso(self.clock())},
                        **message_attributes(single),
                    },
                    **(
                        self._fifo_params(record, f"{envelope.delivery_id}:{item.key}")
                        if self.target.queue.fifo
                        else {}
                    ),
                }
            )
        for start in range(0, len(entries), 10):
            batch = entries[start : start + 10]
            try:
                answer = self.sqs.send_message_batch(QueueUrl=self.dlq_url, Entries=batch)
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(f"rejected items not dead-lettered: {type(exc).__name__}") from exc
            if answer.get("Failed"):
                raise StoreUnavailable(f"{len(answer['Failed'])} rejected items not dead-lettered")
        inv.rejected_items += len(items)
        for item in items:
            logger.warning(
                "item dead-lettered",
                extra={
                    "integration": self.integration.name,
                    "target": self.target.name,
                    "key": item.key,
                    "reason": item.reason,
                },
            )

    def record_key(self, prepared: Prepared, envelope: Envelope) -> str:
        """The idempotency record key: one business effect per integration and target (per replay,
        if any): each target is its own idempotency scope."""
        key = f"{self.integration.name}#{self.target.name}#{prepared.business_key}"
        return key + f"#replay:{envelope.replay_id}" if envelope.replay_id else key

    def _s3(self) -> Any:
        if self.s3 is None or not self.payload_bucket:
            raise StoreUnavailable("a claim-checked message arrived but no payload bucket is configured")
        return self.s3

    # -- message history -----------------------------------------------------------------
    def _trace(
        self,
        inv: _Invocation,
        envelope: Envelope,
        prepared: Prepared,
        outcome: str,
        attempts: int,
        *,
        target_ids: dict[str, Any] | None = None,
        reason: str | None = None,
        last_reason: str | None = None,
    ) -> None:
        now = self.clock()
        item: dict[str, Any] = {
            "pk": state_keys.trace_pk(prepared.entity_id),
            # A random suffix keeps two hops of the same millisecond apart.
            "sk": state_keys.trace_sk(_iso(now), self.hop, outcome, f"{self.rng.getrandbits(32):08x}"),
            "integration": self.integration.name,
            "target": self.target.name,
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
        if outcome == "dead_lettered":
            item["error_class"] = error_class(reason)
            if last_reason:
                item["last_reason"] = last_reason
        if envelope.replay_id:
            item["replay_id"] = envelope.replay_id
        inv.history.append(item)

    def _write_history(self, items: list[dict[str, Any]]) -> None:
        """Trace and status items, 25 to a BatchWriteItem. History is best effort: a failure is
        logged and never fails a message whose business effect has happened."""
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item_to_ddb(i)}} for i in items[start : start + 25]]
            for _ in range(3):
                try:
                    result = self.ddb.batch_write_item(RequestItems={self.state_table: requests})
                except (ClientError, BotoCoreError) as exc:
                    logger.warning("history write failed", extra={"error": type(exc).__name__, "items": len(requests)})
                    break
                requests = (result.get("UnprocessedItems") or {}).get(self.state_table) or []
                if not requests:
                    break


def _rejected_at_source(envelope: Envelope) -> SourceItemRejected:
    try:
        doc = envelope.payload()
        reason, error, key = str(doc["reason"]), str(doc.get("error") or ""), doc.get("key")
    except (KeyError, TypeError, ValueError):
        return SourceItemRejected("a rejected source item without its reason", reason="malformed_item")
    return SourceItemRejected(error or reason, reason=reason, entity_ids={"key": str(key)} if key else None)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _latency_ms(received_at: str, now: float) -> int | None:
    try:
        return int((now - datetime.fromisoformat(received_at).timestamp()) * 1000)
    except ValueError:
        return None


_session: list[boto3.session.Session] = []


def aws_client(service: str) -> Any:
    """A boto3 client with timeouts and retries that fit inside an invocation's reserve. One
    session per execution environment: each new session would load its data files again."""
    if not _session:
        _session.append(boto3.session.Session())
    return _session[0].client(service, config=AWS_CONFIG)  # type: ignore[call-overload]


class LazyClient:
    """A client created at its first use: the SQS client serves only retries and dead letters,
    so a cold start whose batch succeeds never pays for it."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = aws_client(self.service)
        return getattr(self._client, name)


@dataclass(frozen=True)
class FlowContext:
    """What a target's flow is built with: its clients are passed in, never created by the flow."""

    integration: Integration
    target: Target
    stage: str
    secrets: Secrets
    ddb: Any  # DynamoDB client (sync state, ID maps, version gates, rate budgets)
    state_table: str
    clock: Callable[[], float] = time.time


def make_sqs_handler(
    integration: Integration,
    target: Target,
    flow_factory: Callable[[FlowContext], Flow],
    environ: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler. Clients and the flow are built on the first call, from the environment;
    ``flow_factory(context)`` builds the target's flow."""
    holder: list[BatchProcessor] = []

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not holder:
            env = os.environ if environ is None else environ
            ddb = aws_client("dynamodb")
            flow_context = FlowContext(
                integration,
                target,
                env["JUNCTION_STAGE"],
                # Secrets through the same boto3 session: its loaded data files are reused.
                Secrets(LazyClient("secretsmanager")),
                ddb,
                env["JUNCTION_STATE_TABLE"],
            )
            holder.append(
                BatchProcessor(
                    integration,
                    target,
                    flow_factory(flow_context),
                    sqs=LazyClient("sqs"),
                    ddb=ddb,
                    s3=LazyClient("s3"),
                    payload_bucket=env.get("JUNCTION_PAYLOAD_BUCKET"),
                    queue_url=env["JUNCTION_QUEUE_URL"],
                    dlq_url=env["JUNCTION_DLQ_URL"],
                    idempotency_table=env["JUNCTION_IDEMPOTENCY_TABLE"],
                    state_table=env["JUNCTION_STATE_TABLE"],
                    follower_queue_urls=tuple(u for u in env.get(FOLLOWER_QUEUES_ENV, "").split(",") if u),
                )
            )
        return holder[0].process(event, context)

    return handler
