"""The poller of every scheduled integration: lease, versioned cursor, pages to every target's
queue, sync history.

An EventBridge schedule invokes the poller (it has no queue of its own). One run:

1. **Lease.** A conditional write on ``sync#<integration>``/``lease`` with an expiry longer than
   the invocation: two overlapping runs never poll the same source at once (the second is refused,
   logged and counted, not failed), and a crashed run's lease runs out.
2. **Pages.** From the cursor, the integration's ``Source`` reads a page; its changes go to every
   target's queue (``SendMessageBatch``, each entry's ``Failed`` checked and retried). Only once SQS
   has accepted every message of the page is the cursor advanced, by a conditional write on its
   version: a crash before that re-reads the page, and its messages are the same (content-keyed),
   so the targets' idempotency absorbs them. Paging goes on until the source has no more, or the
   invocation nears its deadline.
3. **Coarse cursors** (``Cursor("timestamp", lookback_seconds)``): the source is re-read from
   ``lookback`` before the highest stamp seen, and a change is sent only if its content differs
   from what was last sent for that key within the window (kept with the cursor). Changes that
   share the boundary stamp are compared by content, never dropped by ``stamp > cursor``.
4. **History.** Each run writes one item: start, pages, changes, cursor before and after, lag and
   outcome.

A malformed item does not stop the run: it is sent to each target's queue as a ``rejected``
message, which the processor dead-letters at once with its reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.aws import item_from_ddb, item_to_ddb
from shared.declaration import Integration, lease_seconds
from shared.envelope import SQS_MAX_MESSAGE_BYTES, Envelope, message_attributes, message_size, sqs_safe
from shared.errors import JunctionError
from shared.parameters import Secrets
from shared.processing import REJECTED_TOPIC, LazyClient, aws_client

logger = Logger(service="junction-poller")
logging.getLogger(logger.name).propagate = False

CHANGES_TOPIC = "junction.changes"
HISTORY_TTL_DAYS = 90
# Stop starting pages when less than this is left of the invocation: a page read, its sends
# and the cursor write fit in it.
PAGE_RESERVE_SECONDS = 15.0
SEND_ATTEMPTS = 4
# The cursor item must stay under DynamoDB's 400 KB: beyond this many keys in the lookback
# window, the oldest are forgotten (they may be sent again; the targets' version gates make
# that harmless).
MAX_SEEN_KEYS = 4000


@dataclass(frozen=True)
class Change:
    """One entity's new state at the source."""

    key: str  # the entity's key, e.g. a SKU
    stamp: str  # the source's change stamp (ISO 8601, UTC, for timestamp cursors) or event id
    data: dict[str, Any]  # what the targets receive

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Rejected:
    """A source item that cannot be read: it goes to the DLQ with its reason; the run goes on."""

    reason: str  # short, machine-readable: "malformed_item"
    error: str
    item: Any
    key: str | None = None
    stamp: str | None = None  # the source's change stamp, when it could be read

    def marker(self, fallback_stamp: str) -> Change:
        """The rejection as a change of its own key, so that a timestamp cursor's lookback does not
        dead-letter the same bad item again on every run that re-reads it."""
        return Change(f"!rejected:{self.key or ''}", self.stamp or fallback_stamp, {"item": self.item})


@dataclass(frozen=True)
class Page:
    changes: list[Change]
    rejected: list[Rejected] = field(default_factory=list)
    next: str | None = None  # where the next page starts in this pass; None: caught up
    position: str | None = None  # token cursors: the token after this page


