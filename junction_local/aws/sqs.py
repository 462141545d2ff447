"""SQS semantics in memory: visibility timeouts and their changes, receive counts, redrive to a
dead-letter queue after maxReceiveCount, delays, retention, long polling, FIFO groups with
deduplication, and message move tasks (DLQ redrive).

As strict as SQS about what it accepts: a body with a character outside SQS's set is refused
(``InvalidMessageContents``), and a message is measured as SQS measures it (the body plus each
message attribute's name, type and value, in bytes) against the queue's ``MaximumMessageSize``
(``InvalidParameterValue``). moto checks neither (it counts the body's characters only, against
1 MiB by default), so a message the deployed queue refuses is refused here first."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import re
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.envelope import message_size


class SqsError(Exception):
    def __init__(self, code: str, message: str, query_code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.query_code = query_code or code
        self.status = status


# What SQS refuses in a message body: anything outside #x9 | #xA | #xD | #x20-#xD7FF |
# #xE000-#xFFFD | #x10000-#x10FFFF (the XML 1.0 character set).
REFUSED_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144


def size_of(body: str, attributes: dict[str, Any]) -> int:
    """The size SQS counts for a message: the body's UTF-8 bytes plus each message attribute's
    name, data type and value (a binary value by its decoded bytes)."""
    import base64

    strings = {name: value for name, value in attributes.items() if "BinaryValue" not in value}
    size = message_size(body, strings)
    for name, value in attributes.items():
        if name in strings:
            continue
        raw = value["BinaryValue"]
        decoded = base64.b64decode(raw) if isinstance(raw, str) else bytes(raw)
        size += len(name.encode("utf-8", "surrogatepass")) + len(str(value.get("DataType", "")).encode()) + len(decoded)
    return size


def md5_of_attributes(attributes: dict[str, Any]) -> str:
    """MD5OfMessageAttributes as SQS computes it (length-prefixed fields, sorted by name)."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = value["DataType"]
        for part in (name.encode(), data_type.encode()):
            digest.update(struct.pack("!I", len(part)) + part)
        if "StringValue" in value:
            raw = value["StringValue"].encode()
            digest.update(b"\x01" + struct.pack("!I", len(raw)) + raw)
        else:
            import base64

            raw = (
                base64.b64decode(value["BinaryValue"])
                if isinstance(value["BinaryValue"], str)
                else value["BinaryValue"]
            )
            digest.update(b"\x02" + struct.pack("!I", len(raw)) + raw)
    return digest.hexdigest()


@dataclass
class Message:
    id: str
    body: str
    attributes: dict[str, Any]
    sent_at: float
    group_id: str | None = None
    dedup_id: str | None = None
    sequence: int = 0
    receive_count: int = 0
    first_receive_at: float | None = None
    visible_at: float = 0.0
    handle: str | None = None  # the receipt handle of the latest receive; None when not in flight
    dead_letter_source_arn: str | None = None


@dataclass
class Queue:
    name: str
    url: str
    arn: str
    attributes: dict[str, str]
    created_at: float = field(default_factory=time.time)
    ready: deque[str] = field(default_factory=deque)  # visible message ids, in order
    messages: dict[str, Message] = field(default_factory=dict)
    timers: list[tuple[float, int, str]] = field(default_factory=list)  # (when, seq, id): delayed/in flight
    dedup: dict[str, tuple[float, str]] = field(default_factory=dict)
    groups_in_flight: dict[str, int] = field(default_factory=dict)
    # Long polls wait here. One wake-up per new visible message, not a stampede of every poller.
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoQueue") == "true"

    def attr_int(self, name: str, default: int) -> int:
        return int(self.attributes.get(name, default))


DEFAULTS = {
    "VisibilityTimeout": "30",
    "MessageRetentionPeriod": "345600",
    "DelaySeconds": "0",
    "MaximumMessageSize": str(DEFAULT_MAXIMUM_MESSAGE_SIZE),
    "ReceiveMessageWaitTimeSeconds": "0",
}


