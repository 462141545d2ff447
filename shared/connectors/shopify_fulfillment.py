"""Shopify Admin GraphQL API, the fulfilment part: tracking back to a Shopify order (see
docs/shopify-contract.md, "Fulfilments: tracking back to the order").

Built on ``ShopifyAdmin.graphql`` (transport, token refresh, cost throttling, error classes):

- ``order``: the order's fulfillment orders (status, location, remaining quantities) and its
  fulfilments (tracking, display status, events), one query.
- ``ship``: ``fulfillmentCreate`` (the mutation of the current versions; ``fulfillmentCreateV2``
  is deprecated) for every fulfillment order still fulfillable, one call per assigned location,
  with the carrier's tracking. It looks first: an order whose fulfillment orders are done and
  that has a fulfilment carrying our tracking number is shipped already (an earlier attempt whose
  answer was lost), and nothing is sent. Shopify documents ``@idempotent`` for the inventory and
  refund mutations only, not for ``fulfillmentCreate``: the look before the create is what keeps
  a retry from fulfilling twice (a second create would be refused anyway: a closed fulfillment
  order cannot be fulfilled again).
- ``mark``: ``fulfillmentEventCreate`` on the fulfilment carrying our tracking number, once: an
  event of that status on it already, and nothing is sent.

``fulfillmentCreate`` and ``fulfillmentEventCreate`` answer ``userErrors`` of type ``UserError``
(``field`` and ``message``, no ``code``). Their text is never read: after a refusal the order is
read again and its state decides (done after all, or refused: ``TargetRejected`` with the fields).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.connectors.shopify_admin import ShopifyAdmin
from shared.errors import AwaitingPrerequisite, TargetRejected, TargetUnavailable

TARGET = "shopify"
FULFILLABLE = frozenset({"OPEN", "IN_PROGRESS"})
WAITING = frozenset({"ON_HOLD", "SCHEDULED"})  # the merchant holds or schedules it: it may open later
EVENT_STATUSES = frozenset(
    {
        "ATTEMPTED_DELIVERY",
        "CARRIER_PICKED_UP",
        "CONFIRMED",
        "DELAYED",
        "DELIVERED",
        "FAILURE",
        "IN_TRANSIT",
        "LABEL_PRINTED",
        "LABEL_PURCHASED",
        "OUT_FOR_DELIVERY",
        "READY_FOR_PICKUP",
    }
)
# The read asks for 5 fulfillment orders (of up to 20 lines) and 5 fulfilments (with their last 5
# events): about 180 points requested, so a shipment's three reads and a mutation fit a 1000-point
# bucket. An order split into more fulfillment orders is refused (``TargetRejected``).
MAX_FULFILLMENT_ORDERS = 5

ORDER_FULFILMENT = """
query OrderFulfilment($id: ID!) {
  order(id: $id) {
    id
    name
    fulfillmentOrders(first: 5) {
      nodes {
        id
        status
        assignedLocation { location { id } }
        lineItems(first: 20) { nodes { id remainingQuantity } }
      }
      pageInfo { hasNextPage }
    }
    fulfillments(first: 5) {
      id
      status
      displayStatus
      trackingInfo(first: 3) { company number url }
      events(first: 5, reverse: true) { nodes { id status message } }
    }
  }
}
"""

FULFILLMENT_CREATE = """
mutation FulfillmentCreate($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status }
    userErrors { field message }
  }
}
"""

FULFILLMENT_EVENT_CREATE = """
mutation FulfillmentEventCreate($event: FulfillmentEventInput!) {
  fulfillmentEventCreate(fulfillmentEvent: $event) {
    fulfillmentEvent { id status }
    userErrors { field message }
  }
}
"""


@dataclass(frozen=True)
class Tracking:
    company: str  # "InPost"
    number: str
    url: str


@dataclass(frozen=True)
class FulfillmentOrderView:
    id: str
    status: str
    location_id: str | None
    remaining: int  # units left to fulfil (of the lines read)

    @property
    def fulfillable(self) -> bool:
        return self.status in FULFILLABLE  # Shopify closes a fulfillment order with nothing left


@dataclass(frozen=True)
class FulfillmentView:
    id: str
    status: str
    display_status: str | None
    numbers: tuple[str, ...]  # its tracking numbers
    event_statuses: tuple[str, ...]  # newest first


@dataclass(frozen=True)
class OrderFulfilment:
    order_id: str
    fulfillment_orders: list[FulfillmentOrderView] = field(default_factory=list)
    fulfillments: list[FulfillmentView] = field(default_factory=list)

    def carrying(self, number: str) -> list[FulfillmentView]:
        """The fulfilments (not cancelled) whose tracking holds ``number``."""
        return [f for f in self.fulfillments if number in f.numbers and f.status != "CANCELLED"]

    @property
    def fulfillable(self) -> list[FulfillmentOrderView]:
        return [fo for fo in self.fulfillment_orders if fo.fulfillable]


@dataclass(frozen=True)
class Shipped:
    fulfillment_ids: list[str]  # every fulfilment carrying our tracking number
    created: bool  # False: the order was shipped with our number already


@dataclass(frozen=True)
class Marked:
    fulfillment_id: str
    event_id: str | None  # None when the event was there already
    created: bool


def order_gid(order_id: str) -> str:
    """``gid://shopify/Order/<n>`` from a numeric order id (or the gid itself)."""
    if order_id.startswith("gid://shopify/Order/"):
        return order_id
    if not order_id.isascii() or not order_id.isdigit():
        raise ValueError(f"a Shopify order id is numeric, not {order_id!r}")
    return f"gid://shopify/Order/{order_id}"


