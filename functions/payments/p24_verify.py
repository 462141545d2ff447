"""Przelewy24 notifications -> Przelewy24's verification (``PUT /api/v1/transaction/verify``).

A notification says a customer paid; P24 settles the money to the shop only once the shop
verifies the transaction with the amount, currency, ``sessionId`` and ``orderId`` it holds.
This hop verifies it and hands the ERP target (``after="przelewy24"``) the verified ids:
``p24_order_id``, ``p24_session_id``, ``p24_verified`` ("yes"), ``amount_minor``, ``currency``
and ``order_reference``.

The contract with the shop: it registers each transaction with ``sessionId`` = the order
reference (``woocommerce:727``: ``<source>:<source order id>``, at most 100 characters),
optionally followed by ``#<suffix>`` when the customer tries again and the shop registers a new
transaction for the same order (``woocommerce:727#2``). A notification whose session is not
such a reference, or whose ``merchantId``/``posId`` are not ours, is a business error
(``ValidationFailed``, to the DLQ).

One effect per P24 transaction (``p24:<orderId>#verify``). A verification whose answer was lost
is sent again; P24 does not document what it answers to a second verification, so the client
tells an "already verified" refusal apart by reading the transaction (see
shared/connectors/przelewy24.py): verifying twice is a success, never a second effect.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.connectors.przelewy24 import P24Settings, Przelewy24Client
from shared.declaration import secret_id
from shared.envelope import Envelope
from shared.errors import StoreUnavailable, ValidationFailed
from shared.models import order_entity_id
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.webhooks.przelewy24 import Notification, NotificationInvalid, parse_notification
from shared.xref import CrossReference

from .events import order_reference_of_session
from .targets import P24_API

_logger = get_logger("junction.payments.p24")


@dataclass(frozen=True)
class Verification:
    notification: Notification
    order_reference: str  # "woocommerce:727"
    entity_id: str  # "woocommerce-order:727"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class P24Verify:
    def __init__(self, ctx: FlowContext, client: Callable[[], Przelewy24Client]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        self._factory = client
        self._client: Przelewy24Client | None = None

    @property
    def p24(self) -> Przelewy24Client:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def prepare(self, envelope: Envelope) -> Prepared:
        ids = {"delivery_id": envelope.delivery_id}
        try:
            n = parse_notification(envelope.raw_body)
        except NotificationInvalid as exc:
            raise ValidationFailed(f"Przelewy24 notification is not valid: {exc}", entity_ids=ids) from None
        reference = order_reference_of_session(n.session_id)
        if reference is None:
            raise ValidationFailed(
                "Przelewy24 sessionId is not an order reference ('<source>:<order id>', optionally '#<suffix>')",
                entity_ids={**ids, "p24_order_id": str(n.order_id)},
            )
        entity = order_entity_id(reference)
        key = f"p24:{n.order_id}#verify"
        entity_ids = {
            "order": entity,
            "order_reference": reference,
            "p24_order_id": str(n.order_id),
            "p24_session_id": n.session_id,
        }
        # The content that matters: the same P24 transaction with another amount or session conflicts.
        fingerprint = _digest(f"{key}|{n.session_id}|{n.amount}|{n.currency}|{n.merchant_id}|{n.pos_id}")
        return Prepared(key, entity, fingerprint, entity_ids, Verification(n, reference, entity))

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        v: Verification = prepared.data
        n = v.notification
        ids = dict(prepared.entity_ids)
        settings = self.p24.settings
        if (n.merchant_id, n.pos_id) != (settings.merchant_id, settings.pos_id):
            raise ValidationFailed(
                "Przelewy24 notification is for another merchant or POS than ours",
                entity_ids=ids,
                details={"merchant_id": n.merchant_id, "pos_id": n.pos_id},
            )
        with self.p24.bounded(attempt.timeout):
            attempt.creating()
            outcome = self.p24.verify_transaction(
                session_id=n.session_id, order_id=n.order_id, amount=n.amount, currency=n.currency, ids=ids
            )
        try:
            self.xref.record(
                v.entity_id, f"{self.hop}#verify", {"p24_order_id": str(n.order_id), "p24_status": "verified"}
            )
        except StoreUnavailable as exc:
            # An index, like the trace: its failure does not undo or repeat the verification.
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])
        return {
            "p24_order_id": str(n.order_id),
            "p24_session_id": n.session_id,
            "p24_verified": "yes",
            "p24_verification": str(outcome.get("status", "verified")),
            "amount_minor": str(n.amount),
            "currency": n.currency,
            "order_reference": v.order_reference,
        }


def build(ctx: FlowContext, http: httpx.Client | None = None) -> P24Verify:
    def settings(refresh: bool) -> P24Settings:
        return P24Settings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, P24_API), refresh=refresh))

    return P24Verify(ctx, lambda: Przelewy24Client(settings, http))
