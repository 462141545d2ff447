"""An InPost ShipX stand-in speaking the contract of docs/inpost-contract.md.

A real HTTP server on 127.0.0.1, as strict as ShipX where ShipX documents a rule: a bearer token
bound to one organisation (another organisation's path is 403), the required fields of a
shipment per service (a parcel locker needs ``custom_attributes.target_point`` naming a known
locker, a template parcel and the receiver's email and phone; a courier shipment needs the
receiver's address) with ``400 validation_failed`` and ``details`` naming the fields; no cash on
delivery here. References are NOT unique (a second create with the same reference makes a second
shipment, as ShipX does). Creation is asynchronous: a shipment is ``created`` without a tracking
number and becomes ``confirmed``, with its tracking number, ``confirm_delay`` seconds later on
the stand-in's clock. Searches page (``page``, ``per_page``; ``count`` is the total). Requests
are counted per token in a one-minute window (then ``429`` with ``Retry-After``).

It can be told to misbehave (down, slow, rate limited, flaky, committing then hanging), its clock
can be moved forward, and a control call moves a shipment to any ShipX status, posting ShipX's
``shipment_status_changed`` webhook to the configured URL when asked. Control over HTTP under
/_standin/, so another process (the demo, a benchmark) can drive it.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from junction_local.process import LocalHandler, ServedStandIn
from junction_local.standins import TargetStandIn, WebhookPoster

TOKEN = "local-inpost-shipx-token"  # noqa: S105 - a fixed local value, never deployed
ORGANIZATION_ID = "1234"
REQUESTS_PER_MINUTE = 100
WINDOW_SECONDS = 60.0
CONFIRM_DELAY = 0.5  # seconds on the stand-in's clock from created to confirmed
DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
SERVICES = ("inpost_locker_standard", "inpost_courier_standard")
TEMPLATES = ("small", "medium", "large")
MAX_WEIGHT_KG = 25  # a locker compartment's and a standard courier parcel's limit
# Parcel lockers the stand-in knows (ShipX checks target_point against its point list).
LOCKERS = ("KRA010", "KRA012", "WAW22A", "WAW01M", "POZ08A", "GDA117M", "WRO51N")
STATUSES: tuple[tuple[str, str], ...] = (
    ("created", "Przesyłka utworzona."),
    ("offers_prepared", "Przygotowano oferty."),
    ("offer_selected", "Oferta wybrana."),
    ("confirmed", "Przygotowana przez Nadawcę."),
    ("dispatched_by_sender", "Paczka nadana w automacie Paczkomat."),
    ("dispatched_by_sender_to_pok", "Nadana w PaczkoPunkcie."),
    ("collected_from_sender", "Odebrana od klienta."),
    ("taken_by_courier", "Odebrana od Nadawcy."),
    ("taken_by_courier_from_pok", "Odebrana z PaczkoPunktu."),
    ("adopted_at_source_branch", "Przyjęta w oddziale InPost."),
    ("sent_from_source_branch", "W trasie."),
    ("adopted_at_sorting_center", "Przyjęta w Sortowni."),
    ("sent_from_sorting_center", "Wysłana z Sortowni."),
    ("adopted_at_target_branch", "Przyjęta w Oddziale Docelowym."),
    ("out_for_delivery", "Przekazano do doręczenia."),
    ("out_for_delivery_to_address", "W doręczeniu."),
    ("ready_to_pickup", "Umieszczona w automacie Paczkomat (odbiorczym)."),
    ("ready_to_pickup_from_pok", "Czeka na odbiór w PaczkoPunkcie."),
    ("ready_to_pickup_from_branch", "Czeka na odbiór w oddziale."),
    ("pickup_reminder_sent", "Przypomnienie o czekającej paczce."),
    ("avizo", "Powrót do oddziału."),
    ("pickup_time_expired", "Upłynął termin odbioru."),
    ("undelivered", "Przekazanie do magazynu przesyłek niedoręczalnych."),
    ("rejected_by_receiver", "Odmowa przyjęcia."),
    ("delivered", "Dostarczona."),
    ("returned_to_sender", "Zwrot do nadawcy."),
    ("canceled", "Anulowano etykietę."),
)
STATUS_NAMES = tuple(name for name, _ in STATUSES)
UNCONFIRMED = ("created", "offers_prepared", "offer_selected")
_PHONE = re.compile(r"^\d{9}$")  # ShipX: nine digits, no country code
_POST_CODE = re.compile(r"^\d{2}-\d{3}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 with Retry-After `retry_after`",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
    "accept_then_hang": "commit a POST, then hold its answer for `delay` seconds (default 30)",
}


@dataclass
class Behaviour:
    mode: str = "ok"
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N API requests only, then back to ok
    rate: float = 0.5
    seed: int = 0


Answer = tuple[int, dict[str, str], Any]


class InPostStandIn(ServedStandIn):
    thread_name = "inpost-standin"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = TOKEN,
        organization_id: str = ORGANIZATION_ID,
        requests_per_minute: int = REQUESTS_PER_MINUTE,
        confirm_delay: float = CONFIRM_DELAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self.token = token
        self.organization_id = organization_id
        self.requests_per_minute = requests_per_minute
        self.confirm_delay = confirm_delay
        self.webhook_url: str | None = None  # where status changes are posted (the path holds the token)
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
        """Move the stand-in's clock forward: shipments confirm, the rate window passes."""
        if not seconds >= 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._skew += seconds

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._skew = 0.0
            self._shipments: dict[int, dict[str, Any]] = {}
            self._confirm_at: dict[int, float] = {}
            self._ids = itertools.count(600_000_001)
            self._window: tuple[int, int] = (0, 0)  # (minute, requests in it)
            self._requests = 0
            self._rate_limited = 0
            self._rejected = 0
            self._refused = 0
            self._webhooks: list[dict[str, Any]] = []
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

    def configure(
        self,
        *,
        requests_per_minute: int | None = None,
        confirm_delay: float | None = None,
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if requests_per_minute is not None:
                if isinstance(requests_per_minute, bool) or int(requests_per_minute) < 1:
                    raise ValueError("requests_per_minute must be at least 1")
                self.requests_per_minute = int(requests_per_minute)
            if confirm_delay is not None:
                if not float(confirm_delay) >= 0:
                    raise ValueError("confirm_delay cannot be negative")
                self.confirm_delay = float(confirm_delay)
            if webhook_url is not None:
                if not webhook_url.startswith(("http://127.0.0.1", "http://localhost")):
                    raise ValueError("the local stand-in posts webhooks to 127.0.0.1/localhost only")
                self.webhook_url = webhook_url
            return self.settings()

    def settings(self) -> dict[str, Any]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "confirm_delay": self.confirm_delay,
            "webhook_url": self.webhook_url,
        }

    def shipments(self) -> list[dict[str, Any]]:
        with self._lock:
            self._confirm_due()
            return [_copy(s) for s in self._shipments.values()]

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while shipments arrive."""
        with self._lock:
            self._confirm_due()
            references = [s.get("reference") for s in self._shipments.values()]
            by_status: dict[str, int] = {}
            for shipment in self._shipments.values():
                by_status[shipment["status"]] = by_status.get(shipment["status"], 0) + 1
            return {
                "shipments": len(references),
                "unique_references": len(set(references)),
                "duplicates": len(references) - len(set(references)),
                "by_status": by_status,
                "requests": self._requests,
                "rate_limited": self._rate_limited,
                "rejected_by_behaviour": self._rejected,
                "refused": self._refused,
                "webhooks_sent": len(self._webhooks),
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "summary": self.summary(),
                "behaviour": self.behaviour.__dict__,
                "settings": self.settings(),
                "organization_id": self.organization_id,
                "webhooks": list(self._webhooks),
            }

    def move(self, shipment_id: int, status: str, *, notify: bool = False) -> dict[str, Any]:
        """Set a shipment's status, as InPost's network would. Confirming gives it its tracking
        number. With ``notify``, ShipX's ``shipment_status_changed`` webhook goes to the
        configured URL. KeyError for an unknown shipment, ValueError for an unknown status."""
        if status not in STATUS_NAMES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            shipment = self._shipments.get(int(shipment_id))
            if shipment is None:
                raise KeyError(shipment_id)
            self._set_status(shipment, status)
            doc = _copy(shipment)
            url = self.webhook_url
        if notify:
            if url is None:
                raise ValueError("no webhook_url configured (POST /_standin/settings)")
            self.notify(doc, url)
        return doc

    def notify(self, shipment: dict[str, Any], url: str, *, status: str | None = None) -> int:
        """Post ShipX's ``shipment_status_changed`` for ``shipment`` (``status`` may be forced, to
        send a forged or an old status); the HTTP status of the answer (0: none)."""
        body = status_webhook(
            shipment["id"],
            status or shipment["status"],
            shipment.get("tracking_number"),
            organization_id=int(self.organization_id),
            at=self.now(),
        )
        raw = json.dumps(body, separators=(",", ":")).encode()
        answer, _ = WebhookPoster(url, 5.0).post(raw, {"Content-Type": "application/json"})
        with self._lock:
            sent = {"shipment_id": shipment["id"], "status": body["payload"]["status"], "answer": answer}
            self._webhooks.append(sent)
        return answer

    # -- internals (callers hold the lock) ---------------------------------------------------
    def _set_status(self, shipment: dict[str, Any], status: str) -> None:
        shipment["status"] = status
        shipment["updated_at"] = _iso(self.now())
        if status not in UNCONFIRMED and not shipment.get("tracking_number"):
            shipment["tracking_number"] = _tracking_number(shipment["id"])
        self._confirm_at.pop(shipment["id"], None)

    def _confirm_due(self) -> None:
        """ShipX's asynchronous confirmation: due shipments become confirmed, with a number."""
        now = self.now()
        for shipment_id, due in list(self._confirm_at.items()):
            if due <= now:
                shipment = self._shipments[shipment_id]
                if shipment["status"] in UNCONFIRMED:
                    self._set_status(shipment, "confirmed")
                self._confirm_at.pop(shipment_id, None)

    def _misbehave(self, method: str) -> Answer | float | None:
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
        return 503, {}, _error(503, "service_unavailable", "Service temporarily unavailable.")

    def _within_limit(self) -> Answer | None:
        """Count the request in the token's current minute; a 429 once it is full."""
        with self._lock:
            now = self.now()
            minute = int(now // WINDOW_SECONDS)
            current, used = self._window
            if minute != current:
                used = 0
            if used >= self.requests_per_minute:
                self._rate_limited += 1
                return _too_many(max(1, math.ceil((minute + 1) * WINDOW_SECONDS - now)))
            self._window = (minute, used + 1)
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
            return 401, {}, _error(401, "token_invalid", "Token is missing or invalid.")
        limited = self._within_limit()
        if limited is not None:
            return limited
        with self._lock:
            self._confirm_due()
        params = parse_qs(query)
        if path == "/v1/statuses" and method == "GET":
            items = [{"name": n, "title": t, "description": t} for n, t in STATUSES]
            return 200, {}, {"href": "/v1/statuses", "items": items}
        match = re.fullmatch(r"/v1/organizations/([^/]+)/shipments", path)
        if match:
            if match.group(1) != self.organization_id:
                return 403, {}, _error(403, "access_forbidden", "You are not allowed to access this resource.")
            if method == "POST":
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return 400, {}, _error(400, "invalid_json", "The request body is not valid JSON.")
                return self._create(body)
            if method == "GET":
                return self._search(params)
            return 405, {}, _error(405, "method_not_allowed", "Method not allowed.")
        match = re.fullmatch(r"/v1/shipments/([^/]+)", path)
        if match and method == "GET":
            target = match.group(1)
            with self._lock:
                shipment = self._shipments.get(int(target)) if target.isdigit() else None
                if shipment is None:
                    return 404, {}, _error(404, "resource_not_found", "Resource not found.")
                return 200, {}, _copy(shipment)
        return 404, {}, _error(404, "resource_not_found", "Resource not found.")

    def _create(self, body: Any) -> Answer:
        details = shipment_problems(body)
        if details:
            with self._lock:
                self._refused += 1
            return (
                400,
                {},
                {
                    "status": 400,
                    "error": "validation_failed",
                    "message": "There are some validation errors. Check details object for more info.",
                    "details": details,
                },
            )
        with self._lock:
            shipment_id = next(self._ids)
            now = self.now()
            shipment = {
                "href": f"/v1/shipments/{shipment_id}",
                "id": shipment_id,
                "status": "created",
                "tracking_number": None,
                "service": body["service"],
                "reference": body.get("reference"),
                "receiver": body["receiver"],
                "sender": body.get("sender"),
                "parcels": [
                    {**p, "id": p.get("id") or f"parcel-{n}", "tracking_number": None}
                    for n, p in enumerate(body["parcels"])
                ],
                "custom_attributes": body.get("custom_attributes") or {},
                "cod": None,
                "insurance": body.get("insurance"),
                "additional_services": body.get("additional_services") or [],
                "comments": body.get("comments"),
                "external_customer_id": body.get("external_customer_id"),
                "is_return": False,
                "offers": [],
                "selected_offer": None,
                "created_at": _iso(now),
                "updated_at": _iso(now),
            }
            self._shipments[shipment_id] = shipment
            self._confirm_at[shipment_id] = now + self.confirm_delay
            return 201, {}, _copy(shipment)

    def _search(self, params: dict[str, list[str]]) -> Answer:
        try:
            page = int((params.get("page") or ["1"])[0])
            per_page = int((params.get("per_page") or [str(DEFAULT_PER_PAGE)])[0])
        except ValueError:
            return 400, {}, _error(400, "invalid_parameter", "page and per_page must be integers.")
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            return 400, {}, _error(400, "invalid_parameter", f"page >= 1, per_page 1-{MAX_PER_PAGE}.")
        filters = {
            name: params[name][0] for name in ("reference", "status", "tracking_number", "id") if params.get(name)
        }
        with self._lock:
            found = [
                s
                for s in sorted(self._shipments.values(), key=lambda s: -int(s["id"]))  # newest first
                if all(str(s.get(name)) == value for name, value in filters.items())
            ]
            items = [_copy(s) for s in found[(page - 1) * per_page : page * per_page]]
        page_doc = {"href": "/v1/organizations/shipments", "count": len(found), "page": page, "per_page": per_page}
        return 200, {}, {**page_doc, "items": items}

    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {}, {"error": "body is not JSON"}
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method == "GET" and path == "/_standin/shipments":
            return 200, {}, {"shipments": self.shipments()}
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
                unknown = set(body) - {"requests_per_minute", "confirm_delay", "webhook_url"}
                if unknown:
                    return 400, {}, {"error": f"unknown settings {sorted(unknown)}"}
                return 200, {}, self.configure(**body)
            if path == "/_standin/clock":
                self.advance(float(body.get("advance_seconds", 0.0)))
                return 200, {}, {"now": self.now()}
            if path == "/_standin/shipments/status":
                return (
                    200,
                    {},
                    self.move(int(body["shipment_id"]), str(body.get("status")), notify=bool(body.get("notify"))),
                )
        except KeyError as exc:
            return 404, {}, {"error": f"no shipment {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {}, {"error": str(exc)}
        return 404, {}, {"error": "unknown control endpoint"}


# -- the webhook ---------------------------------------------------------------------------
def status_webhook(
    shipment_id: int, status: str, tracking_number: str | None, *, organization_id: int, at: float
) -> dict[str, Any]:
    """ShipX's ``shipment_status_changed`` body (unsigned; ``event_ts`` in Warsaw local time)."""
    moment = datetime.fromtimestamp(at, UTC).astimezone()
    return {
        "event_ts": moment.strftime("%Y-%m-%d %H:%M:%S %z"),
        "event": "shipment_status_changed",
        "organization_id": organization_id,
        "payload": {"shipment_id": shipment_id, "status": status, "tracking_number": tracking_number},
    }


# -- validation ----------------------------------------------------------------------------
def shipment_problems(body: Any) -> dict[str, Any]:
    """The create's validation errors, shaped as ShipX's ``details``: field -> codes, nested
    objects as ``[{sub-field: codes}]``."""
    if not isinstance(body, dict):
        return {"shipment": ["invalid"]}
    details: dict[str, Any] = {}
    service = body.get("service")
    if service not in SERVICES:
        details["service"] = ["required" if service is None else "invalid"]
    if body.get("cod") not in (None, {}):
        details["cod"] = ["not_supported"]  # no cash on delivery on this account
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, str) or not 1 <= len(reference) <= 100):
        details["reference"] = ["invalid"]
    receiver = _receiver_problems(body.get("receiver"), service)
    if receiver:
        details["receiver"] = [receiver]
    parcels = body.get("parcels")
    if not isinstance(parcels, list) or not parcels:
        details["parcels"] = ["required"]
    else:
        parcel_errors = [_parcel_problems(p, service) for p in parcels]
        if any(parcel_errors):
            details["parcels"] = [e for e in parcel_errors if e]
        if service == "inpost_locker_standard" and len(parcels) != 1:
            details.setdefault("parcels", []).append("multiple_parcels_not_allowed")
    if service == "inpost_locker_standard":
        attrs = body.get("custom_attributes")
        point = attrs.get("target_point") if isinstance(attrs, dict) else None
        if not point:
            details["custom_attributes"] = [{"target_point": ["required"]}]
        elif point not in LOCKERS:
            details["custom_attributes"] = [{"target_point": ["does_not_exist"]}]
    return details


