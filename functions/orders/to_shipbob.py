"""Orders -> the warehouse (ShipBob): a fulfilment order with its lines, ship-to, shipping method
and the fulfilment centre the routing rule chooses (``warehouse.py``); cancelled while not picked.

The warehouse comes after the ERP (``after="erp"`` in targets.py): an order reaches ShipBob once
the ERP holds it, tagged with the ERP document, and a cancellation once the ERP cancelled it.

ShipBob refuses a second order with the same ``reference_id`` (422), which the client answers
by looking the order up: a lost answer never makes a second pick request. A cancellation finds
the order by its reference; before it is there it waits; once picking began, ShipBob refuses and
the message goes to the DLQ as a business error (``order_already_picked``).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.connectors.shipbob import ShipBobClient, ShipBobSettings, order_reference
from shared.declaration import secret_id
from shared.errors import AwaitingPrerequisite
from shared.processing import Attempt, FlowContext

from .events import OrderEvent
from .route import OrderTarget
from .targets import SHIPBOB_TOKEN
from .warehouse import choose_location


class OrdersToShipBob(OrderTarget):
    def __init__(self, ctx: FlowContext, client: Callable[[], ShipBobClient]) -> None:
        super().__init__(ctx)
        self._factory = client
        self._client: ShipBobClient | None = None

    @property
    def shipbob(self) -> ShipBobClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def create(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        order = event.order
        reference = order_reference(order)
        skus = sorted({line.sku for line in order.lines})
        self.spend(len(skus) + 2, attempt)

        def run() -> dict[str, str]:
            with self.shipbob.bounded(attempt.timeout):
                if attempt.maybe_delivered:
                    existing = self.shipbob.find_order(reference, ids)
                    if existing is not None:
                        return {"shipbob_order_id": str(existing.get("id"))}
                location = choose_location(order, self.shipbob.inventory_by_location(skus, ids))
                attempt.creating()
                tags = {"ERP document": event.upstream["erp_doc_entry"]} if "erp_doc_entry" in event.upstream else None
                created = self.shipbob.create_order(order, reference, location, ids, tags)
            return {"shipbob_order_id": str(created.get("id")), "shipbob_location": str(location or "")}

        return self.guarded(run)

    def cancel(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        self.spend(3, attempt)

        def run() -> dict[str, str]:
            with self.shipbob.bounded(attempt.timeout):
                existing = self.shipbob.find_order(order_reference(event.order), ids)
                if existing is None:
                    raise AwaitingPrerequisite(
                        "the warehouse has no order to cancel yet", reason="awaiting_order", entity_ids=ids
                    )
                outcome = self.shipbob.cancel_order(existing["id"], ids)
            return {"shipbob_order_id": str(existing["id"]), "shipbob_cancel": outcome}

        return self.guarded(run)


def build(ctx: FlowContext, http: httpx.Client | None = None) -> OrdersToShipBob:
    def settings(refresh: bool) -> ShipBobSettings:
        return ShipBobSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, SHIPBOB_TOKEN), refresh=refresh))

    return OrdersToShipBob(ctx, lambda: ShipBobClient(settings, http))
