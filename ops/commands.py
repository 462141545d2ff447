"""Plain operations behind the CLI: integrations, queue status, trace and replay.

Each target of an integration has its own queue, DLQ, breaker and last success, so every
operation on them takes the integration and the target. Every function takes the boto3 clients
it needs, so tests (and scripts) call them directly.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from functions import registry
from shared import state_keys
from shared.aws import item_from_ddb
from shared.declaration import Integration, Target, idempotency_table_name, queue_name, state_table_name
from shared.envelope import Envelope, message_attributes
from shared.errors import MalformedEnvelope

from .context import OpsError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


# -- integrations ------------------------------------------------------------------------------
def integration(name: str) -> Integration:
    try:
        return registry.get(name)
    except KeyError as exc:
        raise OpsError(str(exc.args[0])) from None


def selected(name: str | None) -> tuple[Integration, ...]:
    """One named integration, or every declared one."""
    return (integration(name),) if name else registry.INTEGRATIONS


def target_of(i: Integration, name: str | None) -> Target:
    """The named target of the integration, or its only one: an integration with several
    targets needs the name, so nothing acts on a queue the operator did not mean."""
    if name is None:
        if len(i.targets) == 1:
            return i.targets[0]
        names = ", ".join(t.name for t in i.targets)
        raise OpsError(f"{i.name} has several targets ({names}): pass --target")
    try:
        return i.target(name)
    except KeyError as exc:
        raise OpsError(str(exc.args[0])) from None


def one_queue_each(name: str | None, target: str | None) -> list[tuple[Integration, Target]]:
    """The target queues a DLQ command acts on: every target of every integration when no
    integration is named, else the named integration's target (``target_of``)."""
    if name is None:
        if target is not None:
            raise OpsError("--target needs an integration: junction ... <integration> --target <target>")
        return [(i, t) for i in registry.INTEGRATIONS for t in i.targets]
    chosen = integration(name)
    return [(chosen, target_of(chosen, target))]


def every_target(name: str | None, target: str | None) -> list[tuple[Integration, Target]]:
    """What ``status`` shows: every target of the chosen integrations, or the one named."""
    if target is not None:
        return one_queue_each(name, target)
    return [(i, t) for i in selected(name) for t in i.targets]


def trigger_text(i: Integration) -> str:
    if i.webhook:
        return f"webhook {i.webhook.method} {i.webhook.path} ({i.webhook.scheme})"
    if i.schedule:
        return f"schedule {i.schedule.expression}"
    return "-"


@dataclass(frozen=True)
class IntegrationRow:
    name: str
    target: str
    trigger: str
    flow: str  # "source -> target"
    batch_size: int
    max_receives: int
    max_concurrency: int


def integration_rows() -> list[IntegrationRow]:
    """One row per target of every integration: each has its own queue settings."""
    return [
        IntegrationRow(
            i.name,
            t.name,
            trigger_text(i),
            f"{i.source} -> {t.name}",
            t.queue.batch_size,
            t.queue.max_receive_count,
            t.max_concurrency,
        )
        for i in registry.INTEGRATIONS
        for t in i.targets
    ]


# -- queues ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueRef:
    integration: Integration
    target: Target
    name: str
    url: str
    dead_letter: bool

    def arn(self, sqs: SQSClient) -> str:
        return sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def queue_ref(sqs: SQSClient, stage: str, i: Integration, target: Target, *, dead_letter: bool = False) -> QueueRef:
    name = queue_name(stage, i, target, dead_letter=dead_letter)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_QUEUE_CODES:
            raise OpsError(f"queue {name} not found: stack not deployed for stage {stage}?") from None
        raise
    return QueueRef(i, target, name, url, dead_letter)


@dataclass(frozen=True)
class QueueStatus:
    integration: str
    target: str
    visible: int
    in_flight: int
    delayed: int
    dlq_depth: int
    oldest_age_seconds: int | None  # None: unknown (no datapoint)
    last_success: str | None  # ISO 8601, from the state table
    breaker: str = "closed"  # the target's circuit breaker: closed, open (for how long), half_open
    breaker_open_until: float | None = None  # epoch seconds, while open


