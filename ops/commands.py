"""Plain operations behind the CLI: integrations, queue status, trace, replay and backfill.

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
from shared.errors import MalformedEnvelope, StoreUnavailable
from shared.idempotency import kept_event_json
from shared.xref import CrossReference, entities_of

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


@dataclass(frozen=True)
class EntityTrace:
    """One entity's trace, found by its own id or by one of its ids in another system."""

    entity_id: str
    matched_as: tuple[str, ...]  # the kinds the asked id is among its ids (``erp_doc_entry``); () if its own
    ids: dict[str, str]  # the cross-reference: its id in every system a hop has reached
    hops: list[Hop]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def traces_of(ddb: DynamoDBClient, stage: str, any_id: str) -> list[EntityTrace]:
    """The trace of the entity ``any_id`` names: its trace key (``shopify-order:123``), else any
    of its ids in any system (an ERP DocEntry, a CRM deal, a WMS order, the shop's own order id),
    led back by the cross-reference's aliases. One id may be two entities' (the same number at
    two systems): each is returned."""
    hops = [_hop(item) for item in trace_items(ddb, stage, any_id)]
    if hops:
        return [EntityTrace(any_id, (), _cross_reference(ddb, stage, any_id), hops)]
    found: dict[str, list[str]] = {}
    for kind, entity in entities_of(ddb, state_table_name(stage), any_id):
        found.setdefault(entity, []).append(kind)
    if not found:
        raise OpsError(
            f"no trace for {any_id!r} in stage {stage}, and no system's id leads to one "
            "(give the entity, e.g. 'shopify-order:123', or its id at a target: an ERP DocEntry, "
            "a HubSpot deal or contact, a ShipBob order, the shop's order id)"
        )
    return [
        EntityTrace(
            entity,
            tuple(kinds),
            _cross_reference(ddb, stage, entity),
            [_hop(item) for item in trace_items(ddb, stage, entity)],  # [] once its trace expired
        )
        for entity, kinds in found.items()
    ]


def _cross_reference(ddb: DynamoDBClient, stage: str, entity_id: str) -> dict[str, str]:
    try:
        return CrossReference(ddb, state_table_name(stage)).ids(entity_id)
    except StoreUnavailable as exc:
        raise OpsError(f"the cross-reference of {entity_id!r} is unreadable: {exc}") from None


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


def kept_event(ddb: DynamoDBClient, stage: str, record_key: str, entity_id: str) -> Envelope | None:
    """The event an idempotency record kept for replay; None if the record kept none (a failed
    attempt's key, or a record since expired)."""
    record = ddb.get_item(
        TableName=idempotency_table_name(stage), Key={"id": {"S": record_key}}, ConsistentRead=True
    ).get("Item")
    text = kept_event_json(item_from_ddb(dict(record))) if record else None
    if not text:
        return None
    try:
        return Envelope.from_json(str(text))
    except MalformedEnvelope as exc:
        raise OpsError(f"the recorded event for {entity_id!r} is unreadable: {exc}") from None


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
        envelope = kept_event(ddb, stage, str(key), entity_id)
        if envelope is None:
            continue  # a failed attempt's key: no effect was recorded there; look further back
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
    message_id = send_event(sqs, queue, entity_id, envelope)
    return ReplayResult(
        found.integration.name,
        found.target.name,
        message_id,
        found.record_key,
        envelope.replay_id,
        queue.name,
    )


def send_event(sqs: SQSClient, queue: QueueRef, entity_id: str, envelope: Envelope) -> str:
    """Put an event on a target's queue as ingress would (a FIFO queue groups by entity, so
    one entity's events keep their order). Returns the message id."""
    params: dict[str, Any] = {
        "QueueUrl": queue.url,
        "MessageBody": envelope.to_json(),
        "MessageAttributes": message_attributes(envelope),
    }
    if queue.target.queue.fifo:
        params["MessageGroupId"] = entity_id
        params["MessageDeduplicationId"] = uuid.uuid4().hex
    return sqs.send_message(**params)["MessageId"]


# -- backfill ----------------------------------------------------------------------------------
DELIVERED_OUTCOMES = frozenset({"delivered", "duplicate"})  # the effect is at the hop's target


