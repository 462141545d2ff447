"""Sample payloads under tests/events, and helpers that make variants of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

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