def queue_status(
    sqs: SQSClient,
    ddb: DynamoDBClient,
    stage: str,
    i: Integration,
    target: Target,
    *,
    cloudwatch: CloudWatchClient | None = None,
    now: datetime | None = None,
) -> QueueStatus:
    """Depths of the target's queue and its DLQ, the age of the oldest message, the target's
    breaker and its last success.

    The age comes from the local stand-in's ``JunctionAgeOfOldestMessage`` attribute when the
    queue has it, else from CloudWatch (``cloudwatch`` given), else it is unknown.
    """
    main = queue_ref(sqs, stage, i, target)
    dlq = queue_ref(sqs, stage, i, target, dead_letter=True)
    raw = sqs.get_queue_attributes(QueueUrl=main.url, AttributeNames=["All"])["Attributes"]
    attrs = {str(k): v for k, v in raw.items()}
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq.url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    age: int | None = None
    local_age = attrs.get("JunctionAgeOfOldestMessage")
    if local_age is not None:
        age = int(float(local_age))
    elif cloudwatch is not None:
        try:
            age = oldest_message_age(cloudwatch, main.name, now=now)
        except ClientError:  # no CloudWatch permission: the rest of the status still helps
            age = None
    return QueueStatus(
        i.name,
        target.name,
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        dlq_depth=int(dlq_attrs.get("ApproximateNumberOfMessages", 0)),
        oldest_age_seconds=age,
        last_success=last_success(ddb, stage, i, target),
        **breaker_state(ddb, stage, i, target),
    )


def breaker_state(ddb: DynamoDBClient, stage: str, i: Integration, target: Target) -> dict[str, Any]:
    """The target's circuit breaker as its processors share it (shared/breaker.py)."""
    pk, sk = state_keys.breaker(i.name, target.name)
    item = ddb.get_item(TableName=state_table_name(stage), Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    if not item:
        return {"breaker": "closed", "breaker_open_until": None}
    doc = item_from_ddb(dict(item))
    state = str(doc.get("state") or "closed")
    until = doc.get("open_until")
    return {"breaker": state, "breaker_open_until": float(until) if state == "open" and until else None}


def oldest_message_age(cloudwatch: CloudWatchClient, queue: str, *, now: datetime | None = None) -> int | None:
    """CloudWatch's ApproximateAgeOfOldestMessage, the maximum over the last five minutes."""
    end = now or datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue}],
        StartTime=end - timedelta(minutes=5),
        EndTime=end,
        Period=60,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    values = [p["Maximum"] for p in points if "Maximum" in p]
    return int(max(values)) if values else None


