"""A WooCommerce REST API (v3) stand-in: the orders and order notes a shop's tracking is written to
(docs/woocommerce-contract.md, "REST API: tracking back to the order").

A real HTTP server on 127.0.0.1, as strict as WooCommerce where WooCommerce is documented or its
code says: the REST API key as HTTP Basic auth (no auth: ``woocommerce_rest_cannot_view`` /
``_create`` / ``_edit``, 401; a wrong key or secret: ``woocommerce_rest_authentication_error``,
401), WordPress REST errors ``{"code", "message", "data": {"status"}}``, an unknown order
(``woocommerce_rest_shop_order_invalid_id``, 404; ``woocommerce_rest_order_invalid_id`` when
adding a note), parameters validated as the REST schema does (``rest_invalid_param``,
``rest_missing_callback_param``, 400), ``meta_data`` written the way ``WC_Data::update_meta_data``
does (a key's value replaced, or a meta ``id`` updated), a status change recorded as the system
note WooCommerce adds, notes listed newest first with the ``type`` filter.

Orders are seeded through the control API (``POST /_standin/orders``); it can be told to
misbehave (down, slow, rate limited, flaky, or committing a write and then holding its answer).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from junction_local.process import LocalHandler, ServedStandIn
from junction_local.standins import TargetStandIn

CONSUMER_KEY = "ck_junction_local_0000000000000000000000000"
CONSUMER_SECRET = "cs_junction_local_0000000000000000000000000"  # noqa: S105 - a fixed local value, never deployed
STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash")
STATUS_LABELS = {
    "pending": "Pending payment",
    "processing": "Processing",
    "on-hold": "On hold",
    "completed": "Completed",
    "cancelled": "Cancelled",
    "refunded": "Refunded",
    "failed": "Failed",
    "trash": "Trash",
}
# Meta keys WooCommerce keeps as order properties: never listed in meta_data, never written through it.
INTERNAL_META = frozenset({"_billing_email", "_order_key", "_customer_user", "_order_total", "_payment_method"})
PREFIX = "/wp-json/wc/v3"

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 with Retry-After `retry_after` (a host's or WAF's limit: WooCommerce sets none)",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
    "accept_then_hang": "make a write, then hold its answer for `delay` seconds (default 30): a lost answer",
}

_ORDER = re.compile(r"^/wp-json/wc/v3/orders/(?P<id>[^/]+)$")
_NOTES = re.compile(r"^/wp-json/wc/v3/orders/(?P<id>[^/]+)/notes$")


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N API requests only, then back to ok
    rate: float = 0.5
    seed: int = 0


@dataclass
class StoredOrder:
    doc: dict[str, Any]  # the order as the API answers it, meta_data included
    notes: list[dict[str, Any]] = field(default_factory=list)  # oldest first


Answer = tuple[int, dict[str, str], Any]


def _error(status: int, code: str, message: str, **data: Any) -> Answer:
    return status, {}, {"code": code, "message": message, "data": {"status": status, **data}}


class WooCommerceApiStandIn(ServedStandIn):
    thread_name = "woocommerce-api"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        consumer_key: str = CONSUMER_KEY,
        consumer_secret: str = CONSUMER_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self._clock = clock
        self._lock = threading.RLock()
        self._stop_hanging = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._orders: dict[int, StoredOrder] = {}
            self._note_ids = itertools.count(1001)
            self._meta_ids = itertools.count(5001)
            self.behaviour = Behaviour()
            self._random = random.Random(0)
            self._counts = dict.fromkeys(
                (
                    "requests",
                    "auth_failures",
                    "notes_created",
                    "customer_notes",
                    "orders_updated",
                    "status_changes",
                    "rejected_by_behaviour",
                    "rate_limited",
                ),
                0,
            )

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

    def set_credentials(self, consumer_key: str, consumer_secret: str) -> None:
        """A key rotation: the old key is refused from now on."""
        with self._lock:
            self.consumer_key, self.consumer_secret = consumer_key, consumer_secret

    def seed_order(
        self,
        order_id: int,
        *,
        status: str = "processing",
        number: str | None = None,
        total: str = "0.00",
        currency: str = "PLN",
        meta_data: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """An order as the shop holds it (ValueError for a taken id, a bad status or meta)."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 1:
            raise ValueError("id must be a positive integer")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        metas = meta_data or []
        if not isinstance(metas, list) or not all(isinstance(m, dict) and isinstance(m.get("key"), str) for m in metas):
            raise ValueError("meta_data must be a list of {key, value}")
        with self._lock:
            if order_id in self._orders:
                raise ValueError(f"order {order_id} exists already")
            now = self._now_iso()
            doc: dict[str, Any] = {
                "id": order_id,
                "parent_id": 0,
                "number": number or str(order_id),
                "status": status,
                "currency": currency,
                "total": total,
                "date_created": now,
                "date_modified": now,
                "meta_data": [
                    {"id": next(self._meta_ids), "key": m["key"], "value": m.get("value")}
                    for m in metas
                    if m["key"] not in INTERNAL_META
                ],
            }
            self._orders[order_id] = StoredOrder(doc)
            return _copy(doc)

    def order(self, order_id: int) -> dict[str, Any] | None:
        with self._lock:
            stored = self._orders.get(order_id)
            return _copy(stored.doc) if stored else None

    def notes(self, order_id: int) -> list[dict[str, Any]]:
        """The order's notes, oldest first ([] for an unknown order)."""
        with self._lock:
            stored = self._orders.get(order_id)
            return [_copy(n) for n in stored.notes] if stored else []

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counts, "orders": len(self._orders)}

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "summary": self.summary(),
                "behaviour": dict(self.behaviour.__dict__),
                "orders": [_copy(o.doc) | {"notes": [_copy(n) for n in o.notes]} for o in self._orders.values()],
            }

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S")

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        if path.startswith("/_standin/") or path == "/_standin":
            return self._control(method, path, raw)
        if not path.startswith(PREFIX + "/"):
            return _error(404, "rest_no_route", "No route was found matching the URL and request method.")
        with self._lock:
            self._counts["requests"] += 1
        forced = self._misbehave()
        if forced is not None:
            return forced
        refused = self._authenticate(method, headers)
        if refused is not None:
            with self._lock:
                self._counts["auth_failures"] += 1
            return refused
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
            if not isinstance(body, dict):
                return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        answer = self._route(method, path, parse_qs(query), body)
        if method != "GET" and answer[0] < 300 and self.behaviour.mode == "accept_then_hang":
            self._stop_hanging.wait(self.behaviour.delay or 30.0)
        return answer

    def _misbehave(self) -> Answer | None:
        with self._lock:
            b = self.behaviour
            if b.mode in ("ok", "accept_then_hang"):
                return None
            if b.count is not None:
                if b.count <= 0:
                    self.behaviour = Behaviour()
                    return None
                b.count -= 1
            if b.mode == "slow":
                delay = b.delay
            elif b.mode == "flaky" and self._random.random() >= b.rate:
                return None
            else:
                self._counts["rejected_by_behaviour"] += 1
                if b.mode == "rate_limited":
                    self._counts["rate_limited"] += 1
                    return (
                        429,
                        {"Retry-After": str(b.retry_after)},
                        {"code": "too_many_requests", "message": "Too many requests.", "data": {"status": 429}},
                    )
                return _error(503, "service_unavailable", "Service Unavailable")
        self._stop_hanging.wait(delay)
        return None

    def _authenticate(self, method: str, headers: Mapping[str, str]) -> Answer | None:
        """HTTP Basic with the consumer key and secret, as WooCommerce checks them over HTTPS."""
        header = headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            action = {"GET": "view", "POST": "create", "PUT": "edit", "PATCH": "edit"}.get(method, "view")
            message = {
                "view": "Sorry, you cannot view this resource.",
                "create": "Sorry, you are not allowed to create resources.",
                "edit": "Sorry, you are not allowed to edit this resource.",
            }[action]
            return _error(401, f"woocommerce_rest_cannot_{action}", message)
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        with self._lock:
            if key != self.consumer_key:
                return _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
            if secret != self.consumer_secret:
                return _error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        return None

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        notes = _NOTES.match(path)
        if notes:
            if method == "GET":
                return self._list_notes(notes.group("id"), query)
            if method == "POST":
                return self._add_note(notes.group("id"), body)
            return _error(404, "rest_no_route", "No route was found matching the URL and request method.")
        order = _ORDER.match(path)
        if order:
            if method == "GET":
                return self._get_order(order.group("id"))
            if method in ("PUT", "POST", "PATCH"):
                return self._update_order(order.group("id"), body)
        return _error(404, "rest_no_route", "No route was found matching the URL and request method.")

    @staticmethod
    def _order_id(text: str) -> int | None:
        return int(text) if text.isascii() and text.isdigit() else None

    def _get_order(self, raw_id: str) -> Answer:
        order_id = self._order_id(raw_id)
        with self._lock:
            stored = self._orders.get(order_id) if order_id is not None else None
            if stored is None:
                return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            return 200, {}, _copy(stored.doc)

    def _update_order(self, raw_id: str, body: dict[str, Any]) -> Answer:
        problems: dict[str, str] = {}
        status = body.get("status")
        if status is not None and status not in STATUSES:
            problems["status"] = f"status is not one of {', '.join(STATUSES)}."
        metas = body.get("meta_data")
        if metas is not None and (
            not isinstance(metas, list) or not all(isinstance(m, dict) and isinstance(m.get("key"), str) for m in metas)
        ):
            problems["meta_data"] = "meta_data[0][key] is not of type string."
        if problems:
            return _error(400, "rest_invalid_param", f"Invalid parameter(s): {', '.join(problems)}", params=problems)
        order_id = self._order_id(raw_id)
        with self._lock:
            stored = self._orders.get(order_id) if order_id is not None else None
            if stored is None:
                return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            doc = stored.doc
            for meta in metas or []:
                self._update_meta(doc, meta)
            if status is not None and status != doc["status"]:
                old = doc["status"]
                doc["status"] = status
                self._counts["status_changes"] += 1
                self._note(
                    stored,
                    f"Order status changed from {STATUS_LABELS[old]} to {STATUS_LABELS[status]}.",
                    customer=False,
                    author="system",
                )
            doc["date_modified"] = self._now_iso()
            self._counts["orders_updated"] += 1
            return 200, {}, _copy(doc)

    def _update_meta(self, doc: dict[str, Any], meta: dict[str, Any]) -> None:
        """As ``WC_Data::update_meta_data``: by meta id when one is given, else the key's first
        value replaced and any other values of the key removed (under the lock)."""
        key, value = meta["key"], meta.get("value")
        if key in INTERNAL_META:
            return
        metas: list[dict[str, Any]] = doc["meta_data"]
        meta_id = meta.get("id")
        if isinstance(meta_id, int) and not isinstance(meta_id, bool):
            for existing in metas:
                if existing["id"] == meta_id:
                    existing["key"], existing["value"] = key, value
                    return
        same = [m for m in metas if m["key"] == key]
        if not same:
            metas.append({"id": next(self._meta_ids), "key": key, "value": value})
            return
        same[0]["value"] = value
        for extra in same[1:]:
            metas.remove(extra)

    def _list_notes(self, raw_id: str, query: dict[str, list[str]]) -> Answer:
        kind = (query.get("type") or ["any"])[0]
        if kind not in ("any", "customer", "internal"):
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): type",
                params={"type": "type is not one of any, customer, and internal."},
            )
        order_id = self._order_id(raw_id)
        with self._lock:
            stored = self._orders.get(order_id) if order_id is not None else None
            if stored is None:
                return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid order ID.")
            found = [
                _copy(n)
                for n in reversed(stored.notes)  # get_comments: newest first
                if kind == "any" or (kind == "customer") == bool(n["customer_note"])
            ]
        return 200, {}, found

    def _add_note(self, raw_id: str, body: dict[str, Any]) -> Answer:
        if "note" not in body:
            return _error(400, "rest_missing_callback_param", "Missing parameter(s): note", params=["note"])
        problems: dict[str, str] = {}
        if not isinstance(body["note"], str):
            problems["note"] = "note is not of type string."
        if "customer_note" in body and not isinstance(body["customer_note"], bool):
            problems["customer_note"] = "customer_note is not of type boolean."
        if "added_by_user" in body and not isinstance(body["added_by_user"], bool):
            problems["added_by_user"] = "added_by_user is not of type boolean."
        if problems:
            return _error(400, "rest_invalid_param", f"Invalid parameter(s): {', '.join(problems)}", params=problems)
        if body.get("id"):
            return _error(400, "woocommerce_rest_shop_order_exists", "Cannot create existing shop_order.")
        order_id = self._order_id(raw_id)
        with self._lock:
            stored = self._orders.get(order_id) if order_id is not None else None
            if stored is None:
                return _error(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
            if not body["note"].strip():
                # add_order_note refuses an empty note: no comment is inserted.
                message = "Cannot create order note, please try again."
                return _error(500, "woocommerce_api_cannot_create_order_note", message)
            author = "WooCommerce" if body.get("added_by_user") else "system"
            note = self._note(stored, body["note"], customer=bool(body.get("customer_note")), author=author)
            self._counts["notes_created"] += 1
            self._counts["customer_notes"] += bool(note["customer_note"])
            return 201, {}, _copy(note)

    def _note(self, stored: StoredOrder, text: str, *, customer: bool, author: str) -> dict[str, Any]:
        now = self._now_iso()
        note = {
            "id": next(self._note_ids),
            "author": author,
            "date_created": now,
            "date_created_gmt": now,
            "note": text,
            "customer_note": customer,
        }
        stored.notes.append(note)
        return note

    # -- control ---------------------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method != "POST":
            return 404, {}, {"error": "unknown control endpoint"}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {}, {"error": "body is not JSON"}
        if not isinstance(body, dict):
            return 400, {}, {"error": "body must be a JSON object"}
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
                return 200, {}, dict(self.behaviour.__dict__)
            if path == "/_standin/credentials":
                self.set_credentials(str(body["consumer_key"]), str(body["consumer_secret"]))
                return 200, {}, {"rotated": True}
            if path == "/_standin/orders":
                unknown = set(body) - {"id", "status", "number", "total", "currency", "meta_data"}
                if unknown:
                    raise ValueError(f"unknown order fields {sorted(unknown)}")
                order_id = body.get("id")
                if isinstance(order_id, bool) or not isinstance(order_id, int):
                    raise ValueError("id must be a positive integer")
                order = self.seed_order(
                    order_id,
                    status=str(body.get("status", "processing")),
                    number=None if body.get("number") is None else str(body["number"]),
                    total=str(body.get("total", "0.00")),
                    currency=str(body.get("currency", "PLN")),
                    meta_data=body.get("meta_data"),
                )
                return 201, {}, order
        except KeyError as exc:
            return 400, {}, {"error": f"missing {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {}, {"error": str(exc)}
        return 404, {}, {"error": "unknown control endpoint"}


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    return copied


def _handler_for(standin: WooCommerceApiStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = standin.handle(self.command, unquote(parts.path), parts.query, headers, raw)
            try:
                self.reply(status, dict(extra), b"" if payload is None else json.dumps(payload).encode())
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a held answer): nothing to tell

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.woocommerce_api --port 8097``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="WooCommerce REST API (orders, notes) stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = WooCommerceApiStandIn(args.host, args.port)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The woocommerce-api secret's value for a stand-in listening on ``root_url``."""
    return {"base_url": root_url, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET}


LOCAL = TargetStandIn(
    system="woocommerce",
    module="junction_local.standins.woocommerce_api",
    fills="woocommerce-api",
    credentials=_credentials,
    health_path="/_standin/summary",
    effect_count="notes_created",
)


if __name__ == "__main__":
    main()
