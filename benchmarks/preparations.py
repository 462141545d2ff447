"""What a benchmark run needs in place before a delivery can make its effect, per system.

A payment, a parcel or a status speaks of something that must already exist: the order it pays
or ships, the P24 transaction the customer paid, the ShipX shipment whose status changed, the
tracking a delivery confirms. The real flow made those earlier; a benchmark that sends one event
alone has to make them first, through the systems' own APIs and their stand-ins' control
endpoints, and only then can it count one new effect per run.

Keyed by system name (``Integration.source``, ``Target.name``), never by integration:

- ``SOURCES``: a source's event for entity ``n``, made real on the source side (Przelewy24's
  transaction registered and paid at the P24 API stand-in; ShipX's shipment created and moved to
  the status its webhook reports), about an order of ``shop``; with the ``Facts`` the targets
  need. A source without an entry sends the declared sample as it is (an order webhook makes the
  order itself: nothing to prepare).
- ``TARGETS``: what a target must hold for the facts (the ERP's sales order, and its delivery
  note when a status follows the shipping; the shop's order, and its tracking), made when the
  event is about an existing order.
- ``SHOPS``: targets that hold a shop's orders: their events are about an order of that shop
  (each shop follower skips another shop's orders without a call).
- ``EFFECT_COUNTS``: the counters of a stand-in's summary that count effects besides its
  declared ``effect_count`` (the ERP counts payments, delivery notes, ... apart from orders).
- ``SETTINGS``: stand-in settings for the benchmark, sent once (ShipX confirms a new shipment
  by the hop's next read, whatever the machine's timing; the hop's one poll interval before that
  read is its own design and stays in what is measured).

These would sit best in the stand-ins' declarations (junction_local/standins); they are here
until those declare them.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SHOP = "woocommerce"  # the shop a payment pays an order of, when no shop target decides
ERP_CUSTOMER = "BENCH-C00001"  # the business partner of the benchmark's ERP orders
ERP_ITEM = "MUG-BLUE"  # an item every ERP stand-in holds
CURRENCY = "PLN"
CARRIER = "InPost"


@dataclass(frozen=True)
class World:
    """What the hooks reach: the stand-ins' root and control URLs and the source's sender."""

    root_url: Callable[[str], str]  # system -> its stand-in's root URL
    control_url: Callable[[str], str]  # system -> its stand-in's control URL (``/_standin``)
    sender: Any  # the integration's source sender (Przelewy24's settles a payment at its API)
    made: dict[str, Any] = field(default_factory=dict)  # what a hook made once (the ERP customer)


@dataclass(frozen=True)
class Facts:
    """What an event for entity ``n`` speaks of, for the targets to hold before it arrives."""

    order_reference: str = ""  # "<shop>:<order id>"; empty: the event brings its own order
    currency: str = CURRENCY
    shipment_id: str = ""
    tracking_number: str = ""
    status: str = ""  # a ShipX status the event reports (after the shipped effect), or ""

    @property
    def shop(self) -> str:
        return self.order_reference.partition(":")[0]

    @property
    def order_id(self) -> int:
        return int(self.order_reference.partition(":")[2])


def control(url: str, body: Mapping[str, Any] | None = None) -> Any:
    """GET (no body) or POST JSON to a stand-in's control endpoint on 127.0.0.1."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# -- sources ---------------------------------------------------------------------------------------


def _stripe(n: int, shop: str, world: World) -> tuple[dict[str, Any], Facts]:
    from junction_local.standins.stripe import payment_succeeded

    return payment_succeeded(n, source=shop, currency=CURRENCY.lower()), Facts(f"{shop}:{n}")


def _przelewy24(n: int, shop: str, world: World) -> tuple[dict[str, Any], Facts]:
    """Registered at the P24 API stand-in (as the shop did at checkout), paid there, signed by it."""
    from junction_local.standins.przelewy24 import notification

    settled: dict[str, Any] = world.sender.settle(notification(n, source=shop, currency=CURRENCY))
    return settled, Facts(f"{shop}:{n}")


def _wms(n: int, shop: str, world: World) -> tuple[dict[str, Any], Facts]:
    from junction_local.standins.wms import make_packed

    reference = f"{shop}:{n}"
    return make_packed(reference, service="locker" if n % 2 == 0 else "courier", customer=n), Facts(reference)


