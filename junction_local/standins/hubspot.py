"""A HubSpot CRM stand-in: contacts, deals and their associations, with the rules of
docs/hubspot-contract.md.

A real HTTP server on 127.0.0.1, as strict as HubSpot where HubSpot states a rule: a private app
token on every call (401 otherwise), at most 100 inputs a batch, 190 requests per rolling 10
seconds per token and a daily allowance (429 with HubSpot's body and ``X-HubSpot-RateLimit-*``
headers), unique property values enforced (a second deal with the same ``junction_order_key``
through the plain create endpoint is a 409, as a second contact with the same email is), upserts
that create or update by a unique property, the default deal pipeline's stage ids only, and
default associations that may be repeated.

It can be told to misbehave (down, slow, rate limited, flaky), its token rotated, its clock moved
forward, and its idempotency turned off (``idempotency: false``: every deal upsert creates a new
deal, so a benchmark counts at the stand-in the duplicates an idempotent consumer must prevent).
Control over HTTP too, under /_standin/, so another process can drive it.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from junction_local.process import LocalHandler, ServedStandIn
from junction_local.standins import TargetStandIn

LOCAL_TOKEN = "local-hubspot-token"  # noqa: S105 - a fixed local value, never deployed

# HubSpot's documented limits (sources in docs/hubspot-contract.md).
MAX_BATCH_INPUTS = 100
REQUESTS_PER_WINDOW = 190  # private apps, Professional and Enterprise: 190 per 10 seconds
WINDOW_SECONDS = 10.0
DAILY_LIMIT = 650_000  # private apps, Professional (Enterprise: 1 000 000)

ORDER_KEY_PROPERTY = "junction_order_key"
PIPELINE = "default"
DEFAULT_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
CLOSED_LOST = "closedlost"
# The properties this portal defines; anything else is PROPERTY_DOESNT_EXIST.
CONTACT_PROPERTIES = frozenset({"email", "firstname", "lastname", "company", "phone"})
DEAL_PROPERTIES = frozenset(
    {"dealname", "amount", "deal_currency_code", "pipeline", "dealstage", "closedate", ORDER_KEY_PROPERTY}
)
# The unique property each object type may be upserted and read by.
UNIQUE = {"contacts": "email", "deals": ORDER_KEY_PROPERTY}
OBJECT_ALIASES = {"contact": "contacts", "contacts": "contacts", "0-1": "contacts"}
OBJECT_ALIASES |= {"deal": "deals", "deals": "deals", "0-3": "deals"}
DEAL_TO_CONTACT_TYPE_ID = 3  # HUBSPOT_DEFINED, the unlabeled deal-to-contact association
FIRST_ID = 1001  # record ids are numeric strings

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 TEN_SECONDLY_ROLLING, with Retry-After `retry_after` when it is above 0",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
}


@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: int = 0
    delay: float = 0.0
    count: int | None = None  # apply to the next N requests only, then back to ok
    rate: float = 0.5  # flaky: the fraction of requests that fail
    seed: int = 0


@dataclass
class Record:
    id: str
    properties: dict[str, str]
    created_at: float
    updated_at: float


Answer = tuple[int, dict[str, str], Any]


class HubSpotStandIn(ServedStandIn):
    thread_name = "hubspot-standin"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = LOCAL_TOKEN,
        requests_per_window: int = REQUESTS_PER_WINDOW,
        daily_limit: int = DAILY_LIMIT,
        idempotency: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_window < 1 or daily_limit < 1 or not token:
            raise ValueError("requests_per_window and daily_limit must be at least 1, and a token is required")
        self.requests_per_window = requests_per_window
        self.daily_limit = daily_limit
        self._initial_token = token
        self._initial_idempotency = idempotency
        self._clock = clock
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.reset()

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._skew

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward: rate limit windows pass."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._skew += seconds

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._skew = 0.0
            self.token = self._initial_token
            self.idempotency = self._initial_idempotency
            self._records: dict[str, dict[str, Record]] = {"contacts": {}, "deals": {}}
            # unique value -> record id, per object type (the newest, when idempotency is off)
            self._unique: dict[str, dict[str, str]] = {"contacts": {}, "deals": {}}
            self._associations: set[tuple[str, str]] = set()  # (deal id, contact id)
            self._next_id = FIRST_ID
            self._hits: dict[str, deque[float]] = {}
            self._daily: dict[tuple[str, str], int] = {}  # (token, UTC day) -> requests
            self._requests = 0
            self._rejected = 0
            self._rate_limited = 0
            self._unauthorized = 0
            self.behaviour = Behaviour()
            self._random = random.Random(0)

    def set_behaviour(
        self,
        mode: str = "ok",
        *,
        retry_after: int = 0,
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

    def set_idempotency(self, enabled: bool) -> None:
        """Off, every deal upsert creates a new deal (the unique value points at the newest)."""
        with self._lock:
            self.idempotency = bool(enabled)

    def rotate_token(self, token: str) -> None:
        """A new private app token; the old one is refused from now on."""
        if not token:
            raise ValueError("a token cannot be empty")
        with self._lock:
            self.token = token

    def limits(self) -> dict[str, Any]:
        return {
            "requests_per_window": self.requests_per_window,
            "window_seconds": WINDOW_SECONDS,
            "daily_limit": self.daily_limit,
            "max_batch_inputs": MAX_BATCH_INPUTS,
        }

    def summary(self) -> dict[str, Any]:
        with self._lock:
            deals = self._records["deals"]
            return {
                "requests": self._requests,
                "rejected_by_behaviour": self._rejected,
                "rate_limited": self._rate_limited,
                "unauthorized": self._unauthorized,
                "contacts": len(self._records["contacts"]),
                "deals": len(deals),
                "deals_closed_lost": sum(1 for d in deals.values() if d.properties.get("dealstage") == CLOSED_LOST),
                "duplicate_deals": len(deals) - len({d.properties.get(ORDER_KEY_PROPERTY) for d in deals.values()}),
                "unique_references": len({d.properties.get(ORDER_KEY_PROPERTY) for d in deals.values()}),
                "associations": len(self._associations),
                "idempotency": self.idempotency,
                "limits": self.limits(),
            }

    def state(self) -> dict[str, Any]:
        """Everything the stand-in holds: records by id with their properties, associations."""
        with self._lock:
            return {
                "contacts": {r.id: dict(r.properties) for r in self._records["contacts"].values()},
                "deals": {r.id: dict(r.properties) for r in self._records["deals"].values()},
                "associations": [{"deal": d, "contact": c} for d, c in sorted(self._associations)],
                "behaviour": dict(self.behaviour.__dict__),
                "summary": self.summary(),
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
                self._rate_limited += 1
        if mode == "slow":
            time.sleep(b.delay)
            return None
        if mode == "rate_limited":
            extra = {"Retry-After": str(b.retry_after)} if b.retry_after > 0 else {}
            return _too_many("TEN_SECONDLY_ROLLING", {**self._window_headers(0), **extra})
        return 503, {}, _error("Service Unavailable", "INTERNAL_ERROR")

    # -- routing ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes) -> Answer:
        if path.startswith("/_standin/"):
            return self._control(method, path, raw)
        with self._lock:
            self._requests += 1
        forced = self._misbehave()
        if forced is not None:
            return forced
        token = self._authenticate(headers.get("authorization", ""))
        if token is None:
            return (
                401,
                {},
                _error(
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
                    "INVALID_AUTHENTICATION",
                ),
            )
        limited, rate_headers = self._rate_limit(token)
        if limited is not None:
            return limited
        status, extra, payload = self._api(method, path, parse_qs(query), raw)
        return status, {**rate_headers, **extra}, payload

    def _api(self, method: str, path: str, params: dict[str, list[str]], raw: bytes) -> Answer:
        parts = path.strip("/").split("/")
        if parts[:3] == ["crm", "v4", "objects"] and len(parts) == 9 and parts[5:7] == ["associations", "default"]:
            if method != "PUT":
                return 405, {}, _error("Method not allowed", "VALIDATION_ERROR")
            return self._associate(parts[3], parts[4], parts[7], parts[8])
        if parts[:3] != ["crm", "v3", "objects"] or len(parts) < 4 or parts[3] not in UNIQUE:
            return 404, {}, _error("Resource not found", "NOT_FOUND")
        object_type, rest = parts[3], parts[4:]
        if rest == ["batch", "upsert"] and method == "POST":
            return self._batch_upsert(object_type, raw)
        if not rest and method == "POST":
            return self._create(object_type, raw)
        if len(rest) == 1 and method == "GET":
            return self._read(object_type, rest[0], params)
        return 405, {}, _error("Method not allowed", "VALIDATION_ERROR")

    def _authenticate(self, header: str) -> str | None:
        scheme, _, token = header.partition(" ")
        with self._lock:
            if scheme.lower() == "bearer" and token.strip() == self.token:
                return self.token
            self._unauthorized += 1
        return None

    def _window_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.requests_per_window),
            "X-HubSpot-RateLimit-Remaining": str(max(remaining, 0)),
        }

    def _rate_limit(self, token: str) -> tuple[Answer | None, dict[str, str]]:
        """190 requests per rolling 10 seconds and a daily allowance, per token; a refused
        request counts against neither."""
        with self._lock:
            now = self.now()
            day = datetime.fromtimestamp(now, UTC).date().isoformat()
            used_today = self._daily.get((token, day), 0)
            hits = self._hits.setdefault(token, deque())
            while hits and hits[0] <= now - WINDOW_SECONDS:
                hits.popleft()
            daily = {
                "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                "X-HubSpot-RateLimit-Daily-Remaining": str(max(self.daily_limit - used_today - 1, 0)),
            }
            if used_today >= self.daily_limit:
                self._rate_limited += 1
                return _too_many("DAILY", {**daily, **self._window_headers(0)}), {}
            if len(hits) >= self.requests_per_window:
                self._rate_limited += 1
                return _too_many("TEN_SECONDLY_ROLLING", {**daily, **self._window_headers(0)}), {}
            hits.append(now)
            self._daily[(token, day)] = used_today + 1
            return None, {**daily, **self._window_headers(self.requests_per_window - len(hits))}

    # -- records ---------------------------------------------------------------------------
    def _batch_upsert(self, object_type: str, raw: bytes) -> Answer:
        started = self.now()
        body = _body(raw)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return 400, {}, _error("Invalid input JSON: inputs must be a non-empty list", "VALIDATION_ERROR")
        if len(inputs) > MAX_BATCH_INPUTS:
            return (
                400,
                {},
                _error(
                    f"The maximum number of inputs supported in a batch request is {MAX_BATCH_INPUTS}. "
                    "Please reduce the number of items and try again",
                    "VALIDATION_ERROR",
                ),
            )
        parsed: list[tuple[str, dict[str, str]]] = []
        for n, item in enumerate(inputs):
            problem = _check_input(object_type, item, n)
            if problem is not None:
                return problem
            parsed.append((str(item["id"]), dict(item.get("properties") or {})))
        keys = [_normalise(object_type, key) for key, _ in parsed]
        if len(set(keys)) != len(keys):
            return 400, {}, _error("Duplicate IDs found in batch input", "VALIDATION_ERROR")
        for _, properties in parsed:
            invalid = _check_properties(object_type, properties)
            if invalid is not None:
                return invalid
        with self._lock:
            results = [
                self._upsert_one(object_type, key, properties)
                for key, (_, properties) in zip(keys, parsed, strict=True)
            ]
        return (
            200,
            {},
            {
                "status": "COMPLETE",
                "results": results,
                "requestedAt": _iso(started),
                "startedAt": _iso(started),
                "completedAt": _iso(self.now()),
            },
        )

    def _upsert_one(self, object_type: str, key: str, properties: dict[str, str]) -> dict[str, Any]:
        unique = UNIQUE[object_type]
        existing_id = self._unique[object_type].get(key)
        fresh = existing_id is None or (object_type == "deals" and not self.idempotency)
        now = self.now()
        if fresh:
            record = self._add(object_type, {**properties, unique: key}, now)
        else:
            assert existing_id is not None
            record = self._records[object_type][existing_id]
            record.properties.update(properties)
            record.updated_at = now
        return {**_record_doc(record), "new": fresh}

    def _add(self, object_type: str, properties: dict[str, str], now: float) -> Record:
        record = Record(str(self._next_id), properties, now, now)
        self._next_id += 1
        self._records[object_type][record.id] = record
        self._unique[object_type][properties[UNIQUE[object_type]]] = record.id
        return record

    def _create(self, object_type: str, raw: bytes) -> Answer:
        """``POST /crm/v3/objects/{type}``: a plain create, refused when a unique value exists."""
        body = _body(raw)
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return 400, {}, _error("Invalid input JSON: properties must be an object", "VALIDATION_ERROR")
        invalid = _check_properties(object_type, properties)
        if invalid is not None:
            return invalid
        unique = UNIQUE[object_type]
        key = properties.get(unique)
        with self._lock:
            if isinstance(key, str) and key:
                key = _normalise(object_type, key)
                existing = self._unique[object_type].get(key)
                if existing is not None:
                    message = (
                        f"Contact already exists. Existing ID: {existing}"
                        if object_type == "contacts"
                        else f"A deal with {unique} {key!r} already exists. Existing ID: {existing}"
                    )
                    return 409, {}, _error(message, "CONFLICT")
                properties = {**properties, unique: key}
                record = self._add(object_type, dict(properties), self.now())
            else:
                record = Record(str(self._next_id), dict(properties), self.now(), self.now())
                self._next_id += 1
                self._records[object_type][record.id] = record
        return 201, {}, _record_doc(record)

    def _read(self, object_type: str, raw_id: str, params: dict[str, list[str]]) -> Answer:
        given = params.get("idProperty")
        id_property = given[0] if given else None
        with self._lock:
            if id_property is None:
                record = self._records[object_type].get(raw_id)
            elif id_property != UNIQUE[object_type]:
                return 400, {}, _error(f"{id_property} is not a unique property", "VALIDATION_ERROR")
            else:
                found = self._unique[object_type].get(_normalise(object_type, raw_id))
                record = None if found is None else self._records[object_type].get(found)
            if record is None:
                return 404, {}, _error("Object not found.", "OBJECT_NOT_FOUND")
            doc = _record_doc(record)
        wanted = [p for value in params.get("properties", []) for p in value.split(",") if p]
        if wanted:
            doc["properties"] = {k: v for k, v in doc["properties"].items() if k in wanted or k == "hs_object_id"}
        return 200, {}, doc

    def _associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> Answer:
        kinds = (OBJECT_ALIASES.get(from_type), OBJECT_ALIASES.get(to_type))
        if kinds != ("deals", "contacts"):
            return 400, {}, _error("Only deal-to-contact default associations are played here", "VALIDATION_ERROR")
        with self._lock:
            if from_id not in self._records["deals"] or to_id not in self._records["contacts"]:
                return 404, {}, _error("One or more objects not found.", "OBJECT_NOT_FOUND")
            self._associations.add((from_id, to_id))
        return (
            200,
            {},
            {
                "status": "COMPLETE",
                "results": [
                    {
                        "fromObjectTypeId": "0-3",
                        "fromObjectId": int(from_id),
                        "toObjectTypeId": "0-1",
                        "toObjectId": int(to_id),
                        "associationTypes": [
                            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": DEAL_TO_CONTACT_TYPE_ID}
                        ],
                    }
                ],
            },
        )

    # -- control ---------------------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method != "POST":
            return 404, {}, {"error": "unknown control endpoint"}
        body = _body(raw)
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
                retry_after=int(body.get("retry_after", 0)),
                delay=float(body.get("delay", 0.0)),
                count=None if body.get("count") is None else int(body["count"]),
                rate=float(body.get("rate", 0.5)),
                seed=int(body.get("seed", 0)),
            )
            return 200, {}, dict(self.behaviour.__dict__)
        if path == "/_standin/idempotency":
            enabled = body.get("idempotency")
            if not isinstance(enabled, bool):
                raise ValueError("idempotency must be true or false")
            self.set_idempotency(enabled)
            return 200, {}, {"idempotency": self.idempotency}
        if path == "/_standin/limits":  # a benchmark measures Junction, not HubSpot's limits
            with self._lock:
                self.requests_per_window = int(body.get("requests_per_window", self.requests_per_window))
                self.daily_limit = int(body.get("daily_limit", self.daily_limit))
            return 200, {}, self.limits()
        if path == "/_standin/token":
            self.rotate_token(str(body.get("token", "")))
            return 200, {}, {"rotated": True}
        if path == "/_standin/reset":
            self.reset()
            return 200, {}, {"reset": True}
        if path == "/_standin/clock/advance":
            self.advance(float(body.get("seconds", 0)))
            return 200, {}, {"now": self.now()}
        return 404, {}, {"error": "unknown control endpoint"}


def _check_input(object_type: str, item: Any, n: int) -> Answer | None:
    if not isinstance(item, dict):
        return 400, {}, _error(f"inputs[{n}] must be an object", "VALIDATION_ERROR")
    key, id_property, properties = item.get("id"), item.get("idProperty"), item.get("properties", {})
    if not isinstance(key, str) or not key.strip():
        return 400, {}, _error(f"inputs[{n}].id must be a non-empty string", "VALIDATION_ERROR")
    if id_property != UNIQUE[object_type]:
        return (
            400,
            {},
            _error(
                f"inputs[{n}].idProperty must be a unique property of {object_type} ({UNIQUE[object_type]})",
                "VALIDATION_ERROR",
            ),
        )
    if not isinstance(properties, dict):
        return 400, {}, _error(f"inputs[{n}].properties must be an object", "VALIDATION_ERROR")
    if UNIQUE[object_type] in properties and _normalise(object_type, str(properties[UNIQUE[object_type]])) != (
        _normalise(object_type, key)
    ):
        return 400, {}, _error(f"inputs[{n}] sets {id_property} to another value than its id", "VALIDATION_ERROR")
    return None


def _check_properties(object_type: str, properties: dict[str, Any]) -> Answer | None:
    """HubSpot's property validation: known names, string values, the default pipeline's
    stage ids, numbers for amounts."""
    known = CONTACT_PROPERTIES if object_type == "contacts" else DEAL_PROPERTIES
    problems: list[dict[str, Any]] = []
    for name, value in properties.items():
        if name not in known:
            problems.append({"name": name, "error": "PROPERTY_DOESNT_EXIST", "message": f"{name} does not exist"})
        elif not isinstance(value, str):
            problems.append({"name": name, "error": "INVALID_OPTION", "message": f"{name} must be a string"})
        elif name == "dealstage" and value not in DEFAULT_STAGES:
            problems.append({"name": name, "error": "INVALID_OPTION", "message": f"{value} is not a valid stage"})
        elif name == "pipeline" and value != PIPELINE:
            problems.append({"name": name, "error": "INVALID_OPTION", "message": f"{value} is not a valid pipeline"})
        elif name == "amount" and not _is_number(value):
            problems.append({"name": name, "error": "INVALID_DECIMAL", "message": f"{value!r} is not a number"})
    if not problems:
        return None
    return 400, {}, {**_error("Property values were not valid", "VALIDATION_ERROR"), "errors": problems}


def _is_number(value: str) -> bool:
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _normalise(object_type: str, key: str) -> str:
    """HubSpot compares contact emails without case."""
    return key.strip().lower() if object_type == "contacts" else key


def _record_doc(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "properties": {**record.properties, "hs_object_id": record.id},
        "createdAt": _iso(record.created_at),
        "updatedAt": _iso(record.updated_at),
        "archived": False,
    }


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return None


def _error(message: str, category: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}


def _too_many(policy: str, headers: dict[str, str]) -> Answer:
    return (
        429,
        headers,
        {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
        },
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def _handler_for(standin: HubSpotStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = standin.handle(self.command, unquote(parts.path), parts.query, headers, raw)
            body = b"" if payload is None else json.dumps(payload).encode()
            self.reply(status, dict(extra), body, "application/json;charset=utf-8")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.hubspot --port 8094``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="HubSpot CRM stand-in (contacts, deals, associations)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8094)
    parser.add_argument("--token", default=LOCAL_TOKEN)
    parser.add_argument("--requests-per-window", type=int, default=REQUESTS_PER_WINDOW, help="per rolling 10 s")
    parser.add_argument("--daily-limit", type=int, default=DAILY_LIMIT)
    parser.add_argument(
        "--no-idempotency", action="store_true", help="every deal upsert creates a new deal (to count duplicates)"
    )
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = HubSpotStandIn(
        args.host,
        args.port,
        token=args.token,
        requests_per_window=args.requests_per_window,
        daily_limit=args.daily_limit,
        idempotency=not args.no_idempotency,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The ``hubspot-private-app`` secret's value for a stand-in listening on ``root_url``."""
    return {"base_url": root_url, "access_token": LOCAL_TOKEN}


# Run as a process of its own; its defaults are HubSpot's documented limits, so no flag is needed
# to make it strict.
LOCAL = TargetStandIn(
    system="hubspot",
    module="junction_local.standins.hubspot",
    fills="hubspot-private-app",
    credentials=_credentials,
    health_path="/_standin/summary",
    effect_count="deals",
)


if __name__ == "__main__":
    main()
