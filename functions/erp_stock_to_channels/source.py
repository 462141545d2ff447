"""The poller's source: ERP items whose stock changed, from the Service Layer.

The Service Layer filters ``UpdateDate`` by date only (its ``UpdateTime`` is a separate field),
so a read asks for every item updated since the day of the window start and the poller drops
what it already sent (shared/polling.py). A malformed item is rejected on its own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx

from shared.connectors.erp import ErpClient, ErpSettings, item_version, parse_stock
from shared.declaration import secret_id
from shared.errors import ValidationFailed
from shared.polling import Change, CursorState, Page, PollerContext, Rejected, window_start

from .declaration import ERP_CREDENTIALS
from .rules import RULES_VERSION

FIRST_DAY = date(2000, 1, 1)  # a full read: every item


class ErpStockSource:
    rules_version = RULES_VERSION

    def __init__(self, erp: ErpClient) -> None:
        self.erp = erp

    def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
        oldest = window_start(cursor.position, lookback_seconds)
        since = date.fromisoformat(oldest[:10]) if oldest else FIRST_DAY
        with self.erp.bounded(lambda wanted: min(wanted, max(timeout, 1.0))):
            page = self.erp.items_page(since, page_size=page_size, next_link=cursor.next)
        changes: list[Change] = []
        rejected: list[Rejected] = []
        for item in page.items:
            try:
                changes.append(stock_change(item))
            except ValidationFailed as exc:
                key = item.get("ItemCode") if isinstance(item, dict) else None
                rejected.append(Rejected("malformed_item", exc.message, item, str(key) if key else None, _stamp(item)))
        return Page(changes, rejected, next=page.next_link)


def _stamp(item: Any) -> str | None:
    try:
        return item_version(item)
    except ValidationFailed:
        return None


def stock_change(item: dict[str, Any]) -> Change:
    code = item.get("ItemCode")
    if not isinstance(code, str) or not code:
        raise ValidationFailed("ERP item without an ItemCode")
    stock = parse_stock(item)
    return Change(
        key=code,
        stamp=item_version(item),
        data={
            "warehouses": {
                wh: {"in_stock": str(level.in_stock), "committed": str(level.committed)}
                for wh, level in sorted(stock.items())
            }
        },
    )


def build(ctx: PollerContext, http: httpx.Client | None = None) -> ErpStockSource:
    def settings(refresh: bool) -> ErpSettings:
        return ErpSettings.from_secret(ctx.secrets.get_json(secret_id(ctx.stage, ERP_CREDENTIALS), refresh=refresh))

    return ErpStockSource(ErpClient(settings, http))
