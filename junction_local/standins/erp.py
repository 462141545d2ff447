"""An ERP stand-in speaking the Service Layer contract of docs/erp-contract.md.

A real HTTP server on 127.0.0.1 that keeps everything it receives, so tests and the demo can
check what arrived, and that can be told to misbehave: down (503), slow, rate limited (429 with
Retry-After), flaky (a seeded fraction of requests answer 503), hanging past the client's read
timeout, or committing an order and then holding the answer past the client's read timeout
(``accept_then_hang``: the ambiguous outcome that makes a naive retry create a second order).
Like SAP Business One's Service Layer it ignores ``Idempotency-Key`` unless told otherwise.

Items carry stock per warehouse and the ``UpdateDate``/``UpdateTime`` stamp the Service Layer
keeps as two separate fields. ``GET /Items`` evaluates ``$filter`` field by field, as the
Service Layer does, so the combined date-and-time filter misses what the real one misses, and
pages with ``$skip`` behind an ``odata.nextLink``.

Sales orders carry ``DocumentStatus`` (bost_Open/bost_Close) and ``Cancelled`` (tNO/tYES), and
each line its ``LineStatus`` and ``RemainingOpenQuantity``. ``POST /DeliveryNotes`` with lines
based on an order (BaseType 17, BaseEntry, BaseLine) delivers it, closing it once nothing is
left open; ``POST /Orders(n)/Cancel`` cancels an order nothing was delivered from, and refuses,
as the Service Layer does, one already cancelled, closed or partly delivered.

Sessions expire after ``SessionTimeout`` idle time measured on the stand-in's clock, which tests
may move. Control over HTTP too, under /_standin/, so another process can drive it.
"""

from __future__ import annotations

import bisect
import json
import math
import operator
import random
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from junction_local.process import LocalHandler
from junction_local.standins import TargetStandIn

PREFIX = "/b1s/v1"
# The stand-in's own fixed local login, as the Service Layer secret holds it.
COMPANY_DB = "JUNCTION_DEMO"
USERNAME = "manager"
PASSWORD = "local-password"  # noqa: S105 - a fixed local value, never deployed
ERR_ALREADY_EXISTS = -2035
ERR_NOT_FOUND = -2028
ERR_INVALID = -5002
ERR_QUERY = -1000  # a query option the Service Layer cannot parse or does not know
ERR_UNAUTHORIZED = 301
SALES_ORDER = 17  # the BoObjectTypes number of a sales order: a delivery line's BaseType
OPEN, CLOSED = "bost_Open", "bost_Close"
ORDER_FIELDS = frozenset(
    {
        "DocEntry",
        "DocNum",
        "CardCode",
        "DocDate",
        "DocDueDate",
        "NumAtCard",
        "DocCurrency",
        "Comments",
        "CreateDate",
        "DocumentStatus",
        "Cancelled",
        "DocumentLines",
        "DocumentAdditionalExpenses",
        "AddressExtension",
    }
)
_ORDER_ROUTE = re.compile(r"/Orders\((\d+)\)(/Cancel)?")
_DOCUMENT_ROUTE = re.compile(r"/(\w+)\((\d+)\)")
DELIVERY_NOTE = 15  # the BoObjectTypes number of a delivery note: a return line's BaseType
# The user-defined fields this installation has (docs/erp-contract.md, "Documents Junction adds"):
# the effect's reference on payments, refunds, deliveries and returns, and a delivery's carrier
# status, whose valid values the ERP enforces as it does for a UDF with valid values.
REF_FIELD = "U_JunctionRef"
REF_MAX = 100
SHIP_STATUS_FIELD = "U_ShipStatus"
SHIP_STATUSES = ("delivered", "returned")
# The chart of accounts' bank and clearing accounts a transfer may go to, and the currencies.
TRANSFER_ACCOUNTS = ("11300", "11310", "11320")
CURRENCIES = ("PLN", "EUR", "USD", "GBP", "CZK", "JPY")
PAYMENT_FIELDS = frozenset(
    {
        "DocEntry",
        "DocNum",
        "DocType",
        "CardCode",
        "DocDate",
        "DocCurrency",
        "TransferAccount",
        "TransferSum",
        "TransferDate",
        "TransferReference",
        "Remarks",
        "JournalRemarks",
        "Cancelled",
        REF_FIELD,
    }
)
PAYMENT_INPUT = PAYMENT_FIELDS - {"DocEntry", "DocNum", "Cancelled"}
PAYMENT_LIMITS = {"TransferReference": 27, "Remarks": 254, "JournalRemarks": 50, REF_FIELD: REF_MAX}
DELIVERY_FIELDS = frozenset(
    {
        "DocEntry",
        "DocNum",
        "CardCode",
        "DocDate",
        "NumAtCard",
        "DocCurrency",
        "DocumentStatus",
        "Cancelled",
        "TrackingNumber",
        "Comments",
        "DocumentLines",
        REF_FIELD,
        SHIP_STATUS_FIELD,
    }
)
DELIVERY_INPUT = frozenset({"CardCode", "NumAtCard", "TrackingNumber", "Comments", "DocumentLines", REF_FIELD})
DELIVERY_PATCH = frozenset({"TrackingNumber", "Comments", SHIP_STATUS_FIELD})
RETURN_FIELDS = frozenset(
    {
        "DocEntry",
        "DocNum",
        "CardCode",
        "DocDate",
        "NumAtCard",
        "DocCurrency",
        "DocumentStatus",
        "Cancelled",
        "Comments",
        "DocumentLines",
        REF_FIELD,
    }
)
RETURN_INPUT = frozenset({"CardCode", "NumAtCard", "Comments", "DocumentLines", REF_FIELD})
DEFAULT_ITEMS = ("MUG-BLUE", "MUG-RED", "TEAPOT-L", "TEAPOT-S", "CUP-SET-4", "KETTLE-STEEL")
DEFAULT_WAREHOUSES = ("01", "02")
DEFAULT_WAREHOUSE = "01"  # where a document line without WarehouseCode commits its stock

# Paging, as the Service Layer does it: 20 entities a page unless the request says
# ``Prefer: odata.maxpagesize=N``. The Service Layer reads 0 as "no paging"; this stand-in, like
# an installation with a configured ceiling, applies at most MAX_PAGE_SIZE and says so in
# ``Preference-Applied``.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
SESSION_TIMEOUT_SECONDS = 30 * 60.0  # the Service Layer's default SessionTimeout: 30 minutes
MAX_SEED = 1_000_000

ITEM_FIELDS = ("ItemCode", "ItemName", "UpdateDate", "UpdateTime", "ItemWarehouseInfoCollection")
STOCK_FIELDS = {"in_stock": "InStock", "committed": "Committed", "ordered": "Ordered"}
ITEM_OPTIONS = frozenset({"$select", "$filter", "$orderby", "$top", "$skip"})


MODES = {
    "ok": "serve normally",
    "down": "503 Service unavailable",
    "slow": "wait `delay` seconds, then serve (a slow commit)",
    "rate_limited": "429 with Retry-After",
    "timeout": "hold the request for `delay` seconds (default 30), then 503, committing nothing",
    "accept_then_hang": "commit a POST, then hold its answer for `delay` seconds (default 30)",
    "flaky": "a fraction `rate` (0..1) of business requests answer 503, drawn from an RNG seeded with `seed`",
}


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N business requests only, then back to ok
    rate: float = 0.0  # flaky: the fraction of requests refused
    seed: int = 0  # flaky: the same seed refuses the same requests of a sequence


class QueryError(ValueError):
    """A request the Service Layer refuses with 400: its message is the answer's text."""


