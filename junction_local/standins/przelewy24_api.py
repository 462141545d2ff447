"""A Przelewy24 stand-in: the REST API v1 a shop registers and verifies transactions with (see
docs/payments-contract.md).

A real HTTP server on 127.0.0.1, as strict as P24 where P24 documents a rule: HTTP Basic auth
(POS id and REST API key, else ``401 {"error": "Incorrect authentication", "code": 401}``),
registration and verification bodies with exact types and their SHA-384 ``sign`` over the
PHP-encoded fields and the CRC key, the merchant's and POS's own ids, ``sessionId`` at most 100
characters and unique, and a verification only of a paid transaction whose ``orderId``,
``sessionId``, amount and currency are the ones P24 holds (else ``400 {"error", "code": 400}``).

P24 does not document what a second verification of a verified transaction answers; the
stand-in refuses it (``400``) by default, which is the answer a client must cope with, and can be
told to answer it with a success instead (``settings: {"reverify": "success"}``). Either way the
transaction is verified once: ``effect_count`` = transactions verified.

Control under /_standin/: state, summary, transactions, reset, behaviour (down, slow,
rate_limited, flaky, accept_then_hang), settings, ``register`` (a transaction without a sign, as a
test's shop), ``pay`` (the customer pays a registered transaction: P24 gives it an ``orderId`` and
answers the notification it would post to ``urlStatus``, signed with the CRC key; with
``register`` it registers the transaction first when it is new, as a shop's checkout would) and
``notification`` (that notification again).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from junction_local.process import LocalHandler, ServedStandIn
from junction_local.standins import TargetStandIn
from shared.webhooks.przelewy24 import (
    SESSION_ID_MAX,
    sign_notification,
    sign_register,
    sign_verify,
)

MERCHANT_ID = 100200
POS_ID = 100200
API_KEY = "local-przelewy24-api-key"  # a fixed local value, never deployed
CRC = "local-przelewy24-crc"  # the CRC key: signs registrations, verifications and notifications
CURRENCIES = ("PLN", "EUR", "GBP", "CZK", "DKK", "NOK", "SEK", "USD", "HUF", "RON", "BGN", "CHF")
LANGUAGES = ("bg", "cs", "de", "en", "es", "fr", "hr", "hu", "it", "nl", "pl", "pt", "se", "sk", "ro")
FIRST_ORDER_ID = 300_000_001
DEFAULT_METHOD_ID = 154  # BLIK among P24's payment methods
REVERIFY = ("refuse", "success")

NO_PAYMENT, ADVANCE_PAYMENT, PAYMENT_MADE, PAYMENT_RETURNED = 0, 1, 2, 3

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable",
    "slow": "wait `delay` seconds, then serve",
    "rate_limited": "429 with Retry-After `retry_after`",
    "flaky": "a fraction `rate` of requests get 503 (seeded by `seed`), the rest are served",
    "accept_then_hang": "commit a PUT/POST, then hold its answer for `delay` seconds (default 30)",
}

Answer = tuple[int, dict[str, str], Any]


@dataclass
class Behaviour:
    mode: str = "ok"
    retry_after: int = 1
    delay: float = 0.0
    count: int | None = None  # apply to the next N API requests only, then back to ok
    rate: float = 0.5
    seed: int = 0


@dataclass
class Transaction:
    session_id: str
    amount: int  # registered amount, minor units
    currency: str
    description: str
    email: str
    url_status: str | None
    token: str
    registered_at: float
    status: int = NO_PAYMENT
    order_id: int | None = None
    paid_amount: int | None = None
    method_id: int | None = None
    statement: str | None = None
    paid_at: float | None = None
    verified_at: float | None = None
    verifications: int = 0  # verify requests that were answered with a success

    def notification(self, crc: str, merchant_id: int, pos_id: int) -> dict[str, Any]:
        """The body P24 posts to ``urlStatus`` once the transaction is paid."""
        if self.order_id is None or self.paid_amount is None:
            raise ValueError(f"transaction {self.session_id!r} is not paid")
        fields = {
            "merchantId": merchant_id,
            "posId": pos_id,
            "sessionId": self.session_id,
            "amount": self.paid_amount,
            "originAmount": self.amount,
            "currency": self.currency,
            "orderId": self.order_id,
            "methodId": self.method_id or DEFAULT_METHOD_ID,
            "statement": self.statement or "",
        }
        return {**fields, "sign": sign_notification(fields, crc)}

    def doc(self) -> dict[str, Any]:
        """As ``GET /api/v1/transaction/by/sessionId`` answers it (its ``data``)."""
        return {
            "statement": self.statement or "",
            "orderId": self.order_id or 0,
            "sessionId": self.session_id,
            "status": self.status,
            "amount": self.paid_amount if self.paid_amount is not None else self.amount,
            "currency": self.currency,
            "date": _p24_date(self.registered_at),
            "dateOfTransaction": _p24_date(self.paid_at) if self.paid_at else "",
            "clientEmail": self.email,
            "accountMD5": "",
            "paymentMethod": self.method_id or 0,
            "description": self.description,
            "clientName": "",
            "clientAddress": "",
            "clientCity": "",
            "clientPostcode": "",
            "batchId": 0,
            "fee": "0",
        }


class Przelewy24StandIn(ServedStandIn):
    thread_name = "p24-standin"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        merchant_id: int = MERCHANT_ID,
        pos_id: int = POS_ID,
        api_key: str = API_KEY,
        crc: str = CRC,
        reverify: str = "refuse",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if reverify not in REVERIFY:
            raise ValueError(f"reverify must be one of {REVERIFY}")
        self.merchant_id = merchant_id
        self.pos_id = pos_id
        self.api_key = api_key
        self.crc = crc
        self.reverify = reverify
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
            self._transactions: dict[str, Transaction] = {}
            self._by_order: dict[int, str] = {}
            self._order_ids = itertools.count(FIRST_ORDER_ID)
            self._requests = 0
            self._verify_requests = 0
            self._verify_refused = 0
            self._rate_limited = 0
            self._rejected = 0
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

    def configure(self, *, reverify: str | None = None) -> dict[str, Any]:
        with self._lock:
            if reverify is not None:
                if reverify not in REVERIFY:
                    raise ValueError(f"reverify must be one of {REVERIFY}")
                self.reverify = reverify
            return self.settings()

    def settings(self) -> dict[str, Any]:
        return {"reverify": self.reverify, "merchant_id": self.merchant_id, "pos_id": self.pos_id}

    def register(
        self,
        session_id: str,
        amount: int,
        *,
        currency: str = "PLN",
        description: str = "",
        email: str = "klient@example.pl",
        url_status: str | None = None,
    ) -> dict[str, Any]:
        """Register a transaction as the shop would (without a sign: a test's or the demo's shop).
        ValueError for a session already registered or a field P24 would refuse."""
        problems = _register_problems(
            {
                "merchantId": self.merchant_id,
                "posId": self.pos_id,
                "sessionId": session_id,
                "amount": amount,
                "currency": currency,
                "description": description or f"Order {session_id}"[:1024],
                "email": email,
                "country": "PL",
                "language": "pl",
                "urlReturn": "https://sklep.example.pl/zamowienie/",
                "urlStatus": url_status,
                "sign": "",
            }
        )
        if problems:
            raise ValueError("; ".join(problems))
        with self._lock:
            if session_id in self._transactions:
                raise ValueError(f"sessionId {session_id!r} is already registered")
            t = self._add(session_id, amount, currency, description or f"Order {session_id}", email, url_status)
            return {"token": t.token, "sessionId": t.session_id}

    def pay(self, session_id: str, *, amount: int | None = None, method_id: int = DEFAULT_METHOD_ID) -> dict[str, Any]:
        """The customer pays a registered transaction: P24 gives it an ``orderId`` (once) and holds
        the money as an advance payment until the shop verifies. Returns the notification P24 posts
        to ``urlStatus``. KeyError for an unregistered session; ValueError for a bad amount."""
        with self._lock:
            t = self._transactions[session_id]
            if t.order_id is None:
                paid = t.amount if amount is None else amount
                if isinstance(paid, bool) or not isinstance(paid, int) or paid <= 0:
                    raise ValueError("amount must be a positive integer (minor units)")
                t.order_id = next(self._order_ids)
                self._by_order[t.order_id] = session_id
                t.paid_amount = paid
                t.method_id = method_id
                t.statement = f"p24-{t.order_id % 1_000_000:06d}-{session_id[:20]}"
                t.status = ADVANCE_PAYMENT
                t.paid_at = self._clock()
            return t.notification(self.crc, self.merchant_id, self.pos_id)

    def notification(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            return self._transactions[session_id].notification(self.crc, self.merchant_id, self.pos_id)

    def transactions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {**t.doc(), "registeredAmount": t.amount, "verifications": t.verifications, "token": t.token}
                for t in self._transactions.values()
            ]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            values = list(self._transactions.values())
            return {
                "registered": len(values),
                "paid": sum(1 for t in values if t.status in (ADVANCE_PAYMENT, PAYMENT_MADE)),
                "verified": sum(1 for t in values if t.status == PAYMENT_MADE),
                "verify_requests": self._verify_requests,
                "verify_refused": self._verify_refused,
                "verify_successes": sum(t.verifications for t in values),
                "requests": self._requests,
                "rate_limited": self._rate_limited,
                "rejected_by_behaviour": self._rejected,
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"summary": self.summary(), "behaviour": self.behaviour.__dict__, "settings": self.settings()}

    # -- internals (callers hold the lock) ---------------------------------------------------
    def _add(
        self, session_id: str, amount: int, currency: str, description: str, email: str, url_status: str | None
    ) -> Transaction:
        t = Transaction(
            session_id=session_id,
            amount=amount,
            currency=currency,
            description=description,
            email=email,
            url_status=url_status,
            token=uuid.uuid4().hex[:10].upper() + "-" + uuid.uuid4().hex[:10].upper(),
            registered_at=self._clock(),
        )
        self._transactions[session_id] = t
        return t

    def _misbehave(self, method: str) -> Answer | float | None:
        with self._lock:
            b = self.behaviour
            if b.mode == "ok" or (b.mode == "accept_then_hang" and method not in ("PUT", "POST")):
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
            return 429, {"Retry-After": str(retry_after)}, {"error": "Too many requests", "code": 429}
        return 503, {}, {"error": "Service unavailable", "code": 503}

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        if path.startswith("/_standin/"):
            return self._control(method, path, raw)
        with self._lock:
            self._requests += 1
        forced = self._misbehave(method)
        if isinstance(forced, tuple):
            return forced
        answer = self._authorised(method, path, headers, raw)
        if forced is not None:
            self._stop_hanging.wait(forced)
        return answer

    def _authorised(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        if not self._authenticated(headers.get("authorization", "")):
            return 401, {"WWW-Authenticate": 'Basic realm="Przelewy24"'}, _error("Incorrect authentication", 401)
        if path == "/api/v1/testAccess" and method == "GET":
            return 200, {}, {"data": True, "error": ""}
        if path.startswith("/api/v1/transaction/by/sessionId/") and method == "GET":
            return self._by_session(path[len("/api/v1/transaction/by/sessionId/") :])
        if path in ("/api/v1/transaction/register", "/api/v1/transaction/verify"):
            expected = "POST" if path.endswith("register") else "PUT"
            if method != expected:
                return 405, {}, _error("Method Not Allowed", 405)
            if "application/json" not in headers.get("content-type", ""):
                return 415, {}, _error("Unsupported Media Type", 415)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return 400, {}, _error("Invalid input data", 400)
            if not isinstance(body, dict):
                return 400, {}, _error("Invalid input data", 400)
            return self._register(body) if expected == "POST" else self._verify(body)
        return 404, {}, _error("Not Found", 404)

    def _authenticated(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, ValueError):
            return False
        return login == str(self.pos_id) and password == self.api_key

    def _register(self, body: dict[str, Any]) -> Answer:
        problems = _register_problems(body)
        if problems:
            return 400, {}, _error("Invalid input data: " + "; ".join(problems), 400)
        if body["merchantId"] != self.merchant_id or body["posId"] != self.pos_id:
            return 400, {}, _error("Invalid input data: merchantId or posId", 400)
        if body["sign"] != sign_register(body, self.crc):
            return 400, {}, _error("Incorrect sign", 400)
        with self._lock:
            if body["sessionId"] in self._transactions:
                return 400, {}, _error("Transaction with this sessionId already exists", 400)
            t = self._add(
                body["sessionId"],
                body["amount"],
                body["currency"],
                body["description"],
                body["email"],
                body.get("urlStatus"),
            )
            return 200, {}, {"data": {"token": t.token}, "responseCode": 0}

    def _verify(self, body: dict[str, Any]) -> Answer:
        with self._lock:
            self._verify_requests += 1
            answer = self._verify_locked(body)
            if answer[0] != 200:
                self._verify_refused += 1
            return answer

    def _verify_locked(self, body: dict[str, Any]) -> Answer:
        for name in ("merchantId", "posId", "amount", "orderId"):
            value = body.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                return 400, {}, _error(f"Invalid input data: {name}", 400)
        for name in ("sessionId", "currency", "sign"):
            if not isinstance(body.get(name), str):
                return 400, {}, _error(f"Invalid input data: {name}", 400)
        if body["merchantId"] != self.merchant_id or body["posId"] != self.pos_id:
            return 400, {}, _error("Invalid input data: merchantId or posId", 400)
        if body["sign"] != sign_verify(body, self.crc):
            return 400, {}, _error("Incorrect sign", 400)
        t = self._transactions.get(body["sessionId"])
        if t is None or t.order_id is None or t.order_id != body["orderId"]:
            return 400, {}, _error("Transaction not found", 400)
        if body["amount"] != t.paid_amount or body["currency"] != t.currency:
            return 400, {}, _error("Invalid amount or currency", 400)
        if t.status == PAYMENT_MADE:
            if self.reverify == "refuse":
                return 400, {}, _error("Transaction already verified", 400)
            t.verifications += 1
            return 200, {}, {"data": {"status": "success"}, "responseCode": 0}
        if t.status != ADVANCE_PAYMENT:
            return 400, {}, _error("Transaction not paid", 400)
        t.status = PAYMENT_MADE
        t.verified_at = self._clock()
        t.verifications += 1
        return 200, {}, {"data": {"status": "success"}, "responseCode": 0}

    def _by_session(self, session_id: str) -> Answer:
        with self._lock:
            t = self._transactions.get(session_id)
            if t is None:
                return 404, {}, _error("Transaction not exist", 404)
            return 200, {}, {"data": t.doc(), "responseCode": 0}

    def _control(self, method: str, path: str, raw: bytes) -> Answer:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {}, {"error": "body is not JSON"}
        if method == "GET" and path == "/_standin/state":
            return 200, {}, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, {}, self.summary()
        if method == "GET" and path == "/_standin/transactions":
            return 200, {}, {"transactions": self.transactions()}
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
                unknown = set(body) - {"reverify"}
                if unknown:
                    return 400, {}, {"error": f"unknown settings {sorted(unknown)}"}
                return 200, {}, self.configure(**body)
            if path == "/_standin/register":
                return (
                    200,
                    {},
                    self.register(
                        str(body.get("sessionId")),
                        body.get("amount"),  # type: ignore[arg-type]  # checked by register
                        currency=str(body.get("currency", "PLN")),
                        description=str(body.get("description", "")),
                        email=str(body.get("email", "klient@example.pl")),
                        url_status=body.get("urlStatus"),
                    ),
                )
            if path == "/_standin/pay":
                paid = body.get("amount")
                register = body.get("register")  # {amount, currency, urlStatus}: register it first if new
                if isinstance(register, dict):
                    with self._lock:
                        held = str(body.get("sessionId")) in self._transactions
                    if not held:
                        self.register(
                            str(body.get("sessionId")),
                            register.get("amount"),  # type: ignore[arg-type]  # checked by register
                            currency=str(register.get("currency", "PLN")),
                            url_status=register.get("urlStatus"),
                        )
                return (
                    200,
                    {},
                    self.pay(
                        str(body.get("sessionId")),
                        amount=paid,
                        method_id=int(body.get("methodId", DEFAULT_METHOD_ID)),
                    ),
                )
            if path == "/_standin/notification":
                return 200, {}, self.notification(str(body.get("sessionId")))
        except KeyError as exc:
            return 404, {}, {"error": f"no transaction {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {}, {"error": str(exc)}
        return 404, {}, {"error": "unknown control endpoint"}


def _register_problems(body: dict[str, Any]) -> list[str]:
    """What P24 would refuse in a registration body (the sign is checked apart)."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for name in ("merchantId", "posId", "amount"):
        value = body.get(name)
        need(not isinstance(value, bool) and isinstance(value, int) and value > 0, f"{name} must be a positive integer")
    session_id = body.get("sessionId")
    need(
        isinstance(session_id, str) and 1 <= len(session_id) <= SESSION_ID_MAX and session_id.isprintable(),
        f"sessionId must be 1-{SESSION_ID_MAX} characters",
    )
    need(body.get("currency") in CURRENCIES, "currency is not supported")
    description = body.get("description")
    need(isinstance(description, str) and 1 <= len(description) <= 1024, "description must be 1-1024 characters")
    email = body.get("email")
    need(isinstance(email, str) and 3 <= len(email) <= 50 and "@" in email, "email is not valid")
    country = body.get("country")
    need(isinstance(country, str) and len(country) == 2 and country.isalpha(), "country must be an ISO code")
    need(body.get("language") in LANGUAGES, "language is not supported")
    for name in ("urlReturn", "urlStatus"):
        value = body.get(name)
        if name == "urlStatus" and value is None:
            continue
        need(isinstance(value, str) and 1 <= len(value) <= 250, f"{name} must be 1-250 characters")
    need(isinstance(body.get("sign"), str), "sign is required")
    return problems


def _error(message: str, code: int) -> dict[str, Any]:
    return {"error": message, "code": code}


def _p24_date(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch or 0, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _handler_for(standin: Przelewy24StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = standin.handle(self.command, unquote(parts.path), headers, raw)
            body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
            self.reply(status, dict(extra), body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.przelewy24_api --port 8097``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="Przelewy24 REST API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--reverify", choices=REVERIFY, default="refuse", help="a second verify: refused, or 200")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = Przelewy24StandIn(args.host, args.port, reverify=args.reverify)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The przelewy24-api secret's value for a stand-in listening on ``root_url``."""
    return {
        "base_url": root_url,
        "merchant_id": str(MERCHANT_ID),
        "pos_id": str(POS_ID),
        "api_key": API_KEY,
        "crc": CRC,
    }


LOCAL = TargetStandIn(
    system="przelewy24",
    module="junction_local.standins.przelewy24_api",
    fills="przelewy24-api",
    credentials=_credentials,
    health_path="/_standin/state",
    effect_count="verified",
)


if __name__ == "__main__":
    main()