def _receiver_problems(receiver: Any, service: Any) -> dict[str, list[Any]]:
    if not isinstance(receiver, dict):
        return {"receiver": ["required"]}
    problems: dict[str, list[Any]] = {}
    named = any(_text(receiver.get(k)) for k in ("name", "company_name", "first_name", "last_name"))
    if not named:
        problems["name"] = ["required"]
    phone, email = receiver.get("phone"), receiver.get("email")
    if phone is None:
        if service == "inpost_locker_standard":
            problems["phone"] = ["required"]
    elif not isinstance(phone, str) or not _PHONE.match(phone):
        problems["phone"] = ["invalid"]
    if email is None:
        if service == "inpost_locker_standard":
            problems["email"] = ["required"]
    elif not isinstance(email, str) or not _EMAIL.match(email):
        problems["email"] = ["invalid"]
    address = receiver.get("address")
    if service == "inpost_courier_standard" or address is not None:
        if not isinstance(address, dict):
            problems["address"] = ["required"]
        else:
            missing: dict[str, list[str]] = {
                k: ["required"] for k in ("street", "building_number", "city", "post_code") if not _text(address.get(k))
            }
            country = address.get("country_code")
            if country not in (None, "PL"):
                missing["country_code"] = ["invalid"]
            post_code = address.get("post_code")
            if _text(post_code) and not _POST_CODE.match(str(post_code)):
                missing["post_code"] = ["invalid"]
            if missing:
                problems["address"] = [missing]
    return problems


