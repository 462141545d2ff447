"""Payments and refunds -> the ERP: one incoming payment per payment, one refund document per
refund, each tied to the order's sales order (docs/payments-contract.md, "Into the ERP").

The Service Layer ignores Idempotency-Key, so every delivery looks its document up by the
effect's reference (U_JunctionRef) before it creates one. What a message needs first waits for it
(``AwaitingPrerequisite``, retried with backoff up to the retry horizon, then dead-lettered as a
business error): a payment whose sales order is not in the ERP yet (``awaiting_order``), a refund
that overtook its payment (``awaiting_payment``). A payment in another currency than its order's
is ``OrderRefused`` ``currency_mismatch``; a refund beyond what was paid ``refund_exceeds_payment``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared.connectors.erp import (
    CURRENCY_MISMATCH,
    CustomerRefund,
    ErpClient,
    ErpSettings,
    IncomingPayment,
    OrderRefused,
)
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, StoreUnavailable
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.xref import CrossReference

from .events import PaymentEvent, payment_from_envelope

_logger = get_logger("junction.payments")
PAID, REFUNDED, PARTIALLY_REFUNDED = "paid", "refunded", "partially_refunded"
# The provider's own id of a payment and a refund, as the cross-reference names them.
PAYMENT_ID_KIND = {"stripe": "stripe_payment_intent_id", "przelewy24": "p24_order_id"}
REFUND_ID_KIND = {"stripe": "stripe_refund_id", "przelewy24": "p24_refund_id"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PaymentsToErp:
    def __init__(self, ctx: FlowContext, erp: Callable[[], ErpClient]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        self._erp_factory = erp
        self._erp: ErpClient | None = None

    @property
    def erp(self) -> ErpClient:
        if self._erp is None:
            self._erp = self._erp_factory()
        return self._erp

    def prepare(self, envelope: Envelope) -> Prepared:
        event = payment_from_envelope(envelope)
        if event is None:  # an event type that is not routed: no effect
            key = f"not-routed:{envelope.delivery_id}"
            return Prepared(
                key, f"delivery:{envelope.delivery_id}", _digest(key), {"delivery_id": envelope.delivery_id}, None
            )
        ids = {
            "order": event.entity_id,
            "order_reference": event.order_reference,
            PAYMENT_ID_KIND[event.provider]: event.provider_payment_id,
        }
        if event.refund_id:
            ids[REFUND_ID_KIND[event.provider]] = event.refund_id
        # The content that matters: the same effect with another amount or currency is a conflict.
        fingerprint = _digest(f"{event.business_key}|{event.amount_minor}|{event.currency}|{event.order_reference}")
        return Prepared(event.business_key, event.entity_id, fingerprint, ids, event)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        event: PaymentEvent | None = prepared.data
        if event is None:
            return {"routed": "no"}
        ids = dict(prepared.entity_ids)
        with self.erp.bounded(attempt.timeout):
            order = self.erp.find_order(event.order_reference, ids)
            if order is None:
                raise AwaitingPrerequisite(
                    "the ERP has no sales order for this payment yet", reason="awaiting_order", entity_ids=ids
                )
            ids["erp_doc_entry"] = str(order.get("DocEntry"))
            if order.get("DocCurrency") != event.currency:
                raise OrderRefused(
                    "the payment's currency differs from the sales order's",
                    reason=CURRENCY_MISMATCH,
                    entity_ids=ids,
                    details={"order_currency": order.get("DocCurrency"), "payment_currency": event.currency},
                )
            made = (
                self._payment(event, order, attempt, ids)
                if event.kind == "payment"
                else self._refund(event, order, attempt, ids)
            )
        hop_ids = {k: v for k, v in prepared.entity_ids.items() if k not in ("order", "order_reference")}
        suffix = "payment" if event.kind == "payment" else f"refund:{event.refund_id}"
        try:
            self.xref.record(event.entity_id, f"{self.hop}#{suffix}", {**hop_ids, **made})
        except StoreUnavailable as exc:
            # An index, like the trace: its failure does not undo or repeat the effect.
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])
        return {"erp_doc_entry": ids["erp_doc_entry"], **made}

    def _payment(
        self, event: PaymentEvent, order: dict[str, Any], attempt: Attempt, ids: dict[str, str]
    ) -> dict[str, str]:
        found = self.erp.find_incoming_payment(event.payment_reference, ids)
        if found is None:
            attempt.require_settled()
            payment = IncomingPayment(
                card_code=str(order.get("CardCode")),
                order_doc_entry=int(order["DocEntry"]),
                reference=event.payment_reference,
                amount=event.amount,
                currency=event.currency,
                paid_on=event.occurred_at.date(),
                transfer_account=self.erp.settings.transfer_account(event.provider),
                remarks=f"{event.payment_reference} for order {event.order_reference} "
                f"(sales order {order.get('DocNum', order.get('DocEntry'))})",
            )
            attempt.creating()
            found = self.erp.create_incoming_payment(payment, ids)
        return {"erp_payment_doc_entry": str(found.get("DocEntry")), "payment_status": PAID}

    def _refund(
        self, event: PaymentEvent, order: dict[str, Any], attempt: Attempt, ids: dict[str, str]
    ) -> dict[str, str]:
        payment = self.erp.find_incoming_payment(event.payment_reference, ids)
        if payment is None:
            raise AwaitingPrerequisite(
                "the ERP has no payment to refund yet", reason="awaiting_payment", entity_ids=ids
            )
        ids["erp_payment_doc_entry"] = str(payment.get("DocEntry"))
        found = self.erp.find_refund(event.reference, ids)
        amount = event.amount
        if found is None and event.cumulative:
            # Stripe's total refunded so far: the document is what the ERP does not hold yet. An
            # older total (its event overtaken by a newer one) has nothing left to add.
            amount = event.amount - self.erp.refunded_total(event.payment_reference, ids)
            if amount <= 0:
                return {
                    "erp_payment_doc_entry": ids["erp_payment_doc_entry"],
                    "refund": "already_covered",
                    "payment_status": self._refund_status(payment, event, ids),
                }
        if found is None:
            attempt.require_settled()
            refund = CustomerRefund(
                card_code=str(order.get("CardCode")),
                order_doc_entry=int(order["DocEntry"]),
                payment_doc_entry=int(payment["DocEntry"]),
                payment_reference=event.payment_reference,
                reference=event.reference,
                amount=amount,
                currency=event.currency,
                refunded_on=event.occurred_at.date(),
                transfer_account=self.erp.settings.transfer_account(event.provider),
                remarks=f"{event.reference} for order {event.order_reference}",
            )
            attempt.creating()
            found = self.erp.create_refund(refund, ids)
        return {
            "erp_payment_doc_entry": ids["erp_payment_doc_entry"],
            "erp_refund_doc_entry": str(found.get("DocEntry")),
            "payment_status": self._refund_status(payment, event, ids),
        }

    def _refund_status(self, payment: dict[str, Any], event: PaymentEvent, ids: dict[str, str]) -> str:
        paid = Decimal(str(payment.get("TransferSum") or 0))
        refunded = self.erp.refunded_total(event.payment_reference, ids)
        return REFUNDED if refunded >= paid else PARTIALLY_REFUNDED


def build(ctx: FlowContext, http: httpx.Client | None = None) -> PaymentsToErp:
    """ERP credentials (and the providers' transfer accounts) read from Secrets Manager on first
    use, and again when the ERP refuses them (rotation)."""

    def settings(refresh: bool) -> ErpSettings:
        return ErpSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, ERP_CREDENTIALS), refresh=refresh))

    return PaymentsToErp(ctx, lambda: ErpClient(settings, http))
