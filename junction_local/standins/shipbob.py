"""A ShipBob stand-in speaking the fulfilment contract of docs/wms-contract.md.

A real HTTP server on 127.0.0.1, as strict as ShipBob where ShipBob documents a rule: a bearer
token, the ``shipbob_channel_id`` header on order calls, the required fields of a create (with a
validation problem naming the fields), ``reference_id`` unique within the account (a second
create is ``422``), orders listed by ``ReferenceIds``, a cancel refused once the shipment is
picked, packed or shipped, and 150 requests a minute per token in a sliding window (then ``429``
with ``x-retry-after``). Three fulfilment centres hold stock per SKU; an order commits its units
at its location, so fulfillable stock drops as orders arrive.

It can be told to misbehave (down, slow, rate limited, flaky, committing then hanging), to let
duplicate reference ids through (``idempotency: false``, so a benchmark can count duplicates),
and its clock can be moved forward so the rate window passes without waiting. Control over HTTP
under /_standin/, so another process (the demo, a benchmark) can drive it and move an order
through picking, packing and shipping.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from junction_local.process import LocalHandler, ServedStandIn
from junction_local.standins import TargetStandIn
from junction_local.standins.erp import DEFAULT_ITEMS

API_VERSION = "2026-01"
TOKEN = "local-shipbob-token"  # noqa: S105 - a fixed local value, never deployed
CHANNEL_ID = "100102"
REQUESTS_PER_MINUTE = 150  # per token, sliding window
WINDOW_SECONDS = 60.0
REFERENCE_MAX = 300
ORDER_TYPES = ("DTC", "DropShip", "B2B")

# The fulfilment centres: (location id, name, country). Their ids are the ones the warehouse
# routing rule (functions/orders/warehouse.py) declares.
LOCATIONS: tuple[tuple[int, str, str], ...] = (
    (101, "Poznań (PL)", "PL"),
    (102, "Venlo (NL)", "NL"),
    (103, "Cicero (IL)", "US"),
)
LOCATION_NAMES = {location_id: name for location_id, name, _ in LOCATIONS}
CANCELLED = "Cancelled"

# Where an order is in its fulfilment, as the stand-in's control moves it: each step is a
# shipment status and status detail of ShipBob's status reference, and the order's status.
STEPS: dict[str, tuple[str, str | None, int | None, str]] = {
    "processing": ("Processing", None, None, "Processing"),
    "picked": ("Processing", "Picked", 100, "Processing"),
    "packed": ("Processing", "Packed", 101, "Processing"),
    "labeled": ("Processing", "Labeled", 102, "Processing"),
    "shipped": ("Completed", "InTransit", 201, "Fulfilled"),
}
STARTED = frozenset({"picked", "packed", "labeled", "shipped"})  # a cancel is refused from here on

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 with x-retry-after `retry_after`",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
    "accept_then_hang": "commit a POST, then hold its answer for `delay` seconds (default 30)",
}


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N API requests only, then back to ok
    rate: float = 0.5  # flaky: the fraction of requests that fail
    seed: int = 0


@dataclass
class Level:
    on_hand: int = 0
    committed: int = 0  # units of open orders at this location

    @property
    def fulfillable(self) -> int:
        return self.on_hand - self.committed


@dataclass
class StoredOrder:
    doc: dict[str, Any]  # the order as ShipBob answers it (status and shipment kept current)
    location_id: int
    lines: list[tuple[str, int]]  # (SKU, units) committed at the location while open
    step: str = "processing"
    cancelled: bool = False
    committed: bool = True  # its units are still committed at the location


Answer = tuple[int, dict[str, str], Any]


class ShipBobStandIn(ServedStandIn):
    thread_name = "shipbob-standin"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = TOKEN,
        channel_id: str = CHANNEL_ID,
        requests_per_minute: int = REQUESTS_PER_MINUTE,
        idempotency: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self.token = token
        self.channel_id = channel_id
        self.requests_per_minute = requests_per_minute
        # ShipBob refuses a second order with the same reference_id; ``False`` lets it through
        # (as a warehouse without that rule would), so duplicates can be counted here.
        self.idempotency = idempotency
        self._clock = clock
        self._lock = threading.RLock()
        self._stop_hanging = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.reset()

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward: the rate limit window passes."""
        if not seconds >= 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._skew += seconds

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._skew = 0.0
            self._orders: dict[int, StoredOrder] = {}
            self._by_reference: dict[str, list[int]] = {}
            self._ids = itertools.count(1)
            self._levels: dict[str, dict[int, Level]] = {}
            self._inventory_ids: dict[str, int] = {}
            self._hits: dict[str, deque[float]] = {}
            self._requests = 0
            self._rate_limited = 0
            self._rejected = 0
            self.behaviour = Behaviour()
            self._random = random.Random(0)
            for n, sku in enumerate(DEFAULT_ITEMS):
                # Deterministic stock, so a demo or a test knows where each SKU is.
                for (location_id, _, _), on_hand in zip(LOCATIONS, (20 + 10 * n, 5 * n, 50), strict=True):
                    self._level(sku, location_id).on_hand = on_hand

    def set_behaviour(
        self,
        mode: str = "ok",
        *,
        retry_after: int = 1,
        delay: float = 0.0,
        count: int | None = None,
        rate: float = 0.5,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {sorted(MODES)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if retry_after < 0 or delay < 0 or (count is not None and count < 0):
            raise ValueError("retry_after, delay and count cannot be negative")
        with self._lock:
            self.behaviour = Behaviour(mode, retry_after, delay, count, rate, seed)
            self._random = random.Random(seed)

    def configure(self, *, idempotency: bool | None = None, requests_per_minute: int | None = None) -> dict[str, Any]:
        with self._lock:
            if idempotency is not None:
                self.idempotency = bool(idempotency)
            if requests_per_minute is not None:
                if isinstance(requests_per_minute, bool) or requests_per_minute < 1:
                    raise ValueError("requests_per_minute must be at least 1")
                self.requests_per_minute = int(requests_per_minute)
            return self.settings()

    def settings(self) -> dict[str, Any]:
        return {"idempotency": self.idempotency, "requests_per_minute": self.requests_per_minute}

    def set_stock(self, levels: list[dict[str, Any]]) -> int:
        """Set on-hand units: ``[{"sku", "location_id", "on_hand"}]``. All or nothing: an unknown
        location or a quantity that is not a non-negative integer raises ValueError."""
        if not isinstance(levels, list) or not levels:
            raise ValueError("levels must be a non-empty list")
        known = {location_id for location_id, _, _ in LOCATIONS}
        parsed: list[tuple[str, int, int]] = []
        for level in levels:
            if not isinstance(level, dict):
                raise ValueError("each level must be an object")
            sku, location_id, on_hand = level.get("sku"), level.get("location_id"), level.get("on_hand")
            if not isinstance(sku, str) or not sku:
                raise ValueError("each level needs a sku")
            if location_id not in known:
                raise ValueError(f"{sku}: unknown location_id {location_id!r}; one of {sorted(known)}")
            if isinstance(on_hand, bool) or not isinstance(on_hand, int) or on_hand < 0:
                raise ValueError(f"{sku}: on_hand must be a non-negative integer")
            parsed.append((sku, int(location_id), on_hand))
        with self._lock:
            for sku, location_id, on_hand in parsed:
                self._level(sku, location_id).on_hand = on_hand
        return len(parsed)

    def stock(self) -> dict[str, dict[str, dict[str, int]]]:
        """Every SKU's units per location: ``{sku: {location_id: {on_hand, committed, fulfillable}}}``."""
        with self._lock:
            return {
                sku: {
                    str(location_id): {
                        "on_hand": level.on_hand,
                        "committed": level.committed,
                        "fulfillable": level.fulfillable,
                    }
                    for location_id, level in sorted(levels.items())
                }
                for sku, levels in sorted(self._levels.items())
            }

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy(o.doc) for o in self._orders.values()]

    def advance_order(self, to: str, *, order_id: int | None = None, reference_id: str | None = None) -> dict[str, Any]:
        """Move an order through fulfilment (``picked``, ``packed``, ``labeled``, ``shipped``), as
        the warehouse floor would. Shipping takes its units off the shelf. KeyError for an
        unknown order, ValueError for an unknown step, a step back or a cancelled order."""
        if to not in STEPS:
            raise ValueError(f"unknown step {to!r}; one of {sorted(STEPS)}")
        with self._lock:
            stored = self._find(order_id, reference_id)
            order = list(STEPS)
            if stored.cancelled or order.index(to) < order.index(stored.step):
                raise ValueError(f"order {stored.doc['id']} cannot go from {stored.step} to {to}")
            if to == "shipped" and stored.committed:
                for sku, units in stored.lines:
                    level = self._level(sku, stored.location_id)
                    level.on_hand -= units
                    level.committed -= units
                stored.committed = False
            stored.step = to
            self._describe(stored)
            return _copy(stored.doc)

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while orders arrive."""
        with self._lock:
            references = [o.doc["reference_id"] for o in self._orders.values()]
            by_location: dict[str, int] = {str(location_id): 0 for location_id, _, _ in LOCATIONS}
            for stored in self._orders.values():
                by_location[str(stored.location_id)] += 1
            return {
                "orders": len(references),
                "unique_references": len(set(references)),
                "duplicates": len(references) - len(set(references)),
                "orders_cancelled": sum(1 for o in self._orders.values() if o.cancelled),
                "orders_shipped": sum(1 for o in self._orders.values() if o.step == "shipped"),
                "requests": self._requests,
                "rate_limited": self._rate_limited,
                "rejected_by_behaviour": self._rejected,
                "by_location": by_location,
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "summary": self.summary(),
                "behaviour": self.behaviour.__dict__,
                "settings": self.settings(),
                "locations": [{"id": i, "name": n, "country": c} for i, n, c in LOCATIONS],
            }

    # -- internals (callers hold the lock) ---------------------------------------------------
    def _level(self, sku: str, location_id: int) -> Level:
        if sku not in self._levels:
            self._levels[sku] = {loc: Level() for loc, _, _ in LOCATIONS}
            self._inventory_ids[sku] = 1000 + len(self._inventory_ids) + 1
        return self._levels[sku][location_id]

    def _find(self, order_id: int | None, reference_id: str | None) -> StoredOrder:
        if order_id is None and reference_id is not None:
            matches = self._by_reference.get(reference_id) or []
            order_id = matches[0] if matches else None
        stored = self._orders.get(order_id) if order_id is not None else None
        if stored is None:
            raise KeyError(order_id if order_id is not None else reference_id)
        return stored

    def _describe(self, stored: StoredOrder) -> None:
        """Keep the order's and its shipment's statuses in step with where it is."""
        shipment = stored.doc["shipments"][0]
        if stored.cancelled:
            shipment["status"], shipment["status_details"], stored.doc["status"] = CANCELLED, [], CANCELLED
            return
        status, detail, detail_id, order_status = STEPS[stored.step]
        if stored.step == "processing" and not self._stocked(stored):
            status, detail, detail_id, order_status = "Exception", "OutOfStock", 303, "Exception"
        shipment["status"] = status
        shipment["status_details"] = [{"name": detail, "id": detail_id}] if detail else []
        stored.doc["status"] = order_status

    def _stocked(self, stored: StoredOrder) -> bool:
        """Whether the location can fill the order (its units already committed among the rest)."""
        return all(self._level(sku, stored.location_id).fulfillable >= 0 for sku, _ in stored.lines)

    def _misbehave(self, method: str) -> Answer | float | None:
        """An answer forced by the current behaviour, None to serve normally, or how long to hold
        the answer after serving (``accept_then_hang``, POSTs only)."""
        with self._lock:
            b = self.behaviour
            if b.mode == "ok" or (b.mode == "accept_then_hang" and method != "POST"):
                return None
            if b.count is not None:
                if b.count <= 0:
                    self.behaviour = Behaviour()
                    return None
                b.count -= 1
            if b.mode == "flaky" and self._random.random() >= b.rate:
                return None
            mode, retry_after, delay = b.mode, b.retry_after, b.delay
            if mode not in ("slow", "accept_then_hang"):
                self._rejected += 1
            if mode == "rate_limited":
                self._rate_limited += 1
        if mode == "accept_then_hang":
            return delay or 30.0
        if mode == "slow":
            time.sleep(delay)
            return None
        if mode == "rate_limited":
            return _too_many(retry_after)
        return 503, {}, {"title": "Service Unavailable", "status": 503}

    def _within_limit(self, token: str) -> Answer | None:
        """Count the request in the token's sliding minute; a 429 once the window is full."""
        with self._lock:
            now = self.now()
            hits = self._hits.setdefault(token, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self.requests_per_minute:
                self._rate_limited += 1
                return _too_many(max(1, math.ceil(hits[0] + WINDOW_SECONDS - now)))
            hits.append(now)
            return None

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        if path.startswith("/_standin/"):
            return self._control(method, path, raw)
        with self._lock:
            self._requests += 1
        forced = self._misbehave(method)
        if isinstance(forced, tuple):
            return forced
        answer = self._authorised(method, path, query, headers, raw)
        if forced is not None:  # committed; the answer is held past the client's read timeout
            self._stop_hanging.wait(forced)
        return answer

    def _authorised(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token != self.token:
            return 401, {"WWW-Authenticate": "Bearer"}, {"title": "Unauthorized", "status": 401}
        limited = self._within_limit(token)
        if limited is not None:
            return limited
        prefix = f"/{API_VERSION}/"
        if not path.startswith(prefix):
            return 404, {}, {"title": "Not Found", "status": 404}
        route = path[len(prefix) - 1 :]
        status, extra, payload = self._route(method, route, parse_qs(query), headers, raw)
        with self._lock:
            remaining = self.requests_per_minute - len(self._hits.get(token, ()))
        return status, {"x-remaining-calls": str(max(remaining, 0)), **extra}, payload

    def _route(
        self, method: str, route: str, query: dict[str, list[str]], headers: dict[str, str], raw: bytes
    ) -> Answer:
        if route == "/inventory-level/locations" and method == "GET":
            return self._inventory(query)
        if not (route == "/order" or route.startswith("/order/")):
            return 404, {}, {"title": "Not Found", "status": 404}
        channel = headers.get("shipbob_channel_id")
        if method == "POST" and not channel:
            return _invalid({"shipbob_channel_id": ["The shipbob_channel_id header is required."]})
        if channel is not None and channel != self.channel_id:
            return 403, {}, {"title": "Forbidden", "status": 403}
        if route == "/order" and method == "POST":
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _invalid({"$": ["The request body is not valid JSON."]})
            return self._create(body)
        if route == "/order" and method == "GET":
            return self._list(query)
        target = route[len("/order/") :]
        if target.endswith(":cancel") and method == "POST":
            return self._cancel(target[: -len(":cancel")])
        if method == "GET" and target.isdigit():
            with self._lock:
                stored = self._orders.get(int(target))
                if stored is None:
                    return 404, {}, {"title": "Not Found", "status": 404}
                return 200, {}, stored.doc
        return 405, {}, {"title": "Method Not Allowed", "status": 405}

    def _create(self, body: Any) -> Answer:
        problems = _order_problems(body)
        if problems:
            return _invalid(problems)
        if body["type"] != "DTC" and not body.get("retailer_program_data"):
            return 422, {}, _problem(422, {"retailer_program_data": [f"Required for {body['type']} orders."]})
        with self._lock:
            reference = body["reference_id"]
            if self.idempotency and reference in self._by_reference:
                return 422, {}, _problem(422, {"reference_id": ["An order with this reference_id already exists."]})
            unknown = [
                p["reference_id"]
                for p in body["products"]
                if p["reference_id"] not in self._levels and not p.get("name")
            ]
            if unknown:
                return _invalid({"products": ["A product not known to ShipBob needs a name."]})
            location_id = body.get("location_id")
            if location_id is not None and location_id not in {i for i, _, _ in LOCATIONS}:
                return _invalid({"location_id": ["Unknown fulfillment center location."]})
            lines = [(p["reference_id"], int(p["quantity"])) for p in body["products"]]
            chosen = location_id if location_id is not None else self._choose(lines)
            for sku, units in lines:
                self._level(sku, chosen).committed += units
            order_id = next(self._ids)
            name = LOCATION_NAMES[chosen]
            doc = {
                "id": order_id,
                "created_date": datetime.fromtimestamp(self.now(), UTC).isoformat(),
                "purchase_date": body.get("purchase_date"),
                "reference_id": reference,
                "order_number": body.get("order_number") or reference,
                "status": "Processing",
                "type": body["type"],
                "channel": {"id": int(self.channel_id), "name": "junction-local"},
                "shipping_method": body["shipping_method"],
                "recipient": body["recipient"],
                "tags": list(body.get("tags") or []),
                "products": [
                    {"id": self._inventory_ids[sku], "reference_id": sku, "sku": sku, "quantity": units}
                    for sku, units in lines
                ],
                "shipments": [
                    {
                        "id": 500_000 + order_id,
                        "order_id": order_id,
                        "reference_id": reference,
                        "status": "Processing",
                        "status_details": [],
                        "location": {"id": chosen, "name": name},
                    }
                ],
            }
            stored = StoredOrder(doc, chosen, lines)
            self._describe(stored)
            self._orders[order_id] = stored
            self._by_reference.setdefault(reference, []).append(order_id)
            return 201, {}, doc

    def _choose(self, lines: list[tuple[str, int]]) -> int:
        """ShipBob's own choice when the order names no location: the first centre that can
        fill every line, else the first centre."""
        for location_id, _, _ in LOCATIONS:
            if all(self._level(sku, location_id).fulfillable >= units for sku, units in lines):
                return location_id
        return LOCATIONS[0][0]

    def _list(self, query: dict[str, list[str]]) -> Answer:
        wanted = {r for value in query.get("ReferenceIds", []) for r in value.split(",") if r}
        with self._lock:
            found = [o.doc for o in self._orders.values() if not wanted or o.doc["reference_id"] in wanted]
        return 200, {}, found

    def _cancel(self, target: str) -> Answer:
        if not target.isdigit():
            return _invalid({"orderId": ["The orderId must be an integer."]})
        with self._lock:
            stored = self._orders.get(int(target))
            if stored is None:
                return 404, {}, {"title": "Not Found", "status": 404}
            if stored.cancelled:
                return 422, {}, _problem(422, {"orderId": ["The order is already cancelled."]})
            if stored.step in STARTED:
                return 422, {}, _problem(422, {"orderId": ["The order is not in a cancellable state."]})
            stored.cancelled = True
            if stored.committed:
                for sku, units in stored.lines:
                    self._level(sku, stored.location_id).committed -= units
                stored.committed = False
            self._describe(stored)
            shipment = stored.doc["shipments"][0]
            return (
                200,
                {},
                {
                    "order_id": stored.doc["id"],
                    "order": stored.doc,
                    "canceled_shipment_results": [
                        {"action": "Cancel", "is_success": True, "reason": None, "shipment_id": shipment["id"]}
                    ],
                },
            )

    def _inventory(self, query: dict[str, list[str]]) -> Answer:
        search = (query.get("SearchBy") or [""])[0]
        wanted = query.get("LocationId")
        location = wanted[0] if wanted else None
        with self._lock:
            items = []
            for sku, levels in sorted(self._levels.items()):
                if search and search.lower() not in sku.lower():
                    continue
                locations = [
                    {
                        "location_id": location_id,
                        "location_name": LOCATION_NAMES[location_id],
                        "on_hand_quantity": level.on_hand,
                        "committed_quantity": level.committed,
                        "fulfillable_quantity": level.fulfillable,
                        "awaiting_quantity": 0,
                    }
                    for location_id, level in sorted(levels.items())
                    if location is None or str(location_id) == location
                ]
                items.append(
                    {"inventory_id": self._inventory_ids[sku], "sku": sku, "name": sku, "locations": locations}
                )
        return 200, {}, {"items": items}

    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {}, {"error": "body is not JSON"}
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method == "GET" and path == "/_standin/orders":
            return 200, {}, {"orders": self.orders()}
        if method == "GET" and path == "/_standin/inventory":
            return 200, {}, self.stock()
        if method != "POST" or not isinstance(body, dict):
            return 404, {}, {"error": "unknown control endpoint"}
        try:
            if path == "/_standin/reset":
                self.reset()
                return 200, {}, {"reset": True}
            if path == "/_standin/behaviour":
                self.set_behaviour(
                    str(body.get("mode", "ok")),
                    retry_after=int(body.get("retry_after", 1)),
                    delay=float(body.get("delay", 0.0)),
                    count=None if body.get("count") is None else int(body["count"]),
                    rate=float(body.get("rate", 0.5)),
                    seed=int(body.get("seed", 0)),
                )
                return 200, {}, self.behaviour.__dict__
            if path == "/_standin/settings":
                unknown = set(body) - {"idempotency", "requests_per_minute"}
                if unknown:
                    return 400, {}, {"error": f"unknown settings {sorted(unknown)}"}
                return 200, {}, self.configure(**body)
            if path == "/_standin/clock":
                self.advance(float(body.get("advance_seconds", 0.0)))
                return 200, {}, {"now": self.now()}
            if path == "/_standin/inventory":
                levels: Any = body.get("levels")
                return 200, {}, {"changed": self.set_stock(levels)}
            if path == "/_standin/fulfilment":
                order_id = body.get("order_id")
                return (
                    200,
                    {},
                    self.advance_order(
                        str(body.get("to")),
                        order_id=int(order_id) if order_id is not None else None,
                        reference_id=body.get("reference_id"),
                    ),
                )
        except KeyError as exc:
            return 404, {}, {"error": f"no order {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {}, {"error": str(exc)}
        return 404, {}, {"error": "unknown control endpoint"}


# -- validation ----------------------------------------------------------------------------
def _order_problems(body: Any) -> dict[str, list[str]]:
    """The create's validation errors by field path, as ShipBob's 400 names them."""
    if not isinstance(body, dict):
        return {"$": ["The request body must be an order object."]}
    problems: dict[str, list[str]] = {}

    def need(ok: bool, path: str, message: str) -> None:
        if not ok:
            problems.setdefault(path, []).append(message)

    tags = body.get("tags")
    need(
        tags is None
        or (
            isinstance(tags, list)
            and all(
                isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("value"), str) for t in tags
            )
        ),
        "tags",
        "Tags must be a list of {name, value} strings.",
    )
    reference = body.get("reference_id")
    need(
        isinstance(reference, str) and 1 <= len(reference) <= REFERENCE_MAX,
        "reference_id",
        "Required, 1-300 characters.",
    )
    method = body.get("shipping_method")
    need(isinstance(method, str) and bool(method.strip()), "shipping_method", "The shipping_method field is required.")
    need(body.get("type") in ORDER_TYPES, "type", f"Required, one of {', '.join(ORDER_TYPES)}.")
    location_id = body.get("location_id")
    need(
        location_id is None or (isinstance(location_id, int) and not isinstance(location_id, bool)),
        "location_id",
        "Must be an integer.",
    )
    recipient = body.get("recipient")
    if not isinstance(recipient, dict):
        need(False, "recipient", "The recipient field is required.")
    else:
        need(_text(recipient.get("name")), "recipient.name", "The name field is required.")
        address = recipient.get("address")
        if not isinstance(address, dict):
            need(False, "recipient.address", "The address field is required.")
        else:
            for name in ("address1", "city", "country"):
                need(_text(address.get(name)), f"recipient.address.{name}", f"The {name} field is required.")
    products = body.get("products")
    if not isinstance(products, list) or not products:
        need(False, "products", "At least one product is required.")
    else:
        for index, product in enumerate(products):
            if not isinstance(product, dict):
                need(False, f"products[{index}]", "Must be an object.")
                continue
            need(_text(product.get("reference_id")), f"products[{index}].reference_id", "Required (the SKU).")
            quantity = product.get("quantity")
            need(
                isinstance(quantity, int) and not isinstance(quantity, bool) and quantity >= 1,
                f"products[{index}].quantity",
                "Must be an integer of at least 1.",
            )
    return problems


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy a caller may keep or change without touching the stand-in's state."""
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    return copied


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _problem(status: int, errors: dict[str, list[str]]) -> dict[str, Any]:
    title = "One or more validation errors occurred." if status == 400 else "Unprocessable Entity"
    return {"title": title, "status": status, "errors": errors}


def _invalid(errors: dict[str, list[str]]) -> Answer:
    return 400, {}, _problem(400, errors)


def _too_many(seconds: int) -> Answer:
    return (
        429,
        {"x-retry-after": str(seconds), "x-remaining-calls": "0"},
        {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {seconds} seconds."},
    )


def _handler_for(standin: ShipBobStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = standin.handle(self.command, unquote(parts.path), parts.query, headers, raw)
            self.reply(status, dict(extra), b"" if payload is None else json.dumps(payload).encode())

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.shipbob --port 8094``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="ShipBob fulfilment API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8094)
    parser.add_argument("--requests-per-minute", type=int, default=REQUESTS_PER_MINUTE)
    parser.add_argument(
        "--no-idempotency", action="store_true", help="let a second order with the same reference_id through"
    )
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = ShipBobStandIn(
        args.host, args.port, requests_per_minute=args.requests_per_minute, idempotency=not args.no_idempotency
    )
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The shipbob-api secret's value for a stand-in listening on ``root_url``."""
    return {"base_url": root_url, "token": TOKEN, "channel_id": CHANNEL_ID}


LOCAL = TargetStandIn(
    system="shipbob",
    module="junction_local.standins.shipbob",
    fills="shipbob-api",
    credentials=_credentials,
    health_path="/_standin/state",
    effect_count="orders",
)


if __name__ == "__main__":
    main()
