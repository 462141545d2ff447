"""Dead-letter queues: peek, find, and redrive (filtered, or all at once with a move task).

Every target of an integration has its own DLQ; a redrive sends a target's messages back to that
target's queue only.

Peeking receives messages with a short visibility timeout and sets it back to zero right after,
so a look at the DLQ never hides messages from the next look for long.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from shared.declaration import Integration, Target
from shared.envelope import CARRIED_ATTRIBUTES, ClaimCheck, Envelope
from shared.errors import MalformedEnvelope

from .commands import QueueRef, queue_ref
from .context import OpsError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

PEEK_VISIBILITY_SECONDS = 30
MAX_MOVE_RATE = 500  # SQS's limit for MaxNumberOfMessagesPerSecond
# Error codes meaning "this endpoint has no message move tasks" (emulators): fall back to the manual path.
UNSUPPORTED_CODES = frozenset(
    {
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnknownOperation",
        "UnknownOperationException",
        "InvalidAction",
        "NotImplemented",
    }
)


# -- messages ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DlqMessage:
    integration: str
    target: str
    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]  # message attributes (string values)
    system: dict[str, str]  # SentTimestamp, ApproximateReceiveCount, MessageGroupId, ...

    @classmethod
    def from_sqs(cls, integration: str, target: str, queue_url: str, message: Any) -> DlqMessage:
        attributes = {
            name: str(value.get("StringValue", value.get("BinaryValue", "")))
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        return cls(
            integration,
            target,
            queue_url,
            str(message["MessageId"]),
            str(message["ReceiptHandle"]),
            str(message.get("Body", "")),
            attributes,
            {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()},
        )

    @property
    def envelope(self) -> Envelope | None:
        """The Junction envelope the message carries; None when it is not one (a poison message)."""
        try:
            return Envelope.from_json(self.body)
        except MalformedEnvelope:
            return None

    @property
    def claim_check(self) -> ClaimCheck | None:
        """Where the event's body lies when it travelled by claim check (``shared.claim_check``).

        The message holds only the pointer; a redrive or replay sends it as it is, and the
        processor loads the body from S3 itself."""
        envelope = self.envelope
        return envelope.claim_check if envelope is not None and not envelope.body_loaded else None

    @property
    def reason(self) -> str:
        return self.attributes.get("junction-reason") or "unknown"

    @property
    def last_reason(self) -> str | None:
        return self.attributes.get("junction-last-reason")

    @property
    def error(self) -> str:
        return self.attributes.get("junction-error", "")

    @property
    def attempts(self) -> int | None:
        value = self.attributes.get("junction-attempts") or self.system.get("ApproximateReceiveCount")
        try:
            return int(value) if value else None
        except ValueError:
            return None

    @property
    def entity_ids(self) -> dict[str, str]:
        try:
            doc = json.loads(self.attributes.get("junction-entity-ids") or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    @property
    def failed_at(self) -> datetime | None:
        text = self.attributes.get("junction-failed-at")
        if text:
            try:
                at = datetime.fromisoformat(text)
                return at if at.tzinfo else at.replace(tzinfo=UTC)
            except ValueError:
                pass
        sent = self.system.get("SentTimestamp")
        return datetime.fromtimestamp(int(sent) / 1000, UTC) if sent and sent.isdigit() else None


@dataclass(frozen=True)
class Filter:
    """Which DLQ messages a redrive takes. No field set: all of them."""

    reason: str | None = None  # junction-reason, or junction-last-reason of retries_exhausted
    entity: str | None = None  # any value of junction-entity-ids
    older_than: timedelta | None = None  # failed at least this long ago

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.reason, self.entity, self.older_than))

    def matches(self, message: DlqMessage, now: datetime | None = None) -> bool:
        if self.reason is not None and self.reason not in (message.reason, message.last_reason):
            return False
        if self.entity is not None and self.entity not in message.entity_ids.values():
            return False
        if self.older_than is not None:
            failed_at = message.failed_at
            if failed_at is None or failed_at > (now or datetime.now(UTC)) - self.older_than:
                return False
        return True

    def describe(self) -> str:
        parts = [
            f"reason={self.reason}" if self.reason is not None else "",
            f"entity={self.entity}" if self.entity is not None else "",
            f"older-than={self.older_than}" if self.older_than is not None else "",
        ]
        return ", ".join(p for p in parts if p) or "all messages"


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``1d``."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


# -- receiving ---------------------------------------------------------------------------------
def _visible(sqs: SQSClient, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", 0))


def receive_batches(
    sqs: SQSClient,
    queue: QueueRef,
    *,
    limit: int,
    visibility: int = PEEK_VISIBILITY_SECONDS,
    repeated: Callable[[DlqMessage], None] | None = None,
) -> Iterator[list[DlqMessage]]:
    """Receive up to ``limit`` distinct messages, ten at a time; each stays invisible for
    ``visibility`` seconds unless the caller deletes it or sets its visibility back (``release``).

    A message received again (its visibility ran out meanwhile) is not yielded twice; it goes to
    ``repeated`` instead, whose receipt handle is now the valid one.
    """
    seen: set[str] = set()
    empty_polls = 0
    while len(seen) < limit:
        got = sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=max(1, min(10, limit - len(seen))),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        batch: list[DlqMessage] = []
        for raw in got:
            message = DlqMessage.from_sqs(queue.integration.name, queue.target.name, queue.url, raw)
            if message.message_id not in seen:
                batch.append(message)
            elif repeated is not None:
                repeated(message)
        if not batch:
            # A short poll samples only some SQS servers: an empty answer is final only when the
            # queue reports nothing visible either (a few tries at most).
            empty_polls += 1
            if empty_polls >= 3 or _visible(sqs, queue.url) == 0:
                return
            continue
        empty_polls = 0
        seen.update(m.message_id for m in batch)
        yield batch


def release(sqs: SQSClient, messages: list[DlqMessage]) -> None:
    """Make received messages visible again at once (best effort: else they return after the timeout)."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        try:
            sqs.change_message_visibility_batch(
                QueueUrl=chunk[0].queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for n, m in enumerate(chunk)
                ],
            )
        except ClientError:
            pass


