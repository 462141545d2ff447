"""What the shop followers of the ``inpost`` hop make of an event: the same for Shopify and
WooCommerce, so it is decided once.

A follower reads only ``Envelope.upstream`` (the ids and status ShipX confirmed), never the
webhook body. Of each event it makes one effect on its own shop's order:

- ``shipped`` (``shipment_event`` "shipped"): the tracking goes out;
- ``delivered`` (``shipment_event`` "status", ``inpost_status`` ``delivered``);
- ``returned`` (``shipment_event`` "status", ``inpost_status`` one of ``RETURNED``);
- anything else (another status, another shop's order): no effect, and no call.

The effect's key is ``<order reference>#<effect>#<shipment id>``: one effect per order, shipment
and kind, however often ShipX reports the status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.envelope import Envelope
from shared.errors import ValidationFailed
from shared.models import order_entity_id
from shared.processing import Prepared

DELIVERED = frozenset({"delivered"})
# ShipX's status of a parcel back with the sender. Others on the way there (pickup_time_expired,
# rejected_by_receiver, undelivered_*) are not final: the parcel may still be delivered.
RETURNED = frozenset({"returned_to_sender"})
REQUIRED = ("order_reference", "inpost_shipment_id", "tracking_number", "shipment_event")
CARRIER = "InPost"


@dataclass(frozen=True)
class ShopEffect:
    kind: str  # shipped | delivered | returned
    order_reference: str  # "woocommerce:727"
    shop: str  # "woocommerce"
    shop_order_id: str  # "727"
    shipment_id: str
    tracking_number: str
    tracking_url: str
    service: str
    status: str  # ShipX's, as re-read

    @property
    def business_key(self) -> str:
        return f"{self.order_reference}#{self.kind}#{self.shipment_id}"

    @property
    def entity_id(self) -> str:
        """The order's entity id, so the hop joins the order's trace and cross-reference."""
        return order_entity_id(self.order_reference)


def prepare(envelope: Envelope, shop: str) -> Prepared:
    """The Prepared of a shop follower: data is the ``ShopEffect``, or None (no effect)."""
    upstream = dict(envelope.upstream)
    missing = [k for k in REQUIRED if not upstream.get(k)]
    if missing:
        raise ValidationFailed(
            "the inpost hop's ids are missing from the event",
            entity_ids={"delivery_id": envelope.delivery_id},
            details={"missing": missing},
        )
    reference = upstream["order_reference"]
    source, _, source_id = reference.partition(":")
    kind = _kind(upstream["shipment_event"], upstream.get("inpost_status", ""))
    ids = {
        "order_reference": reference,
        "inpost_shipment_id": upstream["inpost_shipment_id"],
        "tracking_number": upstream["tracking_number"],
    }
    if source == shop and not (source_id.isascii() and source_id.isdigit()):
        raise ValidationFailed(
            f"a {shop} order reference names a numeric order id",
            entity_ids={"delivery_id": envelope.delivery_id, "order_reference": reference},
        )
    if source != shop or kind is None:
        key = f"no-effect:{envelope.delivery_id}"
        return Prepared(key, f"delivery:{envelope.delivery_id}", _digest(key), ids, None)
    effect = ShopEffect(
        kind=kind,
        order_reference=reference,
        shop=shop,
        shop_order_id=source_id,
        shipment_id=upstream["inpost_shipment_id"],
        tracking_number=upstream["tracking_number"],
        tracking_url=upstream.get("tracking_url", ""),
        service=upstream.get("inpost_service", ""),
        status=upstream.get("inpost_status", ""),
    )
    ids = {"order": effect.entity_id, f"{shop}_order_id": source_id, **ids}
    return Prepared(effect.business_key, effect.entity_id, _digest(effect.business_key), ids, effect)


def _kind(event: str, status: str) -> str | None:
    if event == "shipped":
        return "shipped"
    if event != "status":
        return None
    if status in DELIVERED:
        return "delivered"
    if status in RETURNED:
        return "returned"
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
