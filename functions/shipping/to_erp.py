"""Shipments -> the ERP, after the ``inpost`` hop (its ids in ``Envelope.upstream``).

- ``shipped``: a delivery note of the sales order (found by the order reference, its NumAtCard),
  lines based on the order's open lines, with the shipment's tracking number. An order not in the
  ERP yet waits for it (``awaiting_order``).
- ``status`` ``delivered``: the delivery note's U_ShipStatus becomes "delivered".
- ``status`` ``returned_to_sender``: a return based on the delivery note (the goods back in
  stock), and U_ShipStatus "returned". A status for a delivery not made yet waits for it
  (``awaiting_delivery``: the ``shipped`` event may still be on its way).
- any other status, or a hop that made no effect (``effect: none``): nothing, no call.

Effect keys: ``<order reference>#shipped#<shipment id>`` (also the delivery's U_JunctionRef),
``...#delivered#...``, ``...#returned#...`` (the return's U_JunctionRef). Every document is looked
up before it is made: the Service Layer ignores Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared.connectors.erp import ErpClient, ErpSettings
from shared.connectors.inpost import DELIVERED, RETURNED
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, StoreUnavailable, ValidationFailed
from shared.models import order_entity_id
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.xref import CrossReference

_logger = get_logger("junction.shipping")
SHIPPED, DELIVERED_EFFECT, RETURNED_EFFECT = "shipped", "delivered", "returned"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ShipmentEffect:
    effect: str  # shipped | delivered | returned
    order_reference: str
    shipment_id: str
    tracking_number: str

    @property
    def key(self) -> str:
        return f"{self.order_reference}#{self.effect}#{self.shipment_id}"

    @property
    def entity_id(self) -> str:
        return order_entity_id(self.order_reference)


def effect_of(upstream: dict[str, str], ids: dict[str, str]) -> ShipmentEffect | None:
    """What the ERP makes of the ``inpost`` hop's ids; None for no effect."""
    if not upstream or upstream.get("effect") == "none":
        return None
    event, status = upstream.get("shipment_event"), upstream.get("inpost_status", "")
    if event == "shipped":
        effect = SHIPPED
    elif event == "status" and status == DELIVERED:
        effect = DELIVERED_EFFECT
    elif event == "status" and status in RETURNED:
        effect = RETURNED_EFFECT
    elif event == "status":
        return None
    else:
        raise ValidationFailed("the inpost hop's ids have no shipment_event 'shipped' or 'status'", entity_ids=ids)
    reference, shipment = upstream.get("order_reference", ""), upstream.get("inpost_shipment_id", "")
    source, sep, source_id = reference.partition(":")
    if not (sep and source and source_id) or not shipment:
        raise ValidationFailed("the inpost hop's ids lack order_reference or inpost_shipment_id", entity_ids=ids)
    tracking = upstream.get("tracking_number", "")
    if effect == SHIPPED and not tracking:
        raise ValidationFailed("a shipped event without a tracking number", entity_ids=ids)
    return ShipmentEffect(effect, reference, shipment, tracking)


class ShippingToErp:
    def __init__(self, ctx: FlowContext, erp: Callable[[], ErpClient]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        self._erp_factory = erp
        self._erp: ErpClient | None = None

    @property
    def erp(self) -> ErpClient:
        if self._erp is None:
            self._erp = self._erp_factory()
        return self._erp

    def prepare(self, envelope: Envelope) -> Prepared:
        ids = {"delivery_id": envelope.delivery_id}
        effect = effect_of(dict(envelope.upstream), ids)
        if effect is None:
            key = f"not-routed:{envelope.delivery_id}"
            return Prepared(key, f"delivery:{envelope.delivery_id}", _digest(key), ids, None)
        entity_ids = {
            "order": effect.entity_id,
            "order_reference": effect.order_reference,
            "inpost_shipment_id": effect.shipment_id,
        }
        fingerprint = _digest(f"{effect.key}|{effect.tracking_number}")
        return Prepared(effect.key, effect.entity_id, fingerprint, entity_ids, effect)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        effect: ShipmentEffect | None = prepared.data
        if effect is None:
            return {"effect": "none"}
        ids = dict(prepared.entity_ids)
        with self.erp.bounded(attempt.timeout):
            order = self.erp.find_order(effect.order_reference, ids)
            if order is None:
                raise AwaitingPrerequisite(
                    "the ERP has no sales order for this shipment yet", reason="awaiting_order", entity_ids=ids
                )
            doc_entry = int(order["DocEntry"])
            ids["erp_doc_entry"] = str(doc_entry)
            made = self._make(effect, order, doc_entry, attempt, ids)
        try:
            found = {k: v for k, v in made.items() if k.endswith(("_id", "_entry"))}  # ids, not outcomes
            self.xref.record(
                effect.entity_id, f"{self.hop}#{effect.effect}", {"inpost_shipment_id": effect.shipment_id, **found}
            )
        except StoreUnavailable as exc:
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])
        return {"erp_doc_entry": str(doc_entry), **made}

    def _make(
        self, effect: ShipmentEffect, order: dict[str, Any], doc_entry: int, attempt: Attempt, ids: dict[str, str]
    ) -> dict[str, str]:
        if effect.effect == SHIPPED:
            # create_delivery looks for a delivery note based on the order before it makes one.
            attempt.creating()
            note = self.erp.create_delivery(
                doc_entry, reference=effect.key, tracking_number=effect.tracking_number, ids=ids
            )
            return {"erp_delivery_doc_entry": str(note.get("DocEntry"))}
        note_found = self.erp.find_delivery(doc_entry, ids, order_reference=effect.order_reference)
        if note_found is None:
            raise AwaitingPrerequisite(
                "the ERP has no delivery note for this order yet", reason="awaiting_delivery", entity_ids=ids
            )
        delivery = int(note_found["DocEntry"])
        if effect.effect == DELIVERED_EFFECT:
            outcome = self.erp.mark_delivered(delivery, ids)
            return {"erp_delivery_doc_entry": str(delivery), "erp_delivery_status": outcome}
        attempt.creating()
        returned = self.erp.create_return(delivery, reference=effect.key, ids=ids)
        return {"erp_delivery_doc_entry": str(delivery), "erp_return_doc_entry": str(returned.get("DocEntry"))}


def build(ctx: FlowContext, http: httpx.Client | None = None) -> ShippingToErp:
    def settings(refresh: bool) -> ErpSettings:
        return ErpSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, ERP_CREDENTIALS), refresh=refresh))

    return ShippingToErp(ctx, lambda: ErpClient(settings, http))
