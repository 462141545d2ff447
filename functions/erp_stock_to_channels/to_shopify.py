"""Stock to Shopify: Admin GraphQL ``inventorySetQuantities``, compare-and-set, up to 250 per call.

- ``changeFromQuantity`` (mandatory from API 2026-04) is the quantity we last let through the gate
  for the SKU; where we know none it is null (no compare: the ERP's level wins). A mismatch (a sale in the
  shop since) fails the whole call and changes nothing: the mismatched levels are read again and
  the call is made again with what Shopify holds, once; the ERP's level wins, since the ERP
  already counts the sale or will, and the next poll pushes that.
- ``@idempotent(key:)`` carries a key derived from the change set, so a retried call is not
  applied twice by Shopify.
- Pacing: Shopify's cost bucket is read from every answer (``extensions.cost.throttleStatus``);
  before a call that the bucket cannot pay for, the flow waits for it to refill; a THROTTLED
  answer holds the ``shopify`` rate budget (shared by every invocation) for the refill time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import httpx

from shared.connectors.shopify_admin import MAX_QUANTITIES, QuantityChange, ShopifyAdmin, ShopifySettings
from shared.declaration import secret_id
from shared.errors import OutcomeUnsettled, RateLimited
from shared.processing import Attempt, FlowContext

from .declaration import SHOPIFY_ADMIN
from .stock import Mapped, StockTarget, wait_within

SET_COST = 10.0  # a mutation's calculated cost
SET_ROUNDS = 3  # compare-and-set attempts per chunk within one delivery


class StockToShopify(StockTarget):
    # Compare with the level last let through: if it was never applied (a failed push), the
    # compare-and-set misses, and the levels are read again and set. No write after each push.
    COMPARES_WITH = "let_through"

    def confirms(self, mapped: Mapped) -> bool:
        return False

    def __init__(self, ctx: FlowContext, client: ShopifyAdmin) -> None:
        super().__init__(ctx)
        self.client = client
        self.location = client.settings.location_id

    def catalogue(self) -> Iterable[tuple[str, str]]:
        """Every variant's SKU and inventory item, by a bulk operation: paging 100,000 variants
        costs ~200,000 points (33 minutes of a Standard plan's bucket); a bulk query costs 10 and
        is read back as one JSONL file."""
        return self.client.bulk_variants(poll_seconds=0.5, timeout=90.0)

    def _pace(self, attempt: Attempt, cost: float) -> None:
        if self.budget is not None:
            self.budget.acquire(1, max_wait=max(0.0, attempt.deadline - time.monotonic() - 10))
        wait = self.client.wait_seconds(cost)
        if wait > 0 and not wait_within(attempt, wait):
            raise RateLimited("Shopify's cost bucket is empty", retry_after=wait)

    def _call(self, attempt: Attempt, cost: float, fn: Any, *args: Any, **kw: Any) -> Any:
        self._pace(attempt, cost)
        try:
            with self.client.bounded(attempt.timeout):
                return fn(*args, **kw)
        except RateLimited as exc:
            if self.budget is not None and exc.retry_after:
                self.budget.hold(exc.retry_after)
            raise

    def _read(self, attempt: Attempt, target_ids: list[str]) -> dict[str, int | None]:
        found: dict[str, int | None] = self._call(attempt, 0.0, self.client.read_available, target_ids, self.location)
        return found

    def push(self, mapped: list[Mapped], attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        batch = ids.get("batch", "")
        calls = rereads = 0
        for start in range(0, len(mapped), MAX_QUANTITIES):
            chunk = mapped[start : start + MAX_QUANTITIES]
            # What we last let through is what Shopify should hold. A SKU we never pushed is set
            # without a compare (``changeFromQuantity: null``): the ERP's level wins either way, and
            # reading 250 levels first costs 75 times the set (750 points against 10).
            current: dict[str, int | None] = {m.target_id: m.previous for m in chunk}
            salt = ""
            for round_ in range(SET_ROUNDS):
                changes = [
                    QuantityChange(m.target_id, self.location, m.level.quantity, current.get(m.target_id))
                    for m in chunk
                ]
                attempt.creating()
                result = self._call(
                    attempt, SET_COST, self.client.set_quantities, changes, idempotency_key=_key(batch + salt, changes)
                )
                calls += 1
                if result.applied:
                    break
                gone = set(result.unknown) | set(result.not_stocked)
                for m in (m for m in chunk if m.target_id in gone):
                    attempt.reject(
                        m.level.sku,
                        m.level.item,
                        "unmapped_sku",
                        f"Shopify has no stocked inventory item {m.target_id} for SKU {m.level.sku} at the location",
                    )
                chunk = [m for m in chunk if m.target_id not in gone]
                if not chunk:
                    break
                # A compare mismatch (a sale in the shop, another writer) changed nothing: read the
                # levels again and set them with what Shopify holds now (a new key: new content).
                if result.retry_with_new_key:  # the key's earlier attempt failed: Shopify wants a new one
                    salt = f"#{round_ + 1}"
                stale = result.mismatched or ([m.target_id for m in chunk] if result.retry_with_new_key else [])
                if stale:
                    current.update(self._read(attempt, stale))
                    rereads += 1
            else:
                raise OutcomeUnsettled("Shopify levels kept moving under the compare-and-set", retry_after=5)
        return {"shopify_calls": str(calls), "shopify_rereads": str(rereads)}


def _key(batch: str, changes: list[QuantityChange]) -> str:
    """The @idempotent key: the same change set (with the same compare values) gets the same key."""
    text = batch + "|" + ";".join(f"{c.inventory_item_id}:{c.quantity}:{c.change_from}" for c in changes)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def build(ctx: FlowContext, http: httpx.Client | None = None) -> StockToShopify:
    """Credentials read on first use, and again when Shopify refuses the token (rotation)."""

    def settings(refresh: bool) -> ShopifySettings:
        return ShopifySettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, SHOPIFY_ADMIN), refresh=refresh))

    return StockToShopify(ctx, ShopifyAdmin(settings, http))
