"""ShipX's status webhook -> the status ShipX confirms, never the one the webhook claims.

The webhook is unsigned: only its shipment id is used, as a pointer. The effect's key is
``inpost:<shipment id>#<status the webhook claims>`` (so the same claim delivered twice is one
effect) and the entity id ``inpost-shipment:<id>``. Delivering reads the shipment from ShipX
(``GET /v1/shipments/{id}``) and acts on ShipX's status:

- the highest-ranked status seen per shipment is kept in the state table
  (``shipment#inpost:<id>`` / ``status``) by a conditional write, so an older status never
  overwrites a newer one (``delivered`` and the return statuses end a shipment);
- ShipX's status newer than the one held: held now, and handed on (``shipment_event`` ``status``,
  ``inpost_status`` ShipX's, ``order_reference`` from the shipment's ``reference``);
- ShipX's status the one held, and the webhook claims it: handed on again (a retry after a crash
  must reach the targets after this one; their effects are idempotent);
- a claim newer than ShipX's status (ShipX's API not there yet, or a forgery): it waits
  (``AwaitingPrerequisite``, ``awaiting_shipx_status``) and reads again with backoff; it acts once
  ShipX confirms, or goes to the DLQ after the hop's retry horizon, never having acted. Completing
  it with "no effect" would consume its key, and a genuine webhook of the same status, arriving
  later, would then be a duplicate;
- otherwise (an older status than the one held, a claim ShipX has moved past): no effect
  (``effect: none``, with ShipX's status). The status ShipX moved to comes with its own webhook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.connectors.inpost import InPostClient, status_rank
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, StoreUnavailable
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared

from .events import CONFIRMED, STATUS_CHANGED, ShipXWebhook, shipx_from_envelope
from .inpost_hop import InPostHop, client_factory, contract_ids, digest, not_routed, order_entity_id

_logger = get_logger("junction.shipping")
STATUS_TTL_DAYS = 400
EVENTS = (STATUS_CHANGED, CONFIRMED)


def status_key(scope: tuple[str, str], shipment_id: str) -> tuple[str, str]:
    """The state table's key of one shipment's status, in the id map of the hop that holds it
    (``scope``: its integration and target), whose key prefix its function is granted."""
    return state_keys.id_map(*scope, f"inpost-shipment-status:{shipment_id}")


@dataclass(frozen=True)
class Held:
    holds: bool  # the store now holds the status offered
    advanced: bool  # ... and did not before this write
    status: str | None  # the status held (after the write)


class StatusStore:
    """The highest-ranked status seen per shipment, written only forward."""

    def __init__(self, ddb: Any, table: str, scope: tuple[str, str], *, clock: Callable[[], float] = time.time) -> None:
        self.ddb = ddb
        self.table = table
        self.scope = scope
        self.clock = clock

    def offer(self, shipment_id: str, status: str) -> Held:
        """Hold ``status`` unless a status of a higher rank, or a different one of the same rank,
        is held already."""
        pk, sk = status_key(self.scope, shipment_id)
        now = int(self.clock())
        item = {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "status": {"S": status},
            "rank": {"N": str(status_rank(status))},
            "updated_at": {"N": str(now)},
            "expires_at": {"N": str(now + STATUS_TTL_DAYS * 86_400)},
        }
        try:
            answer = self.ddb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #rank < :rank OR #status = :status",
                ExpressionAttributeNames={"#rank": "rank", "#status": "status"},
                ExpressionAttributeValues={":rank": item["rank"], ":status": item["status"]},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"shipment status: {exc.response.get('Error', {}).get('Code')}") from exc
            return Held(False, False, self.held(shipment_id))
        except BotoCoreError as exc:
            raise StoreUnavailable(f"shipment status: {type(exc).__name__}") from exc
        before = (answer.get("Attributes") or {}).get("status", {}).get("S")
        return Held(True, before != status, status)

    def held(self, shipment_id: str) -> str | None:
        pk, sk = status_key(self.scope, shipment_id)
        try:
            item = self.ddb.get_item(
                TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"shipment status: {type(exc).__name__}") from exc
        value = (item or {}).get("status", {}).get("S")
        return str(value) if value is not None else None


class StatusFromInPost(InPostHop):
    def __init__(self, ctx: FlowContext, client: Callable[[], InPostClient]) -> None:
        super().__init__(ctx, client)
        self.store = StatusStore(ctx.ddb, ctx.state_table, (ctx.integration.name, ctx.target.name), clock=ctx.clock)

    def prepare(self, envelope: Envelope) -> Prepared:
        payload = envelope.payload()
        event = payload.get("event", payload.get("action")) if isinstance(payload, dict) else None
        if event not in EVENTS:
            return not_routed(envelope.delivery_id, f"event {str(event)[:40]!r}")
        webhook = shipx_from_envelope(envelope)
        shipment_id, claimed = webhook.payload.shipment_id, webhook.status or "unknown"
        key = f"inpost:{shipment_id}#{claimed}"
        ids = {"inpost_shipment_id": shipment_id, "webhook_status": claimed}
        return Prepared(key, f"inpost-shipment:{shipment_id}", digest(key), ids, webhook)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        webhook: ShipXWebhook | None = prepared.data
        if webhook is None:
            return {"effect": "none"}
        ids = dict(prepared.entity_ids)
        shipment_id = webhook.payload.shipment_id
        self.spend(1, attempt)

        def read() -> dict[str, Any]:
            with self.inpost.bounded(attempt.timeout):
                return self.inpost.get_shipment(shipment_id, ids)

        shipment = self.guarded(read)
        made = contract_ids(shipment, event="status")
        current = made["inpost_status"]
        if not current:
            log(_logger, logging.WARNING, "ShipX answered a shipment without a status", shipment_id=shipment_id)
            return {**made, "effect": "none"}
        claimed = webhook.status
        if claimed and claimed != current and status_rank(claimed) > status_rank(current):
            raise AwaitingPrerequisite(
                f"ShipX does not confirm the webhook's status yet (it says {current})",
                reason="awaiting_shipx_status",
                entity_ids={**ids, "inpost_status": current},
            )
        held = self.store.offer(shipment_id, current)
        confirmed = webhook.status == current
        if not held.holds or not (held.advanced or confirmed):
            log(
                _logger,
                logging.INFO,
                "status webhook makes no change",
                shipment_id=shipment_id,
                claimed=webhook.status,
                inpost_status=current,
                held=held.status,
            )
            return {**made, "effect": "none"}
        entity = order_entity_id(made["order_reference"])
        if entity is None:  # a shipment made outside Junction (by hand): no order to tell
            return {**made, "effect": "none"}
        self.record(entity, "status", made)
        return made


def build(ctx: FlowContext, http: httpx.Client | None = None) -> StatusFromInPost:
    return StatusFromInPost(ctx, client_factory(ctx, http))
