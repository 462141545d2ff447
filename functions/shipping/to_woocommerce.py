"""Parcels -> the WooCommerce order: the tracking written where the shop and its customer see it
once shipped, then a note when the parcel is delivered or returned (docs/woocommerce-contract.md,
"REST API: tracking back to the order").

After the ``inpost`` hop: every event comes from its processor with what ShipX confirmed
(``shop_effects``). Orders of other shops are skipped without a call.

- shipped: the order's ``_wc_shipment_tracking_items`` meta gets an InPost item (what the
  WooCommerce Shipment Tracking extension, and the plugins reading its meta, show on the order
  and in its emails), in the same ``PUT`` the order goes from ``processing`` (or ``on-hold``) to
  ``completed``: WooCommerce's status for an order sent out, whose email then carries the
  tracking. An order in any other status keeps it (a cancelled or refunded order is the
  merchant's to sort out). Then a customer note with carrier, number and link: the customer is
  emailed it.
- delivered: a customer note that InPost delivered the parcel.
- returned: a private note (not shown to the customer) that the parcel went back to the sender:
  the merchant decides about a refund.

Each write looks first: the meta already holding our number, a note already naming our number
for this effect, is done (a lost answer, a redelivery) and is not written again. A delivered or
returned event before the shipped effect reached the order waits for it (``AwaitingPrerequisite``).
An unknown order is a business error (``OrderNotFound``, a ``TargetRejected``: to the DLQ).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from shared.connectors.woocommerce_api import (
    TRACKING_META,
    WooCommerceApi,
    WooCommerceSettings,
    tracking_item,
    tracking_items,
)
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, StoreUnavailable
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.xref import CrossReference

from . import shop_effects
from .shop_effects import CARRIER, ShopEffect
from .targets import WOOCOMMERCE

SHOP = "woocommerce"
COMPLETES = frozenset({"processing", "on-hold"})  # statuses a shipped order leaves for completed
# The notes, each naming the tracking number with a phrase of its own: how a note of an earlier
# attempt is recognised (the number and the phrase, never the whole text, which a site may filter).
NOTES: dict[str, tuple[str, str, bool]] = {  # effect -> (text, phrase, customer note)
    "shipped": (
        "Your order has been shipped with {carrier}. Tracking number: {number}. Track it: {url}",
        "shipped",
        True,
    ),
    "delivered": ("{carrier} delivered your parcel {number}.", "delivered", True),
    "returned": ("{carrier} returned parcel {number} to the sender: it was not collected.", "returned", False),
}

_logger = get_logger("junction.shipping")


def note_text(effect: ShopEffect) -> str:
    text, _phrase, _customer = NOTES[effect.kind]
    return text.format(carrier=CARRIER, number=effect.tracking_number, url=effect.tracking_url or "-")


def find_note(notes: list[dict[str, Any]], effect: ShopEffect) -> dict[str, Any] | None:
    """Our note of this effect among the order's notes, if an earlier attempt wrote it."""
    _text, phrase, _customer = NOTES[effect.kind]
    for note in notes:
        text = note.get("note")
        if isinstance(text, str) and effect.tracking_number in text and phrase in text and CARRIER in text:
            return note
    return None


class ShippingToWooCommerce:
    def __init__(self, ctx: FlowContext, client: Callable[[], WooCommerceApi]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        self._factory = client
        self._client: WooCommerceApi | None = None

    @property
    def woocommerce(self) -> WooCommerceApi:
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
        api = self.woocommerce
        made: dict[str, str] = {"woocommerce_order_id": effect.shop_order_id}
        created = False

        def before_create() -> None:
            attempt.require_settled()
            attempt.creating()

        with api.bounded(attempt.timeout):
            order = api.get_order(effect.shop_order_id, ids)
            ours = [i for i in tracking_items(order) if i.get("tracking_number") == effect.tracking_number]
            if effect.kind == "shipped" and not ours:
                item = tracking_item(CARRIER, effect.tracking_number, effect.tracking_url, int(self.ctx.clock()))
                changes: dict[str, Any] = {
                    "meta_data": [{"key": TRACKING_META, "value": [*tracking_items(order), item]}]
                }
                if order.get("status") in COMPLETES:
                    changes["status"] = "completed"
                before_create()
                api.update_order(effect.shop_order_id, changes, ids)
                created = True
            elif effect.kind != "shipped" and not ours:
                raise AwaitingPrerequisite(
                    "the order does not carry the parcel's tracking yet", reason="awaiting_tracking", entity_ids=ids
                )
            note = find_note(api.notes(effect.shop_order_id, ids), effect)
            if note is None:
                if not created:
                    before_create()
                _text, _phrase, customer = NOTES[effect.kind]
                note = api.add_note(effect.shop_order_id, note_text(effect), customer_note=customer, ids=ids)
                created = True
        made["woocommerce_note_id"] = str(note.get("id"))
        made["effect"] = effect.kind if created else f"already_{effect.kind}"
        self._record(effect, made)
        return made

    def _record(self, effect: ShopEffect, made: dict[str, str]) -> None:
        found = {k: v for k, v in made.items() if k.endswith("_id")}
        found["inpost_shipment_id"] = effect.shipment_id
        try:
            self.xref.record(effect.entity_id, f"{self.hop}#{effect.kind}", found)
        except StoreUnavailable as exc:
            # An index, like the trace: its failure neither undoes nor repeats the effect.
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])


def build(ctx: FlowContext, http: httpx.Client | None = None) -> ShippingToWooCommerce:
    def settings(refresh: bool) -> WooCommerceSettings:
        return WooCommerceSettings.from_secret(
            ctx.secrets.get_json(secret_id(ctx.stage, WOOCOMMERCE.secrets[0]), refresh=refresh)
        )

    return ShippingToWooCommerce(ctx, lambda: WooCommerceApi(settings, http))
