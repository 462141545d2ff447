"""shop-orders-to-erp: a Shopify order becomes one ERP sales order, its customer found or created."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from shared.connectors import shopify
from shared.connectors.erp import ErpClient, ErpSettings, order_reference
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import TargetRejected, ValidationFailed
from shared.models import Order
from shared.processing import Attempt, FlowContext, Prepared

from .declaration import ERP_CREDENTIALS

TOPIC = "orders/create"


class ShopOrdersToErp:
    def __init__(self, erp: Callable[[], ErpClient]) -> None:
        self._erp_factory = erp
        self._erp: ErpClient | None = None

    @property
    def erp(self) -> ErpClient:
        if self._erp is None:
            self._erp = self._erp_factory()
        return self._erp

    def prepare(self, envelope: Envelope) -> Prepared:
        if envelope.topic not in (None, TOPIC):
            raise ValidationFailed(
                f"unexpected topic {envelope.topic!r}", entity_ids={"delivery_id": envelope.delivery_id}
            )
        order = shopify.order_from_webhook(envelope.payload())
        return Prepared(
            business_key=order.business_key,
            entity_id=order.entity_id,
            fingerprint=order.fingerprint(),
            entity_ids={"shop_order_id": order.source_id, "order_number": order.number},
            data=order,
        )

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        with self.erp.bounded(attempt.timeout):
            return self._deliver(prepared, attempt)

    def _deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        order: Order = prepared.data
        ids = prepared.entity_ids
        card_code = self.erp.ensure_customer(order.customer, order.billing_address, ids)
        if attempt.maybe_delivered:  # the Service Layer ignores Idempotency-Key: look before creating
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


def build(ctx: FlowContext, http: httpx.Client | None = None) -> ShopOrdersToErp:
    """The flow as the Lambda runs it: ERP credentials read from Secrets Manager on first use,
    and read again when the ERP refuses them (rotation)."""

    def settings(refresh: bool) -> ErpSettings:
        return ErpSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, ERP_CREDENTIALS), refresh=refresh))

    return ShopOrdersToErp(lambda: ErpClient(settings, http))