def last_success(ddb: DynamoDBClient, stage: str, i: Integration, target: Target) -> str | None:
    """When the target's processor last delivered (ISO 8601), None if never."""
    pk, sk = state_keys.last_success(i.name, target.name)
    item = ddb.get_item(TableName=state_table_name(stage), Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return str(item_from_ddb(dict(item)).get("at")) if item else None


# -- trace -------------------------------------------------------------------------------------
def trace_items(
    ddb: DynamoDBClient, stage: str, entity_id: str, *, newest_first: bool = False
) -> Iterator[dict[str, Any]]:
    """Every hop recorded for an entity (``shopify-order:123``), oldest first unless asked."""
    params: dict[str, Any] = {
        "TableName": state_table_name(stage),
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": state_keys.trace_pk(entity_id)}},
        "ScanIndexForward": not newest_first,
    }
    while True:
        page = ddb.query(**params)
        for item in page.get("Items", []):
            yield item_from_ddb(dict(item))
        if not page.get("LastEvaluatedKey"):
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class Hop:
    at: str
    integration: str
    target: str
    outcome: str
    attempts: int | None
    latency_ms: int | None
    reason: str | None
    target_ids: dict[str, str]
    delivery_id: str | None
    replay_id: str | None


def trace(ddb: DynamoDBClient, stage: str, entity_id: str) -> list[Hop]:
    hops = [_hop(item) for item in trace_items(ddb, stage, entity_id)]
    if not hops:
        raise OpsError(f"no trace for {entity_id!r} in stage {stage} (entity ids look like 'shopify-order:123')")
    return hops


def _hop(item: dict[str, Any]) -> Hop:
    def number(value: Any) -> int | None:
        return None if value is None else int(value)

    return Hop(
        at=str(item.get("sk", "")).split("#", 1)[0],
        integration=str(item.get("integration", "")),
        target=str(item.get("target", "")),
        outcome=str(item.get("outcome", "")),
        attempts=number(item.get("attempts")),
        latency_ms=number(item.get("latency_ms")),
        reason=item.get("reason"),
        target_ids={str(k): str(v) for k, v in (item.get("target_ids") or {}).items()},
        delivery_id=item.get("delivery_id"),
        replay_id=item.get("replay_id"),
    )


# -- replay ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordedEvent:
    integration: Integration
    target: Target
    record_key: str
    envelope: Envelope


def _hop_target(i: Integration, item: dict[str, Any]) -> Target | None:
    """The target a trace item names; an item without one belongs to the only target there is.
    None for a target the integration no longer declares (nothing to replay it into)."""
    name = item.get("target")
    if not name:
        return i.targets[0] if len(i.targets) == 1 else None
    try:
        return i.target(str(name))
    except KeyError:
        return None


def recorded_event(
    ddb: DynamoDBClient,
    stage: str,
    entity_id: str,
    *,
    integration_name: str | None = None,
    target_name: str | None = None,
) -> RecordedEvent:
    """The event behind the entity's latest recorded effect (of one integration and target, if
    named), as its idempotency record kept it."""
    wanted = integration(integration_name) if integration_name else None
    if wanted is not None and target_name is not None:
        target_of(wanted, target_name)  # an unknown target is the operator's error, not "no record"
    seen_any = False
    for item in trace_items(ddb, stage, entity_id, newest_first=True):
        seen_any = True
        key = item.get("record_key")
        if not key or (wanted and item.get("integration") != wanted.name):
            continue
        try:
            owner = wanted or registry.get(str(item.get("integration")))
        except KeyError:
            continue  # an integration no longer declared
        target = _hop_target(owner, item)
        if target is None or (target_name is not None and target.name != target_name):
            continue
        record = ddb.get_item(
            TableName=idempotency_table_name(stage), Key={"id": {"S": str(key)}}, ConsistentRead=True
        ).get("Item")
        text = item_from_ddb(dict(record)).get("envelope") if record else None
        if not text:
            continue  # a failed attempt's key: no effect was recorded there; look further back
        try:
            envelope = Envelope.from_json(str(text))
        except MalformedEnvelope as exc:
            raise OpsError(f"the recorded event for {entity_id!r} is unreadable: {exc}") from None
        return RecordedEvent(owner, target, str(key), envelope)
    if not seen_any:
        raise OpsError(f"no trace for {entity_id!r} in stage {stage}: nothing to replay")
    scope = " ".join(
        part
        for part in (
            f"integration {wanted.name}" if wanted else "",
            f"target {target_name}" if target_name else "",
        )
        if part
    )
    scope = f" for {scope}" if scope else ""
    raise OpsError(f"no recorded event for {entity_id!r}{scope} (no completed effect kept its event)")


@dataclass(frozen=True)
class ReplayResult:
    integration: str
    target: str
    message_id: str
    record_key: str
    replay_id: str | None
    queue: str


def replay(
    sqs: SQSClient,
    ddb: DynamoDBClient,
    stage: str,
    entity_id: str,
    *,
    integration_name: str | None = None,
    target_name: str | None = None,
    bypass_idempotency: bool = False,
    event: RecordedEvent | None = None,
) -> ReplayResult:
    """Put the recorded event back on the queue of the target that recorded it (only that one:
    each target is its own idempotency scope and its own pipeline).

    Without ``bypass_idempotency`` the processor finds the COMPLETED record under the same
    business key and treats the event as a duplicate: nothing changes in the target. With it, the
    envelope gets a fresh ``replay_id``; the processor then keys the effect on
    ``<business key>#replay:<id>`` and makes it once more (once per replay id).
    """
    found = event or recorded_event(ddb, stage, entity_id, integration_name=integration_name, target_name=target_name)
    envelope = found.envelope
    if bypass_idempotency:
        envelope = dataclasses.replace(envelope, replay_id=uuid.uuid4().hex)
    queue = queue_ref(sqs, stage, found.integration, found.target)
    params: dict[str, Any] = {
        "QueueUrl": queue.url,
        "MessageBody": envelope.to_json(),
        "MessageAttributes": message_attributes(envelope),
    }
    if found.target.queue.fifo:
        params["MessageGroupId"] = entity_id
        params["MessageDeduplicationId"] = uuid.uuid4().hex
    sent = sqs.send_message(**params)
    return ReplayResult(
        found.integration.name,
        found.target.name,
        sent["MessageId"],
        found.record_key,
        envelope.replay_id,
        queue.name,
    )
