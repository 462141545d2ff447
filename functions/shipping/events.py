"""The two events the parcel route starts from (docs/inpost-contract.md).

**The warehouse's ``order.packed``** (Standard Webhooks, ``POST /webhooks/wms/packed``): the
warehouse packed an order and says how to send it. The envelope of Standard Webhooks (``type``,
``timestamp``, ``data``) around:

- ``order_reference``: the Junction order key, ``<source>:<source order id>``
  (``shopify:820982911946154508``), the value the ERP holds in NumAtCard and ShipBob in
  reference_id; it becomes the shipment's ShipX ``reference``;
- ``order_number``: the shop's number as people read it (``#1001``);
- ``service``: ``locker`` (a parcel locker: ``target_point``, the locker's id, ``KRA010``) or
  ``courier`` (to ``receiver.address``);
- ``receiver``: ``name``, ``email``, ``phone`` (a Polish number in any common writing), and for a
  courier the ``address`` (``street``, ``building_number``, ``flat_number``, ``city``,
  ``post_code`` ``NN-NNN``, ``country_code`` ``PL``);
- ``parcel``: a locker size ``template`` (``small``, ``medium``, ``large``), or ``dimensions``
  (``length_mm``, ``width_mm``, ``height_mm``) and ``weight_g`` (whole millimetres and grams);
- no cash on delivery: a ``cod`` field is refused (the order was paid in the shop);
- ``packed_at``: when it was packed (ISO 8601).

**ShipX's webhook** (unsigned; ``POST /webhooks/inpost/{token}``): ``{"event_ts": "2026-12-06
21:05:01 +0100", "event": "shipment_status_changed", "organization_id": 1234, "payload":
{"shipment_id": 600000001, "status": "delivered", "tracking_number": "6..."}}``. Only the
shipment id is trusted, as a pointer: the status is read again from ShipX.

Malformed events raise ``ValidationFailed`` naming the fields, never their values.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.envelope import Envelope
from shared.errors import ValidationFailed
from shared.models import order_entity_id

PACKED = "order.packed"
STATUS_CHANGED = "shipment_status_changed"
CONFIRMED = "shipment_confirmed"  # ShipX's other shipment event: the label exists (status confirmed)
_REFERENCE = re.compile(r"^([a-z][a-z0-9_]*):([^\s#:][^\s#]{0,79})$")
_TARGET_POINT = re.compile(r"^[A-Z0-9]{3,12}$")
_POST_CODE = re.compile(r"^\d{2}-\d{3}$")


class _Source(BaseModel):
    """A sender's payload: fields it adds later are ignored; the ones we read are checked."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)


class Address(_Source):
    street: str = Field(min_length=1, max_length=100)
    building_number: str = Field(min_length=1, max_length=20)
    flat_number: str | None = Field(default=None, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    post_code: str
    country_code: Literal["PL"] = "PL"

    @field_validator("post_code")
    @classmethod
    def _post_code(cls, value: str) -> str:
        if not _POST_CODE.match(value):
            raise ValueError("post code is NN-NNN")
        return value


class Receiver(_Source):
    name: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254)
    phone: str = Field(min_length=6, max_length=30)
    address: Address | None = None


class Dimensions(_Source):
    length_mm: int = Field(gt=0, le=2000)
    width_mm: int = Field(gt=0, le=2000)
    height_mm: int = Field(gt=0, le=2000)


class Parcel(_Source):
    template: Literal["small", "medium", "large"] | None = None
    dimensions: Dimensions | None = None
    weight_g: int | None = Field(default=None, gt=0, le=50_000)

    @model_validator(mode="after")
    def _one_way(self) -> Parcel:
        if self.template is None and (self.dimensions is None or self.weight_g is None):
            raise ValueError("a parcel is a template, or dimensions and a weight")
        return self


