"""What every order target shares: the canonical event, its effect, its key, the cross-reference.

Each target of an order source (the ERP, the CRM, the warehouse) gets its own copy of every order
event, on its own queue, and makes of it one of two effects:

- **create**: the order exists at the target (``order.created``, and ``order.updated`` of an
  order it has not seen yet). One idempotency key per order and effect
  (``<entity id>#create``): a repeated READY_FOR_PROCESSING, a created and an updated event of
  the same order, a webhook delivered twice, all make one order. Two events of one order never
  create at once: the second finds the key held and waits its turn.
- **cancel**: the order is cancelled at the target (``<entity id>#cancel``). A cancellation that
  overtook its order's creation waits for it (``AwaitingPrerequisite``, retried with backoff up
  to the retry horizon), and never fails for it.

Edits after creation are not pushed to the ERP or the warehouse (they are made there by hand, as
with the hubs Junction replaces): so an older event never overwrites a newer one, because
nothing is overwritten; a late ``created`` after a cancellation is the completed create, a
duplicate. Each hop's ids go to the order's cross-reference (``shared.xref``) as it succeeds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from shared.envelope import Envelope
from shared.errors import RateLimited, StoreUnavailable
from shared.observability import get_logger, log
from shared.processing import Attempt, FlowContext, Prepared
from shared.rate_budget import TokenBucket
from shared.xref import CrossReference

from .events import OrderEvent, from_envelope

_logger = get_logger("junction.orders")
ID_SUFFIXES = ("_id", "_entry", "_num")  # what a hop's result names as ids (not outcomes)


class OrderTarget:
    """Base of the order flows: ``prepare`` is shared; subclasses implement ``create`` and ``cancel``."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.hop = f"{ctx.integration.name}/{ctx.target.name}"
        self.xref = CrossReference(ctx.ddb, ctx.state_table, clock=ctx.clock)
        # A target's request limit is per account: every invocation of every source spends one
        # budget, and a 429 holds them all for as long as the target says.
        rate = ctx.target.rate
        self.budget = TokenBucket(ctx.ddb, ctx.state_table, rate, clock=ctx.clock) if rate else None

    def spend(self, requests: int, attempt: Attempt) -> None:
        if self.budget is not None:
            self.budget.acquire(requests, max_wait=max(0.0, attempt.timeout(10.0) - 1.0))

    def guarded(self, run: Callable[[], dict[str, str]]) -> dict[str, str]:
        """Run the target's calls; a 429 holds the shared budget for its Retry-After."""
        try:
            return run()
        except RateLimited as exc:
            if self.budget is not None and exc.retry_after:
                self.budget.hold(exc.retry_after)
            raise

    def prepare(self, envelope: Envelope) -> Prepared:
        event = from_envelope(envelope, self.ctx.integration.name)
        if event is None:  # not an order yet (a WooCommerce order awaiting payment)
            key = f"not-routed:{envelope.delivery_id}"
            ids = {"delivery_id": envelope.delivery_id}
            return Prepared(key, f"delivery:{envelope.delivery_id}", _digest(key), ids, None)
        if envelope.upstream:
            event = event.model_copy(update={"upstream": dict(envelope.upstream)})
        order = event.order
        key = f"{event.entity_id}#{event.effect}"
        ids = {
            "order": event.entity_id,
            **source_ids(event),
            "order_number": order.number,
        }
        # The key is the content that matters: the effect on this order, whatever event carried it.
        return Prepared(
            business_key=key, entity_id=event.entity_id, fingerprint=_digest(key), entity_ids=ids, data=event
        )

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        event: OrderEvent | None = prepared.data
        if event is None:
            return {"routed": "no"}
        ids = dict(prepared.entity_ids)
        made = self.create(event, attempt, ids) if event.effect == "create" else self.cancel(event, attempt, ids)
        found = {k: v for k, v in made.items() if k.endswith(ID_SUFFIXES)}
        try:
            self.xref.record(event.entity_id, f"{self.hop}#{event.effect}", {**source_ids(event), **found})
        except StoreUnavailable as exc:
            # An index for finding the order by any id, like the trace: its failure does not undo
            # or repeat the effect (the ids are in the trace's delivered hop too).
            log(_logger, logging.WARNING, "cross-reference not written", hop=self.hop, error=exc.message[:200])
        return made

    def create(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def cancel(self, event: OrderEvent, attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def source_ids(event: OrderEvent) -> dict[str, str]:
    """The order's own id at its source, for the cross-reference (``shopify_order_id``: ``123``)."""
    return {f"{event.order.source}_order_id": event.order.source_id}
