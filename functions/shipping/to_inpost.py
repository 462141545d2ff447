"""The warehouse's ``order.packed`` -> one InPost shipment (ShipX), followed to its tracking number.

One shipment per order: the effect's key is ``<order_reference>#shipment`` and the order's
entity id (``shopify-order:...``) is the trace key. ShipX does not keep references unique, so
every delivery looks the shipment up by its reference first (a lost answer may have created it;
a redelivery must never make a second label) and creates only when there is none
(``attempt.creating()`` right before the POST).

ShipX confirms a shipment asynchronously: the hop reads it again a few times, briefly, within
the attempt's time. Without a tracking number yet it waits (``AwaitingPrerequisite``,
``awaiting_tracking_number``): the retry finds the shipment by its reference and only follows
it. A refusal of the content (400) is a ``TargetRejected`` naming the fields (no personal data).
The hop returns the upstream contract's ids with ``shipment_event`` ``shipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from shared.connectors.inpost import COURIER, LOCKER, InPostClient, has_tracking
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, TargetRejected, ValidationFailed
from shared.models import normalise_email, normalise_phone
from shared.processing import Attempt, FlowContext, Prepared

from .events import PACKED, PackedOrder, packed_from_envelope
from .inpost_hop import NO_EFFECT, InPostHop, client_factory, contract_ids, digest, not_routed

POLLS = 3  # reads of a new shipment while ShipX confirms it, within one attempt
POLL_INTERVAL = 0.5  # seconds between them
SERVICES = {"locker": LOCKER, "courier": COURIER}


@dataclass(frozen=True)
class ShipmentOrder:
    packed: PackedOrder
    body: dict[str, Any]  # the ShipX create body

    @property
    def reference(self) -> str:
        return self.packed.order_reference


def shipx_phone(phone: str, ids: dict[str, str]) -> str:
    """ShipX takes a Polish number as its nine digits."""
    try:
        e164 = normalise_phone(phone, "PL")
    except ValueError:
        raise ValidationFailed("receiver phone is not a valid number", entity_ids=ids) from None
    if not e164.startswith("+48") or len(e164) != 12:
        raise ValidationFailed("receiver phone is not a Polish number (InPost delivers in Poland)", entity_ids=ids)
    return e164[3:]


def shipment_body(packed: PackedOrder, ids: dict[str, str]) -> dict[str, Any]:
    """The ShipX create body of a packed order (the simplified flow: ``service`` given)."""
    receiver = packed.receiver
    try:
        email = normalise_email(receiver.email)
    except ValueError:
        raise ValidationFailed("receiver email is not a valid address", entity_ids=ids) from None
    to: dict[str, Any] = {"name": receiver.name, "email": email, "phone": shipx_phone(receiver.phone, ids)}
    if receiver.address is not None:
        a = receiver.address
        to["address"] = {
            "street": a.street,
            "building_number": a.building_number if not a.flat_number else f"{a.building_number}/{a.flat_number}",
            "city": a.city,
            "post_code": a.post_code,
            "country_code": a.country_code,
        }
    parcel = packed.parcel
    if parcel.template is not None:
        shipped: dict[str, Any] = {"template": parcel.template}
    else:
        assert parcel.dimensions is not None and parcel.weight_g is not None  # PackedOrder checked it
        d = parcel.dimensions
        shipped = {
            "dimensions": {
                "length": str(d.length_mm),
                "width": str(d.width_mm),
                "height": str(d.height_mm),
                "unit": "mm",
            },
            "weight": {"amount": str((Decimal(parcel.weight_g) / 1000).quantize(Decimal("0.001"))), "unit": "kg"},
        }
    body: dict[str, Any] = {
        "receiver": to,
        "parcels": [{"id": "1", **shipped}],
        "service": SERVICES[packed.service],
        "reference": packed.order_reference,
        "comments": f"Order {packed.order_number}"[:100],
    }
    if packed.service == "locker":
        body["custom_attributes"] = {"target_point": packed.target_point}
    return body


class ShipmentsToInPost(InPostHop):
    def __init__(
        self,
        ctx: FlowContext,
        client: Callable[[], InPostClient],
        *,
        polls: int = POLLS,
        poll_interval: float = POLL_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(ctx, client)
        self.polls = polls
        self.poll_interval = poll_interval
        self.sleep = sleep

    def prepare(self, envelope: Envelope) -> Prepared:
        payload = envelope.payload()
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind != PACKED:
            return not_routed(envelope.delivery_id, f"type {str(kind)[:40]!r}")
        packed = packed_from_envelope(envelope).data
        ids = {
            "order": packed.entity_id,
            "order_reference": packed.order_reference,
            "order_number": packed.order_number,
        }
        key = f"{packed.order_reference}#shipment"
        # One shipment per order, whatever the warehouse sent again: the key is the content.
        return Prepared(key, packed.entity_id, digest(key), ids, ShipmentOrder(packed, shipment_body(packed, ids)))

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        order: ShipmentOrder | None = prepared.data
        if order is None:
            return dict(NO_EFFECT)
        ids = dict(prepared.entity_ids)
        self.spend(2 + self.polls, attempt)

        def run() -> dict[str, str]:
            with self.inpost.bounded(attempt.timeout):
                shipment = self.inpost.find_by_reference(order.reference, ids)
                if shipment is None:
                    attempt.require_settled()  # an earlier attempt may still be committing
                    attempt.creating()
                    shipment = self.inpost.create_shipment(order.body, ids)
                return self.follow(shipment, attempt, ids)

        shipment = self.guarded(run)
        made = contract_ids(shipment, event="shipped")
        made["order_reference"] = made["order_reference"] or order.reference
        self.record(order.packed.entity_id, "shipment", made)
        return made

    def follow(self, shipment: dict[str, Any], attempt: Attempt, ids: dict[str, str]) -> dict[str, Any]:
        """Read the shipment again until it has its tracking number, within the attempt's time;
        ``AwaitingPrerequisite`` when ShipX has not confirmed it yet."""
        shipment_id = shipment.get("id")
        ids = {**ids, "inpost_shipment_id": str(shipment_id)}
        for _ in range(self.polls):
            if has_tracking(shipment) or shipment.get("status") == "canceled":
                break
            if attempt.deadline - time.monotonic() < self.poll_interval + 2.0:
                break  # no time for another read: the retry follows it
            self.sleep(self.poll_interval)
            shipment = self.inpost.get_shipment(str(shipment_id), ids)
        if shipment.get("status") == "canceled":
            raise TargetRejected(
                "the order's InPost shipment was canceled: an operator decides whether to send it again",
                entity_ids=ids,
                details={"status": "canceled"},
            )
        if not has_tracking(shipment):
            raise AwaitingPrerequisite(
                "ShipX has not confirmed the shipment yet (no tracking number)",
                reason="awaiting_tracking_number",
                entity_ids=ids,
                retry_after=self.poll_interval * 4,
            )
        return shipment


def build(ctx: FlowContext, http: httpx.Client | None = None) -> ShipmentsToInPost:
    return ShipmentsToInPost(ctx, client_factory(ctx, http))
