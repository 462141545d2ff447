"""Every order source mapped to one canonical, versioned order event.

A target never sees a provider's payload: it sees an ``OrderEvent`` (schema ``junction.order/1``)
whose ``kind`` says what happened and whose ``order`` is the canonical ``shared.models.Order``.

- **Shopify** (webhook): ``orders/create`` -> ``order.created``; ``orders/cancelled`` ->
  ``order.cancelled``; ``orders/updated`` -> ``order.updated`` (``order.cancelled`` once it
  carries ``cancelled_at``). Version: the order's ``updated_at``.
- **WooCommerce** (webhook): ``order.created`` / ``order.updated`` by status: processing, on-hold
  and completed are a placed order; cancelled a cancellation; pending and failed are not an order
  yet (not routed). Version: ``date_modified_gmt``.
- **Allegro** (polled, ``junction.changes``): a checkout form READY_FOR_PROCESSING is a placed
  order (``order.updated`` after BUYER_MODIFIED), CANCELLED a cancellation (of a paid form only:
  an unpaid one was never sent on). Version: the form's ``updatedAt``.

A payload's shape is checked against the provider's documented fields: a new field is logged and
counted (``Payload_shape_changed``) and the event goes on; a missing required field is a
``ValidationFailed`` naming it, dead-lettered, never dropped silently.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from shared.connectors import allegro, shopify, woocommerce
from shared.envelope import Envelope
from shared.errors import ValidationFailed
from shared.models import Canonical, Order
from shared.observability import emit_metrics, get_logger, log
from shared.polling import CHANGES_TOPIC

SCHEMA_VERSION: Literal["junction.order/1"] = "junction.order/1"
Kind = Literal["order.created", "order.updated", "order.cancelled"]
Effect = Literal["create", "cancel"]

_logger = get_logger("junction.orders")


class OrderEvent(Canonical):
    schema_version: Literal["junction.order/1"] = SCHEMA_VERSION
    kind: Kind
    version: str  # orders the events of one order: a larger version is a newer state
    order: Order
    # Ids the order gathered at the targets before this one (``Target.after``): {"erp_doc_entry": "57"}.
    upstream: dict[str, str] = {}

    @property
    def effect(self) -> Effect:
        """What a target makes of it: the order exists (created or updated), or it is cancelled."""
        return "cancel" if self.kind == "order.cancelled" else "create"

    @property
    def entity_id(self) -> str:
        return self.order.entity_id  # "shopify-order:123": the trace key across every system


def from_envelope(envelope: Envelope, integration: str) -> OrderEvent | None:
    """The envelope's order event; None for a source event that is not an order yet (a WooCommerce
    order awaiting payment). Invalid payloads raise ValidationFailed with entity ids only."""
    source = envelope.source
    if source == "shopify":
        return _shopify(envelope, integration)
    if source == "woocommerce":
        return _woocommerce(envelope, integration)
    if source == "allegro":
        return _allegro(envelope, integration)
    raise ValidationFailed(f"no order mapping for source {source!r}", entity_ids={"delivery_id": envelope.delivery_id})


def _payload(envelope: Envelope) -> Any:
    try:
        return envelope.payload()
    except ValueError:
        raise ValidationFailed("body is not JSON", entity_ids={"delivery_id": envelope.delivery_id}) from None


SHOPIFY_KINDS: dict[str, Kind] = {
    "orders/create": "order.created",
    "orders/updated": "order.updated",
    "orders/cancelled": "order.cancelled",
}


def _shopify(envelope: Envelope, integration: str) -> OrderEvent:
    topic = envelope.topic or "orders/create"
    kind = SHOPIFY_KINDS.get(topic)
    if kind is None:
        raise ValidationFailed(f"unexpected topic {topic!r}", entity_ids={"delivery_id": envelope.delivery_id})
    payload = _payload(envelope)
    _shape(integration, "shopify", shopify.unknown_fields(payload), envelope)
    order = shopify.order_from_webhook(payload)
    if kind == "order.updated" and payload.get("cancelled_at"):
        kind = "order.cancelled"
    version = str(payload.get("updated_at") or payload.get("created_at") or "")
    return OrderEvent(kind=kind, version=version, order=order)


# Payment methods whose orders are placed before they are paid (on-hold or processing with no
# date_paid): bank transfer, cheque, cash on delivery.
WOOCOMMERCE_PAID_LATER = frozenset({"bacs", "cheque", "cod"})


def _woocommerce(envelope: Envelope, integration: str) -> OrderEvent | None:
    payload = _payload(envelope)
    _shape(integration, "woocommerce", woocommerce.unknown_fields(payload), envelope)
    event = woocommerce.junction_event(payload)
    if event is None:
        return None
    if (
        event == "order.cancelled"
        and not payload.get("date_paid_gmt")
        and payload.get("payment_method") not in WOOCOMMERCE_PAID_LATER
    ):
        return None  # an abandoned checkout WooCommerce cancelled: never placed, nothing to cancel
    order = woocommerce.order_from_webhook(payload)
    kind: Kind = "order.cancelled" if event == "order.cancelled" else _placed(envelope.topic)
    return OrderEvent(kind=kind, version=woocommerce.order_version(payload), order=order)


def _placed(topic: str | None) -> Kind:
    return "order.updated" if topic == "order.updated" else "order.created"


def _allegro(envelope: Envelope, integration: str) -> OrderEvent | None:
    ids = {"delivery_id": envelope.delivery_id}
    if envelope.topic != CHANGES_TOPIC:
        raise ValidationFailed(f"unexpected topic {envelope.topic!r}", entity_ids=ids)
    try:
        changes = _payload(envelope)["changes"]
        if not isinstance(changes, list) or len(changes) != 1:
            raise ValueError("an Allegro order message holds one change")
        change = changes[0]
        form = change["data"]["checkout_form"]
        event_types = change["data"].get("event_types") or []
        stamp = str(change["stamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed(f"malformed order message: {type(exc).__name__}: {exc}"[:300], entity_ids=ids) from None
    _shape(integration, "allegro", allegro.unknown_checkout_form_fields(form), envelope)
    order = allegro.order_from_checkout_form(form)
    status = form.get("status")
    if status == "CANCELLED":
        if not (form.get("payment") or {}).get("paidAmount"):
            return None  # cancelled before it was paid: never sent on, nothing to cancel
        kind: Kind = "order.cancelled"
    elif status == "READY_FOR_PROCESSING":
        kind = "order.updated" if "BUYER_MODIFIED" in event_types else "order.created"
    else:
        raise ValidationFailed(f"checkout form in status {status!r} is not an order to route", entity_ids=ids)
    # Allegro's event ids do not sort; the form's updatedAt does (the event id when it is missing).
    return OrderEvent(kind=kind, version=str(form.get("updatedAt") or stamp), order=order)


def _shape(integration: str, source: str, unknown: list[str], envelope: Envelope) -> None:
    """A provider's payload grew fields we do not know: say so, once per event, and go on."""
    if not unknown:
        return
    log(
        _logger,
        logging.WARNING,
        "payload shape changed",
        integration=integration,
        source=source,
        delivery_id=envelope.delivery_id,
        unknown_fields=",".join(unknown)[:300],
    )
    emit_metrics(integration, {"Payload_shape_changed": 1})