class OrderNotFound(TargetRejected):
    """Shopify has no order with this id (another shop's, or deleted)."""

    reason = "shop_order_not_found"


class FulfillmentOrderClosed(TargetRejected):
    """Nothing of the order is left to fulfil and no fulfilment carries our tracking: the merchant
    fulfilled it otherwise, or cancelled it. An operator's decision."""

    reason = "fulfillment_order_closed"


class ShopifyFulfillment:
    def __init__(self, admin: ShopifyAdmin) -> None:
        self.admin = admin

    def order(self, order_id: str, ids: dict[str, str] | None = None) -> OrderFulfilment | None:
        """The order's fulfillment orders and fulfilments; None when Shopify has no such order."""
        data = self.admin.graphql(ORDER_FULFILMENT, {"id": order_gid(order_id)}, ids)
        order = data.get("order")
        if order is None:
            return None
        if not isinstance(order, dict):
            raise TargetUnavailable("Shopify answered an order that is not an object", entity_ids=dict(ids or {}))
        page = (order.get("fulfillmentOrders") or {}).get("pageInfo") or {}
        if page.get("hasNextPage"):
            raise TargetRejected(
                f"the order has more than {MAX_FULFILLMENT_ORDERS} fulfillment orders: fulfil it by hand",
                entity_ids=dict(ids or {}),
                details={"target": TARGET},
            )
        return _order_view(order)

    def ship(
        self,
        order_id: str,
        tracking: Tracking,
        *,
        notify_customer: bool,
        ids: dict[str, str],
        before_create: Callable[[], None] | None = None,
    ) -> Shipped:
        """Fulfil what is left of the order with ``tracking``, once. ``before_create`` is called
        right before the first ``fulfillmentCreate`` (after the look found it not done).

        Raises ``OrderNotFound``; ``AwaitingPrerequisite`` while the fulfillment orders are held
        or scheduled by the merchant; ``FulfillmentOrderClosed`` when nothing is left to fulfil
        and no fulfilment carries our number; ``TargetRejected`` when Shopify refuses the create."""
        current = self._read(order_id, ids)
        todo = current.fulfillable
        if not todo:
            return self._shipped_or_refused(current, tracking, ids, created=False)
        if before_create is not None:
            before_create()
        by_location: dict[str | None, list[FulfillmentOrderView]] = {}
        for fo in todo:
            by_location.setdefault(fo.location_id, []).append(fo)
        for group in by_location.values():
            payload = {
                "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo.id} for fo in group],
                "trackingInfo": {"company": tracking.company, "number": tracking.number, "url": tracking.url},
                "notifyCustomer": notify_customer,
            }
            data = self.admin.graphql(FULFILLMENT_CREATE, {"fulfillment": payload}, ids)
            result = data.get("fulfillmentCreate")
            if not isinstance(result, dict):
                raise TargetUnavailable("Shopify answered without a fulfillmentCreate result", entity_ids=ids)
            errors = _user_errors(result)
            if errors:
                # Another writer (an earlier attempt, the merchant) may have got there first:
                # the order's state decides, never the message.
                return self._shipped_or_refused(self._read(order_id, ids), tracking, ids, created=False, errors=errors)
        return self._shipped_or_refused(self._read(order_id, ids), tracking, ids, created=True)

    def mark(
        self,
        order_id: str,
        number: str,
        status: str,
        message: str | None,
        *,
        ids: dict[str, str],
        before_create: Callable[[], None] | None = None,
    ) -> Marked:
        """An event of ``status`` on the fulfilment carrying ``number``, once. Raises
        ``OrderNotFound``; ``AwaitingPrerequisite`` while no fulfilment carries the number (the
        shipped effect has not reached Shopify yet); ``TargetRejected`` when Shopify refuses."""
        if status not in EVENT_STATUSES:
            raise ValueError(f"not a fulfillment event status: {status!r}")
        current = self._read(order_id, ids)
        carrying = current.carrying(number)
        if not carrying:
            raise AwaitingPrerequisite(
                "no fulfilment of the order carries the tracking number yet",
                reason="awaiting_fulfillment",
                entity_ids=ids,
            )
        fulfillment = carrying[0]
        if status in fulfillment.event_statuses or fulfillment.display_status == status:
            return Marked(fulfillment.id, None, created=False)
        if before_create is not None:
            before_create()
        event: dict[str, Any] = {"fulfillmentId": fulfillment.id, "status": status}
        if message:
            event["message"] = message
        data = self.admin.graphql(FULFILLMENT_EVENT_CREATE, {"event": event}, ids)
        result = data.get("fulfillmentEventCreate")
        if not isinstance(result, dict):
            raise TargetUnavailable("Shopify answered without a fulfillmentEventCreate result", entity_ids=ids)
        errors = _user_errors(result)
        if errors:
            again = self._read(order_id, ids).carrying(number)
            if again and status in again[0].event_statuses:
                return Marked(again[0].id, None, created=False)
            raise TargetRejected(
                "Shopify refused the fulfilment event",
                entity_ids=ids,
                details={"target": TARGET, "fields": [e.get("field") for e in errors], "status": status},
            )
        created = result.get("fulfillmentEvent")
        event_id = created.get("id") if isinstance(created, dict) else None
        return Marked(fulfillment.id, str(event_id) if event_id else None, created=True)

    # -- internals -------------------------------------------------------------------------
    def _read(self, order_id: str, ids: dict[str, str]) -> OrderFulfilment:
        found = self.order(order_id, ids)
        if found is None:
            raise OrderNotFound("Shopify has no such order", entity_ids=ids, details={"target": TARGET})
        return found

    @staticmethod
    def _shipped_or_refused(
        current: OrderFulfilment,
        tracking: Tracking,
        ids: dict[str, str],
        *,
        created: bool,
        errors: list[dict[str, Any]] | None = None,
    ) -> Shipped:
        carrying = current.carrying(tracking.number)
        details: dict[str, Any] = {
            "target": TARGET,
            "fulfillment_order_statuses": sorted({fo.status for fo in current.fulfillment_orders}),
        }
        if errors is not None:
            details["fields"] = [e.get("field") for e in errors]
        if carrying and not current.fulfillable:
            return Shipped([f.id for f in carrying], created=created)
        if current.fulfillable:  # a refusal with work left: our request was wrong
            raise TargetRejected("Shopify refused the fulfilment", entity_ids=ids, details=details)
        if any(fo.status in WAITING for fo in current.fulfillment_orders):
            raise AwaitingPrerequisite(
                "the order's fulfillment orders are on hold or scheduled",
                reason="fulfillment_on_hold",
                entity_ids=ids,
                details=details,
            )
        raise FulfillmentOrderClosed(
            "nothing of the order is left to fulfil and no fulfilment carries the tracking number",
            entity_ids=ids,
            details=details,
        )