def peek(
    sqs: SQSClient, stage: str, integration: Integration, target: Target, *, limit: int = 1000
) -> list[DlqMessage]:
    """The messages waiting in the DLQ of an integration's target, left in place."""
    dlq = queue_ref(sqs, stage, integration, target, dead_letter=True)
    messages: dict[str, DlqMessage] = {}

    def again(message: DlqMessage) -> None:
        messages[message.message_id] = message  # the newer receipt handle

    try:
        for batch in receive_batches(sqs, dlq, limit=limit, repeated=again):
            messages.update((m.message_id, m) for m in batch)
    finally:
        release(sqs, list(messages.values()))
    return list(messages.values())


def find(sqs: SQSClient, stage: str, queues: Sequence[tuple[Integration, Target]], message_id: str) -> DlqMessage:
    """The DLQ message with this id, looked for in the DLQ of each (integration, target)."""
    for integration, target in queues:
        for message in peek(sqs, stage, integration, target, limit=10_000):
            if message.message_id == message_id:
                return message
    names = ", ".join(f"{i.name}/{t.name}" for i, t in queues)
    raise OpsError(f"message {message_id} not found in the DLQ of {names}")


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    count: int
    oldest_failed_at: datetime | None
    sample_entity_ids: list[str]


def group_by_reason(messages: list[DlqMessage], samples: int = 3) -> list[ReasonGroup]:
    """One row per reason (``retries_exhausted`` split by its last reason), most messages first."""
    groups: dict[str, list[DlqMessage]] = {}
    for m in messages:
        key = f"{m.reason} ({m.last_reason})" if m.last_reason else m.reason
        groups.setdefault(key, []).append(m)
    out: list[ReasonGroup] = []
    for reason, members in groups.items():
        times = [t for t in (m.failed_at for m in members) if t is not None]
        ids: list[str] = []
        for m in members:
            for value in m.entity_ids.values():
                if value not in ids and len(ids) < samples:
                    ids.append(value)
        out.append(ReasonGroup(reason, len(members), min(times) if times else None, ids))
    return sorted(out, key=lambda g: (-g.count, g.reason))


# -- redrive -----------------------------------------------------------------------------------
Progress = Callable[[int, int], None]  # (done, total estimate)


@dataclass
class RedriveResult:
    integration: str
    target: str
    method: Literal["move-task", "manual", "dry-run"]
    moved: int = 0
    skipped: int = 0  # received but not matching the filter: left in the DLQ
    matched: list[DlqMessage] = field(default_factory=list)  # dry run: what would move


class MoveTaskUnsupported(Exception):
    pass