class ErpStandIn:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        company_db: str = COMPANY_DB,
        username: str = USERNAME,
        password: str = PASSWORD,
        idempotency_keys: bool = False,
        session_timeout_seconds: float = SESSION_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # SAP Business One's Service Layer ignores Idempotency-Key, and so does this stand-in by
        # default: Junction alone must prevent duplicates. ``True`` plays an ERP that honours it.
        self.idempotency_keys = idempotency_keys
        self.company_db = company_db
        self.username = username
        self.password = password
        if session_timeout_seconds <= 0:
            raise ValueError("session_timeout_seconds must be positive")
        self.session_timeout_seconds = float(session_timeout_seconds)
        # Stamps and session expiry read this clock (seconds since the epoch, UTC), so a test
        # can stand on a day boundary or let a session lapse without waiting.
        self._clock = clock
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._stop_hanging = threading.Event()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PREFIX}"

    @property
    def root_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ErpStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="erp-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_hanging.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ErpStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._sessions: dict[str, float] = {}  # B1SESSION -> when last used (stand-in clock)
            self._partners: dict[str, dict[str, Any]] = {}
            self._items: dict[str, dict[str, Any]] = {}
            self._codes: list[str] = []  # the item codes, kept sorted: pages never sort
            self._warehouses: set[str] = set(DEFAULT_WAREHOUSES)
            self._version = 0  # bumped on every item change; a cached filter result is kept per version
            self._matches: dict[str | None, tuple[int, list[str]]] = {}
            self._orders: list[dict[str, Any]] = []
            self._by_key: dict[str, dict[str, Any]] = {}
            self._deliveries: list[dict[str, Any]] = []
            self._incoming: list[dict[str, Any]] = []  # IncomingPayments
            self._outgoing: list[dict[str, Any]] = []  # VendorPayments (refunds to customers)
            self._returns: list[dict[str, Any]] = []
            self._returned: dict[tuple[int, int], float] = {}  # (delivery, line) -> quantity returned
            self._requests = 0
            self._rejected = 0
            self._items_reads = 0
            self.behaviour = Behaviour()
            self._rng = random.Random(0)
            day, clock = self._stamp()
            for n, code in enumerate(DEFAULT_ITEMS):
                # Deterministic stock, so a demo or a test knows what the ERP starts with.
                self._put_item(
                    _new_item(
                        code,
                        day,
                        clock,
                        [
                            _row("01", 20 + 10 * n, n % 3, 0),
                            _row("02", 5 * n, 0, 2 * n),
                        ],
                    )
                )

    def set_behaviour(
        self,
        mode: str = "ok",
        *,
        retry_after: int = 1,
        delay: float = 0.0,
        count: int | None = None,
        rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self.behaviour = Behaviour(mode, retry_after, delay, count, rate, seed)
            self._rng = random.Random(seed)

    def set_password(self, password: str) -> None:
        """Change the login's password (a credentials rotation): open sessions end too."""
        with self._lock:
            self.password = password
            self._sessions.clear()

    def set_session_timeout(self, seconds: float) -> None:
        """How long a session may stay idle; open sessions are measured against the new value."""
        if not seconds > 0:
            raise ValueError("session_timeout_seconds must be positive")
        with self._lock:
            self.session_timeout_seconds = float(seconds)

    def set_clock_offset(self, seconds: float) -> None:
        """Move the stand-in's clock by ``seconds`` (how another process puts it on a day boundary)."""
        with self._lock:
            self._clock_offset = float(seconds)

    def now(self) -> float:
        return self._clock() + self._clock_offset

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy_document(o) for o in self._orders]

    def delivery_notes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy_document(d) for d in self._deliveries]

    def incoming_payments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self._incoming]

    def refunds(self) -> list[dict[str, Any]]:
        """Outgoing payments to customers (``VendorPayments`` with DocType rCustomer)."""
        with self._lock:
            return [dict(p) for p in self._outgoing]

    def returns(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_copy_document(r) for r in self._returns]

    def deliver_order(self, doc_entry: int) -> dict[str, Any]:
        """Deliver everything still open on the order, as a warehouse does: a delivery note
        based on each open line, through the same rules as ``POST /DeliveryNotes``. Raises
        KeyError for an unknown order, ValueError for one with nothing left to deliver."""
        with self._lock:
            order = self._order(doc_entry)
            if order is None:
                raise KeyError(doc_entry)
            if order["Cancelled"] == "tYES" or order["DocumentStatus"] == CLOSED:
                raise ValueError(f"order {doc_entry} is closed or cancelled: nothing left to deliver")
            lines = [
                {"BaseType": SALES_ORDER, "BaseEntry": doc_entry, "BaseLine": line["LineNum"]}
                for line in order["DocumentLines"]
                if line["LineStatus"] == OPEN
            ]
            status, _, answer = self._add_delivery({"CardCode": order["CardCode"], "DocumentLines": lines})
            if status != 201:
                raise ValueError(answer["error"]["message"]["value"])
            return dict(answer)

    def business_partners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self._partners.values()]

    def requests_seen(self) -> int:
        with self._lock:
            return self._requests

    def add_item(self, code: str) -> None:
        """An item with no stock in the default warehouses (what an operator creates)."""
        with self._lock:
            day, clock = self._stamp()
            self._put_item(_new_item(code, day, clock, [_row(w, 0, 0, 0) for w in DEFAULT_WAREHOUSES]))

    def item(self, code: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(code)
            return _project(found, None) if found else None

    def seed_items(
        self,
        count: int,
        *,
        prefix: str = "SKU-",
        warehouses: Iterable[str] = DEFAULT_WAREHOUSES,
        seed: int = 1,
    ) -> int:
        """Create ``count`` items ``f"{prefix}{n:06d}"`` (n from 1, as the channel stand-ins number
        theirs) with pseudo-random stock (InStock 0..200, Committed 0..10 per warehouse) drawn
        from ``seed``: the same call makes the same catalogue. An existing item of the same code
        is replaced. Returns how many items the ERP now holds."""
        if isinstance(warehouses, str):
            raise ValueError("warehouses must be a list of codes")
        whs = list(warehouses)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_SEED:
            raise ValueError(f"count must be an integer from 0 to {MAX_SEED}")
        if not isinstance(prefix, str) or len(prefix) > 40:
            raise ValueError("prefix must be a string of at most 40 characters")
        if not whs or any(not isinstance(w, str) or not w or len(w) > 8 for w in whs) or len(set(whs)) != len(whs):
            raise ValueError("warehouses must be distinct non-empty codes of at most 8 characters")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        rng = random.Random(seed)
        draw = rng.randrange
        with self._lock:
            day, clock = self._stamp()
            fresh: list[str] = []
            items = self._items
            for n in range(1, count + 1):
                code = f"{prefix}{n:06d}"
                if code not in items:
                    fresh.append(code)
                items[code] = _new_item(code, day, clock, [_row(w, draw(201), draw(11), 0) for w in whs])
            if fresh:
                # One sort per seed (already nearly in order), never one per page.
                self._codes = sorted(self._codes + fresh) if self._codes else sorted(fresh)
            self._warehouses.update(whs)
            self._changed()
            return len(items)

    def set_stock(self, changes: list[dict[str, Any]], *, backdate_seconds: float = 0.0) -> int:
        """Set stock quantities and stamp the items (``backdate_seconds`` in the past: a
        transaction that committed late with an earlier time). All or nothing: an unknown item
        raises KeyError, a malformed change ValueError, and nothing changes."""
        if isinstance(backdate_seconds, bool) or not isinstance(backdate_seconds, int | float):
            raise ValueError("backdate_seconds must be a number")
        if not 0 <= backdate_seconds < 366 * 86400 or not math.isfinite(backdate_seconds):
            raise ValueError("backdate_seconds must be from 0 to a year")
        if not isinstance(changes, list) or not changes:
            raise ValueError("changes must be a non-empty list")
        with self._lock:
            parsed: list[tuple[str, str, dict[str, float | int]]] = []
            for change in changes:
                if not isinstance(change, dict):
                    raise ValueError("each change must be an object")
                code, warehouse = change.get("item"), change.get("warehouse", DEFAULT_WAREHOUSE)
                if not isinstance(code, str) or not code:
                    raise ValueError("each change needs an item code")
                if code not in self._items:
                    raise KeyError(code)
                if not isinstance(warehouse, str) or not warehouse or len(warehouse) > 8:
                    raise ValueError(f"{code}: warehouse must be a code of at most 8 characters")
                unknown = set(change) - {"item", "warehouse", *STOCK_FIELDS}
                if unknown:
                    raise ValueError(f"{code}: unknown fields {sorted(unknown)}")
                values: dict[str, float | int] = {}
                for name, field in STOCK_FIELDS.items():
                    if name in change:
                        value = change[name]
                        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                            raise ValueError(f"{code}: {name} must be a number")
                        values[field] = value
                parsed.append((code, warehouse, values))
            day, clock = self._stamp(float(backdate_seconds))
            for code, warehouse, values in parsed:
                item = self._items[code]
                _warehouse_row(item, warehouse).update(values)
                item["UpdateDate"], item["UpdateTime"] = day, clock
                self._warehouses.add(warehouse)
            self._changed()
            return len(parsed)

    def stock(self) -> dict[str, dict[str, dict[str, float | int]]]:
        """Every item's stock per warehouse: what the ERP holds, to check a channel converged."""
        with self._lock:
            return {
                code: {
                    row["WarehouseCode"]: {
                        "InStock": row["InStock"],
                        "Committed": row["Committed"],
                        "Ordered": row["Ordered"],
                    }
                    for row in self._items[code]["ItemWarehouseInfoCollection"]
                }
                for code in self._codes
            }

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while thousands of orders arrive."""
        with self._lock:
            references = [o.get("NumAtCard") for o in self._orders]
            return {
                "orders": len(references),
                "orders_cancelled": sum(1 for o in self._orders if o["Cancelled"] == "tYES"),
                "delivery_notes": len(self._deliveries),
                "deliveries_delivered": sum(1 for d in self._deliveries if d.get(SHIP_STATUS_FIELD) == "delivered"),
                "deliveries_returned": sum(1 for d in self._deliveries if d.get(SHIP_STATUS_FIELD) == "returned"),
                "incoming_payments": len(self._incoming),
                "refunds": len(self._outgoing),
                "returns": len(self._returns),
                "unique_references": len(set(references)),
                "business_partners": len(self._partners),
                "items": len(self._items),
                "items_reads": self._items_reads,
                "requests": self._requests,
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": self.orders(),
                "business_partners": self.business_partners(),
                "delivery_notes": self.delivery_notes(),
                "incoming_payments": self.incoming_payments(),
                "refunds": self.refunds(),
                "returns": self.returns(),
                "items": list(self._codes),
                "requests": self._requests,
                "rejected_by_behaviour": self._rejected,
                "behaviour": self.behaviour.__dict__,
                "settings": self.settings(),
            }

    def settings(self) -> dict[str, float]:
        with self._lock:
            return {"session_timeout_seconds": self.session_timeout_seconds, "clock_offset_seconds": self._clock_offset}

    # -- items, internally (callers hold the lock) -----------------------------------------
    def _stamp(self, backdate: float = 0.0) -> tuple[str, str]:
        """The Service Layer's two stamp fields for now (UTC): "YYYY-MM-DD" and "HH:MM:SS"."""
        moment = datetime.fromtimestamp(self.now() - backdate, UTC)
        return moment.date().isoformat(), moment.strftime("%H:%M:%S")

    def _put_item(self, item: dict[str, Any]) -> None:
        code = item["ItemCode"]
        if code not in self._items:
            bisect.insort(self._codes, code)
        self._items[code] = item
        for row in item["ItemWarehouseInfoCollection"]:
            self._warehouses.add(row["WarehouseCode"])
        self._changed()

    def _changed(self) -> None:
        self._version += 1

    def _matching(self, filter_text: str | None, predicate: Callable[[dict[str, Any]], bool] | None) -> list[str]:
        """The codes passing the filter, in ItemCode order. One O(n) scan per filter and data
        version: the pages of an unchanged read reuse it."""
        cached = self._matches.get(filter_text)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        if predicate is None:
            codes = list(self._codes)
        else:
            items = self._items
            codes = [code for code in self._codes if predicate(items[code])]
        if len(self._matches) >= 32:
            self._matches.clear()
        self._matches[filter_text] = (self._version, codes)
        return codes

    # -- behaviour -------------------------------------------------------------------------
    def _misbehave(self, method: str, route: str) -> tuple[int, dict[str, str], dict[str, Any]] | float | None:
        """An answer forced by the current behaviour, None to serve normally, or how long to hold
        the answer after serving (``accept_then_hang``, on business POSTs only)."""
        with self._lock:
            b = self.behaviour
            if b.mode == "ok":
                return None
            if b.mode == "accept_then_hang" and (method != "POST" or route in ("/Login", "/Logout")):
                return None
            if b.count is not None:
                if b.count <= 0:
                    self.behaviour = Behaviour()
                    return None
                b.count -= 1
            mode, retry_after, delay = b.mode, b.retry_after, b.delay
            if mode == "flaky" and self._rng.random() >= b.rate:
                return None
            if mode not in ("slow", "accept_then_hang"):
                self._rejected += 1
        if mode == "accept_then_hang":
            return delay or 30.0
        if mode == "slow":
            time.sleep(delay)
            return None
        if mode == "timeout":
            self._stop_hanging.wait(delay or 30.0)
            return 503, {}, _error(-1, "timed out")
        if mode == "rate_limited":
            return 429, {"Retry-After": str(retry_after)}, _error(-1, "Too many requests")
        return 503, {}, _error(-1, "Service unavailable")

    # -- the API ---------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path.startswith("/_standin/"):
            return self._control(method, path, body)
        if not path.startswith(PREFIX):
            return 404, {}, _error(ERR_NOT_FOUND, "Not found")
        route = path[len(PREFIX) :]
        with self._lock:
            self._requests += 1
        forced = self._misbehave(method, route)
        if isinstance(forced, tuple):
            return forced
        answer = self._serve(method, route, query, headers, body)
        if forced is not None:  # committed; the answer is held past the client's read timeout
            self._stop_hanging.wait(forced)
        return answer

    def _serve(
        self, method: str, route: str, query: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "POST" and route == "/Login":
            return self._login(body)
        session = _cookie(headers.get("cookie", ""), "B1SESSION")
        if not self._session_alive(session):
            return 401, {}, _error(ERR_UNAUTHORIZED, "Invalid session or session already timeout.")
        if method == "POST" and route == "/Logout":
            with self._lock:
                self._sessions.pop(session or "", None)
            return 204, {}, None
        if route.startswith("/BusinessPartners"):
            return self._partners_api(method, route, body)
        if route.startswith("/Items"):
            return self._items_api(method, route, query, headers, body)
        if route.startswith("/Orders"):
            return self._orders_api(method, route, query, headers, body)
        if route.startswith(("/IncomingPayments", "/VendorPayments", "/DeliveryNotes", "/Returns")):
            try:
                return self._documents_api(method, route, query, body)
            except QueryError as exc:
                return 400, {}, _error(ERR_QUERY, str(exc))
        return 404, {}, _error(ERR_NOT_FOUND, "Resource not found")

    # -- payments, refunds, deliveries, returns -------------------------------------------
    def _collections(self) -> dict[str, tuple[list[dict[str, Any]], frozenset[str]]]:
        return {
            "IncomingPayments": (self._incoming, PAYMENT_FIELDS),
            "VendorPayments": (self._outgoing, PAYMENT_FIELDS),
            "DeliveryNotes": (self._deliveries, DELIVERY_FIELDS),
            "Returns": (self._returns, RETURN_FIELDS),
        }

    def _documents_api(self, method: str, route: str, query: str, body: Any) -> tuple[int, dict[str, str], Any]:
        one = _DOCUMENT_ROUTE.fullmatch(route)
        name = one.group(1) if one else route.lstrip("/")
        collections = self._collections()
        if name not in collections:
            return 404, {}, _error(ERR_NOT_FOUND, "Resource not found")
        documents, fields = collections[name]
        if one is None:
            if method == "GET":
                options = _options(query, frozenset({"$select", "$filter"}))
                select = _document_select(options.get("$select"), fields)
                predicate = _document_filter(options.get("$filter"), fields)
                with self._lock:
                    found = [_copy_document(d) for d in documents if predicate(d)]
                return 200, {}, {"value": [_pick(d, select) for d in found]}
            if method != "POST":
                return 405, {}, _error(-1, "Method not allowed")
            with self._lock:
                if name == "DeliveryNotes":
                    unknown = _unknown(body, DELIVERY_INPUT)
                    return (400, {}, _error(ERR_QUERY, unknown)) if unknown else self._add_delivery(body)
                if name == "Returns":
                    return self._add_return(body)
                return self._add_payment(documents, body, refund=name == "VendorPayments")
        entry = int(one.group(2))
        with self._lock:
            document = documents[entry - 1] if 1 <= entry <= len(documents) else None
            if document is None:
                return 404, {}, _error(ERR_NOT_FOUND, "No matching records found")
            if method == "GET":
                select = _document_select(_options(query, frozenset({"$select"})).get("$select"), fields)
                return 200, {}, _pick(_copy_document(document), select)
            if method == "PATCH" and name == "DeliveryNotes":
                return self._patch_delivery(document, body)
        return 405, {}, _error(-1, "Method not allowed")

    def _add_payment(
        self, documents: list[dict[str, Any]], body: Any, *, refund: bool
    ) -> tuple[int, dict[str, str], Any]:
        """An incoming payment, or an outgoing payment to a customer (a refund), by bank transfer
        (callers hold the lock). Everything is checked as the Service Layer checks it: known
        properties only, a customer's CardCode, a known currency and transfer account, a positive
        TransferSum, dates, and the fields' sizes."""
        entity = "Payment"
        if not isinstance(body, dict):
            return 400, {}, _error(ERR_INVALID, "Body must be an object")
        unknown = _unknown(body, PAYMENT_INPUT, entity)
        if unknown:
            return 400, {}, _error(ERR_QUERY, unknown)
        if body.get("DocType", "rCustomer") != "rCustomer":
            return 400, {}, _error(ERR_INVALID, "Only payments to or from customers (rCustomer) are supported here")
        card_code = body.get("CardCode")
        partner = self._partners.get(card_code) if isinstance(card_code, str) else None
        if partner is None or partner.get("CardType", "cCustomer") != "cCustomer":
            return 400, {}, _error(ERR_INVALID, "Invalid BP code")
        if body.get("DocCurrency") not in CURRENCIES:
            return 400, {}, _error(ERR_INVALID, f"Invalid currency: {body.get('DocCurrency')}")
        total = body.get("TransferSum")
        if isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total) or total <= 0:
            return 400, {}, _error(ERR_INVALID, "Payment amount must be positive")
        if body.get("TransferAccount") not in TRANSFER_ACCOUNTS:
            return 400, {}, _error(ERR_INVALID, f"Invalid G/L account: {body.get('TransferAccount')}")
        for day in ("DocDate", "TransferDate"):
            value = body.get(day)
            if value is not None and (not isinstance(value, str) or not _valid_date(value)):
                return 400, {}, _error(ERR_INVALID, f"{day} must be a date 'YYYY-MM-DD'")
        for name, most in PAYMENT_LIMITS.items():
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > most):
                return 400, {}, _error(ERR_INVALID, f"{name} must be text of at most {most} characters")
        entry = len(documents) + 1
        payment = {
            "DocType": "rCustomer",
            **body,
            "DocEntry": entry,
            "DocNum": (400000 if refund else 300000) + entry,
            "DocDate": body.get("DocDate") or self._stamp()[0],
            "Cancelled": "tNO",
        }
        documents.append(payment)
        return 201, {}, dict(payment)

    def _patch_delivery(self, note: dict[str, Any], body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or not body:
            return 400, {}, _error(ERR_INVALID, "Body must be an object with the properties to change")
        unknown = _unknown(body, DELIVERY_PATCH)
        if unknown:
            return 400, {}, _error(ERR_QUERY, unknown)
        status = body.get(SHIP_STATUS_FIELD)
        if SHIP_STATUS_FIELD in body and status not in SHIP_STATUSES:
            return 400, {}, _error(ERR_INVALID, f"Value '{status}' is not a valid value of {SHIP_STATUS_FIELD}")
        if note["Cancelled"] == "tYES":
            return 400, {}, _error(ERR_INVALID, "Cannot update a cancelled document")
        note.update(body)
        return 204, {}, None

    def _add_return(self, body: Any) -> tuple[int, dict[str, str], Any]:
        """A return based on delivery note lines (BaseType 15): the goods come back into stock;
        no line may return more than it delivered, less what earlier returns took back."""
        if not isinstance(body, dict) or not isinstance(body.get("CardCode"), str) or not body["CardCode"]:
            return 400, {}, _error(ERR_INVALID, "CardCode is required")
        unknown = _unknown(body, RETURN_INPUT)
        if unknown:
            return 400, {}, _error(ERR_QUERY, unknown)
        problem = _reference_problem(body)
        if problem:
            return 400, {}, _error(ERR_INVALID, problem)
        lines = body.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            return 400, {}, _error(ERR_INVALID, "Document must have at least one line")
        planned: list[tuple[dict[str, Any], dict[str, Any], float]] = []
        taken: dict[tuple[int, int], float] = {}
        for line in lines:
            if not isinstance(line, dict) or line.get("BaseType") != DELIVERY_NOTE:
                return (
                    400,
                    {},
                    _error(ERR_INVALID, f"Return lines must be based on a delivery (BaseType {DELIVERY_NOTE})"),
                )
            entry, base_line = line.get("BaseEntry"), line.get("BaseLine")
            note = (
                self._deliveries[entry - 1]
                if isinstance(entry, int) and not isinstance(entry, bool) and 1 <= entry <= len(self._deliveries)
                else None
            )
            if note is None or not isinstance(entry, int):
                return 400, {}, _error(ERR_INVALID, f"Base document {entry!r} not found")
            if note["CardCode"] != body["CardCode"]:
                return 400, {}, _error(ERR_INVALID, "CardCode differs from the base document's")
            if note["Cancelled"] == "tYES":
                return 400, {}, _error(ERR_INVALID, f"Base document {entry} is cancelled")
            rows = note["DocumentLines"]
            if isinstance(base_line, bool) or not isinstance(base_line, int) or not 0 <= base_line < len(rows):
                return 400, {}, _error(ERR_INVALID, f"Base line {base_line!r} not found in document {entry}")
            key = (entry, base_line)
            left = rows[base_line]["Quantity"] - self._returned.get(key, 0) - taken.get(key, 0)
            quantity = line.get("Quantity", left)
            if isinstance(quantity, bool) or not isinstance(quantity, int | float) or not quantity > 0:
                return 400, {}, _error(ERR_INVALID, "Quantity must be positive")
            if quantity > left:
                return (
                    400,
                    {},
                    _error(ERR_INVALID, f"Quantity exceeds what line {base_line} of document {entry} can return"),
                )
            taken[key] = taken.get(key, 0) + quantity
            planned.append((note, rows[base_line], quantity))
        day, clock = self._stamp()
        made: list[dict[str, Any]] = []
        for n, (note, row, quantity) in enumerate(planned):
            self._move_stock(row, day, clock, in_stock=quantity)
            key = (note["DocEntry"], row["LineNum"])
            self._returned[key] = self._returned.get(key, 0) + quantity
            made.append(
                {
                    "LineNum": n,
                    "ItemCode": row["ItemCode"],
                    "Quantity": quantity,
                    "WarehouseCode": row["WarehouseCode"],
                    "BaseType": DELIVERY_NOTE,
                    "BaseEntry": note["DocEntry"],
                    "BaseLine": row["LineNum"],
                }
            )
        self._changed()
        entry = len(self._returns) + 1
        first = planned[0][0]
        document = {
            "DocEntry": entry,
            "DocNum": 500000 + entry,
            "CardCode": body["CardCode"],
            "DocDate": day,
            "NumAtCard": body.get("NumAtCard", first.get("NumAtCard")),
            "DocCurrency": first.get("DocCurrency"),
            "DocumentStatus": CLOSED,
            "Cancelled": "tNO",
            "Comments": body.get("Comments"),
            "DocumentLines": made,
            REF_FIELD: body.get(REF_FIELD),
        }
        self._returns.append(document)
        return 201, {}, _copy_document(document)

    def _session_alive(self, session: str | None) -> bool:
        """A known session used within SessionTimeout; using it renews it (an idle timeout)."""
        with self._lock:
            last = self._sessions.get(session or "")
            now = self.now()
            if last is None:
                return False
            if now - last > self.session_timeout_seconds:
                del self._sessions[session or ""]
                return False
            self._sessions[session or ""] = now
            return True

    def _login(self, body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or (body.get("CompanyDB"), body.get("UserName"), body.get("Password")) != (
            self.company_db,
            self.username,
            self.password,
        ):
            return 401, {}, _error(-304, "Fail to get DB Credentials from SLD")
        session = secrets.token_hex(16)
        with self._lock:
            self._sessions[session] = self.now()
            minutes = max(1, math.ceil(self.session_timeout_seconds / 60))
        return (
            200,
            {"Set-Cookie": f"B1SESSION={session}; HttpOnly; Path=/b1s"},
            {
                "SessionId": session,
                "Version": "1000120",
                "SessionTimeout": minutes,
            },
        )

    def _partners_api(self, method: str, route: str, body: Any) -> tuple[int, dict[str, str], Any]:
        key = _key(route)
        with self._lock:
            if method == "GET" and key is not None:
                found = self._partners.get(key)
                return (200, {}, found) if found else (404, {}, _error(ERR_NOT_FOUND, "No matching records found"))
            if method == "POST" and key is None:
                if not isinstance(body, dict) or not body.get("CardCode") or not body.get("CardName"):
                    return 400, {}, _error(ERR_INVALID, "CardCode and CardName are required")
                if body["CardCode"] in self._partners:
                    return 400, {}, _error(ERR_ALREADY_EXISTS, "This entry already exists in the following tables")
                self._partners[body["CardCode"]] = dict(body)
                return 201, {}, body
        return 405, {}, _error(-1, "Method not allowed")

    def _items_api(
        self, method: str, route: str, query: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        key = _key(route)
        if method == "GET" and (key is not None or route == "/Items"):
            with self._lock:
                self._items_reads += 1
            try:
                if key is not None:
                    return self._one_item(key, query)
                return self._read_items(query, headers)
            except QueryError as exc:
                return 400, {}, _error(ERR_QUERY, str(exc))
        if method == "POST" and route == "/Items":
            if not isinstance(body, dict) or not isinstance(body.get("ItemCode"), str) or not body["ItemCode"]:
                return 400, {}, _error(ERR_INVALID, "ItemCode is required")
            try:
                rows = _rows_from_body(body.get("ItemWarehouseInfoCollection"))
            except ValueError as exc:
                return 400, {}, _error(ERR_INVALID, str(exc))
            with self._lock:
                if body["ItemCode"] in self._items:
                    return 400, {}, _error(ERR_ALREADY_EXISTS, "This entry already exists in the following tables")
                day, clock = self._stamp()
                item = _new_item(body["ItemCode"], day, clock, rows)
                item.update({k: v for k, v in body.items() if k not in item})
                if isinstance(body.get("ItemName"), str):
                    item["ItemName"] = body["ItemName"]
                self._put_item(item)
                return 201, {}, _project(item, None)
        return 405, {}, _error(-1, "Method not allowed")

    def _one_item(self, code: str, query: str) -> tuple[int, dict[str, str], Any]:
        options = _options(query, frozenset({"$select"}))
        select = _select(options.get("$select"))
        with self._lock:
            found = self._items.get(code)
            if found is None:
                return 404, {}, _error(ERR_NOT_FOUND, "No matching records found")
            return 200, {}, _project(found, select)

    def _read_items(self, query: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        pairs = _pairs(query)
        options = _options(query, ITEM_OPTIONS)
        select = _select(options.get("$select"))
        filter_text = options.get("$filter")
        predicate = compile_filter(filter_text) if filter_text is not None else None
        _orderby(options.get("$orderby"))
        top = _count_option(options, "$top")
        skip = _count_option(options, "$skip") or 0
        page_size, applied = _page_size(headers.get("prefer"))
        with self._lock:
            codes = self._matching(filter_text, predicate)
            end = len(codes) if top is None else min(len(codes), skip + top)
            taken = codes[skip : min(end, skip + page_size)] if skip < end else []
            value = [_project(self._items[code], select) for code in taken]
        answer: dict[str, Any] = {"odata.metadata": f"{self.url}/$metadata#Items", "value": value}
        if skip + len(taken) < end:
            answer["odata.nextLink"] = _next_link(pairs, skip + len(taken), None if top is None else top - len(taken))
        return 200, ({"Preference-Applied": applied} if applied else {}), answer

    def _orders_api(
        self, method: str, route: str, query: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and route == "/Orders":
            wanted = _num_at_card_filter(unquote(query))
            with self._lock:
                found = [_copy_document(o) for o in self._orders if wanted is None or o.get("NumAtCard") == wanted]
            return 200, {}, {"value": found}
        one = _ORDER_ROUTE.fullmatch(route)
        if one is not None:
            return self._one_order(method, int(one.group(1)), one.group(2) is not None, query)
        if method != "POST" or route != "/Orders":
            return 405, {}, _error(-1, "Method not allowed")
        idem = headers.get("idempotency-key") if self.idempotency_keys else None
        with self._lock:
            if idem and idem in self._by_key:
                return 201, {"Idempotent-Replayed": "true"}, _copy_document(self._by_key[idem])
            problem = self._invalid_order(body)
            if problem:
                return 400, {}, _error(ERR_INVALID, problem)
            doc_entry = len(self._orders) + 1
            order = {
                **body,
                "DocEntry": doc_entry,
                "DocNum": 100000 + doc_entry,
                "CreateDate": self._stamp()[0],
                "DocumentStatus": OPEN,
                "Cancelled": "tNO",
                "DocumentLines": [
                    {**line, "LineNum": n, "LineStatus": OPEN, "RemainingOpenQuantity": line["Quantity"]}
                    for n, line in enumerate(body["DocumentLines"])
                ],
                "IdempotencyKey": idem,
            }
            self._orders.append(order)
            self._commit_stock(body["DocumentLines"])
            if idem:
                self._by_key[idem] = order
            return 201, {}, _copy_document(order)

    def _order(self, doc_entry: int) -> dict[str, Any] | None:
        """The order of that DocEntry (callers hold the lock); DocEntry n is the n-th order."""
        return self._orders[doc_entry - 1] if 1 <= doc_entry <= len(self._orders) else None

    def _one_order(self, method: str, doc_entry: int, cancel: bool, query: str) -> tuple[int, dict[str, str], Any]:
        if method != ("POST" if cancel else "GET"):
            return 405, {}, _error(-1, "Method not allowed")
        try:
            select = None if cancel else _order_select(_options(query, frozenset({"$select"})).get("$select"))
        except QueryError as exc:
            return 400, {}, _error(ERR_QUERY, str(exc))
        with self._lock:
            order = self._order(doc_entry)
            if order is None:
                return 404, {}, _error(ERR_NOT_FOUND, "No matching records found")
            if not cancel:
                view = _copy_document(order)
                return 200, {}, view if select is None else {field: view.get(field) for field in select}
            return self._cancel(order)

    def _cancel(self, order: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        """Cancel an order nothing was delivered from: it closes, and what its open lines had
        committed is released. The Service Layer refuses a cancelled, closed or partly
        delivered document with a 400, never a silent success."""
        if order["Cancelled"] == "tYES":
            return 400, {}, _error(ERR_INVALID, "Document is already cancelled")
        if order["DocumentStatus"] == CLOSED:
            return 400, {}, _error(ERR_INVALID, "Cannot cancel a closed document")
        if any(line["RemainingOpenQuantity"] < line["Quantity"] for line in order["DocumentLines"]):
            return 400, {}, _error(ERR_INVALID, "Cannot cancel a document that target documents are based on")
        day, clock = self._stamp()
        for line in order["DocumentLines"]:
            self._move_stock(line, day, clock, committed=-line["RemainingOpenQuantity"])
            line["LineStatus"], line["RemainingOpenQuantity"] = CLOSED, 0
        order["Cancelled"], order["DocumentStatus"] = "tYES", CLOSED
        self._changed()
        return 204, {}, None

    def _add_delivery(self, body: Any) -> tuple[int, dict[str, str], Any]:
        """A delivery note based on sales order lines (callers hold the lock). Each line takes its
        ``Quantity`` (all that is open without one) from the base line's open quantity and out of
        stock: InStock and Committed both drop in the line's warehouse. An order with nothing
        left open closes. All or nothing: a refused line delivers nothing."""
        planned, problem = self._plan_delivery(body)
        problem = problem or _reference_problem(body)
        tracking = body.get("TrackingNumber") if isinstance(body, dict) else None
        if not problem and tracking is not None and (not isinstance(tracking, str) or len(tracking) > 100):
            problem = "TrackingNumber must be text of at most 100 characters"
        if problem:
            return 400, {}, _error(ERR_INVALID, problem)
        day, clock = self._stamp()
        lines: list[dict[str, Any]] = []
        for n, (order, line, quantity) in enumerate(planned):
            self._move_stock(line, day, clock, in_stock=-quantity, committed=-quantity)
            line["RemainingOpenQuantity"] -= quantity
            if line["RemainingOpenQuantity"] <= 0:
                line["RemainingOpenQuantity"], line["LineStatus"] = 0, CLOSED
            if all(other["LineStatus"] == CLOSED for other in order["DocumentLines"]):
                order["DocumentStatus"] = CLOSED
            lines.append(
                {
                    "LineNum": n,
                    "ItemCode": line["ItemCode"],
                    "Quantity": quantity,
                    "WarehouseCode": line.get("WarehouseCode") or DEFAULT_WAREHOUSE,
                    "BaseType": SALES_ORDER,
                    "BaseEntry": order["DocEntry"],
                    "BaseLine": line["LineNum"],
                }
            )
        self._changed()
        doc_entry = len(self._deliveries) + 1
        base = planned[0][0]
        note = {
            "DocEntry": doc_entry,
            "DocNum": 200000 + doc_entry,
            "CardCode": body["CardCode"],
            "DocDate": day,
            # Copied from the base order unless given, as a copy from a base document does.
            "NumAtCard": body.get("NumAtCard", base.get("NumAtCard")),
            "DocCurrency": base.get("DocCurrency"),
            "DocumentStatus": OPEN,
            "Cancelled": "tNO",
            "TrackingNumber": body.get("TrackingNumber"),
            "Comments": body.get("Comments"),
            "DocumentLines": lines,
            REF_FIELD: body.get(REF_FIELD),
            SHIP_STATUS_FIELD: None,
        }
        self._deliveries.append(note)
        return 201, {}, _copy_document(note)

    def _plan_delivery(self, body: Any) -> tuple[list[tuple[dict[str, Any], dict[str, Any], float]], str | None]:
        """The (order, order line, quantity) each delivery line takes, or why the note is refused."""
        if not isinstance(body, dict) or not isinstance(body.get("CardCode"), str) or not body["CardCode"]:
            return [], "CardCode is required"
        lines = body.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            return [], "Document must have at least one line"
        planned: list[tuple[dict[str, Any], dict[str, Any], float]] = []
        taken: dict[tuple[int, int], float] = {}
        for line in lines:
            if not isinstance(line, dict) or line.get("BaseType") != SALES_ORDER:
                return [], f"Delivery lines must be based on a sales order (BaseType {SALES_ORDER})"
            entry, base_line = line.get("BaseEntry"), line.get("BaseLine")
            order = self._order(entry) if isinstance(entry, int) and not isinstance(entry, bool) else None
            if order is None:
                return [], f"Base document {entry!r} not found"
            if order["CardCode"] != body["CardCode"]:
                return [], "CardCode differs from the base document's"
            if order["Cancelled"] == "tYES" or order["DocumentStatus"] == CLOSED:
                return [], f"Base document {entry} is closed or cancelled"
            rows = order["DocumentLines"]
            if isinstance(base_line, bool) or not isinstance(base_line, int) or not 0 <= base_line < len(rows):
                return [], f"Base line {base_line!r} not found in document {entry}"
            base, key = rows[base_line], (order["DocEntry"], base_line)
            still_open = base["RemainingOpenQuantity"] - taken.get(key, 0)
            quantity = line.get("Quantity", still_open)
            if isinstance(quantity, bool) or not isinstance(quantity, int | float) or not quantity > 0:
                return [], "Quantity must be positive"
            if quantity > still_open:
                return [], f"Quantity exceeds the open quantity of line {base_line} of document {entry}"
            taken[key] = taken.get(key, 0) + quantity
            planned.append((order, base, quantity))
        return planned, None

    def _move_stock(
        self, line: dict[str, Any], day: str, clock: str, *, in_stock: float = 0, committed: float = 0
    ) -> None:
        """Move a document line's item stock in its warehouse and stamp the item."""
        item = self._items[line["ItemCode"]]
        row = _warehouse_row(item, line.get("WarehouseCode") or DEFAULT_WAREHOUSE)
        row["InStock"] += in_stock
        row["Committed"] += committed
        item["UpdateDate"], item["UpdateTime"] = day, clock

    def _commit_stock(self, lines: list[dict[str, Any]]) -> None:
        """A sales order commits its quantities in the lines' warehouses, as SAP does: sellable
        stock (InStock - Committed) drops, and the items' update stamp moves."""
        day, clock = self._stamp()
        for line in lines:
            self._move_stock(line, day, clock, committed=line["Quantity"])
        self._changed()

    def _invalid_order(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Body must be an object"
        if body.get("CardCode") not in self._partners:
            return "Invalid BP code"
        lines = body.get("DocumentLines")
        if not isinstance(lines, list) or not lines:
            return "Document must have at least one line"
        for line in lines:
            if not isinstance(line, dict) or line.get("ItemCode") not in self._items:
                return f"Invalid item code in line: {line.get('ItemCode') if isinstance(line, dict) else None}"
            quantity = line.get("Quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
                return "Quantity must be positive"
            warehouse = line.get("WarehouseCode")
            if warehouse is not None and warehouse not in self._warehouses:
                return f"Invalid warehouse code in line: {warehouse}"
        return None

    def _control(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method == "GET" and path == "/_standin/stock":
            return 200, {}, self.stock()
        if method == "POST" and path == "/_standin/behaviour" and isinstance(body, dict):
            try:
                self.set_behaviour(
                    str(body.get("mode", "ok")),
                    retry_after=int(body.get("retry_after", 1)),
                    delay=float(body.get("delay", 0.0)),
                    count=None if body.get("count") is None else int(body["count"]),
                    rate=float(body.get("rate", 0.0)),
                    seed=int(body.get("seed", 0)),
                )
            except (TypeError, ValueError) as exc:
                return 400, {}, {"error": str(exc)}
            return 200, {}, self.behaviour.__dict__
        if method == "POST" and path == "/_standin/settings" and isinstance(body, dict):
            unknown = set(body) - {"session_timeout_seconds", "clock_offset_seconds"}
            if unknown:
                return 400, {}, {"error": f"unknown settings {sorted(unknown)}"}
            try:
                if "session_timeout_seconds" in body:
                    self.set_session_timeout(float(body["session_timeout_seconds"]))
                if "clock_offset_seconds" in body:
                    self.set_clock_offset(float(body["clock_offset_seconds"]))
            except (TypeError, ValueError) as exc:
                return 400, {}, {"error": str(exc)}
            return 200, {}, self.settings()
        if method == "POST" and path == "/_standin/orders/deliver" and isinstance(body, dict):
            entry = body.get("DocEntry")
            if isinstance(entry, bool) or not isinstance(entry, int):
                return 400, {}, {"error": "DocEntry must be an integer"}
            try:
                return 201, {}, self.deliver_order(entry)
            except KeyError:
                return 404, {}, {"error": f"no order {entry}"}
            except ValueError as exc:
                return 409, {}, {"error": str(exc)}
        if method == "POST" and path == "/_standin/reset":
            self.reset()
            return 200, {}, {"reset": True}
        if method == "POST" and path == "/_standin/items/seed" and isinstance(body, dict):
            try:
                count: Any = body.get("count")
                total = self.seed_items(
                    count,
                    prefix=body.get("prefix", "SKU-"),
                    warehouses=body.get("warehouses", list(DEFAULT_WAREHOUSES)),
                    seed=body.get("seed", 1),
                )
            except (TypeError, ValueError) as exc:
                return 400, {}, {"error": str(exc)}
            return 200, {}, {"seeded": body["count"], "items": total}
        if method == "POST" and path == "/_standin/stock" and isinstance(body, dict):
            try:
                changes: Any = body.get("changes")
                changed = self.set_stock(changes, backdate_seconds=body.get("backdate_seconds", 0))
            except KeyError as exc:
                return 404, {}, {"error": f"no item {exc.args[0]!r}"}
            except (TypeError, ValueError) as exc:
                return 400, {}, {"error": str(exc)}
            return 200, {}, {"changed": changed}
        if method == "POST" and path == "/_standin/items" and isinstance(body, dict) and body.get("ItemCode"):
            self.add_item(str(body["ItemCode"]))
            return 201, {}, {"ItemCode": body["ItemCode"]}
        return 404, {}, {"error": "unknown control endpoint"}


# -- items ---------------------------------------------------------------------------------
def _row(warehouse: str, in_stock: float, committed: float, ordered: float) -> dict[str, Any]:
    return {"WarehouseCode": warehouse, "InStock": in_stock, "Committed": committed, "Ordered": ordered}


def _new_item(code: str, day: str, clock: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ItemCode": code,
        "ItemName": code,
        "UpdateDate": day,
        "UpdateTime": clock,
        "ItemWarehouseInfoCollection": rows,
    }


def _warehouse_row(item: dict[str, Any], warehouse: str) -> dict[str, Any]:
    """The item's row for ``warehouse``, added (empty) when the item had none there yet."""
    rows: list[dict[str, Any]] = item["ItemWarehouseInfoCollection"]
    for row in rows:
        if row["WarehouseCode"] == warehouse:
            return row
    row = _row(warehouse, 0, 0, 0)
    rows.append(row)
    return row


def _rows_from_body(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return [_row(w, 0, 0, 0) for w in DEFAULT_WAREHOUSES]
    if not isinstance(value, list):
        raise ValueError("ItemWarehouseInfoCollection must be a list")
    rows: list[dict[str, Any]] = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("WarehouseCode"), str) or not entry["WarehouseCode"]:
            raise ValueError("Each warehouse line needs a WarehouseCode")
        numbers = [entry.get(field, 0) for field in ("InStock", "Committed", "Ordered")]
        if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers):
            raise ValueError(f"Quantities of warehouse {entry['WarehouseCode']} must be numbers")
        if entry["WarehouseCode"] in {r["WarehouseCode"] for r in rows}:
            raise ValueError(f"Warehouse {entry['WarehouseCode']} appears twice")
        rows.append(_row(entry["WarehouseCode"], *numbers))
    return rows


def _project(item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """A copy of the item holding the selected properties (all without ``$select``)."""
    fields = select if select is not None else list(item)
    out: dict[str, Any] = {}
    for field in fields:
        value = item.get(field)
        if field == "ItemWarehouseInfoCollection":
            value = [dict(row) for row in value or ()]
        out[field] = value
    return out


# -- OData query options -------------------------------------------------------------------
def _pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _options(query: str, allowed: frozenset[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in _pairs(query):
        if not name.startswith("$"):
            continue  # a custom query option: ignored, as OData allows
        if name not in allowed:
            raise QueryError(f"Query option '{name}' is not supported here")
        if name in options:
            raise QueryError(f"Query option '{name}' is given twice")
        options[name] = value
    return options


def _order_select(value: str | None) -> list[str] | None:
    if value is None:
        return None
    fields = [f.strip() for f in value.split(",")]
    for field in fields:
        if field not in ORDER_FIELDS:
            raise QueryError(f"Property '{field}' of 'Document' is invalid")
    return list(dict.fromkeys(fields))


def _copy_document(document: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to answer with while the document changes (its lines copied too)."""
    copy = dict(document)
    copy["DocumentLines"] = [dict(line) for line in document.get("DocumentLines") or ()]
    return copy


def _select(value: str | None) -> list[str] | None:
    if value is None:
        return None
    fields = [f.strip() for f in value.split(",")]
    for field in fields:
        if field not in ITEM_FIELDS:
            raise QueryError(f"Property '{field}' of 'Item' is invalid")
    return list(dict.fromkeys(fields))


def _orderby(value: str | None) -> None:
    """ItemCode ascending is the one order this stand-in pages by (the table's key order)."""
    if value is None:
        return
    if re.fullmatch(r"\s*ItemCode(\s+asc)?\s*", value) is None:
        raise QueryError(f"$orderby '{value}' is not supported: use ItemCode (ascending)")


def _count_option(options: dict[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise QueryError(f"{name} must be a non-negative integer, not '{value}'")
    return int(value)


def _page_size(prefer: str | None) -> tuple[int, str | None]:
    """The page size a ``Prefer`` header asks for, capped, and what to answer in
    ``Preference-Applied`` (None when the request expressed no page size)."""
    if not prefer:
        return DEFAULT_PAGE_SIZE, None
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() in ("odata.maxpagesize", "maxpagesize"):
            value = value.strip().strip('"')
            if not value.isascii() or not value.isdigit():
                raise QueryError(f"odata.maxpagesize must be a non-negative integer, not '{value}'")
            wanted = int(value)
            applied = MAX_PAGE_SIZE if wanted == 0 or wanted > MAX_PAGE_SIZE else wanted
            return applied, f"odata.maxpagesize={applied}"
    return DEFAULT_PAGE_SIZE, None


def _next_link(pairs: list[tuple[str, str]], skip: int, top: int | None) -> str:
    """The request's own options with the offset moved on, relative to the service root."""
    kept = [(k, v) for k, v in pairs if k not in ("$skip", "$top")]
    if top is not None:
        kept.append(("$top", str(top)))
    kept.append(("$skip", str(skip)))
    return "Items?" + "&".join(f"{quote(k, safe='$')}={quote(v, safe=',()$:')}" for k, v in kept)


_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<string>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_/]*))")
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d")
_FILTERABLE = ("ItemCode", "ItemName", "UpdateDate", "UpdateTime")

Predicate = Callable[[dict[str, Any]], bool]


def compile_filter(text: str) -> Predicate:
    """A ``$filter`` over Items as a predicate. Each comparison looks at its own field only, as
    the Service Layer evaluates it: ``UpdateDate ge '2026-11-23' and UpdateTime ge '10:00:00'``
    is two independent conditions, not one point in time. Supported: comparisons (eq, ne, gt,
    ge, lt, le) of ItemCode/ItemName with a string, UpdateDate with 'YYYY-MM-DD', UpdateTime with
    'HH:MM:SS', joined by ``and``/``or`` and grouped by parentheses."""
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise QueryError(f"$filter '{text}' ends too early")
        position += 1
        return tokens[position - 1]

    def either(word: str, part: Callable[[], Predicate]) -> Predicate:
        parts = [part()]
        while peek() == ("word", word):
            take()
            parts.append(part())
        if len(parts) == 1:
            return parts[0]
        if word == "and":
            return lambda item: all(p(item) for p in parts)
        return lambda item: any(p(item) for p in parts)

    def expression() -> Predicate:
        return either("or", conjunction)

    def conjunction() -> Predicate:
        return either("and", factor)

    def factor() -> Predicate:
        kind, value = take()
        if (kind, value) == ("paren", "("):
            inner = expression()
            if take() != ("paren", ")"):
                raise QueryError(f"$filter '{text}': missing ')'")
            return inner
        if kind != "word":
            raise QueryError(f"$filter '{text}': expected a property, found {value}")
        return comparison(value)

    def comparison(field: str) -> Predicate:
        if field not in _FILTERABLE:
            raise QueryError(f"$filter '{text}': property '{field}' of 'Item' is invalid or not filterable here")
        kind, op = take()
        if kind != "word" or op not in _COMPARE:
            raise QueryError(f"$filter '{text}': unsupported operator '{op}' after {field}")
        kind, literal = take()
        if kind != "string":
            raise QueryError(f"$filter '{text}': {field} must be compared with a quoted literal")
        value = literal[1:-1].replace("''", "'")
        if field == "UpdateDate":
            if _DATE.fullmatch(value) is None or not _valid_date(value):
                raise QueryError(f"$filter '{text}': '{value}' is not a date 'YYYY-MM-DD'")
        elif field == "UpdateTime" and _TIME.fullmatch(value) is None:
            raise QueryError(f"$filter '{text}': '{value}' is not a time 'HH:MM:SS'")
        compare = _COMPARE[op]
        return lambda item: item.get(field) is not None and compare(item[field], value)

    predicate = expression()
    if position != len(tokens):
        raise QueryError(f"$filter '{text}': unexpected '{tokens[position][1]}'")
    return predicate


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError(f"$filter '{text}' cannot be parsed at position {position}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise QueryError("$filter is empty")
    return tokens


def _valid_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# -- documents -----------------------------------------------------------------------------
_DOCUMENT_CONDITION = re.compile(
    r"\s*(?:(?P<field>\w+)\s+eq\s+(?P<eq>'(?:[^']|'')*')|startswith\(\s*(?P<sfield>\w+)\s*,\s*(?P<prefix>'(?:[^']|'')*')\s*\))\s*"
)


def _document_select(value: str | None, fields: frozenset[str]) -> list[str] | None:
    if value is None:
        return None
    wanted = [f.strip() for f in value.split(",")]
    for name in wanted:
        if name not in fields:
            raise QueryError(f"Property '{name}' of 'Document' is invalid")
    return list(dict.fromkeys(wanted))


def _document_filter(text: str | None, fields: frozenset[str]) -> Callable[[dict[str, Any]], bool]:
    """``Field eq 'text'`` or ``startswith(Field,'text')``, joined by ``and``: what the ERP client
    sends. Anything else is refused, so the client never depends on a query only tolerated here."""
    if text is None:
        return lambda _document: True
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for part in re.split(r"\s+and\s+", text):
        match = _DOCUMENT_CONDITION.fullmatch(part)
        if match is None:
            raise QueryError(f"$filter '{text}' is not supported here")
        name = match.group("field") or match.group("sfield")
        if name not in fields or name == "DocumentLines":
            raise QueryError(f"$filter '{text}': property '{name}' of 'Document' is invalid")
        literal = (match.group("eq") or match.group("prefix"))[1:-1].replace("''", "'")
        tests.append(_equals(name, literal) if match.group("eq") is not None else _starts(name, literal))
    return lambda document: all(test(document) for test in tests)


def _equals(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda document: document.get(name) == value


def _starts(name: str, prefix: str) -> Callable[[dict[str, Any]], bool]:
    return lambda document: isinstance(document.get(name), str) and str(document[name]).startswith(prefix)


def _pick(document: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    return document if select is None else {name: document.get(name) for name in select}


def _unknown(body: Any, allowed: frozenset[str], entity: str = "Document") -> str | None:
    """The Service Layer's refusal of a property the entity does not have, or None."""
    if not isinstance(body, dict):
        return None
    extra = sorted(set(body) - allowed)
    return f"Property '{extra[0]}' of '{entity}' is invalid" if extra else None


def _reference_problem(body: Any) -> str | None:
    value = body.get(REF_FIELD) if isinstance(body, dict) else None
    if value is not None and (not isinstance(value, str) or len(value) > REF_MAX):
        return f"{REF_FIELD} must be text of at most {REF_MAX} characters"
    return None


# -- wire helpers --------------------------------------------------------------------------
def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}


def _key(route: str) -> str | None:
    """The key in ``/Entity('KEY')``, or None for the collection."""
    if "('" in route and route.endswith("')"):
        return unquote(route[route.index("('") + 2 : -2]).replace("''", "'")
    return None


def _num_at_card_filter(query: str) -> str | None:
    marker = "$filter=NumAtCard eq '"
    if marker not in query:
        return None
    rest = query[query.index(marker) + len(marker) :]
    return rest[: rest.rindex("'")].replace("''", "'") if "'" in rest else None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _handler_for(standin: ErpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(400, {}, _error(ERR_INVALID, "Body is not JSON"))
                return
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = standin.handle(self.command, unquote(parts.path), parts.query, headers, body)
            self._send(status, extra, payload)

        def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
            self.reply(status, dict(headers), b"" if payload is None else json.dumps(payload).encode())

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.erp --port 8091``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="ERP Service Layer stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument(
        "--idempotency-keys", action="store_true", help="honour Idempotency-Key (SAP Business One ignores it)"
    )
    parser.add_argument("--no-idempotency-keys", action="store_true", help=argparse.SUPPRESS)  # the default
    parser.add_argument(
        "--session-timeout-seconds",
        type=float,
        default=SESSION_TIMEOUT_SECONDS,
        help="idle time after which a session ends (the Service Layer's default: 30 minutes)",
    )
    parser.add_argument("--seed-items", type=int, default=0, help="start with this many seeded items (SKU-000000 ...)")
    args = parser.parse_args()
    # Many threads mostly waiting on sockets: a short GIL switch interval keeps a thread whose
    # answer has arrived from waiting up to 5 ms behind a busy one.
    sys.setswitchinterval(0.0005)
    standin = ErpStandIn(
        args.host,
        args.port,
        idempotency_keys=args.idempotency_keys,
        session_timeout_seconds=args.session_timeout_seconds,
    )
    if args.seed_items:
        standin.seed_items(args.seed_items)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The Service Layer secret's value for a stand-in listening on ``root_url``."""
    return {
        "base_url": root_url + PREFIX,
        "company_db": COMPANY_DB,
        "username": USERNAME,
        "password": PASSWORD,
        # The accounts payments and refunds of each provider are booked to (a clearing account each).
        "transfer_account_stripe": TRANSFER_ACCOUNTS[0],
        "transfer_account_przelewy24": TRANSFER_ACCOUNTS[1],
    }


# Run as a process of its own. No flag needed: like SAP Business One's Service Layer, the
# stand-in ignores Idempotency-Key by default.
LOCAL = TargetStandIn(
    system="erp",
    module="junction_local.standins.erp",
    fills="erp-service-layer",
    credentials=_credentials,
    health_path="/_standin/state",
    effect_count="orders",
)


if __name__ == "__main__":
    main()
