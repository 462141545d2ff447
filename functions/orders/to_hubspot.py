"""Orders -> HubSpot: the buyer as a contact (upserted by email), the order as a deal (upserted by
its unique ``junction_order_key``) associated with the contact; a cancellation closes it lost.

Upserts are idempotent at HubSpot, so a lost answer is simply sent again; the one lookup needed
is before a retried create, so that a deal a cancellation has closed meanwhile is not reopened.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.connectors.erp import order_reference
from shared.connectors.hubspot import STAGE_WON, HubSpotClient, HubSpotSettings
from shared.declaration import secret_id
from shared.errors import AwaitingPrerequisite
from shared.processing import Attempt, FlowContext

from .events import OrderEvent
from .route import OrderTarget
from .targets import HUBSPOT_TOKEN

# Requests one effect spends: contact upsert, deal read or upsert, association.
CREATE_REQUESTS = 3
CANCEL_REQUESTS = 2


class OrdersToHubSpot(OrderTarget):
    def __init__(self, ctx: FlowContext, client: Callable[[], HubSpotClient]) -> None:
        super().__init__(ctx)
        self._factory = client
        self._client: HubSpotClient | None = None

    @property
    def hubspot(self) -> HubSpotClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def create(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        order = event.order
        key = order_reference(order)
        self.spend(CREATE_REQUESTS, attempt)

        def run() -> dict[str, str]:
            with self.hubspot.bounded(attempt.timeout):
                contact = self.hubspot.upsert_contact(order.customer, ids)
                existing = self.hubspot.get_deal(key, ids) if attempt.maybe_delivered else None
                deal = str(existing["id"]) if existing else self.hubspot.upsert_deal(key, order, STAGE_WON, ids)
                if contact is not None:
                    self.hubspot.associate(deal, contact, ids)
            return {"hubspot_deal_id": deal, **({"hubspot_contact_id": contact} if contact else {})}

        return self.guarded(run)

    def cancel(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        self.spend(CANCEL_REQUESTS, attempt)

        def run() -> dict[str, str]:
            with self.hubspot.bounded(attempt.timeout):
                return {"hubspot_deal_id": self.hubspot.close_lost(order_reference(event.order), ids) or ""}

        deal_id = self.guarded(run)["hubspot_deal_id"]
        if not deal_id:
            raise AwaitingPrerequisite("HubSpot has no deal to close yet", reason="awaiting_order", entity_ids=ids)
        return {"hubspot_deal_id": deal_id, "hubspot_stage": "closedlost"}


def build(ctx: FlowContext, http: httpx.Client | None = None) -> OrdersToHubSpot:
    def settings(refresh: bool) -> HubSpotSettings:
        return HubSpotSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, HUBSPOT_TOKEN), refresh=refresh))

    return OrdersToHubSpot(ctx, lambda: HubSpotClient(settings, http))
