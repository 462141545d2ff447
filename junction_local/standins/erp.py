"""An ERP stand-in speaking the Service Layer contract of docs/erp-contract.md.

A real HTTP server on 127.0.0.1 that keeps everything it receives, so tests and the demo can
check what arrived, and that can be told to misbehave: down (503), slow, rate limited (429 with
Retry-After), hanging past the client's read timeout, or committing an order and then holding
the answer past the client's read timeout (``accept_then_hang``: the ambiguous outcome that
makes a naive retry create a second order). Like SAP Business One's Service Layer it ignores
``Idempotency-Key`` unless told otherwise. Control over HTTP too, under /_standin/, so another
process can drive it.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

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
ERR_UNAUTHORIZED = 301
DEFAULT_ITEMS = ("MUG-BLUE", "MUG-RED", "TEAPOT-L", "TEAPOT-S", "CUP-SET-4", "KETTLE-STEEL")


MODES = {
    "ok": "serve normally",
    "down": "503 Service unavailable",
    "slow": "wait `delay` seconds, then serve (a slow commit)",
    "rate_limited": "429 with Retry-After",
    "timeout": "hold the request for `delay` seconds (default 30), then 503, committing nothing",
    "accept_then_hang": "commit a POST, then hold its answer for `delay` seconds (default 30)",
}


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N business requests only, then back to ok


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
    ) -> None:
        # SAP Business One's Service Layer ignores Idempotency-Key, and so does this stand-in by
        # default: Junction alone must prevent duplicates. ``True`` plays an ERP that honours it.
        self.idempotency_keys = idempotency_keys
        self.company_db = company_db
        self.username = username
        self.password = password
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
            self._sessions: set[str] = set()
            self._partners: dict[str, dict[str, Any]] = {}
            self._items: dict[str, dict[str, Any]] = {code: {"ItemCode": code} for code in DEFAULT_ITEMS}
            self._orders: list[dict[str, Any]] = []
            self._by_key: dict[str, dict[str, Any]] = {}
            self._requests = 0
            self._rejected = 0
            self.behaviour = Behaviour()

    def set_behaviour(
        self, mode: str = "ok", *, retry_after: int = 1, delay: float = 0.0, count: int | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self.behaviour = Behaviour(mode, retry_after, delay, count)

    def set_password(self, password: str) -> None:
        """Change the login's password (a credentials rotation): open sessions end too."""
        with self._lock:
            self.password = password
            self._sessions.clear()

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self._orders]

    def business_partners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self._partners.values()]

    def requests_seen(self) -> int:
        with self._lock:
            return self._requests

    def add_item(self, code: str) -> None:
        with self._lock:
            self._items[code] = {"ItemCode": code}

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while thousands of orders arrive."""
        with self._lock:
            references = [o.get("NumAtCard") for o in self._orders]
            return {
                "orders": len(references),
                "unique_references": len(set(references)),
                "business_partners": len(self._partners),
                "requests": self._requests,
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": self.orders(),
                "business_partners": self.business_partners(),
                "items": sorted(self._items),
                "requests": self._requests,
                "rejected_by_behaviour": self._rejected,
                "behaviour": self.behaviour.__dict__,
            }

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
        with self._lock:
            if session not in self._sessions:
                return 401, {}, _error(ERR_UNAUTHORIZED, "Invalid session or session already timeout.")
        if method == "POST" and route == "/Logout":
            with self._lock:
                self._sessions.discard(session or "")
            return 204, {}, None
        if route.startswith("/BusinessPartners"):
            return self._partners_api(method, route, body)
        if route.startswith("/Items"):
            return self._items_api(method, route, body)
        if route.startswith("/Orders"):
            return self._orders_api(method, route, query, headers, body)
        return 404, {}, _error(ERR_NOT_FOUND, "Resource not found")

    def _login(self, body: Any) -> tuple[int, dict[str, str], Any]:
        if not isinstance(body, dict) or (body.get("CompanyDB"), body.get("UserName"), body.get("Password")) != (
            self.company_db,
            self.username,
            self.password,
        ):
            return 401, {}, _error(-304, "Fail to get DB Credentials from SLD")
        session = secrets.token_hex(16)
        with self._lock:
            self._sessions.add(session)
        return (
            200,
            {"Set-Cookie": f"B1SESSION={session}; HttpOnly; Path=/b1s"},
            {
                "SessionId": session,
                "Version": "1000120",
                "SessionTimeout": 30,
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

    def _items_api(self, method: str, route: str, body: Any) -> tuple[int, dict[str, str], Any]:
        key = _key(route)
        with self._lock:
            if method == "GET" and key is not None:
                found = self._items.get(key)
                return (200, {}, found) if found else (404, {}, _error(ERR_NOT_FOUND, "No matching records found"))
            if method == "POST" and key is None:
                if not isinstance(body, dict) or not body.get("ItemCode"):
                    return 400, {}, _error(ERR_INVALID, "ItemCode is required")
                if body["ItemCode"] in self._items:
                    return 400, {}, _error(ERR_ALREADY_EXISTS, "This entry already exists in the following tables")
                self._items[body["ItemCode"]] = dict(body)
                return 201, {}, body
        return 405, {}, _error(-1, "Method not allowed")

    def _orders_api(
        self, method: str, route: str, query: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and route == "/Orders":
            wanted = _num_at_card_filter(unquote(query))
            with self._lock:
                found = [o for o in self._orders if wanted is None or o.get("NumAtCard") == wanted]
            return 200, {}, {"value": found}
        if method != "POST" or route != "/Orders":
            return 405, {}, _error(-1, "Method not allowed")
        idem = headers.get("idempotency-key") if self.idempotency_keys else None
        with self._lock:
            if idem and idem in self._by_key:
                return 201, {"Idempotent-Replayed": "true"}, self._by_key[idem]
            problem = self._invalid_order(body)
            if problem:
                return 400, {}, _error(ERR_INVALID, problem)
            doc_entry = len(self._orders) + 1
            order = {
                **body,
                "DocEntry": doc_entry,
                "DocNum": 100000 + doc_entry,
                "CreateDate": datetime.now(UTC).date().isoformat(),
                "IdempotencyKey": idem,
            }
            self._orders.append(order)
            if idem:
                self._by_key[idem] = order
            return 201, {}, order

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
            if not isinstance(quantity, int | float) or quantity <= 0:
                return "Quantity must be positive"
        return None

    def _control(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method == "POST" and path == "/_standin/behaviour" and isinstance(body, dict):
            try:
                self.set_behaviour(
                    str(body.get("mode", "ok")),
                    retry_after=int(body.get("retry_after", 1)),
                    delay=float(body.get("delay", 0.0)),
                    count=None if body.get("count") is None else int(body["count"]),
                )
            except (TypeError, ValueError) as exc:
                return 400, {}, {"error": str(exc)}
            return 200, {}, self.behaviour.__dict__
        if method == "POST" and path == "/_standin/reset":
            self.reset()
            return 200, {}, {"reset": True}
        if method == "POST" and path == "/_standin/items" and isinstance(body, dict) and body.get("ItemCode"):
            self.add_item(str(body["ItemCode"]))
            return 201, {}, {"ItemCode": body["ItemCode"]}
        return 404, {}, {"error": "unknown control endpoint"}


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
    args = parser.parse_args()
    # Many threads mostly waiting on sockets: a short GIL switch interval keeps a thread whose
    # answer has arrived from waiting up to 5 ms behind a busy one.
    sys.setswitchinterval(0.0005)
    standin = ErpStandIn(args.host, args.port, idempotency_keys=args.idempotency_keys).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The Service Layer secret's value for a stand-in listening on ``root_url``."""
    return {"base_url": root_url + PREFIX, "company_db": COMPANY_DB, "username": USERNAME, "password": PASSWORD}


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
