"""What both ``inpost`` hops share (the shipment's creation, a status change): the ShipX client,
built on first use from the ``inpost-shipx`` secret; the organisation's rate budget, spent by
every invocation of both integrations; the cross-reference; and the ids the hop hands on.

THE UPSTREAM CONTRACT (docs/inpost-contract.md): the hop returns, and the shop and ERP targets
after it receive in ``Envelope.upstream``: ``order_reference``, ``inpost_shipment_id``,
``tracking_number``, ``tracking_url``, ``inpost_service``, ``inpost_status`` (as ShipX reported
it when read again) and ``shipment_event`` (``shipped`` or ``status``). A hop that makes no
effect adds ``effect: none``: the targets after it then change nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from shared.connectors.inpost import InPostClient, InPostSettings, tracking_url
from shared.declaration import secret_id
from shared.errors import RateLimited, StoreUnavailable
from shared.models import order_entity_id as order_entity_of
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.rate_budget import TokenBucket
from shared.xref import CrossReference

from .targets import INPOST_SHIPX

_logger = get_logger("junction.shipping")
NO_EFFECT = {"effect": "none"}
T = TypeVar("T")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def not_routed(delivery_id: str, why: str) -> Prepared:
    """A source event this hop makes nothing of (another topic): delivered as a no-op, once."""
    key = f"not-routed:{delivery_id}"
    return Prepared(key, f"delivery:{delivery_id}", digest(key), {"delivery_id": delivery_id, "why": why}, None)


def contract_ids(shipment: Mapping[str, Any], *, event: str) -> dict[str, str]:
    """The upstream contract's ids of a shipment as ShipX holds it."""
    number = shipment.get("tracking_number")
    number = number if isinstance(number, str) else ""
    reference = shipment.get("reference")
    return {
        "order_reference": reference if isinstance(reference, str) else "",
        "inpost_shipment_id": str(shipment.get("id", "")),
        "tracking_number": number,
        "tracking_url": tracking_url(number) if number else "",
        "inpost_service": str(shipment.get("service") or ""),
        "inpost_status": str(shipment.get("status") or ""),
        "shipment_event": event,
    }


def order_entity_id(order_reference: str) -> str | None:
    """``shopify:123`` -> ``shopify-order:123``; None for a reference that is no order key."""
    try:
        return order_entity_of(order_reference)
    except ValueError:
        return None


class InPostHop:
    """Base of the two ``inpost`` flows."""

    def __init__(self, ctx: FlowContext, client: Callable[[], InPostClient]) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        rate = ctx.target.rate
        self.budget = TokenBucket(ctx.ddb, ctx.state_table, rate, clock=ctx.clock) if rate else None
        self._factory = client
        self._client: InPostClient | None = None

    @property
    def inpost(self) -> InPostClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def spend(self, requests: int, attempt: Attempt) -> None:
        if self.budget is not None:
            self.budget.acquire(requests, max_wait=max(0.0, attempt.timeout(10.0) - 1.0))

    def guarded(self, run: Callable[[], T]) -> T:
        """Run the calls; a 429 holds the shared budget for its Retry-After."""
        try:
            return run()
        except RateLimited as exc:
            if self.budget is not None and exc.retry_after:
                self.budget.hold(exc.retry_after)
            raise

    def record(self, entity_id: str | None, suffix: str, ids: Mapping[str, str]) -> None:
        """The shipment's ids in the order's cross-reference (an index: a failure is logged)."""
        if entity_id is None:
            return
        found = {k: ids[k] for k in ("inpost_shipment_id", "tracking_number") if ids.get(k)}
        try:
            self.xref.record(entity_id, f"{self.hop}#{suffix}", found)
        except StoreUnavailable as exc:
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])


def client_factory(ctx: FlowContext, http: httpx.Client | None) -> Callable[[], InPostClient]:
    """ShipX credentials read from Secrets Manager on first use, and again when ShipX refuses them."""

    def settings(refresh: bool) -> InPostSettings:
        return InPostSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, INPOST_SHIPX), refresh=refresh))

    return lambda: InPostClient(settings, http)
