"""The business rule of stock sync: what each channel may sell.

Sellable quantity for a channel = the sum over the warehouses that channel sells from of
(in stock - committed to open orders), minus the channel's safety stock, never negative. Rules
are plain Python, tested like any code; changing them changes ``RULES_VERSION``, and the poller
then resyncs every SKU under the new rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class ChannelRule:
    channel: str  # the target's name
    warehouses: tuple[str, ...]  # ERP warehouse codes the channel may sell from
    safety_stock: int = 0  # kept back from the channel, against overselling between syncs


RULES: dict[str, ChannelRule] = {
    "shopify": ChannelRule("shopify", warehouses=("01", "02"), safety_stock=0),
    # The marketplace sells from the main warehouse only and keeps two back: a cancelled
    # Allegro sale costs the seller its rating.
    "allegro": ChannelRule("allegro", warehouses=("01",), safety_stock=2),
}

RULES_VERSION = hashlib.sha256(repr(sorted(RULES.items())).encode()).hexdigest()[:12]


def sellable(stock: Mapping[str, Mapping[str, str | int | Decimal]], rule: ChannelRule) -> int:
    """``stock``: warehouse code -> {"in_stock", "committed"} as the poller carries them."""
    total = Decimal(0)
    for code in rule.warehouses:
        level = stock.get(code)
        if level is None:
            continue
        total += Decimal(str(level.get("in_stock", 0))) - Decimal(str(level.get("committed", 0)))
    total -= rule.safety_stock
    return max(0, int(total.to_integral_value(rounding=ROUND_FLOOR)))