class PackedOrder(_Source):
    order_reference: str
    order_number: str = Field(min_length=1, max_length=50)
    service: Literal["locker", "courier"]
    target_point: str | None = None
    receiver: Receiver
    parcel: Parcel
    packed_at: datetime | None = None
    cod: Any = Field(default=None, exclude=True)  # must stay absent: refused when it holds anything

    @field_validator("cod")
    @classmethod
    def _no_cod(cls, value: Any) -> None:
        if value not in (None, {}, 0, "0"):
            raise ValueError("cash on delivery is not offered")

    @field_validator("order_reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not _REFERENCE.match(value):
            raise ValueError("order_reference is <source>:<source order id>")
        return value

    @field_validator("target_point")
    @classmethod
    def _point(cls, value: str | None) -> str | None:
        if value is not None and not _TARGET_POINT.match(value.upper()):
            raise ValueError("target_point is a locker id such as KRA010")
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _service_needs(self) -> PackedOrder:
        if self.service == "locker" and self.target_point is None:
            raise ValueError("a locker shipment needs target_point")
        if self.service == "locker" and self.parcel.template is None:
            raise ValueError("a locker parcel is a template (small, medium, large)")
        if self.service == "courier" and self.receiver.address is None:
            raise ValueError("a courier shipment needs receiver.address")
        return self

    @property
    def source(self) -> str:
        return self.order_reference.partition(":")[0]

    @property
    def source_id(self) -> str:
        return self.order_reference.partition(":")[2]

    @property
    def entity_id(self) -> str:
        """The order's entity id across Junction: ``shopify-order:820982911946154508``."""
        return order_entity_id(self.order_reference)


class PackedEvent(_Source):
    type: Literal["order.packed"]
    timestamp: datetime
    data: PackedOrder


class ShipXPayload(_Source):
    shipment_id: str
    status: str | None = Field(default=None, max_length=80)
    tracking_number: str | None = Field(default=None, max_length=60)

    @field_validator("shipment_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("shipment_id is a number")
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
            raise ValueError("shipment_id is a number")
        return value


class ShipXWebhook(_Source):
    event: str = Field(min_length=1, max_length=100)
    event_ts: str | None = None
    organization_id: int | None = None
    payload: ShipXPayload

    @model_validator(mode="before")
    @classmethod
    def _event_name(cls, data: Any) -> Any:
        # ShipX names it ``event``; an older description calls it ``action``: either is read.
        if isinstance(data, dict) and "event" not in data and "action" in data:
            return {**data, "event": data["action"]}
        return data

    @property
    def status(self) -> str | None:
        """The status the webhook claims (``shipment_confirmed`` claims ``confirmed``)."""
        if self.payload.status:
            return self.payload.status
        return "confirmed" if self.event == CONFIRMED else None


def _fields(exc: ValidationError) -> list[str]:
    return sorted({".".join(str(p) for p in error["loc"]) or "body" for error in exc.errors()})


def _payload(envelope: Envelope) -> Any:
    try:
        return envelope.payload()
    except ValueError:
        raise ValidationFailed("body is not JSON", entity_ids={"delivery_id": envelope.delivery_id}) from None


def packed_from_envelope(envelope: Envelope) -> PackedEvent:
    """The warehouse's event; ``ValidationFailed`` naming the fields it lacks or holds wrong."""
    try:
        return PackedEvent.model_validate(_payload(envelope))
    except ValidationError as exc:
        fields = _fields(exc)
        raise ValidationFailed(
            f"order.packed does not hold a shippable order ({', '.join(fields)[:300]})",
            entity_ids={"delivery_id": envelope.delivery_id},
            details={"fields": fields},
        ) from None


def shipx_from_envelope(envelope: Envelope) -> ShipXWebhook:
    """ShipX's webhook; ``ValidationFailed`` when it names no shipment."""
    try:
        return ShipXWebhook.model_validate(_payload(envelope))
    except ValidationError as exc:
        fields = _fields(exc)
        raise ValidationFailed(
            f"not a ShipX shipment webhook ({', '.join(fields)[:300]})",
            entity_ids={"delivery_id": envelope.delivery_id},
            details={"fields": fields},
        ) from None
