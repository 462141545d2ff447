"""An Allegro REST API stand-in: sellers' offers, batch quantity change and publication commands,
orders (the event journal, its stats and checkout forms), and the OAuth token endpoint, with the
limits of docs/allegro-contract.md.

A real HTTP server on 127.0.0.1 serving both hosts Allegro uses: the API (``/sale/...``, the
``api.allegro.pl`` side) and the token endpoint (``/auth/oauth/token``, the ``allegro.pl``
side). It is as strict as Allegro where Allegro documents a rule: the vendor media type, 1000
offers per command, 1000 items per page, 9000 requests per minute per client id (then a minute's
block), 9000 offer changes per minute and 250 000 per hour per user, stock between 1 and 99 999,
single-use refresh tokens (60 s of grace) whose use ends the previous access token, commands
that run asynchronously and count zeros until they start, a command id that cannot be reused
with different content, an ended offer activated only once it has stock, opaque order event ids
read on from exclusively, 1..1000 events a page, events kept 60 days.

It can be told to misbehave (down, slow, rate limited, flaky) and its clock can be moved
forward, so token expiry and rate limit windows are tested without waiting. Control over HTTP
too, under /_standin/, so another process can drive it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import secrets
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from junction_local.process import LocalHandler
from junction_local.standins import TargetStandIn
from junction_local.standins.erp import DEFAULT_ITEMS

MEDIA_TYPE = "application/vnd.allegro.public.v1+json"
TOKEN_PATH = "/auth/oauth/token"  # noqa: S105 - a path, not a secret
# The two batch commands, by the path prefix Allegro serves them under.
QUANTITY = "quantity"
PUBLICATION = "publication"
COMMAND_PATHS = {
    "/sale/offer-quantity-change-commands/": QUANTITY,
    "/sale/offer-publication-commands/": PUBLICATION,
}
OFFERS_PATH = "/sale/offers"

# The stand-in's own fixed application and seller authorisation, as the secret holds them.
CLIENT_ID = "junction-local-client"
CLIENT_SECRET = "local-client-secret"  # noqa: S105 - a fixed local value, never deployed
INITIAL_REFRESH_TOKEN = "local-refresh-token-0"  # noqa: S105 - a fixed local value, never deployed
FULL_AUTHENTICATION = "Full authentication is required to access this resource"
SCOPE = "allegro:api:sale:offers:read allegro:api:sale:offers:write"

# Allegro's documented limits (sources in docs/allegro-contract.md).
ACCESS_TOKEN_TTL_SECONDS = 12 * 3600  # "access_token ważny jest 12 godzin" (expires_in 43199)
REFRESH_TOKEN_TTL_SECONDS = 90 * 24 * 3600  # "ważny przez 3 miesiące"
REFRESH_GRACE_SECONDS = 60.0  # "po pierwszym odświeżeniu możesz z niego korzystać jeszcze przez 60 sekund"
REQUESTS_PER_MINUTE = 9000  # per client id; exceeding it blocks the client id for a minute
BLOCK_SECONDS = 60.0
OFFER_CHANGES_PER_MINUTE = 9000  # per user, offers named in quantity change commands
OFFER_CHANGES_PER_HOUR = 250_000
MAX_OFFERS_PER_COMMAND = 1000
MAX_PAGE_LIMIT = 1000  # GET /sale/offers and command tasks: limit 1..1000
DEFAULT_OFFERS_LIMIT = 20
DEFAULT_TASKS_LIMIT = 100
MAX_QUANTITY = 99_999  # an offer's stock cannot exceed 99 999
# The stand-in's own processing rate (Allegro: "may take up to an hour, usually much faster"):
# 100 000 offers in under two minutes.
TASKS_PER_SECOND = 1000.0

OFFER_ID_BASE = 17_000_000_000  # offer ids are numeric strings of Allegro's length

# Orders (docs/allegro-contract.md, "Orders").
ORDER_EVENTS_PATH = "/order/events"
ORDER_EVENT_STATS_PATH = "/order/event-stats"
CHECKOUT_FORMS_PATH = "/order/checkout-forms/"
EVENT_TYPES = (
    "BOUGHT",
    "FILLED_IN",
    "READY_FOR_PROCESSING",
    "BUYER_CANCELLED",
    "AUTO_CANCELLED",
    "BUYER_MODIFIED",
    "FULFILLMENT_STATUS_CHANGED",
)
EVENT_RETENTION_SECONDS = 60 * 24 * 3600  # "you can retrieve events from last 60 days"
DEFAULT_EVENTS_LIMIT = 100
# Event ids are opaque strings, like Allegro's (base64 of a 16-digit number): a reader can only
# hand one back, never compare two.
EVENT_SEQ_BASE = 1_132_000_000_000_000
ORDER_STAGES = ("bought", "filled_in", "ready")
SELLER_ID = "73652912"
BUYERS = (  # (first name, last name, street, zip code, city, mobile)
    ("Anna", "Kowalska", "ul. Długa 12/4", "31-147", "Kraków", "600 123 456"),
    ("Piotr", "Nowak", "ul. Marszałkowska 84", "00-514", "Warszawa", "501 234 567"),
    ("Katarzyna", "Wiśniewska", "ul. Piotrkowska 101", "90-425", "Łódź", "692 345 678"),
    ("Tomasz", "Wójcik", "ul. Świdnicka 8", "50-066", "Wrocław", "785 456 789"),
)
LOCKER = {  # a parcel locker, as Allegro names a pickup point
    "id": "KRA01M",
    "name": "Paczkomat KRA01M",
    "description": "Przy sklepie",
    "address": {"street": "ul. Karmelicka 45", "zipCode": "31-128", "city": "Kraków", "countryCode": "PL"},
}

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 with Retry-After `retry_after`",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
}


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N requests only, then back to ok
    rate: float = 0.5  # flaky: the fraction of requests that fail
    seed: int = 0


@dataclass(slots=True)
class Offer:
    id: str
    sku: str | None
    available: int
    status: str = "ACTIVE"  # ACTIVE or ENDED


@dataclass(slots=True)
class Task:
    offer_id: str
    status: str = "NEW"
    message: str = ""
    finished_at: float | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Command:
    id: str
    kind: str  # QUANTITY or PUBLICATION
    change_type: str  # FIXED / GAIN, or the publication action ACTIVATE / END
    value: int
    offer_ids: tuple[str, ...]
    created_at: float
    tasks: list[Task]
    started: bool = False
    next: int = 0
    success: int = 0
    failed: int = 0
    completed_at: float | None = None


@dataclass(slots=True)
class OrderEvent:
    seq: int
    occurred_at: float
    type: str
    form_id: str
    revision: str


@dataclass
class RefreshToken:
    client_id: str
    expires_at: float
    used_at: float | None = None
    access_token: str | None = None  # issued with it; ends when this refresh token is used


@dataclass
class AccessToken:
    client_id: str
    expires_at: float


Answer = tuple[int, dict[str, str], Any]


class AllegroStandIn:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        token_ttl_seconds: float = ACCESS_TOKEN_TTL_SECONDS,
        requests_per_minute: int = REQUESTS_PER_MINUTE,
        offer_changes_per_minute: int = OFFER_CHANGES_PER_MINUTE,
        offer_changes_per_hour: int = OFFER_CHANGES_PER_HOUR,
        tasks_per_second: float = TASKS_PER_SECOND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token_ttl_seconds <= 1 or requests_per_minute < 1 or tasks_per_second <= 0:
            raise ValueError("token_ttl_seconds > 1, requests_per_minute >= 1 and tasks_per_second > 0 are required")
        if offer_changes_per_minute < 1 or offer_changes_per_hour < 1:
            raise ValueError("offer change limits must be at least 1")
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_seconds = float(token_ttl_seconds)
        self.requests_per_minute = requests_per_minute
        self.offer_changes_per_minute = offer_changes_per_minute
        self.offer_changes_per_hour = offer_changes_per_hour
        self.tasks_per_second = float(tasks_per_second)
        self._clock = clock
        self._lock = threading.RLock()
        self._work = threading.Event()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    root_url = url

    def start(self) -> AllegroStandIn:
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="allegro-standin", daemon=True
            ),
            threading.Thread(target=self._worker, name="allegro-standin-tasks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._work.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> AllegroStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward: tokens age, rate limit windows and blocks pass."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._skew += seconds

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._skew = 0.0
            self._offers: dict[str, Offer] = {}
            self._order: list[str] = []  # offer ids, ascending (Allegro lists them descending)
            self._by_sku: dict[str, str] = {}  # external id (the seller's SKU) -> offer id
            self._next_offer = 1
            self._commands: dict[str, dict[str, Command]] = {QUANTITY: {}, PUBLICATION: {}}
            self._queue: deque[Command] = deque()
            self._access: dict[str, AccessToken] = {}
            self._refresh: dict[str, RefreshToken] = {
                INITIAL_REFRESH_TOKEN: RefreshToken(self.client_id, self.now() + REFRESH_TOKEN_TTL_SECONDS)
            }
            self._hits: dict[str, deque[float]] = {}
            self._blocked_until: dict[str, float] = {}
            self._changes: dict[str, deque[tuple[float, int]]] = {QUANTITY: deque(), PUBLICATION: deque()}
            self._requests = 0
            self._rejected = 0
            self._errors_429 = 0
            self._token_refreshes = 0
            self._tasks_done = 0
            self._tasks_failed = 0
            self._events: list[OrderEvent] = []  # the journal, in id order
            self._next_event = 1
            self._forms: dict[str, dict[str, Any]] = {}
            self._orders_created = 0
            self.behaviour = Behaviour()
            self._random = random.Random(0)

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

    def seed_offers(self, count: int, prefix: str = "SKU-", quantity: int = 0) -> list[str]:
        """Create ``count`` ACTIVE offers with external ids ``f"{prefix}{n:06d}"`` (n from 1);
        returns their offer ids. A SKU the stand-in already holds is refused."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be a non-negative integer")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_QUANTITY:
            raise ValueError(f"quantity must be an integer between 0 and {MAX_QUANTITY}")
        skus = [f"{prefix}{n:06d}" for n in range(1, count + 1)]
        with self._lock:
            clash = next((s for s in skus if s in self._by_sku), None)
            if clash is not None:
                raise ValueError(f"an offer with external id {clash!r} exists already")
            return [self._add(sku, quantity, "ACTIVE") for sku in skus]

    def add_offer(self, sku: str | None, quantity: int = 1, status: str = "ACTIVE") -> str:
        """One offer; ``sku=None`` plays an offer listed without an external id."""
        if status not in ("ACTIVE", "ENDED"):
            raise ValueError("status must be ACTIVE or ENDED")
        with self._lock:
            if sku is not None and sku in self._by_sku:
                raise ValueError(f"an offer with external id {sku!r} exists already")
            return self._add(sku, quantity, status)

    def _add(self, sku: str | None, quantity: int, status: str) -> str:
        offer_id = str(OFFER_ID_BASE + self._next_offer)
        self._next_offer += 1
        self._offers[offer_id] = Offer(offer_id, sku, quantity, status)
        self._order.append(offer_id)
        if sku is not None:
            self._by_sku[sku] = offer_id
        return offer_id

    def end_offers(self, skus: Iterable[str]) -> dict[str, Any]:
        """End the offers with these external ids (as a seller ending them would)."""
        wanted = set(skus)
        with self._lock:
            ended = [o for o in self._offers.values() if o.sku in wanted]
            for offer in ended:
                offer.status = "ENDED"
            found = {o.sku for o in ended}
        return {"ended": len(ended), "unknown": sorted(wanted - found)}

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now; refresh tokens stay valid."""
        with self._lock:
            now = self.now()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now)

    def quantities(self) -> dict[str, int]:
        with self._lock:
            return {o.sku: o.available for o in self._offers.values() if o.sku is not None}

    def lookup(self, skus: Iterable[str]) -> dict[str, Any]:
        """Available stock per SKU, which of them are ENDED, and the SKUs no offer carries: a
        point read for benchmarks and tests, cheap on a large catalogue."""
        quantities: dict[str, int] = {}
        ended: list[str] = []
        unknown: list[str] = []
        with self._lock:
            for sku in skus:
                offer_id = self._by_sku.get(sku)
                if offer_id is None:
                    unknown.append(sku)
                    continue
                offer = self._offers[offer_id]
                quantities[sku] = offer.available
                if offer.status == "ENDED":
                    ended.append(sku)
        return {"quantities": quantities, "ended": ended, "unknown": unknown}

    def offer(self, offer_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._offers.get(offer_id)
            return None if found is None else _offer_doc(found)

    def limits(self) -> dict[str, Any]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "block_seconds": BLOCK_SECONDS,
            "max_offers_per_command": MAX_OFFERS_PER_COMMAND,
            "max_page_limit": MAX_PAGE_LIMIT,
            "max_quantity": MAX_QUANTITY,
            "offer_changes_per_minute": self.offer_changes_per_minute,
            "offer_changes_per_hour": self.offer_changes_per_hour,
            "tasks_per_second": self.tasks_per_second,
            "token_ttl_seconds": self.token_ttl_seconds,
            "refresh_token_ttl_seconds": REFRESH_TOKEN_TTL_SECONDS,
            "refresh_grace_seconds": REFRESH_GRACE_SECONDS,
            "max_events_limit": MAX_PAGE_LIMIT,
            "event_retention_seconds": EVENT_RETENTION_SECONDS,
        }

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while 100 000 tasks run."""
        with self._lock:
            pending = sum(len(c.tasks) - c.next for c in self._queue)
            return {
                "requests": self._requests,
                "rejected_by_behaviour": self._rejected,
                "offers": len(self._offers),
                "commands": len(self._commands[QUANTITY]),
                "publication_commands": len(self._commands[PUBLICATION]),
                "tasks_done": self._tasks_done,
                "tasks_failed": self._tasks_failed,
                "tasks_pending": pending,
                "errors_429": self._errors_429,
                "token_refreshes": self._token_refreshes,
                "orders": len(self._forms),
                "order_events": len(self._events),
                "limits": self.limits(),
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "quantities": self.quantities(),
                "ended": sorted(o.sku for o in self._offers.values() if o.status == "ENDED" and o.sku is not None),
                "commands": {
                    c.id: {
                        "kind": c.kind,
                        "total": len(c.tasks),
                        "success": c.success,
                        "failed": c.failed,
                        "started": c.started,
                    }
                    for kind in (QUANTITY, PUBLICATION)
                    for c in self._commands[kind].values()
                },
                "behaviour": dict(self.behaviour.__dict__),
                **self.summary(),
            }

    # -- behaviour -------------------------------------------------------------------------
    def _misbehave(self) -> Answer | None:
        with self._lock:
            b = self.behaviour
            if b.mode == "ok":
                return None
            if b.count is not None:
                if b.count <= 0:
                    self.behaviour = Behaviour()
                    return None
                b.count -= 1
            mode = b.mode
            if mode == "flaky" and self._random.random() >= b.rate:
                return None
            if mode != "slow":
                self._rejected += 1
            if mode == "rate_limited":
                self._errors_429 += 1
        if mode == "slow":
            time.sleep(b.delay)
            return None
        if mode == "rate_limited":
            return 429, {"Retry-After": str(b.retry_after)}, _errors("TooManyRequestsException", "Too many requests")
        return 503, {}, _errors("ServiceUnavailable", "Service temporarily unavailable")

    # -- routing ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        if path.startswith("/_standin/"):
            return self._control(method, path, raw)
        with self._lock:
            self._requests += 1
        forced = self._misbehave()
        if forced is not None:
            return forced
        if path == TOKEN_PATH:
            return self._token(method, query, headers, raw)
        if path.startswith(("/sale/", "/order/")):
            return self._api(method, path, query, headers, raw)
        return 404, {}, _errors("NotFoundException", "Resource not found", path=path)

    def _api(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        client_id, problem = self._authenticate(headers.get("authorization", ""))
        if problem is not None:
            return problem
        assert client_id is not None
        blocked = self._rate_limit(client_id)
        if blocked is not None:
            return blocked
        if MEDIA_TYPE not in headers.get("accept", ""):
            return 406, {}, _errors("NotAcceptableException", f"Accept must be {MEDIA_TYPE}")
        params = parse_qs(query, keep_blank_values=True)
        if path.startswith("/order/"):
            if method != "GET":
                return 405, {}, _errors("MethodNotAllowedException", "Method not allowed")
            return self._order_api(path, params)
        if path == OFFERS_PATH:
            if method != "GET":
                return 405, {}, _errors("MethodNotAllowedException", "Method not allowed")
            return self._list_offers(params)
        for prefix, kind in COMMAND_PATHS.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            command_id = rest[0]
            if len(rest) == 1 and method == "PUT":
                if headers.get("content-type", "").split(";")[0].strip() != MEDIA_TYPE:
                    return 415, {}, _errors("UnsupportedMediaTypeException", f"Content-Type must be {MEDIA_TYPE}")
                return self._put_command(kind, command_id, raw)
            if len(rest) == 1 and method == "GET":
                return self._get_command(kind, command_id)
            if len(rest) == 2 and rest[1] == "tasks" and method == "GET":
                return self._get_tasks(kind, command_id, params)
            return 405, {}, _errors("MethodNotAllowedException", "Method not allowed")
        return 404, {}, _errors("NotFoundException", "Resource not found", path=path)

    # -- OAuth -----------------------------------------------------------------------------
    def _token(self, method: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        unauthorized = (
            401,
            {"WWW-Authenticate": 'Basic realm="oauth2/client"'},
            {"error": "Unauthorized", "error_description": "Unauthorized"},
        )
        if method != "POST":
            return 405, {}, {"error": "method_not_allowed", "error_description": "Use POST"}
        client = _basic(headers.get("authorization", ""))
        if client is None or client != (self.client_id, self.client_secret):
            return unauthorized
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return 400, {}, {"error": "invalid_request", "error_description": "Body is not form-encoded text"}
        form = {**parse_qs(query), **parse_qs(text)}
        grant = (form.get("grant_type") or [""])[0]
        if grant != "refresh_token":
            return 400, {}, {"error": "unsupported_grant_type", "error_description": f"Unsupported grant type: {grant}"}
        token = (form.get("refresh_token") or [""])[0]
        if not token:
            return 400, {}, {"error": "invalid_request", "error_description": "A refresh token must be supplied"}
        with self._lock:
            now = self.now()
            held = self._refresh.get(token)
            usable = (
                held is not None
                and held.client_id == client[0]
                and now < held.expires_at
                and (held.used_at is None or now - held.used_at <= REFRESH_GRACE_SECONDS)
            )
            if not usable or held is None:
                return (
                    400,
                    {},
                    {"error": "invalid_grant", "error_description": f"Invalid refresh token: {token[:12]}..."},
                )
            if held.used_at is None:
                held.used_at = now
            if held.access_token is not None:  # the previous pair loses its validity
                self._access.pop(held.access_token, None)
                held.access_token = None
            access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            self._access[access] = AccessToken(client[0], now + self.token_ttl_seconds)
            self._refresh[refresh] = RefreshToken(client[0], now + REFRESH_TOKEN_TTL_SECONDS, access_token=access)
            self._token_refreshes += 1
            self._prune_tokens(now)
        return (
            200,
            {"Content-Type": "application/json"},
            {
                "access_token": access,
                "token_type": "bearer",
                "refresh_token": refresh,
                "expires_in": int(self.token_ttl_seconds) - 1,
                "scope": SCOPE,
                "allegro_api": True,
                "jti": str(uuid.uuid4()),
            },
        )

    def _prune_tokens(self, now: float) -> None:
        spent = [
            t
            for t, r in self._refresh.items()
            if now >= r.expires_at or (r.used_at is not None and now - r.used_at > REFRESH_GRACE_SECONDS)
        ]
        for token in spent:
            del self._refresh[token]
        for token in [t for t, a in self._access.items() if now >= a.expires_at + 3600]:
            del self._access[token]

    def _authenticate(self, header: str) -> tuple[str | None, Answer | None]:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, (
                401,
                {"WWW-Authenticate": 'Bearer realm="allegro-api"'},
                {
                    "error": "unauthorized",
                    "error_description": "Full authentication is required to access this resource",
                },
            )
        token = token.strip()
        with self._lock:
            held = self._access.get(token)
            if held is None:
                description = "Invalid access token"
            elif self.now() >= held.expires_at:
                description = f"Access token expired: {token[:12]}..."
            else:
                return held.client_id, None
        return None, (
            401,
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            {"error": "invalid_token", "error_description": description},
        )

    def _rate_limit(self, client_id: str) -> Answer | None:
        """9000 requests per minute per client id; the request over it blocks the client id for
        a minute, and every request during the block is refused too."""
        with self._lock:
            now = self.now()
            until = self._blocked_until.get(client_id, 0.0)
            if now < until:
                self._errors_429 += 1
                return _too_many(until - now)
            hits = self._hits.setdefault(client_id, deque())
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) >= self.requests_per_minute:
                self._blocked_until[client_id] = now + BLOCK_SECONDS
                hits.clear()
                self._errors_429 += 1
                return _too_many(BLOCK_SECONDS)
            hits.append(now)
        return None

    # -- offers ----------------------------------------------------------------------------
    def _list_offers(self, params: dict[str, list[str]]) -> Answer:
        limit, problem = _page_param(params, "limit", DEFAULT_OFFERS_LIMIT, 1, MAX_PAGE_LIMIT)
        if problem is not None:
            return problem
        offset, problem = _page_param(params, "offset", 0, 0, None)
        if problem is not None:
            return problem
        statuses = set(params.get("publication.status", []))
        unknown = statuses - {"INACTIVE", "ACTIVATING", "ACTIVE", "ENDED"}
        if unknown:
            return 422, {}, _errors("VALIDATION_ERROR", f"Unknown publication.status {sorted(unknown)}")
        externals = set(params.get("external.id", []))
        with self._lock:
            newest_first = reversed(self._order)
            if statuses or externals:
                matching = [
                    self._offers[i]
                    for i in newest_first
                    if (not statuses or self._offers[i].status in statuses)
                    and (not externals or self._offers[i].sku in externals)
                ]
                total, page = len(matching), matching[offset : offset + limit]
            else:
                total = len(self._order)
                end = max(total - offset, 0)
                ids = self._order[max(end - limit, 0) : end][::-1]
                page = [self._offers[i] for i in ids]
            docs = [_offer_doc(o) for o in page]
        return 200, {}, {"offers": docs, "count": len(docs), "totalCount": total}

    # -- commands --------------------------------------------------------------------------
    def _put_command(self, kind: str, command_id: str, raw: bytes) -> Answer:
        if not _is_uuid(command_id):
            return 400, {}, _errors("VALIDATION_ERROR", "commandId must be a UUID", path="commandId")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {}, _errors("VALIDATION_ERROR", "Body is not JSON")
        parsed = _parse_command(body) if kind == QUANTITY else _parse_publication(body)
        if not isinstance(parsed, ParsedCommand):
            return parsed  # the 4xx answer for a malformed command
        change_type, value, offer_ids = parsed.change_type, parsed.value, parsed.offer_ids
        with self._lock:
            existing = self._commands[kind].get(command_id)
            if existing is not None:
                if (existing.change_type, existing.value, existing.offer_ids) != (change_type, value, offer_ids):
                    return (
                        409,
                        {},
                        _errors(
                            "COMMAND_ALREADY_REGISTERED_WITH_DIFFERENT_CONTENT",
                            "Command with the given id but with different content is already registered.",
                        ),
                    )
                return 201, {}, self._report(existing)  # the same command again: nothing new happens
            wait = self._offer_changes_wait(kind, len(offer_ids))
            if wait is not None:
                self._errors_429 += 1
                return _too_many(wait)
            now = self.now()
            self._changes[kind].append((now, len(offer_ids)))
            command = Command(command_id, kind, change_type, value, offer_ids, now, [Task(o) for o in offer_ids])
            self._commands[kind][command_id] = command
            self._queue.append(command)
            answer = self._report(command)
        self._work.set()
        return 201, {}, answer

    def _offer_changes_wait(self, kind: str, wanted: int) -> float | None:
        """Seconds until ``wanted`` more offer changes of this command kind fit the per-minute and
        per-hour limits (each kind has its own), or None when they fit now."""
        now = self.now()
        changes = self._changes[kind]
        while changes and changes[0][0] <= now - 3600.0:
            changes.popleft()
        waits: list[float] = []
        for window, limit in ((60.0, self.offer_changes_per_minute), (3600.0, self.offer_changes_per_hour)):
            inside = [(t, n) for t, n in changes if t > now - window]
            used = sum(n for _, n in inside)
            if used + wanted <= limit:
                continue
            if wanted > limit:
                waits.append(window)
                continue
            for t, n in inside:  # oldest first: when enough of them have left the window
                used -= n
                if used + wanted <= limit:
                    waits.append(t + window - now)
                    break
        return max(waits) if waits else None

    def _get_command(self, kind: str, command_id: str) -> Answer:
        with self._lock:
            command = self._commands[kind].get(command_id)
            if command is None:
                return 404, {}, _errors("COMMAND_NOT_FOUND", "Command not found.", user_message="Command not found.")
            return 200, {}, self._report(command)

    def _get_tasks(self, kind: str, command_id: str, params: dict[str, list[str]]) -> Answer:
        limit, problem = _page_param(params, "limit", DEFAULT_TASKS_LIMIT, 1, MAX_PAGE_LIMIT)
        if problem is not None:
            return problem
        offset, problem = _page_param(params, "offset", 0, 0, None)
        if problem is not None:
            return problem
        with self._lock:
            command = self._commands[kind].get(command_id)
            if command is None:
                return 404, {}, _errors("COMMAND_NOT_FOUND", "Command not found.", user_message="Command not found.")
            # Until processing starts Allegro lists no tasks (and counts zeros).
            tasks = command.tasks[offset : offset + limit] if command.started else []
            docs = [_task_doc(t, command) for t in tasks]
        return 200, {}, {"tasks": docs}

    def _report(self, command: Command) -> dict[str, Any]:
        return {
            "id": command.id,
            "createdAt": _iso(command.created_at),
            "completedAt": None if command.completed_at is None else _iso(command.completed_at),
            "taskCount": {
                "total": len(command.tasks) if command.started else 0,
                "success": command.success,
                "failed": command.failed,
            },
        }

    # -- orders ----------------------------------------------------------------------------
    def create_order(
        self,
        lines: list[dict[str, Any]] | None = None,
        *,
        stage: str = "ready",
        invoice: bool = False,
        locker: bool = False,
        out_of_order: bool = False,
    ) -> str:
        """A buyer's purchase of catalogue offers; returns the checkout form id. Each line names
        ``sku`` (an offer's external id) or ``offer_id``, and a ``quantity``; by default one of the
        first offer. It journals BOUGHT, FILLED_IN and, at stage ``ready`` (paid),
        READY_FOR_PROCESSING. ``out_of_order`` journals READY_FOR_PROCESSING before FILLED_IN
        (a later id on the earlier event), as Allegro says may happen."""
        if stage not in ORDER_STAGES:
            raise ValueError(f"stage must be one of {ORDER_STAGES}")
        with self._lock:
            offers = self._order_offers(lines)
            now = self.now()
            n = self._orders_created
            self._orders_created += 1
            form = _checkout_form(str(uuid.uuid4()), n, offers, now, invoice=invoice, locker=locker)
            steps = ["BOUGHT", "FILLED_IN", "READY_FOR_PROCESSING"][: ORDER_STAGES.index(stage) + 1]
            form["status"] = steps[-1]
            if stage == "ready":
                form["payment"]["finishedAt"] = _iso(now + 2)
                form["payment"]["paidAmount"] = dict(form["summary"]["totalToPay"])
            self._forms[form["id"]] = form
            timed = [(now + i, t) for i, t in enumerate(steps)]
            if out_of_order and len(timed) == 3:
                timed = [timed[0], timed[2], timed[1]]
            for occurred, kind in timed:
                self._journal(kind, form, occurred)
            return str(form["id"])

    def ready_again(self, form_id: str) -> str:
        """Another READY_FOR_PROCESSING for a paid form (Allegro sends one more, e.g. when
        deferred-payment funds arrive); a form not yet paid becomes paid. Returns the event id."""
        with self._lock:
            form = self._form(form_id)
            if form["status"] == "CANCELLED":
                raise ValueError("a cancelled order cannot become ready")
            if form["status"] != "READY_FOR_PROCESSING":
                form["status"] = "READY_FOR_PROCESSING"
                form["payment"]["finishedAt"] = _iso(self.now())
                form["payment"]["paidAmount"] = dict(form["summary"]["totalToPay"])
                self._revise(form)
            return self._journal("READY_FOR_PROCESSING", form, self.now())

    def cancel_order(self, form_id: str, *, auto: bool = False) -> str:
        """The buyer cancels (BUYER_CANCELLED), or Allegro cancels an order never paid
        (AUTO_CANCELLED): the form's status becomes CANCELLED at a new revision."""
        with self._lock:
            form = self._form(form_id)
            if auto and form["status"] == "READY_FOR_PROCESSING":
                raise ValueError("Allegro cancels only orders never paid")
            form["status"] = "CANCELLED"
            self._revise(form)
            return self._journal("AUTO_CANCELLED" if auto else "BUYER_CANCELLED", form, self.now())

    def modify_order(self, form_id: str, message: str = "Proszę o szybką wysyłkę") -> str:
        """The buyer changes the order (BUYER_MODIFIED): here, the message to the seller."""
        with self._lock:
            form = self._form(form_id)
            form["messageToSeller"] = message
            self._revise(form)
            return self._journal("BUYER_MODIFIED", form, self.now())

    def remove_order(self, form_id: str) -> None:
        """Allegro no longer serves the form (its events stay in the journal)."""
        with self._lock:
            self._form(form_id)
            del self._forms[form_id]

    def checkout_form_doc(self, form_id: str) -> dict[str, Any] | None:
        with self._lock:
            form = self._forms.get(form_id)
            return None if form is None else json.loads(json.dumps(form))

    def order_event_ids(self) -> list[str]:
        """The journal's event ids, oldest first (those retention has not dropped)."""
        with self._lock:
            self._drop_old_events()
            return [_event_id(e.seq) for e in self._events]

    def _order_offers(self, lines: list[dict[str, Any]] | None) -> list[tuple[Offer, int]]:
        if lines is None:
            if not self._order:
                raise ValueError("the catalogue has no offer to buy")
            lines = [{"offer_id": self._order[0], "quantity": 1}]
        if not isinstance(lines, list) or not lines:
            raise ValueError("lines must be a non-empty list")
        picked: list[tuple[Offer, int]] = []
        for line in lines:
            if not isinstance(line, dict):
                raise ValueError("each line is an object with sku or offer_id, and quantity")
            offer_id = self._by_sku.get(str(line["sku"])) if "sku" in line else line.get("offer_id")
            offer = self._offers.get(str(offer_id)) if offer_id is not None else None
            if offer is None:
                raise ValueError("a line names no offer of the catalogue")
            quantity = line.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise ValueError("quantity must be a positive integer")
            picked.append((offer, quantity))
        return picked

    def _form(self, form_id: str) -> dict[str, Any]:
        form = self._forms.get(form_id)
        if form is None:
            raise ValueError("no such order")
        return form

    def _revise(self, form: dict[str, Any]) -> None:
        form["revision"] = _revision(form["revision"])
        form["updatedAt"] = _iso(self.now())

    def _journal(self, kind: str, form: dict[str, Any], occurred_at: float) -> str:
        event = OrderEvent(self._next_event, occurred_at, kind, str(form["id"]), str(form["revision"]))
        self._next_event += 1
        self._events.append(event)
        return _event_id(event.seq)

    def _drop_old_events(self) -> None:
        oldest = self.now() - EVENT_RETENTION_SECONDS
        keep = [e for e in self._events if e.occurred_at >= oldest]
        if len(keep) != len(self._events):
            self._events = keep

    def _order_api(self, path: str, params: dict[str, list[str]]) -> Answer:
        if path == ORDER_EVENTS_PATH:
            return self._order_events(params)
        if path == ORDER_EVENT_STATS_PATH:
            with self._lock:
                self._drop_old_events()
                latest = self._events[-1] if self._events else None
            stats = None if latest is None else {"id": _event_id(latest.seq), "occurredAt": _iso(latest.occurred_at)}
            return 200, {}, {"latestEvent": stats}
        if path.startswith(CHECKOUT_FORMS_PATH) and "/" not in path[len(CHECKOUT_FORMS_PATH) :]:
            form = self.checkout_form_doc(path[len(CHECKOUT_FORMS_PATH) :])
            if form is None:
                return 404, {}, _errors("NotFoundException", "Checkout form not found", path="id")
            return 200, {}, form
        return 404, {}, _errors("NotFoundException", "Resource not found", path=path)

    def _order_events(self, params: dict[str, list[str]]) -> Answer:
        limit, problem = _page_param(params, "limit", DEFAULT_EVENTS_LIMIT, 1, MAX_PAGE_LIMIT)
        if problem is not None:
            return 400, {}, problem[2]  # Allegro answers a bad limit with 400, not 422
        types = set(params.get("type", []))
        if types - set(EVENT_TYPES):
            return 400, {}, _errors("VALIDATION_ERROR", f"Unknown type {sorted(types - set(EVENT_TYPES))}", path="type")
        after = 0
        given = (params.get("from") or [""])[0]
        if given:
            seq = _event_seq(given)
            if seq is None:
                return 400, {}, _errors("VALIDATION_ERROR", "from is not an event id", details=given, path="from")
            after = seq
        with self._lock:
            self._drop_old_events()
            picked = [e for e in self._events if e.seq > after and (not types or e.type in types)][:limit]
            docs = [self._event_doc(e) for e in picked]
        return 200, {}, {"events": docs}

    def _event_doc(self, event: OrderEvent) -> dict[str, Any]:
        """Allegro's event: the form's id and revision at the event, with the buyer and line
        items as they were (the stand-in shows them as the form holds them now)."""
        form = self._forms.get(event.form_id)
        buyer = form["buyer"] if form else {"id": "0"}
        items: list[dict[str, Any]] = form["lineItems"] if form else []
        return {
            "id": _event_id(event.seq),
            "occurredAt": _iso(event.occurred_at),
            "type": event.type,
            "order": {
                "checkoutForm": {"id": event.form_id, "revision": event.revision},
                "buyer": {k: buyer.get(k) for k in ("id", "email", "login", "guest")},
                "lineItems": [{"id": i["id"], "offer": dict(i["offer"]), "boughtAt": i["boughtAt"]} for i in items],
                "seller": {"id": SELLER_ID},
            },
        }

    # -- the asynchronous part -------------------------------------------------------------
    def _worker(self) -> None:
        """Completes queued tasks at ``tasks_per_second``, oldest command first."""
        budget = 0.0
        last = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            budget = min(budget + (now - last) * self.tasks_per_second, max(self.tasks_per_second, 1.0))
            last = now
            if budget >= 1.0:
                budget -= self._process(int(budget))
            with self._lock:
                idle = not self._queue
                if idle:
                    budget = 0.0
                    self._work.clear()
            if idle and not self._stopping.is_set():
                self._work.wait(0.5)
                last = time.monotonic()
            else:
                self._stopping.wait(0.005)

    def _process(self, n: int) -> int:
        done = 0
        with self._lock:
            now = self.now()
            while done < n and self._queue:
                command = self._queue[0]
                command.started = True
                while done < n and command.next < len(command.tasks):
                    self._apply(command, command.tasks[command.next], now)
                    command.next += 1
                    done += 1
                if command.next >= len(command.tasks):
                    command.completed_at = now
                    self._queue.popleft()
        return done

    def _apply(self, command: Command, task: Task, now: float) -> None:
        offer = self._offers.get(task.offer_id)
        problem: tuple[str, str] | None
        if offer is None:
            problem = ("OfferNotFoundException", f"Offer {task.offer_id} not found")
        elif command.kind == QUANTITY:
            problem = _change_quantity(offer, command.change_type, command.value)
        else:
            problem = _change_publication(offer, command.change_type)
        task.finished_at = now
        if problem is None:
            task.status = "SUCCESS"
            command.success += 1
            self._tasks_done += 1
            return
        code, message = problem
        task.status, task.message = "FAIL", code
        task.errors = [{"code": code, "message": message, "details": None, "path": None, "userMessage": message}]
        command.failed += 1
        self._tasks_failed += 1

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
            return self._control_post(path, body)
        except (TypeError, ValueError) as exc:
            return 400, {}, {"error": str(exc)}

    def _control_post(self, path: str, body: dict[str, Any]) -> Answer:
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
        if path == "/_standin/reset":
            self.reset()
            return 200, {}, {"reset": True}
        if path == "/_standin/offers/seed":
            ids = self.seed_offers(
                body.get("count"),  # type: ignore[arg-type]  # validated by seed_offers
                str(body.get("prefix", "SKU-")),
                body.get("quantity", 0),
            )
            return 201, {}, {"created": len(ids), "first_id": ids[0] if ids else None}
        if path == "/_standin/offers/end":
            skus = body.get("skus")
            if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
                raise ValueError("skus must be a list of strings")
            return 200, {}, self.end_offers(skus)
        if path == "/_standin/lookup":
            skus = body.get("skus")
            if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
                raise ValueError("skus must be a list of strings")
            return 200, {}, self.lookup(skus)
        if path == "/_standin/tokens/expire":
            self.expire_tokens()
            return 200, {}, {"expired": True}
        if path.startswith("/_standin/orders"):
            return self._control_orders(path, body)
        if path == "/_standin/clock/advance":
            self.advance(float(body.get("seconds", 0)))
            return 200, {}, {"now": self.now()}
        return 404, {}, {"error": "unknown control endpoint"}

    def _control_orders(self, path: str, body: dict[str, Any]) -> Answer:
        if path == "/_standin/orders":
            journalled = set(self.order_event_ids())
            form_id = self.create_order(
                body.get("lines"),
                stage=str(body.get("stage", "ready")),
                invoice=bool(body.get("invoice", False)),
                locker=bool(body.get("locker", False)),
                out_of_order=bool(body.get("out_of_order", False)),
            )
            return 201, {}, {"id": form_id, "events": [e for e in self.order_event_ids() if e not in journalled]}
        _, _, rest = path.partition("/_standin/orders/")
        form_id, _, action = rest.partition("/")
        actions: dict[str, Callable[[], str | None]] = {
            "ready": lambda: self.ready_again(form_id),
            "cancel": lambda: self.cancel_order(form_id, auto=bool(body.get("auto", False))),
            "modify": lambda: self.modify_order(form_id),
            "remove": lambda: self.remove_order(form_id),
        }
        if action not in actions:
            return 404, {}, {"error": "unknown control endpoint"}
        return 200, {}, {"id": form_id, "event": actions[action]()}


def _event_id(seq: int) -> str:
    return base64.b64encode(str(EVENT_SEQ_BASE + seq).encode()).decode().rstrip("=")


def _event_seq(event_id: str) -> int | None:
    try:
        text = base64.b64decode(event_id + "=" * (-len(event_id) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < EVENT_SEQ_BASE:
        return None
    return int(text) - EVENT_SEQ_BASE


def _revision(previous: str | None) -> str:
    """Allegro's revisions are opaque strings that change with the form."""
    return hashlib.sha256(f"{previous}".encode()).hexdigest()[:8]


def _unit_price(sku: str | None) -> Decimal:
    """A price per offer that a test can work out again: 19.99 to 218.99 PLN."""
    digest = int(hashlib.sha256((sku or "").encode()).hexdigest()[:6], 16)
    return Decimal(19 + digest % 200) + Decimal("0.99")


def _nip(n: int) -> str:
    """A Polish tax id (NIP) with a valid check digit."""
    weights = (6, 5, 7, 2, 3, 4, 5, 6, 7)
    for k in range(11):  # one number in eleven has no check digit: the next one has
        digits = [int(d) for d in f"{526_000_000 + (n * 7919 + k) % 1_000_000:09d}"]
        check = sum(w * d for w, d in zip(weights, digits, strict=True)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(check)
    raise AssertionError("unreachable: eleven numbers in a row hold one with a check digit")


def _money(amount: Decimal) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "currency": "PLN"}


def _checkout_form(
    form_id: str, n: int, offers: list[tuple[Offer, int]], now: float, *, invoice: bool, locker: bool
) -> dict[str, Any]:
    """A Polish buyer's order as ``GET /order/checkout-forms/{id}`` returns it, in PLN, gross."""
    first, last, street, zip_code, city, phone = BUYERS[n % len(BUYERS)]
    login = f"{first.lower()}_{n:04d}"
    cost = Decimal("9.99") if locker else Decimal("14.99")
    items: list[dict[str, Any]] = [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{form_id}/{i}")),
            "offer": {
                "id": offer.id,
                "name": f"Offer {offer.sku or offer.id}",
                "external": None if offer.sku is None else {"id": offer.sku},
                "productSet": None,
            },
            "quantity": quantity,
            "originalPrice": _money(_unit_price(offer.sku)),
            "price": _money(_unit_price(offer.sku)),
            "reconciliation": None,
            "selectedAdditionalServices": [],
            "boughtAt": _iso(now),
        }
        for i, (offer, quantity) in enumerate(offers)
    ]
    total = sum((_unit_price(o.sku) * q for o, q in offers), Decimal("0")) + cost
    address = {"street": street, "city": city, "zipCode": zip_code, "countryCode": "PL"}
    return {
        "id": form_id,
        "messageToSeller": None,
        "buyer": {
            "id": str(40_000_000 + n),
            "email": f"{hashlib.sha256(login.encode()).hexdigest()[:10]}+{login}@allegromail.pl",
            "login": login,
            "firstName": first,
            "lastName": last,
            "companyName": None,
            "guest": False,
            "personalIdentity": None,
            "phoneNumber": f"+48 {phone}",
            "address": {"street": street, "city": city, "postCode": zip_code, "countryCode": "PL"},
            "preferences": {"language": "pl-PL"},
        },
        "payment": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{form_id}/payment")),
            "type": "ONLINE",
            "provider": "P24",
            "finishedAt": None,
            "paidAmount": None,
            "reconciliation": None,
        },
        "status": "BOUGHT",
        "fulfillment": {"status": "NEW", "shipmentSummary": {"lineItemsSent": "NONE"}},
        "delivery": {
            "address": {**address, "firstName": first, "lastName": last, "companyName": None, "phoneNumber": phone},
            "method": (
                {"id": "2488f7b7-5d1c-4d65-b85c-4cbcf253fd93", "name": "Allegro Paczkomaty InPost"}
                if locker
                else {"id": "7203cb90-864c-4cab-b0ec-b3b2e19a0f56", "name": "Allegro Kurier DPD"}
            ),
            "pickupPoint": json.loads(json.dumps(LOCKER)) if locker else None,
            "cost": _money(cost),
            "time": None,
            "smart": False,
            "calculatedNumberOfPackages": 1,
        },
        "invoice": {
            "required": invoice,
            "address": (
                {
                    **address,
                    "company": {"name": f"{last} Handel sp. z o.o.", "taxId": _nip(n)},
                    "naturalPerson": None,
                }
                if invoice
                else None
            ),
            "dueDate": None,
        },
        "lineItems": items,
        "surcharges": [],
        "discounts": [],
        "note": None,
        "marketplace": {"id": "allegro-pl"},
        "summary": {"totalToPay": _money(total)},
        "updatedAt": _iso(now),
        "revision": _revision(form_id),
    }


def _change_quantity(offer: Offer, change_type: str, value: int) -> tuple[str, str] | None:
    """An ended offer's stock can change too: Allegro asks for stock before it activates one."""
    wanted = value if change_type == "FIXED" else offer.available + value
    if wanted < 1:
        return "INVALID_OFFER_QUANTITY", "The quantity can not be changed to less than 1."
    if wanted > MAX_QUANTITY:
        return "INVALID_OFFER_QUANTITY", f"The quantity can not be changed to more than {MAX_QUANTITY}."
    offer.available = wanted
    return None


def _change_publication(offer: Offer, action: str) -> tuple[str, str] | None:
    if action == "END":
        offer.status = "ENDED"
        return None
    if offer.available < 1:  # "first change the quantity, then activate"
        return "AvailableStockMustEqualToOneOrBeGreaterThanOne", "The listed quantity cannot be less than 1."
    offer.status = "ACTIVE"
    return None


@dataclass(frozen=True)
class ParsedCommand:
    change_type: str
    value: int
    offer_ids: tuple[str, ...]


def _parse_command(body: Any) -> ParsedCommand | Answer:
    """A quantity command's changeType, value and offers, or the 4xx answer for a malformed one."""

    def invalid(message: str, path: str, code: str = "VALIDATION_ERROR") -> Answer:
        return 422, {}, _errors(code, message, path=path)

    if not isinstance(body, dict):
        return invalid("The command must be a JSON object", "")
    modification = body.get("modification")
    if not isinstance(modification, dict):
        return invalid("modification is required", "modification")
    change_type = modification.get("changeType")
    if change_type not in ("FIXED", "GAIN"):
        return invalid("changeType must be FIXED or GAIN", "modification.changeType")
    value = modification.get("value")
    if isinstance(value, bool) or not isinstance(value, int):
        return invalid("value must be an integer", "modification.value")
    if (change_type == "FIXED" and not 0 <= value <= MAX_QUANTITY) or abs(value) > MAX_QUANTITY:
        return invalid("Incorrect value of quantity", "modification.value", "INCORRECT_QUANTITY_VALUE")
    offer_ids = _parse_offers(body.get("offerCriteria"))
    if not isinstance(offer_ids, list):
        return offer_ids
    return ParsedCommand(change_type, value, tuple(offer_ids))


def _parse_publication(body: Any) -> ParsedCommand | Answer:
    """A publication command's action (ACTIVATE or END) and offers, or the 4xx answer."""
    if not isinstance(body, dict):
        return 422, {}, _errors("VALIDATION_ERROR", "The command must be a JSON object", path="")
    publication = body.get("publication")
    action = publication.get("action") if isinstance(publication, dict) else None
    if action not in ("ACTIVATE", "END"):
        return 422, {}, _errors("VALIDATION_ERROR", "action must be ACTIVATE or END", path="publication.action")
    assert isinstance(publication, dict)
    if publication.get("scheduledFor") is not None:
        return 422, {}, _errors("VALIDATION_ERROR", "scheduledFor is not played here", path="publication")
    offer_ids = _parse_offers(body.get("offerCriteria"))
    if not isinstance(offer_ids, list):
        return offer_ids
    return ParsedCommand(str(action), 0, tuple(offer_ids))


def _parse_offers(criteria: Any) -> list[str] | Answer:
    """The offer ids of ``offerCriteria`` (at most 1000, each once), or the 4xx answer."""

    def invalid(message: str, path: str) -> Answer:
        return 422, {}, _errors("VALIDATION_ERROR", message, path=path)

    if not isinstance(criteria, list) or not criteria:
        return invalid("offerCriteria must name the offers", "offerCriteria")
    offer_ids: list[str] = []
    for n, criterion in enumerate(criteria):
        if not isinstance(criterion, dict) or criterion.get("type") != "CONTAINS_OFFERS":
            return invalid("criterion type must be CONTAINS_OFFERS", f"offerCriteria[{n}].type")
        offers = criterion.get("offers")
        if not isinstance(offers, list) or not offers:
            return invalid("offers must be a non-empty list", f"offerCriteria[{n}].offers")
        for m, offer in enumerate(offers):
            offer_id = offer.get("id") if isinstance(offer, dict) else None
            if isinstance(offer_id, bool) or not isinstance(offer_id, str | int) or not str(offer_id).strip():
                return invalid("offer id is required", f"offerCriteria[{n}].offers[{m}].id")
            offer_ids.append(str(offer_id))
    if len(offer_ids) > MAX_OFFERS_PER_COMMAND:
        return invalid(
            f"A command can change at most {MAX_OFFERS_PER_COMMAND} offers, got {len(offer_ids)}", "offerCriteria"
        )
    if len(set(offer_ids)) != len(offer_ids):
        return invalid("An offer is named more than once", "offerCriteria")
    return offer_ids


def _page_param(
    params: dict[str, list[str]], name: str, default: int, low: int, high: int | None
) -> tuple[int, Answer | None]:
    given = params.get(name)
    if not given:
        return default, None
    raw = given[0]
    if not (raw.isascii() and raw.isdigit()) or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        return default, (422, {}, _errors("VALIDATION_ERROR", f"{name} must be {bound}", details=raw, path=name))
    return int(raw), None


def _too_many(seconds: float) -> Answer:
    return (
        429,
        {"Retry-After": str(max(1, math.ceil(seconds)))},
        _errors("TooManyRequestsException", "Too many requests", user_message="Try again later."),
    )


def _errors(
    code: str, message: str, *, details: str | None = None, path: str | None = None, user_message: str | None = None
) -> dict[str, Any]:
    return {
        "errors": [
            {"code": code, "message": message, "details": details, "path": path, "userMessage": user_message or message}
        ]
    }


def _offer_doc(offer: Offer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "name": f"Offer {offer.sku or offer.id}",
        "external": None if offer.sku is None else {"id": offer.sku},
        "stock": {"available": offer.available, "sold": 0},
        "publication": {"status": offer.status},
    }


def _task_doc(task: Task, command: Command) -> dict[str, Any]:
    return {
        "offer": {"id": task.offer_id},
        "message": task.message,
        "status": task.status,
        "scheduledAt": _iso(command.created_at),
        "finishedAt": None if task.finished_at is None else _iso(task.finished_at),
        "field": command.kind,
        "errors": list(task.errors),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _handler_for(standin: AllegroStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = unquote(parts.path)
            status, extra, payload = standin.handle(self.command, path, parts.query, headers, raw)
            body = b"" if payload is None else json.dumps(payload).encode()
            content_type = MEDIA_TYPE if path.startswith(("/sale/", "/order/")) else "application/json"
            self.reply(status, dict(extra), body, content_type)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.allegro --port 8093``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="Allegro REST API stand-in (offers, quantity commands, orders, OAuth)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--token-ttl-seconds", type=float, default=ACCESS_TOKEN_TTL_SECONDS)
    parser.add_argument("--requests-per-minute", type=int, default=REQUESTS_PER_MINUTE)
    parser.add_argument("--offer-changes-per-minute", type=int, default=OFFER_CHANGES_PER_MINUTE)
    parser.add_argument("--offer-changes-per-hour", type=int, default=OFFER_CHANGES_PER_HOUR)
    parser.add_argument("--tasks-per-second", type=float, default=TASKS_PER_SECOND)
    parser.add_argument("--seed-offers", type=int, default=0, help="create this many ACTIVE offers at start")
    parser.add_argument("--seed-prefix", default="SKU-")
    parser.add_argument("--seed-quantity", type=int, default=0)
    parser.add_argument("--skus", default="", help="comma-separated SKUs the catalogue starts with")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = AllegroStandIn(
        args.host,
        args.port,
        token_ttl_seconds=args.token_ttl_seconds,
        requests_per_minute=args.requests_per_minute,
        offer_changes_per_minute=args.offer_changes_per_minute,
        offer_changes_per_hour=args.offer_changes_per_hour,
        tasks_per_second=args.tasks_per_second,
    )
    if args.seed_offers:
        standin.seed_offers(args.seed_offers, args.seed_prefix, args.seed_quantity)
    for sku in filter(None, args.skus.split(",")):
        standin.add_offer(sku, quantity=1)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The ``allegro-api`` secret's value for a stand-in listening on ``root_url``."""
    return {
        "api_url": root_url,
        "auth_url": root_url + "/auth/oauth",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": INITIAL_REFRESH_TOKEN,
    }


# Run as a process of its own; its defaults are Allegro's documented limits, so no flag is needed
# to make it strict.
LOCAL = TargetStandIn(
    system="allegro",
    module="junction_local.standins.allegro",
    fills="allegro-api",
    credentials=_credentials,
    # The local company sells on this channel what its ERP stocks (junction_local.standins.erp).
    args=("--skus", ",".join(DEFAULT_ITEMS)),
    health_path="/_standin/summary",
    effect_count="tasks_done",
)


if __name__ == "__main__":
    main()