def _inpost(n: int, shop: str, world: World) -> tuple[dict[str, Any], Facts]:
    """A shipment for the order, created at ShipX from the warehouse's packed order, confirmed
    (its tracking number) and delivered: the webhook reports what ShipX holds."""
    from functions.shipping.events import PackedEvent
    from functions.shipping.to_inpost import shipment_body
    from junction_local.standins import target
    from junction_local.standins.inpost_webhooks import make_status
    from junction_local.standins.wms import make_packed
    from shared.connectors.inpost import InPostClient, InPostSettings

    reference = f"{shop}:{n}"
    packed = PackedEvent.model_validate(make_packed(reference, customer=n)).data
    settings = InPostSettings.from_secret(target("inpost").credentials(world.root_url("inpost")))
    client = InPostClient(settings)
    try:
        created = client.create_shipment(shipment_body(packed, {}), {})
    finally:
        client.close()
    moved = world.control_url("inpost") + "/shipments/status"
    confirmed = control(moved, {"shipment_id": created["id"], "status": "confirmed"})
    delivered = control(moved, {"shipment_id": created["id"], "status": "delivered"})
    number = str(confirmed["tracking_number"])
    facts = Facts(reference, shipment_id=str(created["id"]), tracking_number=number, status=delivered["status"])
    return make_status(int(created["id"]), delivered["status"], number), facts


SOURCES: dict[str, Callable[[int, str, World], tuple[dict[str, Any], Facts]]] = {
    "stripe": _stripe,
    "przelewy24": _przelewy24,
    "wms": _wms,
    "inpost": _inpost,
}


# -- targets ---------------------------------------------------------------------------------------


def _erp(facts: Facts, world: World) -> None:
    """The sales order (through the Service Layer, as the order route makes it); after the
    shipping, its delivery note with the shipment's tracking number."""
    from junction_local.standins import target
    from shared.connectors.erp import ErpClient, ErpSettings

    erp = ErpClient(ErpSettings.from_secret(target("erp").credentials(world.root_url("erp"))))
    try:
        if "erp_customer" not in world.made:
            partner = {"CardCode": ERP_CUSTOMER, "CardName": "Benchmark Customer", "CardType": "cCustomer"}
            erp.request("POST", "/BusinessPartners", {}, body=partner)
            world.made["erp_customer"] = ERP_CUSTOMER
        order = {
            "CardCode": ERP_CUSTOMER,
            "NumAtCard": facts.order_reference,
            "DocCurrency": facts.currency,
            "DocDate": time.strftime("%Y-%m-%d"),
            "DocumentLines": [{"ItemCode": ERP_ITEM, "Quantity": 1, "UnitPrice": 100.0}],
        }
        made = erp.request("POST", "/Orders", {}, body=order).json()
        if facts.status:
            reference = f"{facts.order_reference}#shipped#{facts.shipment_id}"
            number = facts.tracking_number
            erp.create_delivery(int(made["DocEntry"]), reference=reference, tracking_number=number, ids={})
    finally:
        erp.close()


def _shopify(facts: Facts, world: World) -> None:
    """The order as a checkout makes it; after the shipping, fulfilled with InPost's tracking."""
    shop = world.control_url("shopify")
    control(shop + "/orders", {"id": facts.order_id, "line_items": [{"sku": ERP_ITEM, "quantity": 1}]})
    if facts.status:
        control(shop + "/orders/fulfil", {"id": facts.order_id, "company": CARRIER, "number": facts.tracking_number})


def _woocommerce(facts: Facts, world: World) -> None:
    """The order as the shop holds it; after the shipping, completed with InPost's tracking item."""
    from shared.connectors.inpost import tracking_url
    from shared.connectors.woocommerce_api import TRACKING_META, tracking_item

    order: dict[str, Any] = {"id": facts.order_id, "status": "processing", "currency": facts.currency}
    if facts.status:
        item = tracking_item(CARRIER, facts.tracking_number, tracking_url(facts.tracking_number), int(time.time()))
        order.update(status="completed", meta_data=[{"key": TRACKING_META, "value": [item]}])
    control(world.control_url("woocommerce") + "/orders", order)


TARGETS: dict[str, Callable[[Facts, World], None]] = {
    "erp": _erp,
    "shopify": _shopify,
    "woocommerce": _woocommerce,
}
SHOPS = frozenset({"shopify", "woocommerce"})
EFFECT_COUNTS: dict[str, tuple[str, ...]] = {
    "erp": ("orders", "incoming_payments", "refunds", "delivery_notes", "deliveries_delivered", "returns"),
    "shopify": ("quantities_set", "fulfillments_created", "fulfillment_events_created"),
}
SETTINGS: dict[str, dict[str, Any]] = {
    "inpost": {"confirm_delay": 0},
}


def source_event(source: str, n: int, shop: str | None, world: World) -> tuple[dict[str, Any], Facts] | None:
    """The prepared event of ``source`` for entity ``n``, about an order of ``shop`` (the default
    shop when None), or None when the source needs nothing prepared."""
    hook = SOURCES.get(source)
    return hook(n, shop or DEFAULT_SHOP, world) if hook is not None else None


def prepare_target(system: str, facts: Facts, world: World) -> None:
    """Make what ``system`` must hold before an event about ``facts`` reaches it."""
    hook = TARGETS.get(system)
    if hook is not None and facts.order_reference:
        hook(facts, world)


def effect_counts(system: str, declared: str) -> tuple[str, ...]:
    """The summary counters that count ``system``'s effects: its declared one and any others."""
    return tuple(dict.fromkeys((declared, *EFFECT_COUNTS.get(system, ()))))
