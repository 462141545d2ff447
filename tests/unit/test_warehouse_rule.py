"""The warehouse routing rule: which fulfilment centre picks an order, from stock per location."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from functions.orders.warehouse import WAREHOUSES, Warehouse, choose_location, needed
from junction_local.standins.shipbob import LOCATIONS
from shared.connectors.shopify import order_from_webhook
from shared.models import Order

SAMPLE = Path(__file__).resolve().parents[1] / "events" / "shopify" / "orders-create.json"
POZNAN, VENLO, CICERO = 101, 102, 103


def order_to(country: str, lines: dict[str, int] | None = None) -> Order:
    """The sample order (2 x MUG-BLUE, 1 x TEAPOT-L) shipped to ``country``."""
    order = order_from_webhook(json.loads(SAMPLE.read_text(encoding="utf-8")))
    assert order.shipping_address is not None
    order = order.model_copy(
        update={"shipping_address": order.shipping_address.model_copy(update={"country": country})}
    )
    if lines is None:
        return order
    template = order.lines[0]
    return order.model_copy(
        update={
            "lines": tuple(
                template.model_copy(update={"sku": sku, "quantity": Decimal(qty)}) for sku, qty in lines.items()
            )
        }
    )


def test_a_warehouse_holding_every_line_and_serving_the_country_wins_over_priority() -> None:
    stock = {"MUG-BLUE": {POZNAN: 5, VENLO: 5}, "TEAPOT-L": {POZNAN: 1, VENLO: 1}}
    assert choose_location(order_to("DE"), stock) == VENLO  # Poznań comes first, but Venlo serves Germany
    assert choose_location(order_to("PL"), stock) == POZNAN


def test_among_full_warehouses_none_serving_the_country_priority_decides() -> None:
    stock = {"MUG-BLUE": {VENLO: 5, CICERO: 5}, "TEAPOT-L": {VENLO: 1, CICERO: 1}}
    assert choose_location(order_to("JP"), stock) == VENLO


def test_a_full_warehouse_beats_a_partial_one_that_serves_the_country() -> None:
    stock = {"MUG-BLUE": {POZNAN: 2, CICERO: 2}, "TEAPOT-L": {POZNAN: 0, CICERO: 1}}
    assert choose_location(order_to("PL"), stock) == CICERO


def test_without_a_full_warehouse_the_one_holding_most_units_takes_it() -> None:
    # Poznań holds 1 mug (1 unit), Venlo 2 mugs (2 of the 3 units): Venlo, though Poznań serves Poland.
    stock = {"MUG-BLUE": {POZNAN: 1, VENLO: 9}, "TEAPOT-L": {POZNAN: 0, VENLO: 0}}
    assert choose_location(order_to("PL"), stock) == VENLO


def test_units_beyond_a_lines_quantity_do_not_count() -> None:
    # Venlo's 50 mugs fill one line of 2; Poznań's mug and teapot fill 2 of the 3 units too: a tie,
    # and Poznań serves Poland.
    stock = {"MUG-BLUE": {POZNAN: 1, VENLO: 50}, "TEAPOT-L": {POZNAN: 1}}
    assert choose_location(order_to("PL"), stock) == POZNAN


def test_no_stock_information_lets_shipbob_choose() -> None:
    assert choose_location(order_to("PL"), {}) is None


def test_no_declared_warehouse_holding_any_unit_lets_shipbob_choose() -> None:
    stock = {"MUG-BLUE": {POZNAN: 0, VENLO: -3}, "TEAPOT-L": {999: 10}}
    assert choose_location(order_to("PL"), stock) is None


def test_an_undeclared_location_is_never_chosen() -> None:
    stock = {"MUG-BLUE": {999: 10, CICERO: 2}, "TEAPOT-L": {999: 10}}
    assert choose_location(order_to("PL"), stock) == CICERO


def test_two_lines_of_one_sku_need_their_sum_from_one_warehouse() -> None:
    order = order_to("PL", {"MUG-BLUE": 2})
    order = order.model_copy(update={"lines": order.lines * 2})
    assert needed(order) == {"MUG-BLUE": Decimal(4)}
    stock = {"MUG-BLUE": {POZNAN: 3, VENLO: 4}}
    assert choose_location(order, stock) == VENLO


def test_an_order_without_ship_to_is_routed_by_stock_and_priority_alone() -> None:
    order = order_to("PL").model_copy(update={"shipping_address": None})
    stock = {"MUG-BLUE": {VENLO: 2, CICERO: 2}, "TEAPOT-L": {VENLO: 1, CICERO: 1}}
    assert choose_location(order, stock) == VENLO


def test_the_rule_takes_other_warehouses_as_data() -> None:
    only = (Warehouse(7, "Somewhere", frozenset({"PL"}), priority=1),)
    assert choose_location(order_to("PL"), {"MUG-BLUE": {7: 2}, "TEAPOT-L": {7: 1}}, only) == 7
    assert choose_location(order_to("PL"), {"MUG-BLUE": {POZNAN: 2}}, ()) is None


def test_the_declared_warehouses_are_the_fulfilment_centres_the_stand_in_plays() -> None:
    assert {w.location_id for w in WAREHOUSES} == {location_id for location_id, _, _ in LOCATIONS}
    assert len({w.priority for w in WAREHOUSES}) == len(WAREHOUSES)
