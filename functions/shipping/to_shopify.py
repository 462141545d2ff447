"""Parcels -> the Shopify order: fulfilled with InPost's tracking once shipped, then a delivery or a
return event on that fulfilment (docs/shopify-contract.md, "Fulfilments").

After the ``inpost`` hop: every event comes from its processor with what ShipX confirmed
(``shop_effects``). Orders of other shops are skipped without a call.

- shipped: ``fulfillmentCreate`` of what is left to fulfil, with company "InPost", the tracking
  number and URL, and the customer notified (Shopify's shipping confirmation). The client looks
  first: a lost answer is found as the order done with our number, never fulfilled twice.
- delivered: a ``DELIVERED`` event on the fulfilment carrying the tracking number.
- returned: a ``FAILURE`` event with a message saying the parcel went back to the sender:
  Shopify's event statuses have no return (``FAILURE`` is "the fulfillment request failed", the
  closest; the order's refund or restock stays the merchant's decision).

A delivered or returned event that overtakes its shipped effect waits for it
(``AwaitingPrerequisite``). An unknown order or a closed fulfillment order is a business error
(``TargetRejected``: to the DLQ with its reason).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from shared.connectors.shopify_admin import ShopifyAdmin, ShopifySettings
from shared.connectors.shopify_fulfillment import Marked, ShopifyFulfillment, Tracking
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import StoreUnavailable
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.xref import CrossReference

from . import shop_effects
from .shop_effects import CARRIER, ShopEffect
from .targets import SHOPIFY

SHOP = "shopify"
RETURNED_MESSAGE = "Returned to sender by InPost (parcel {number}): the customer did not collect it."

_logger = get_logger("junction.shipping")


class ShippingToShopify:
    def __init__(self, ctx: FlowContext, client: Callable[[], ShopifyFulfillment]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        self._factory = client
        self._client: ShopifyFulfillment | None = None

    @property
    def shopify(self) -> ShopifyFulfillment:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def prepare(self, envelope: Envelope) -> Prepared:
        return shop_effects.prepare(envelope, SHOP)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        effect: ShopEffect | None = prepared.data
        if effect is None:
            return {"effect": "none"}
        ids = dict(prepared.entity_ids)

        def before_create() -> None:
            attempt.require_settled()
            attempt.creating()

        with self.shopify.admin.bounded(attempt.timeout):
            if effect.kind == "shipped":
                tracking = Tracking(CARRIER, effect.tracking_number, effect.tracking_url)
                shipped = self.shopify.ship(
                    effect.shop_order_id, tracking, notify_customer=True, ids=ids, before_create=before_create
                )
                made = {
                    "effect": "shipped" if shipped.created else "already_shipped",
                    "shopify_fulfillment_id": shipped.fulfillment_ids[0],
                }
                if len(shipped.fulfillment_ids) > 1:  # one per location the order ships from
                    made["shopify_fulfillment_ids"] = ",".join(shipped.fulfillment_ids)
            else:
                made = self._event(effect, ids, before_create)
        made["shopify_order_id"] = effect.shop_order_id
        self._record(effect, made)
        return made

    def _event(self, effect: ShopEffect, ids: dict[str, str], before_create: Callable[[], None]) -> dict[str, str]:
        if effect.kind == "delivered":
            status, message = "DELIVERED", None
        else:
            status, message = "FAILURE", RETURNED_MESSAGE.format(number=effect.tracking_number)
        marked: Marked = self.shopify.mark(
            effect.shop_order_id, effect.tracking_number, status, message, ids=ids, before_create=before_create
        )
        made = {
            "effect": effect.kind if marked.created else f"already_{effect.kind}",
            "shopify_fulfillment_id": marked.fulfillment_id,
        }
        if marked.event_id:
            made["shopify_fulfillment_event_id"] = marked.event_id
        return made

    def _record(self, effect: ShopEffect, made: dict[str, str]) -> None:
        found = {k: v for k, v in made.items() if k.endswith("_id")}
        found["inpost_shipment_id"] = effect.shipment_id
        try:
            self.xref.record(effect.entity_id, f"{self.hop}#{effect.kind}", found)
        except StoreUnavailable as exc:
            # An index, like the trace: its failure neither undoes nor repeats the effect.
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])


def build(ctx: FlowContext, http: httpx.Client | None = None) -> ShippingToShopify:
    def settings(refresh: bool) -> ShopifySettings:
        return ShopifySettings.from_secret(
            ctx.secrets.get_json(secret_id(ctx.stage, SHOPIFY.secrets[0]), refresh=refresh)
        )

    return ShippingToShopify(ctx, lambda: ShopifyFulfillment(ShopifyAdmin(settings, http)))