def redrive(
    sqs: SQSClient,
    stage: str,
    integration: Integration,
    target: Target,
    flt: Filter,
    *,
    rate: float = 10.0,
    dry_run: bool = False,
    limit: int = 10_000,
    progress: Progress | None = None,
    move_sqs: SQSClient | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveResult:
    """Move the target's DLQ messages back to the target's queue.

    Unfiltered (and not a dry run): one SQS message move task, when the endpoint has them.
    Otherwise each message is received, checked against the filter, sent to the queue and then
    deleted from the DLQ. Either way a redriven event takes effect once: the processor's
    idempotency record is keyed on the business key, not on the message.
    ``move_sqs`` is the client for StartMessageMoveTask (one without retries falls back faster).
    """
    if rate <= 0:
        raise OpsError("--rate must be above 0")
    main = queue_ref(sqs, stage, integration, target)
    dlq = queue_ref(sqs, stage, integration, target, dead_letter=True)
    if not flt.active and not dry_run:
        try:
            return redrive_with_move_task(
                sqs, main, dlq, rate=rate, progress=progress, start_sqs=move_sqs or sqs, sleep=sleep
            )
        except MoveTaskUnsupported:
            pass
    return redrive_manually(sqs, main, dlq, flt, rate=rate, dry_run=dry_run, limit=limit, progress=progress)


def redrive_with_move_task(
    sqs: SQSClient,
    main: QueueRef,
    dlq: QueueRef,
    *,
    rate: float,
    progress: Progress | None = None,
    start_sqs: SQSClient | None = None,
    poll_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveResult:
    result = RedriveResult(main.integration.name, main.target.name, "move-task")
    total = _visible(sqs, dlq.url)
    if total == 0:
        return result
    dlq_arn, main_arn = dlq.arn(sqs), main.arn(sqs)
    try:
        handle = (start_sqs or sqs).start_message_move_task(
            SourceArn=dlq_arn,
            DestinationArn=main_arn,
            MaxNumberOfMessagesPerSecond=max(1, min(MAX_MOVE_RATE, int(rate))),
        )["TaskHandle"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        http_status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        # A bare HTTP status as the code: the endpoint does not speak this action at all (an emulator).
        if code in UNSUPPORTED_CODES or code.isdigit() or http_status == 501:
            raise MoveTaskUnsupported(code) from exc
        raise
    while True:
        task = _move_task(sqs, dlq_arn, handle)
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        total = max(total, int(task.get("ApproximateNumberOfMessagesToMove", 0) or 0), moved)
        if progress:
            progress(moved, total)
        status = str(task.get("Status", ""))
        if status in ("COMPLETED", "CANCELLED"):
            result.moved = moved
            return result
        if status == "FAILED":
            raise OpsError(f"message move task failed after {moved} messages: {task.get('FailureReason', '?')}")
        sleep(poll_seconds)


def _move_task(sqs: SQSClient, source_arn: str, handle: str) -> dict[str, Any]:
    results = [dict(r) for r in sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])]
    for task in results:
        if task.get("TaskHandle") == handle:
            return task
    # AWS drops the handle from tasks that have finished: the most recently started one is ours.
    if results:
        return max(results, key=lambda t: int(t.get("StartedTimestamp", 0)))
    raise OpsError("the message move task disappeared before it finished")


def redrive_manually(
    sqs: SQSClient,
    main: QueueRef,
    dlq: QueueRef,
    flt: Filter,
    *,
    rate: float,
    dry_run: bool = False,
    limit: int = 10_000,
    progress: Progress | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveResult:
    result = RedriveResult(main.integration.name, main.target.name, "dry-run" if dry_run else "manual")
    total = _visible(sqs, dlq.url)
    at = now or datetime.now(UTC)
    # Messages left in the DLQ stay invisible until the end, so the loop does not see them again;
    # the visibility timeout covers the whole throttled run with room to spare (at most 12 hours).
    kept: dict[str, DlqMessage] = {}
    visibility = min(43_200, PEEK_VISIBILITY_SECONDS + int(min(total, limit) / rate) * 2)

    def again(message: DlqMessage) -> None:
        if message.message_id in kept:
            kept[message.message_id] = message  # the newer receipt handle

    started = clock()
    try:
        for batch in receive_batches(sqs, dlq, limit=limit, visibility=visibility, repeated=again):
            for message in batch:
                if not flt.matches(message, at):
                    kept[message.message_id] = message
                    result.skipped += 1
                elif dry_run:
                    kept[message.message_id] = message
                    result.matched.append(message)
                else:
                    wait = started + result.moved / rate - clock()
                    if wait > 0:
                        sleep(wait)
                    _send_back(sqs, main, message)
                    # Sent first, deleted second: a crash in between leaves the event in both
                    # queues. Processing it twice is harmless: the idempotency record (keyed on the
                    # business key) turns the second delivery into a duplicate with no effect.
                    sqs.delete_message(QueueUrl=dlq.url, ReceiptHandle=message.receipt_handle)
                    result.moved += 1
                    result.matched.append(message)
                if progress:
                    done = result.moved + result.skipped + (len(result.matched) if dry_run else 0)
                    progress(done, max(total, done))
    finally:
        release(sqs, list(kept.values()))
    return result


def _send_back(sqs: SQSClient, main: QueueRef, message: DlqMessage) -> None:
    params: dict[str, Any] = {
        "QueueUrl": main.url,
        "MessageBody": message.body,
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": message.attributes[name]}
            for name in CARRIED_ATTRIBUTES
            if message.attributes.get(name)
        },
    }
    if main.target.queue.fifo:
        params["MessageGroupId"] = message.system.get("MessageGroupId") or message.message_id
        # The same DLQ message sent twice (a retried redrive) is dropped by SQS within 5 minutes.
        params["MessageDeduplicationId"] = message.message_id
    sqs.send_message(**params)
