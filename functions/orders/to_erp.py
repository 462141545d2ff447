"""Orders -> the ERP: one sales order per order (its customer found or created), cancelled with it.

The Service Layer ignores Idempotency-Key: after an attempt whose answer was lost, the order is
looked up by its reference (``NumAtCard``) before it is created again. A cancellation finds the
ERP order by the same reference; before the order is there it waits; once delivered, the ERP
refuses and the message goes to the DLQ as a business error (``order_delivered``).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared.connectors.erp import ErpClient, ErpSettings, order_reference
from shared.declaration import secret_id
from shared.errors import AwaitingPrerequisite, TargetRejected
from shared.processing import Attempt, FlowContext

from .events import OrderEvent
from .route import OrderTarget


class OrdersToErp(OrderTarget):
    def __init__(self, ctx: FlowContext, erp: Callable[[], ErpClient]) -> None:
        super().__init__(ctx)
        self._erp_factory = erp
        self._erp: ErpClient | None = None

    @property
    def erp(self) -> ErpClient:
        if self._erp is None:
            self._erp = self._erp_factory()
        return self._erp

    def create(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        order = event.order
        with self.erp.bounded(attempt.timeout):
            card_code = self.erp.ensure_customer(order.customer, order.billing_address, ids)
            if attempt.maybe_delivered:
                existing = self.erp.find_order(order_reference(order), ids)
                if existing is not None:
                    return {"erp_doc_entry": str(existing.get("DocEntry")), "erp_card_code": card_code}
                attempt.require_settled()
            attempt.creating()
            try:
                created = self.erp.create_order(order, card_code, attempt.idempotency_key, ids)
            except TargetRejected:
                # The customer may have been remembered but since removed from the ERP: look again once.
                if not self.erp.forget_customer(card_code):
                    raise
                card_code = self.erp.ensure_customer(order.customer, order.billing_address, ids)
                created = self.erp.create_order(order, card_code, attempt.idempotency_key, ids)
        return {"erp_doc_entry": str(created.get("DocEntry")), "erp_card_code": card_code}

    def cancel(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        with self.erp.bounded(attempt.timeout):
            existing = self.erp.find_order(order_reference(event.order), ids)
            if existing is None:
                raise AwaitingPrerequisite(
                    "the ERP has no order to cancel yet", reason="awaiting_order", entity_ids=ids
                )
            doc_entry = int(existing["DocEntry"])
            outcome = self.erp.cancel_order(doc_entry, ids)
        return {"erp_doc_entry": str(doc_entry), "erp_cancel": outcome}


def build(ctx: FlowContext, http: httpx.Client | None = None) -> OrdersToErp:
    """ERP credentials read from Secrets Manager on first use, and again when the ERP refuses
    them (rotation)."""

    def settings(refresh: bool) -> ErpSettings:
        return ErpSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, ERP_CREDENTIALS), refresh=refresh))

    return OrdersToErp(ctx, lambda: ErpClient(settings, http))