def _user_errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in result.get("userErrors") or [] if isinstance(e, dict)]


def _nodes(connection: Any) -> list[dict[str, Any]]:
    if not isinstance(connection, dict):
        return []
    return [n for n in connection.get("nodes") or [] if isinstance(n, dict)]


def _order_view(order: dict[str, Any]) -> OrderFulfilment:
    fos: list[FulfillmentOrderView] = []
    for node in _nodes(order.get("fulfillmentOrders")):
        assigned = node.get("assignedLocation") or {}
        location = assigned.get("location") if isinstance(assigned, dict) else None
        remaining = 0
        for line in _nodes(node.get("lineItems")):
            quantity = line.get("remainingQuantity")
            if isinstance(quantity, int) and not isinstance(quantity, bool):
                remaining += quantity
        fos.append(
            FulfillmentOrderView(
                id=str(node.get("id")),
                status=str(node.get("status")),
                location_id=str(location["id"]) if isinstance(location, dict) and location.get("id") else None,
                remaining=remaining,
            )
        )
    fulfillments: list[FulfillmentView] = []
    for node in order.get("fulfillments") or []:
        if not isinstance(node, dict):
            continue
        numbers = tuple(
            str(t["number"]) for t in node.get("trackingInfo") or [] if isinstance(t, dict) and t.get("number")
        )
        events = tuple(str(e.get("status")) for e in _nodes(node.get("events")))
        display = node.get("displayStatus")
        fulfillments.append(
            FulfillmentView(
                id=str(node.get("id")),
                status=str(node.get("status")),
                display_status=str(display) if display else None,
                numbers=numbers,
                event_statuses=events,
            )
        )
    return OrderFulfilment(str(order.get("id")), fos, fulfillments)
