"""Plain operations behind the CLI: integrations, queue status, trace and replay.

Every function takes the boto3 clients it needs, so tests (and scripts) call them directly.
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
from shared.declaration import Integration, idempotency_table_name, queue_name, state_table_name
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


def trigger_text(i: Integration) -> str:
    if i.webhook:
        return f"webhook {i.webhook.method} {i.webhook.path} ({i.webhook.scheme})"
    if i.schedule:
        return f"schedule {i.schedule.expression}"
    return "-"


@dataclass(frozen=True)
class IntegrationRow:
    name: str
    trigger: str
    flow: str  # "source -> target"
    batch_size: int
    max_receives: int
    max_concurrency: int


def integration_rows() -> list[IntegrationRow]:
    return [
        IntegrationRow(
            i.name,
            trigger_text(i),
            f"{i.source} -> {i.target}",
            i.queue.batch_size,
            i.queue.max_receive_count,
            i.max_concurrency,
        )
        for i in registry.INTEGRATIONS
    ]


# -- queues ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueRef:
    integration: Integration
    name: str
    url: str
    dead_letter: bool

    def arn(self, sqs: SQSClient) -> str:
        return sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def queue_ref(sqs: SQSClient, stage: str, i: Integration, *, dead_letter: bool = False) -> QueueRef:
    name = queue_name(stage, i, dead_letter=dead_letter)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_QUEUE_CODES:
            raise OpsError(f"queue {name} not found: stack not deployed for stage {stage}?") from None
        raise
    return QueueRef(i, name, url, dead_letter)


@dataclass(frozen=True)
class QueueStatus:
    integration: str
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
    *,
    cloudwatch: CloudWatchClient | None = None,
    now: datetime | None = None,
) -> QueueStatus:
    """Depths of the queue and its DLQ, the age of the oldest message and the last success.

    The age comes from the local stand-in's ``JunctionAgeOfOldestMessage`` attribute when the
    queue has it, else from CloudWatch (``cloudwatch`` given), else it is unknown.
    """
    main = queue_ref(sqs, stage, i)
    dlq = queue_ref(sqs, stage, i, dead_letter=True)
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
        visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        dlq_depth=int(dlq_attrs.get("ApproximateNumberOfMessages", 0)),
        oldest_age_seconds=age,
        last_success=last_success(ddb, stage, i),
        **breaker_state(ddb, stage, i),
    )


def breaker_state(ddb: DynamoDBClient, stage: str, i: Integration) -> dict[str, Any]:
    """The target's circuit breaker as the processors share it (shared/breaker.py)."""
    pk, sk = state_keys.breaker(i.name, i.target)
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


def last_success(ddb: DynamoDBClient, stage: str, i: Integration) -> str | None:
    item = ddb.get_item(
        TableName=state_table_name(stage),
        Key={"pk": {"S": state_keys.last_success(i.name)[0]}, "sk": {"S": state_keys.last_success(i.name)[1]}},
    ).get("Item")
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
    record_key: str
    envelope: Envelope


def recorded_event(
    ddb: DynamoDBClient, stage: str, entity_id: str, *, integration_name: str | None = None
) -> RecordedEvent:
    """The event behind the entity's latest recorded effect, as its idempotency record kept it."""
    wanted = integration(integration_name) if integration_name else None
    seen_any = False
    for item in trace_items(ddb, stage, entity_id, newest_first=True):
        seen_any = True
        key = item.get("record_key")
        if not key or (wanted and item.get("integration") != wanted.name):
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
        return RecordedEvent(wanted or integration(str(item.get("integration"))), str(key), envelope)
    if not seen_any:
        raise OpsError(f"no trace for {entity_id!r} in stage {stage}: nothing to replay")
    scope = f" for integration {wanted.name}" if wanted else ""
    raise OpsError(f"no recorded event for {entity_id!r}{scope} (no completed effect kept its event)")


@dataclass(frozen=True)
class ReplayResult:
    integration: str
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
    bypass_idempotency: bool = False,
    event: RecordedEvent | None = None,
) -> ReplayResult:
    """Put the recorded event back on the integration's queue.

    Without ``bypass_idempotency`` the processor finds the COMPLETED record under the same
    business key and treats the event as a duplicate: nothing changes in the target. With it, the
    envelope gets a fresh ``replay_id``; the processor then keys the effect on
    ``<business key>#replay:<id>`` and makes it once more (once per replay id).
    """
    found = event or recorded_event(ddb, stage, entity_id, integration_name=integration_name)
    envelope = found.envelope
    if bypass_idempotency:
        envelope = dataclasses.replace(envelope, replay_id=uuid.uuid4().hex)
    queue = queue_ref(sqs, stage, found.integration)
    params: dict[str, Any] = {
        "QueueUrl": queue.url,
        "MessageBody": envelope.to_json(),
        "MessageAttributes": message_attributes(envelope),
    }
    if found.integration.queue.fifo:
        params["MessageGroupId"] = entity_id
        params["MessageDeduplicationId"] = uuid.uuid4().hex
    sent = sqs.send_message(**params)
    return ReplayResult(found.integration.name, sent["MessageId"], found.record_key, envelope.replay_id, queue.name)