def _parcel_problems(parcel: Any, service: Any) -> dict[str, list[str]]:
    if not isinstance(parcel, dict):
        return {"parcel": ["invalid"]}
    template = parcel.get("template")
    if template is not None:
        return {} if template in TEMPLATES else {"template": ["invalid"]}
    if service == "inpost_locker_standard":
        return {"template": ["required"]}  # a locker compartment is one of the three sizes
    problems: dict[str, list[str]] = {}
    dimensions, weight = parcel.get("dimensions"), parcel.get("weight")
    if not isinstance(dimensions, dict) or dimensions.get("unit") != "mm":
        problems["dimensions"] = ["required"]
    elif not all(_positive(dimensions.get(k)) for k in ("length", "width", "height")):
        problems["dimensions"] = ["invalid"]
    if not isinstance(weight, dict) or weight.get("unit") != "kg" or not _positive(weight.get("amount")):
        problems["weight"] = ["required"]
    elif float(str(weight["amount"])) > MAX_WEIGHT_KG:
        problems["weight"] = ["too_heavy"]
    return problems


def _positive(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return float(str(value)) > 0
    except ValueError:
        return False


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _tracking_number(shipment_id: int) -> str:
    """24 digits, as ShipX's numbers look; one per shipment."""
    return f"6{shipment_id:023d}"[:24]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    return copied


def _error(status: int, error: str, message: str) -> dict[str, Any]:
    return {"status": status, "error": error, "message": message, "details": {}}


def _too_many(seconds: int) -> Answer:
    return 429, {"Retry-After": str(seconds)}, _error(429, "too_many_requests", "Too many requests.")


def _handler_for(standin: InPostStandIn) -> type[BaseHTTPRequestHandler]:
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
    """Run the stand-in on its own: ``python -m junction_local.standins.inpost --port 8096``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="InPost ShipX API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8096)
    parser.add_argument("--requests-per-minute", type=int, default=REQUESTS_PER_MINUTE)
    parser.add_argument("--confirm-delay", type=float, default=CONFIRM_DELAY)
    parser.add_argument("--webhook-url", default=None, help="where status changes are posted")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = InPostStandIn(
        args.host, args.port, requests_per_minute=args.requests_per_minute, confirm_delay=args.confirm_delay
    )
    if args.webhook_url:
        standin.configure(webhook_url=args.webhook_url)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The inpost-shipx secret's value for a stand-in listening on ``root_url``."""
    return {"base_url": root_url, "token": TOKEN, "organization_id": ORGANIZATION_ID}


LOCAL = TargetStandIn(
    system="inpost",
    module="junction_local.standins.inpost",
    fills="inpost-shipx",
    credentials=_credentials,
    health_path="/_standin/state",
    effect_count="shipments",
    notifies="inpost",  # ShipX posts shipment_status_changed to the inpost-tracking route
)


if __name__ == "__main__":
    main()