def window(since: str, until: str) -> tuple[str, str]:
    """``since`` and ``until`` (ISO 8601; no zone means UTC) as trace sort keys begin: UTC with
    milliseconds, as the processors write them, so the window compares as text."""
    bounds: list[str] = []
    for name, text in (("--since", since), ("--until", until)):
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise OpsError(f"{name} {text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        bounds.append(at.isoformat(timespec="milliseconds"))
    if bounds[0] >= bounds[1]:
        raise OpsError(f"--since {since} is not before --until {until}: the window is empty")
    return bounds[0], bounds[1]


def delivered_in_window(
    ddb: DynamoDBClient, stage: str, since: str, until: str, *, integration_name: str | None = None
) -> list[str]:
    """Entities with a delivered hop in ``[since, until)`` (bounds as ``window`` makes them), of
    one integration if named, oldest delivery first.

    The state table has no index on time, so this is a Scan: one full read of the state table
    (every item is read and billed, 0.5 read unit per 4 KB; the filter only trims what comes
    back). That is acceptable for an operator's backfill, never for a hot path.
    """
    names = {"#outcome": "outcome"}
    values: dict[str, Any] = {
        ":trace": {"S": state_keys.TRACE},
        ":since": {"S": since},
        ":until": {"S": until},  # an sk at exactly ``until`` is longer, so greater: left out
        ":delivered": {"S": "delivered"},
    }
    condition = "begins_with(pk, :trace) AND sk BETWEEN :since AND :until AND #outcome = :delivered"
    if integration_name:
        names["#integration"] = "integration"
        values[":integration"] = {"S": integration_name}
        condition += " AND #integration = :integration"
    params: dict[str, Any] = {
        "TableName": state_table_name(stage),
        "FilterExpression": condition,
        "ProjectionExpression": "pk, sk",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    first: dict[str, str] = {}
    while True:
        page = ddb.scan(**params)
        for item in page.get("Items", []):
            entity = item["pk"]["S"].removeprefix(state_keys.TRACE)
            sk = item["sk"]["S"]
            if entity not in first or sk < first[entity]:
                first[entity] = sk
        if not page.get("LastEvaluatedKey"):
            return sorted(first, key=lambda entity: (first[entity], entity))
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class RecordedEffect:
    """One business effect of an entity (``shopify-order:1#create``) and the event that made it."""

    integration: Integration
    business_key: str
    record_key: str
    envelope: Envelope
    at_targets: frozenset[str]  # targets whose trace shows this effect made


def recorded_effects(
    ddb: DynamoDBClient, stage: str, entity_id: str, *, integration_name: str | None = None
) -> list[RecordedEffect]:
    """Every effect of the entity some target recorded with its event, first made first (an
    order's create before its cancel). Each effect once, whichever target kept its event;
    deliberate replays (``#replay:``) are the same effect again and are left out."""
    made: dict[tuple[str, str], set[str]] = {}
    keys: dict[tuple[str, str], list[str]] = {}
    owners: dict[str, Integration] = {}
    for item in trace_items(ddb, stage, entity_id):
        key, name = str(item.get("record_key") or ""), str(item.get("integration") or "")
        if not key or "#replay:" in key or key.count("#") < 2 or (integration_name and name != integration_name):
            continue
        if name not in owners:
            try:
                owners[name] = registry.get(name)
            except KeyError:
                continue  # an integration no longer declared
        _, target, business_key = key.split("#", 2)
        effect = (name, business_key)
        keys.setdefault(effect, [])
        if key not in keys[effect]:
            keys[effect].append(key)
        if item.get("outcome") in DELIVERED_OUTCOMES:
            made.setdefault(effect, set()).add(str(item.get("target") or target))
    found: list[RecordedEffect] = []
    for (name, business_key), candidates in keys.items():
        for key in candidates:
            envelope = kept_event(ddb, stage, key, entity_id)
            if envelope is not None:
                at = frozenset(made.get((name, business_key), set()))
                found.append(RecordedEffect(owners[name], business_key, key, envelope, at))
                break
    return found


@dataclass(frozen=True)
class BackfillEvent:
    entity_id: str
    integration: Integration
    target: Target
    business_key: str
    record_key: str  # the record that kept the event
    envelope: Envelope
    at_target: bool  # the target already made this effect: the processor will see a duplicate


@dataclass(frozen=True)
class BackfillPlan:
    target: str
    since: str
    until: str
    entities: list[str]  # every entity with a delivery in the window, oldest first
    events: list[BackfillEvent]
    skipped: list[tuple[str, str]]  # (entity id, why nothing of it goes to the target)


def backfill_plan(
    ddb: DynamoDBClient,
    stage: str,
    since: str,
    until: str,
    target_name: str,
    *,
    integration_name: str | None = None,
) -> BackfillPlan:
    """What a backfill of ``target_name`` sends: every recorded effect of every entity delivered
    in the window, each to the named target of the integration that recorded it.

    All of an entity's effects go, not only the latest: a cancellation alone would wait for a
    creation the new target never gets.
    """
    scope = (integration(integration_name),) if integration_name else registry.INTEGRATIONS
    if integration_name:
        target_of(scope[0], target_name)
    elif not any(t.name == target_name for i in scope for t in i.targets):
        raise OpsError(f"no integration has a target {target_name!r} (`junction integrations` lists them)")
    low, high = window(since, until)
    entities = delivered_in_window(ddb, stage, low, high, integration_name=integration_name)
    events: list[BackfillEvent] = []
    skipped: list[tuple[str, str]] = []
    for entity in entities:
        effects = recorded_effects(ddb, stage, entity, integration_name=integration_name)
        if not effects:
            skipped.append((entity, "no completed effect kept its event"))
        for effect in effects:
            target = next((t for t in effect.integration.targets if t.name == target_name), None)
            if target is None:
                why = (entity, f"{effect.integration.name} has no target {target_name!r}")
                if why not in skipped:
                    skipped.append(why)
                continue
            events.append(
                BackfillEvent(
                    entity,
                    effect.integration,
                    target,
                    effect.business_key,
                    effect.record_key,
                    effect.envelope,
                    target_name in effect.at_targets,
                )
            )
    return BackfillPlan(target_name, low, high, entities, events, skipped)


@dataclass(frozen=True)
class BackfillSent:
    integration: str
    target: str
    queue: str
    sent: int


def backfill(sqs: SQSClient, stage: str, plan: BackfillPlan) -> list[BackfillSent]:
    """Send the plan's events, each to its integration's queue of the target, in the plan's
    order. Each target is its own idempotency scope: an effect the target already made comes
    back a duplicate (no second effect)."""
    queues: dict[str, QueueRef] = {}
    for event in plan.events:  # every queue found before the first send: a missing one sends nothing
        name = f"{event.integration.name}/{event.target.name}"
        if name not in queues:
            queues[name] = queue_ref(sqs, stage, event.integration, event.target)
    counts = dict.fromkeys(queues, 0)
    for event in plan.events:
        name = f"{event.integration.name}/{event.target.name}"
        send_event(sqs, queues[name], event.entity_id, event.envelope)
        counts[name] += 1
    return [BackfillSent(q.integration.name, q.target.name, q.name, counts[name]) for name, q in queues.items()]