@dataclass(frozen=True)
class CursorState:
    """The versioned cursor item. ``position`` is the token (token cursors) or the highest stamp
    of the last complete pass (timestamp cursors); ``next`` the continuation of a pass in progress."""

    position: str | None = None
    next: str | None = None
    pass_high: str | None = None  # highest stamp of the pass in progress
    seen: dict[str, list[str]] = field(default_factory=dict)  # key -> [stamp, fingerprint]
    version: int = 0
    caught_up_at: float | None = None  # start of the last run that reached the end
    rules: str | None = None  # the business rules' version the cursor was read under

    def to_item(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "next": self.next,
            "pass_high": self.pass_high,
            "seen": json.dumps(self.seen, separators=(",", ":")),
            "version": self.version,
            "caught_up_at": self.caught_up_at,
            "rules": self.rules,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> CursorState:
        if not item:
            return cls()
        seen = item.get("seen")
        return cls(
            position=item.get("position"),
            next=item.get("next"),
            pass_high=item.get("pass_high"),
            seen=json.loads(seen) if isinstance(seen, str) and seen else {},
            version=int(item.get("version", 0)),
            caught_up_at=float(item["caught_up_at"]) if item.get("caught_up_at") is not None else None,
            rules=item.get("rules"),
        )


class Source(Protocol):
    """The integration-specific part of a poller."""

    # Changing the business rules (a warehouse added to a channel) changes this; the poller then
    # resyncs from the beginning, so every key is computed again under the new rules.
    rules_version: str

    def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page: ...


@dataclass(frozen=True)
class PollerContext:
    integration: Integration
    stage: str
    secrets: Secrets
    clock: Callable[[], float] = time.time


@dataclass
class RunResult:
    run_id: str
    outcome: str  # caught_up | deadline | failed | overlap | lost_lease
    pages: int = 0
    changes: int = 0
    rejected: int = 0
    skipped: int = 0  # re-read by the lookback, unchanged
    cursor_before: str | None = None
    cursor_after: str | None = None
    lag_seconds: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SendFailed(Exception):
    """SQS did not accept every message of a page: the cursor stays where it was."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _parse_stamp(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window_start(position: str | None, lookback_seconds: int) -> str | None:
    """The oldest stamp a timestamp cursor re-reads."""
    if position is None:
        return None
    start = _parse_stamp(position) - timedelta(seconds=lookback_seconds)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def _norm(stamp: str) -> str:
    return _parse_stamp(stamp).strftime("%Y-%m-%dT%H:%M:%S")


def read_cursor(ddb: Any, table: str, integration: str) -> CursorState:
    item = ddb.get_item(
        TableName=table,
        Key={"pk": {"S": state_keys.sync_pk(integration)}, "sk": {"S": state_keys.CURSOR_SK}},
        ConsistentRead=True,
    ).get("Item")
    return CursorState.from_item(_plain(item) if item else None)


def write_cursor(ddb: Any, table: str, integration: str, new: CursorState, expected_version: int) -> bool:
    """Replace the cursor if it is still at ``expected_version`` (0: none yet); False if someone
    else moved it. Pollers and the ops commands (reset, backfill) both write through this."""
    values = {k: v for k, v in new.to_item().items() if v is not None}
    values["version"] = expected_version + 1
    item = {"pk": state_keys.sync_pk(integration), "sk": state_keys.CURSOR_SK, **values}
    condition = "attribute_not_exists(pk)" if expected_version == 0 else "version = :v"
    try:
        ddb.put_item(
            TableName=table,
            Item=_ddb(item),
            ConditionExpression=condition,
            **({"ExpressionAttributeValues": {":v": {"N": str(expected_version)}}} if expected_version else {}),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


class Poller:
    def __init__(
        self,
        integration: Integration,
        source: Source,
        *,
        sqs: Any,
        ddb: Any,
        state_table: str,
        queue_urls: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        schedule = integration.schedule
        if schedule is None:
            raise ValueError(f"{integration.name} has no schedule")
        if len(queue_urls) != len(integration.entry_targets):
            raise ValueError(f"{integration.name}: one queue URL per target")
        self.integration = integration
        self.schedule = schedule
        self.source = source
        self.sqs = sqs
        self.ddb = ddb
        self.table = state_table
        # Targets after another get their messages from that target's processor, not from here.
        self.queues = [(url, t.queue.fifo) for url, t in zip(queue_urls, integration.entry_targets, strict=True)]
        self.clock = clock
        self.pk = state_keys.sync_pk(integration.name)

    # -- lease ------------------------------------------------------------------------------
    def take_lease(self, run_id: str) -> bool:
        now = self.clock()
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": self.pk},
                    "sk": {"S": state_keys.LEASE_SK},
                    "holder": {"S": run_id},
                    "taken_at": {"N": str(now)},
                    "lease_expires": {"N": str(now + lease_seconds(self.integration))},
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_expires < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, run_id: str) -> None:
        try:
            self.ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": self.pk}, "sk": {"S": state_keys.LEASE_SK}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": run_id}},
            )
        except (ClientError, BotoCoreError):
            pass  # not ours any more, or unreachable: it runs out by itself

    # -- cursor -----------------------------------------------------------------------------
    def read_cursor(self) -> CursorState:
        return read_cursor(self.ddb, self.table, self.integration.name)

    def write_cursor(self, new: CursorState, expected_version: int) -> bool:
        return write_cursor(self.ddb, self.table, self.integration.name, new, expected_version)

    # -- a run ------------------------------------------------------------------------------
    def run(self, seconds_left: Callable[[], float]) -> RunResult:
        run_id = uuid.uuid4().hex[:12]
        started = self.clock()
        if not self.take_lease(run_id):
            result = RunResult(run_id, "overlap")
            logger.info("another run holds the lease; this one stops", extra={"integration": self.integration.name})
            self._history(result, started)
            return result
        try:
            result = self._run(run_id, started, seconds_left)
        finally:
            self.release_lease(run_id)
        self._history(result, started)
        return result

    def _run(self, run_id: str, started: float, seconds_left: Callable[[], float]) -> RunResult:
        cursor = self.read_cursor()
        if cursor.rules != self.source.rules_version:
            if cursor.rules is not None:
                logger.info("business rules changed: resyncing every key", extra={"rules": self.source.rules_version})
            cursor = CursorState(
                version=cursor.version, caught_up_at=cursor.caught_up_at, rules=self.source.rules_version
            )
        result = RunResult(run_id, "deadline", cursor_before=cursor.position)
        lookback = self.schedule.cursor.lookback_seconds
        timestamped = self.schedule.cursor.kind == "timestamp"
        try:
            while seconds_left() > PAGE_RESERVE_SECONDS:
                read_at = self.clock()
                page = self.source.read(
                    cursor, self.schedule.page_size, lookback, timeout=min(30.0, seconds_left() - 10)
                )
                fresh, skipped = self._fresh(cursor, page.changes) if timestamped else (page.changes, 0)
                rejected, markers = self._fresh_rejected(cursor, page.rejected) if timestamped else (page.rejected, [])
                self._send(run_id, result.pages, fresh, rejected, read_at)
                new = (
                    self._advance(cursor, page, fresh + markers, started)
                    if timestamped
                    else self._advance_token(cursor, page, started)
                )
                if not self.write_cursor(new, cursor.version):
                    result.outcome = "lost_lease"
                    logger.warning("the cursor moved under this run: stopping", extra={"run_id": run_id})
                    break
                cursor = replace(new, version=cursor.version + 1)
                result.pages += 1
                result.changes += len(fresh)
                result.rejected += len(rejected)
                result.skipped += skipped
                if page.next is None:
                    result.outcome = "caught_up"
                    break
        except JunctionError as exc:
            result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc.message}"
            logger.warning("poll failed; the cursor stays where the enqueued items end", extra={"error": result.error})
        except SendFailed as exc:
            result.outcome, result.error = "failed", f"SendFailed: {exc}"
            logger.warning("enqueue failed; the cursor stays where the enqueued items end", extra={"error": str(exc)})
        except (ClientError, BotoCoreError) as exc:
            result.outcome, result.error = "failed", type(exc).__name__
            logger.warning("state table unavailable", extra={"error": type(exc).__name__})
        result.cursor_after = cursor.position if cursor.next is None else f"{cursor.position} (+{cursor.next})"
        if cursor.caught_up_at is not None:
            result.lag_seconds = round(self.clock() - cursor.caught_up_at, 3)
        return result

    def _fresh(self, cursor: CursorState, changes: list[Change]) -> tuple[list[Change], int]:
        """What a timestamp cursor sends: changes whose content differs from what was last sent for
        the key within the window. Older than the window: already sent by an earlier pass."""
        oldest = window_start(cursor.position, self.schedule.cursor.lookback_seconds)
        fresh: list[Change] = []
        skipped = 0
        batch_seen: dict[str, str] = {}
        for change in changes:
            stamp = _norm(change.stamp)
            if oldest is not None and stamp < oldest:
                skipped += 1
                continue
            known = batch_seen.get(change.key) or (cursor.seen.get(change.key) or ["", ""])[1]
            if known == change.fingerprint:
                skipped += 1
                continue
            batch_seen[change.key] = change.fingerprint
            fresh.append(change)
        return fresh, skipped

    def _fresh_rejected(self, cursor: CursorState, rejected: list[Rejected]) -> tuple[list[Rejected], list[Change]]:
        """The rejections not already sent within the window, and their markers for the cursor."""
        fallback = cursor.position or "1970-01-01T00:00:00"
        markers = [r.marker(fallback) for r in rejected]
        kept_markers, _ = self._fresh(cursor, markers)
        kept = {id(m) for m in kept_markers}
        return [r for r, m in zip(rejected, markers, strict=True) if id(m) in kept], kept_markers

    def _advance(self, cursor: CursorState, page: Page, fresh: list[Change], started: float) -> CursorState:
        seen = dict(cursor.seen)
        high = cursor.pass_high
        for change in page.changes:
            stamp = _norm(change.stamp)
            high = stamp if high is None or stamp > high else high
        for change in fresh:
            seen[change.key] = [_norm(change.stamp), change.fingerprint]
        newest = max(filter(None, (cursor.position, high)), default=None)
        if page.next is not None:
            # The pass's later pages are still read from the window of the position it started
            # at: keep that window's keys until the pass ends.
            seen = self._window(seen, cursor.position or newest)
            return replace(cursor, next=page.next, pass_high=high, seen=seen)
        seen = self._window(seen, newest)
        return replace(cursor, position=newest, next=None, pass_high=None, seen=seen, caught_up_at=started)

    def _window(self, seen: dict[str, list[str]], newest: str | None) -> dict[str, list[str]]:
        """What the lookback can re-read: keys stamped within the window of the newest stamp,
        at most ``MAX_SEEN_KEYS`` of them (the cursor item stays far below DynamoDB's 400 KB)."""
        oldest = window_start(newest, self.schedule.cursor.lookback_seconds)
        kept = {k: v for k, v in seen.items() if oldest is None or v[0] >= oldest}
        if len(kept) > MAX_SEEN_KEYS:
            kept = dict(sorted(kept.items(), key=lambda kv: kv[1][0])[-MAX_SEEN_KEYS:])
        return kept

    def _advance_token(self, cursor: CursorState, page: Page, started: float) -> CursorState:
        position = page.position if page.position is not None else cursor.position
        if page.next is not None:
            return replace(cursor, position=position, next=page.next)
        return replace(cursor, position=position, next=None, caught_up_at=started)

    # -- enqueue ----------------------------------------------------------------------------
    def messages(
        self, run_id: str, page_no: int, changes: list[Change], rejected: list[Rejected], read_at: float
    ) -> list[Envelope]:
        """The page as queue messages: chunks of ``items_per_message`` changes, each keyed by its
        content, so a page read again after a crash makes the same messages."""
        out: list[Envelope] = []
        per = self.schedule.items_per_message
        received = _iso(read_at)
        read_ms = int(read_at * 1000)
        chunks = [changes[i : i + per] for i in range(0, len(changes), per)]
        timestamped = self.schedule.cursor.kind == "timestamp"
        while chunks:
            chunk = chunks.pop(0)
            items = [
                {
                    "key": c.key,
                    "stamp": c.stamp,
                    "version": f"{_norm(c.stamp) if timestamped else c.stamp}|{read_ms:013d}",
                    "data": c.data,
                }
                for c in chunk
            ]
            content = hashlib.sha256(
                json.dumps([[c.key, c.stamp, c.fingerprint] for c in chunk], separators=(",", ":")).encode()
            ).hexdigest()[:32]
            envelope = self._envelope(f"changes:{content}", CHANGES_TOPIC, {"changes": items}, received)
            if (
                len(chunk) > 1
                and message_size(envelope.to_json(), message_attributes(envelope)) > SQS_MAX_MESSAGE_BYTES - 1024
            ):
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
                continue
            out.append(envelope)
        for bad in rejected:
            body = {"reason": bad.reason, "error": bad.error[:1000], "key": bad.key, "item": bad.item}
            digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]
            out.append(self._envelope(f"rejected:{digest}", REJECTED_TOPIC, body, received))
        return out

    def _envelope(self, delivery_id: str, topic: str, payload: dict[str, Any], received: str) -> Envelope:
        raw = sqs_safe(json.dumps(payload, separators=(",", ":"), default=str)).encode()
        body, encoding = Envelope.encode_body(raw)
        return Envelope(
            integration=self.integration.name,
            delivery_id=delivery_id,
            idempotency_key=f"{self.integration.name}:{delivery_id}",
            source=self.integration.source,
            topic=topic,
            received_at=received,
            body=body,
            body_encoding=encoding,
            headers={},
        )

    def _send(self, run_id: str, page_no: int, changes: list[Change], rejected: list[Rejected], read_at: float) -> None:
        envelopes = self.messages(run_id, page_no, changes, rejected, read_at)
        if not envelopes:
            return
        for queue_url, fifo in self.queues:
            self._send_all(queue_url, fifo, envelopes)

    def _send_all(self, queue_url: str, fifo: bool, envelopes: list[Envelope]) -> None:
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for n, envelope in enumerate(envelopes):
            text = envelope.to_json()
            entry: dict[str, Any] = {
                "Id": str(n),
                "MessageBody": text,
                "MessageAttributes": message_attributes(envelope),
            }
            if fifo:
                entry["MessageGroupId"] = envelope.delivery_id[:128]
                entry["MessageDeduplicationId"] = envelope.delivery_id[:128]
            entry_size = message_size(text, entry["MessageAttributes"])
            if len(batches[-1]) == 10 or size + entry_size > SQS_MAX_MESSAGE_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(entry)
            size += entry_size
        for batch in batches:
            pending = batch
            for attempt in range(SEND_ATTEMPTS):
                try:
                    answer = self.sqs.send_message_batch(QueueUrl=queue_url, Entries=pending)
                except (ClientError, BotoCoreError) as exc:
                    if attempt == SEND_ATTEMPTS - 1:
                        raise SendFailed(f"{queue_url}: {type(exc).__name__}") from exc
                    time.sleep(0.2 * 2**attempt)
                    continue
                failed = {f["Id"] for f in answer.get("Failed") or []}
                if not failed:
                    break
                if any(f.get("SenderFault") for f in answer.get("Failed") or []):
                    raise SendFailed(f"{queue_url}: refused {sorted(failed)}: {answer['Failed'][0].get('Code')}")
                pending = [e for e in pending if e["Id"] in failed]
                time.sleep(0.2 * 2**attempt)
            else:
                raise SendFailed(f"{queue_url}: {len(pending)} messages not accepted after {SEND_ATTEMPTS} attempts")

    # -- history ----------------------------------------------------------------------------
    def _history(self, result: RunResult, started: float) -> None:
        now = self.clock()
        item = {
            "pk": self.pk,
            "sk": state_keys.run_sk(_iso(started), result.run_id),
            "started_at": _iso(started),
            "ended_at": _iso(now),
            "expires_at": int(now + HISTORY_TTL_DAYS * 86_400),
            **{k: v for k, v in result.as_dict().items() if v is not None},
        }
        try:
            self.ddb.put_item(TableName=self.table, Item=_ddb(item))
        except (ClientError, BotoCoreError) as exc:
            logger.warning("sync history not written", extra={"error": type(exc).__name__})
        metrics = EphemeralMetrics(namespace="Junction")
        metrics.add_dimension(name="Integration", value=self.integration.name)
        metrics.add_metric(name="Poll_run", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Poll_changes", unit=MetricUnit.Count, value=result.changes)
        metrics.add_metric(name="Poll_pages", unit=MetricUnit.Count, value=result.pages)
        if result.outcome == "failed":
            metrics.add_metric(name="Poll_failed", unit=MetricUnit.Count, value=1)
        if result.outcome == "overlap":
            metrics.add_metric(name="Poll_overlap", unit=MetricUnit.Count, value=1)
        if result.lag_seconds is not None:
            metrics.add_metric(name="Poll_lag_seconds", unit=MetricUnit.Seconds, value=result.lag_seconds)
        metrics.flush_metrics()
        logger.info("poll run", extra={"integration": self.integration.name, **result.as_dict()})


def _ddb(item: Mapping[str, Any]) -> dict[str, Any]:
    return item_to_ddb(dict(item))


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return item_from_ddb(dict(item))


def make_poller_handler(
    integration: Integration,
    source_factory: Callable[[PollerContext], Source],
    environ: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The poller's Lambda handler; clients and the source are built on the first call."""
    holder: list[Poller] = []

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not holder:
            env = os.environ if environ is None else environ
            ctx = PollerContext(integration, env["JUNCTION_STAGE"], Secrets(LazyClient("secretsmanager")))
            holder.append(
                Poller(
                    integration,
                    source_factory(ctx),
                    sqs=aws_client("sqs"),
                    ddb=aws_client("dynamodb"),
                    state_table=env["JUNCTION_STATE_TABLE"],
                    queue_urls=env["JUNCTION_QUEUE_URLS"].split(","),
                )
            )
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        deadline = time.monotonic() + (
            remaining() / 1000 if remaining else float(integration.schedule.function.timeout_seconds)  # type: ignore[union-attr]
        )
        return holder[0].run(lambda: deadline - time.monotonic()).as_dict()

    return handler