class SqsService:
    def __init__(self, base_url: str, region: str = "eu-central-1", account: str = "000000000000") -> None:
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.account = account
        self.queues: dict[str, Queue] = {}
        self.lock = threading.RLock()  # one lock for all queues; each queue has its own condition
        self._seq = itertools.count()
        self.move_tasks: dict[str, dict[str, Any]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _queue(self, url_or_name: str) -> Queue:
        name = url_or_name.rstrip("/").rsplit("/", 1)[-1]
        queue = self.queues.get(name)
        if queue is None:
            raise SqsError(
                "QueueDoesNotExist", "The specified queue does not exist.", "AWS.SimpleQueueService.NonExistentQueue"
            )
        return queue

    def _by_arn(self, arn: str) -> Queue:
        for queue in self.queues.values():
            if queue.arn == arn:
                return queue
        raise SqsError("ResourceNotFoundException", f"no queue {arn}")

    def wake_all(self) -> None:
        with self.lock:
            for queue in self.queues.values():
                queue.cond.notify_all()

    def _tick(self, queue: Queue, now: float) -> None:
        """Return expired in-flight and due delayed messages to the ready list; drop expired ones."""
        while queue.timers and queue.timers[0][0] <= now:
            when, _, mid = heapq.heappop(queue.timers)
            message = queue.messages.get(mid)
            if message is None or message.visible_at != when:
                continue  # deleted, or its visibility was changed (a newer timer exists)
            if message.handle is not None:
                message.handle = None
                if message.group_id:
                    self._group_release(queue, message.group_id)
            queue.ready.append(mid)
        retention = queue.attr_int("MessageRetentionPeriod", 345600)
        while queue.ready:
            head = queue.messages.get(queue.ready[0])
            if head is not None and head.sent_at + retention > now:
                break
            mid = queue.ready.popleft()
            queue.messages.pop(mid, None)

    def _group_release(self, queue: Queue, group: str) -> None:
        left = queue.groups_in_flight.get(group, 0) - 1
        if left <= 0:
            queue.groups_in_flight.pop(group, None)
        else:
            queue.groups_in_flight[group] = left

    def _schedule(self, queue: Queue, message: Message, when: float) -> None:
        message.visible_at = when
        heapq.heappush(queue.timers, (when, next(self._seq), message.id))

    def _redrive_target(self, queue: Queue) -> tuple[Queue, int] | None:
        policy = queue.attributes.get("RedrivePolicy")
        if not policy:
            return None
        doc = json.loads(policy)
        try:
            return self._by_arn(doc["deadLetterTargetArn"]), int(doc["maxReceiveCount"])
        except SqsError:
            return None

    def _enqueue(self, queue: Queue, message: Message, delay: int, now: float) -> None:
        queue.messages[message.id] = message
        if delay > 0:
            self._schedule(queue, message, now + delay)
        else:
            message.visible_at = now
            queue.ready.append(message.id)
            queue.cond.notify()

    # -- queues ----------------------------------------------------------------------------
    def CreateQueue(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["QueueName"]
        attributes = {**DEFAULTS, **(p.get("Attributes") or {})}
        if name.endswith(".fifo") != (attributes.get("FifoQueue") == "true"):
            raise SqsError("InvalidParameterValue", "FIFO queue names end with .fifo and set FifoQueue")
        with self.lock:
            if name in self.queues:
                return {"QueueUrl": self.queues[name].url}
            url = f"{self.base_url}/{self.account}/{name}"
            arn = f"arn:aws:sqs:{self.region}:{self.account}:{name}"
            self.queues[name] = Queue(name, url, arn, attributes, cond=threading.Condition(self.lock))
            return {"QueueUrl": url}

    def GetQueueUrl(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"QueueUrl": self._queue(p["QueueName"]).url}

    def ListQueues(self, p: dict[str, Any]) -> dict[str, Any]:
        prefix = p.get("QueueNamePrefix") or ""
        with self.lock:
            return {"QueueUrls": [q.url for n, q in sorted(self.queues.items()) if n.startswith(prefix)]}

    def DeleteQueue(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.queues.pop(self._queue(p["QueueUrl"]).name)
        return {}

    def PurgeQueue(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            queue.messages.clear()
            queue.ready.clear()
            queue.timers.clear()
            queue.groups_in_flight.clear()
        return {}

    def GetQueueAttributes(self, p: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            self._tick(queue, now)
            in_flight = sum(1 for m in queue.messages.values() if m.handle is not None)
            delayed = len(queue.messages) - len(queue.ready) - in_flight
            oldest = min((m.sent_at for m in queue.messages.values()), default=None)
            values = {
                **queue.attributes,
                "QueueArn": queue.arn,
                "ApproximateNumberOfMessages": str(len(queue.ready)),
                "ApproximateNumberOfMessagesNotVisible": str(in_flight),
                "ApproximateNumberOfMessagesDelayed": str(max(0, delayed)),
                "CreatedTimestamp": str(int(queue.created_at)),
                "LastModifiedTimestamp": str(int(queue.created_at)),
                # Not an SQS attribute: CloudWatch's ApproximateAgeOfOldestMessage, for the local status view.
                "JunctionAgeOfOldestMessage": str(int(now - oldest)) if oldest else "0",
            }
            wanted = p.get("AttributeNames") or ["All"]
            if "All" not in wanted:
                values = {k: v for k, v in values.items() if k in wanted}
            return {"Attributes": values}

    def SetQueueAttributes(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._queue(p["QueueUrl"]).attributes.update(p.get("Attributes") or {})
        return {}

    # -- messages --------------------------------------------------------------------------
    def _new_message(self, queue: Queue, entry: dict[str, Any], now: float) -> tuple[Message, int] | None:
        body = entry.get("MessageBody")
        if not isinstance(body, str) or not body:
            raise SqsError("MissingParameter", "The request must contain the parameter MessageBody.")
        refused = REFUSED_CHARACTERS.search(body)
        if refused:
            raise SqsError(
                "InvalidMessageContents",
                f"Invalid binary character '#x{ord(refused.group()):X}' was found in the message body, the set of "
                "allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            )
        limit = queue.attr_int("MaximumMessageSize", DEFAULT_MAXIMUM_MESSAGE_SIZE)
        if size_of(body, dict(entry.get("MessageAttributes") or {})) > limit:
            raise SqsError(
                "InvalidParameterValue",
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.",
            )
        group = entry.get("MessageGroupId")
        dedup = entry.get("MessageDeduplicationId")
        if queue.fifo:
            if not group:
                raise SqsError("MissingParameter", "The request must contain the parameter MessageGroupId.")
            if not dedup:
                if queue.attributes.get("ContentBasedDeduplication") != "true":
                    raise SqsError(
                        "InvalidParameterValue",
                        "The queue should either have ContentBasedDeduplication enabled or "
                        "MessageDeduplicationId provided explicitly",
                    )
                dedup = hashlib.sha256(body.encode()).hexdigest()
            seen = queue.dedup.get(dedup)
            if seen and seen[0] > now:
                return None
        message = Message(
            str(uuid.uuid4()), body, dict(entry.get("MessageAttributes") or {}), now, group, dedup, next(self._seq)
        )
        if queue.fifo and dedup:
            queue.dedup[dedup] = (now + 300, message.id)
        delay = int(entry.get("DelaySeconds", queue.attr_int("DelaySeconds", 0)))
        return message, 0 if queue.fifo else delay

    def _sent(self, message: Message | None, entry: dict[str, Any], queue: Queue) -> dict[str, Any]:
        body = entry["MessageBody"]
        out: dict[str, Any] = {
            "MessageId": message.id if message else str(uuid.uuid4()),
            "MD5OfMessageBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        }
        if entry.get("MessageAttributes"):
            out["MD5OfMessageAttributes"] = md5_of_attributes(entry["MessageAttributes"])
        if queue.fifo:
            out["SequenceNumber"] = str(message.sequence if message else 0).zfill(20)
        return out

    def SendMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            made = self._new_message(queue, p, now)
            if made:
                self._enqueue(queue, made[0], made[1], now)
            return self._sent(made[0] if made else None, p, queue)

    def SendMessageBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        ok, failed = [], []
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            entries = p.get("Entries") or []
            if not 1 <= len(entries) <= 10:
                raise SqsError("TooManyEntriesInBatchRequest", "A batch holds 1 to 10 entries.")
            for entry in entries:
                try:
                    made = self._new_message(queue, entry, now)
                except SqsError as exc:
                    failed.append(
                        {"Id": entry.get("Id"), "Code": exc.code, "Message": exc.message, "SenderFault": True}
                    )
                    continue
                if made:
                    self._enqueue(queue, made[0], made[1], now)
                ok.append({"Id": entry.get("Id"), **self._sent(made[0] if made else None, entry, queue)})
        return {"Successful": ok, "Failed": failed}

    def ReceiveMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        limit = int(p.get("MaxNumberOfMessages", 1))
        if not 1 <= limit <= 10:
            raise SqsError("InvalidParameterValue", "MaxNumberOfMessages must be 1 to 10.")
        deadline = time.time() + min(20, int(p.get("WaitTimeSeconds", 0)))
        wanted_attrs = set(p.get("AttributeNames") or []) | set(p.get("MessageSystemAttributeNames") or [])
        wanted_msg_attrs = set(p.get("MessageAttributeNames") or [])
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            visibility = int(p.get("VisibilityTimeout", queue.attr_int("VisibilityTimeout", 30)))
            while True:
                now = time.time()
                self._tick(queue, now)
                taken = self._take(queue, limit, visibility, now)
                if taken or now >= deadline:
                    break
                next_timer = queue.timers[0][0] if queue.timers else deadline
                queue.cond.wait(timeout=max(0.001, min(deadline, next_timer) - now))
                queue = self._queue(p["QueueUrl"])
            return {"Messages": [self._render(m, wanted_attrs, wanted_msg_attrs) for m in taken]} if taken else {}

    def _take(self, queue: Queue, limit: int, visibility: int, now: float) -> list[Message]:
        taken: list[Message] = []
        redrive = self._redrive_target(queue)
        skipped: list[str] = []
        while queue.ready and len(taken) < limit:
            mid = queue.ready.popleft()
            message = queue.messages.get(mid)
            if message is None:
                continue
            if queue.fifo and message.group_id in queue.groups_in_flight:
                skipped.append(mid)
                continue
            if redrive and message.receive_count >= redrive[1]:
                # Received more than maxReceiveCount times: SQS moves it to the dead-letter queue.
                del queue.messages[mid]
                message.handle, message.dead_letter_source_arn = None, queue.arn
                dlq = redrive[0]
                if dlq.fifo and not message.group_id:
                    message.group_id = message.id
                self._enqueue(dlq, message, 0, now)
                continue
            message.receive_count += 1
            message.first_receive_at = message.first_receive_at or now
            message.handle = f"{mid}#{message.receive_count}#{uuid.uuid4().hex[:12]}"
            self._schedule(queue, message, now + visibility)
            if message.group_id and queue.fifo:
                queue.groups_in_flight[message.group_id] = queue.groups_in_flight.get(message.group_id, 0) + 1
            taken.append(message)
        queue.ready.extendleft(reversed(skipped))
        return taken

    def _render(self, m: Message, wanted: set[str], wanted_msg: set[str]) -> dict[str, Any]:
        system = {
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "SentTimestamp": str(int(m.sent_at * 1000)),
            "ApproximateReceiveCount": str(m.receive_count),
            "ApproximateFirstReceiveTimestamp": str(int((m.first_receive_at or m.sent_at) * 1000)),
        }
        if m.group_id:
            system["MessageGroupId"] = m.group_id
            system["SequenceNumber"] = str(m.sequence).zfill(20)
        if m.dedup_id:
            system["MessageDeduplicationId"] = m.dedup_id
        if m.dead_letter_source_arn:
            system["DeadLetterQueueSourceArn"] = m.dead_letter_source_arn
        out: dict[str, Any] = {
            "MessageId": m.id,
            "ReceiptHandle": m.handle,
            "MD5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
            "Body": m.body,
        }
        if wanted:
            out["Attributes"] = system if "All" in wanted else {k: v for k, v in system.items() if k in wanted}
        if wanted_msg and m.attributes:
            chosen = (
                m.attributes
                if "All" in wanted_msg or ".*" in wanted_msg
                else {k: v for k, v in m.attributes.items() if k in wanted_msg}
            )
            if chosen:
                out["MessageAttributes"] = chosen
                out["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
        return out

    def _in_flight(self, queue: Queue, handle: str) -> Message:
        mid = handle.split("#", 1)[0]
        message = queue.messages.get(mid)
        if message is None or message.handle is None:
            raise SqsError(
                "MessageNotInflight",
                "The message referred to isn't in flight.",
                "AWS.SimpleQueueService.MessageNotInflight",
            )
        if message.handle != handle:
            raise SqsError("ReceiptHandleIsInvalid", "The receipt handle has expired.")
        return message

    def _delete(self, queue: Queue, handle: str) -> None:
        mid = handle.split("#", 1)[0]
        message = queue.messages.get(mid)
        if message is None:
            return  # already gone: SQS answers success
        if message.handle != handle:
            raise SqsError("ReceiptHandleIsInvalid", "The receipt handle has expired.")
        del queue.messages[mid]
        if message.group_id and queue.fifo:
            self._group_release(queue, message.group_id)
            queue.cond.notify()  # the group's next message may be taken now

    def DeleteMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._delete(self._queue(p["QueueUrl"]), p["ReceiptHandle"])
        return {}

    def DeleteMessageBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        ok, failed = [], []
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            for entry in p.get("Entries") or []:
                try:
                    self._delete(queue, entry["ReceiptHandle"])
                    ok.append({"Id": entry["Id"]})
                except SqsError as exc:
                    failed.append({"Id": entry["Id"], "Code": exc.code, "Message": exc.message, "SenderFault": True})
        return {"Successful": ok, "Failed": failed}

    def _change(self, queue: Queue, handle: str, timeout: int, now: float) -> None:
        if not 0 <= timeout <= 43_200:
            raise SqsError("InvalidParameterValue", "VisibilityTimeout must be 0 to 43200 seconds.")
        message = self._in_flight(queue, handle)
        if timeout == 0:
            message.visible_at = now  # invalidates its timer
            message.handle = None
            if message.group_id and queue.fifo:
                self._group_release(queue, message.group_id)
            queue.ready.appendleft(message.id)
            queue.cond.notify()
        else:
            self._schedule(queue, message, now + timeout)

    def ChangeMessageVisibility(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._change(self._queue(p["QueueUrl"]), p["ReceiptHandle"], int(p["VisibilityTimeout"]), time.time())
        return {}

    def ChangeMessageVisibilityBatch(self, p: dict[str, Any]) -> dict[str, Any]:
        ok, failed = [], []
        now = time.time()
        with self.lock:
            queue = self._queue(p["QueueUrl"])
            for entry in p.get("Entries") or []:
                try:
                    self._change(queue, entry["ReceiptHandle"], int(entry.get("VisibilityTimeout", 0)), now)
                    ok.append({"Id": entry["Id"]})
                except SqsError as exc:
                    failed.append({"Id": entry["Id"], "Code": exc.code, "Message": exc.message, "SenderFault": True})
        return {"Successful": ok, "Failed": failed}

    # -- dead-letter queue redrive -----------------------------------------------------------
    def StartMessageMoveTask(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            source = self._by_arn(p["SourceArn"])
            if p.get("DestinationArn"):
                destination = self._by_arn(p["DestinationArn"])
            else:
                origins = [q for q in self.queues.values() if (self._redrive_target(q) or (None,))[0] is source]
                if not origins:
                    raise SqsError("InvalidParameterValue", "The source queue is not a dead-letter queue of any queue.")
                destination = origins[0]
            handle = uuid.uuid4().hex
            task = {
                "TaskHandle": handle,
                "Status": "RUNNING",
                "SourceArn": source.arn,
                "DestinationArn": destination.arn,
                "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": len(source.messages),
                "StartedTimestamp": int(time.time() * 1000),
            }
            rate = p.get("MaxNumberOfMessagesPerSecond")
            if rate:
                task["MaxNumberOfMessagesPerSecond"] = int(rate)
            self.move_tasks[handle] = task
        threading.Thread(target=self._move, args=(task, source, destination), daemon=True).start()
        return {"TaskHandle": handle}

    def _move(self, task: dict[str, Any], source: Queue, destination: Queue) -> None:
        rate = task.get("MaxNumberOfMessagesPerSecond") or 500
        while task["Status"] == "RUNNING":
            with self.lock:
                now = time.time()
                self._tick(source, now)
                if not source.ready:
                    task["Status"] = "COMPLETED"
                    return
                mid = source.ready.popleft()
                message = source.messages.pop(mid, None)
                if message is not None:
                    message.receive_count, message.handle, message.dead_letter_source_arn = 0, None, None
                    message.first_receive_at = None
                    self._enqueue(destination, message, 0, now)
                    task["ApproximateNumberOfMessagesMoved"] += 1
            time.sleep(1 / rate)

    def ListMessageMoveTasks(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"Results": [dict(t) for t in self.move_tasks.values() if t["SourceArn"] == p["SourceArn"]]}

    def CancelMessageMoveTask(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            task = self.move_tasks[p["TaskHandle"]]
            task["Status"] = "CANCELLED"
            return {"ApproximateNumberOfMessagesMoved": task["ApproximateNumberOfMessagesMoved"]}
