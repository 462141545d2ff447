"""Sample payloads under tests/events, and helpers that make variants of them."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from functions.shopify_orders.declaration import INTEGRATION as SHOPIFY_ORDERS

EVENTS = Path(__file__).parent / "events"


def shopify_order(**changes: Any) -> dict[str, Any]:
    """The documented-shape Shopify orders/create payload, with top-level fields changed."""
    payload: dict[str, Any] = json.loads((EVENTS / "shopify" / "orders-create.json").read_text())
    payload = copy.deepcopy(payload)
    payload.update(changes)
    return payload


def body(payload: dict[str, Any]) -> bytes:
    """Serialised the way Shopify sends it (compact JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# The Shopify order source with its ERP target alone: component tests drive one target's pipeline
# (every target is a pipeline of its own; the order route's other targets have tests of their own).
SHOP_ORDERS_TO_ERP = replace(SHOPIFY_ORDERS, targets=(SHOPIFY_ORDERS.target("erp"),))
