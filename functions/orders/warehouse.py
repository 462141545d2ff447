"""The warehouse routing rule: which fulfilment centre picks an order.

1. Candidates are the declared warehouses that hold every line in full (fulfillable units, per
   SKU summed over the order's lines).
2. Among them, one that ships cheaply to the destination country comes first, then the lowest
   ``priority``.
3. If none holds every line, the one holding the most of the order's units (each line counted
   up to its quantity) takes it, so the fewest units wait for a transfer; ties go to one serving
   the country, then to priority.
4. No stock information, or no declared warehouse holding any unit: None, and ShipBob chooses.

Plain data and a pure function: the rule is tested like any code and documented in
docs/wms-contract.md. The location ids are ShipBob's fulfilment centre ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.models import Order


@dataclass(frozen=True)
class Warehouse:
    location_id: int  # ShipBob's fulfilment centre id
    name: str
    countries: frozenset[str]  # ISO 3166-1 alpha-2 codes it ships to cheaply
    priority: int  # lower goes first among equals


WAREHOUSES: tuple[Warehouse, ...] = (
    Warehouse(101, "Poznań (PL)", frozenset({"PL", "CZ", "SK", "LT", "LV", "EE", "HU"}), priority=1),
    Warehouse(102, "Venlo (NL)", frozenset({"NL", "BE", "LU", "DE", "FR", "AT", "DK"}), priority=2),
    Warehouse(103, "Cicero (IL)", frozenset({"US", "CA"}), priority=3),
)

Stock = Mapping[str, Mapping[int, int]]  # SKU -> location id -> fulfillable units


def needed(order: Order) -> dict[str, Decimal]:
    """Units per SKU: two lines of the same SKU need their sum from one warehouse."""
    units: dict[str, Decimal] = {}
    for line in order.lines:
        units[line.sku] = units.get(line.sku, Decimal(0)) + line.quantity
    return units


def choose_location(order: Order, stock: Stock, warehouses: tuple[Warehouse, ...] = WAREHOUSES) -> int | None:
    """The location id that should pick ``order``, or None to let ShipBob choose."""
    if not stock or not warehouses:
        return None
    units = needed(order)
    country = order.shipping_address.country if order.shipping_address else None

    def held(w: Warehouse) -> Decimal:
        return sum(
            (min(Decimal(max(stock.get(sku, {}).get(w.location_id, 0), 0)), qty) for sku, qty in units.items()),
            Decimal(0),
        )

    def preference(w: Warehouse) -> tuple[bool, int]:
        return (country not in w.countries, w.priority)

    total = sum(units.values(), Decimal(0))
    holdings = {w.location_id: held(w) for w in warehouses}
    full = [w for w in warehouses if holdings[w.location_id] >= total]
    if full:
        return min(full, key=preference).location_id
    best = min(warehouses, key=lambda w: (-holdings[w.location_id], *preference(w)))
    return best.location_id if holdings[best.location_id] > 0 else None
