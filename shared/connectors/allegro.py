"""Allegro REST API: offers' stock through batch quantity change commands (docs/allegro-contract.md).

- OAuth: the seller's authorisation lives in the ``allegro-api`` secret as a refresh token.
  Allegro rotates it on every use (the old one works 60 s more, then never) and ends the previous
  access token, so the secret is the only copy: a refreshed pair is written back to it before the
  new access token is used. Several invocations share the secret; one refused by a rotation
  another made reads the secret again and carries on with what that one stored.
- Stock: ``PUT /sale/offer-quantity-change-commands/{commandId}`` sets one quantity for up to 1000
  offers. The command id is the caller's (a UUID derived from what it changes), so a retry sends
  the same command again and Allegro applies nothing twice. Commands run asynchronously: their
  summary counts zeros until Allegro starts them; failed offers are read from the task report.
- Allegro sets no quantity below 1: an offer without stock is ended with a publication command
  (``PUT /sale/offer-publication-commands/{commandId}``, END) and activated again (ACTIVATE)
  after its quantity is set; an ended offer's quantity can be set.
- Orders: ``GET /order/events`` is a journal of what buyers did (oldest first, kept 60 days,
  read on from an event id); ``GET /order/event-stats`` names its latest event, where a reader
  that wants nothing older starts; ``GET /order/checkout-forms/{id}`` is the order itself, which
  ``order_from_checkout_form`` maps to the canonical ``Order``.
- Errors are classified by status and Allegro's error codes, never by message text.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    IdempotencyConflict,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
    ValidationFailed,
)
from shared.http import DEFAULT_TIMEOUT, client, retry_after_seconds, transport_error
from shared.models import Address, Customer, Money, Order, OrderLine, ShippingLine

TARGET = "allegro"
MEDIA_TYPE = "application/vnd.allegro.public.v1+json"
MAX_OFFERS_PER_COMMAND = 1000  # "W pojedynczym wywołaniu możesz wyedytować do 1000 ofert"
MAX_PAGE_LIMIT = 1000  # GET /sale/offers and command tasks take limit 1..1000
MIN_QUANTITY = 1  # FIXED below 1 fails: an offer without stock is ended, not set to 0
MAX_QUANTITY = 99_999  # an offer's stock cannot exceed 99 999
BLOCK_SECONDS = 60.0  # over 9000 requests a minute, the client id is blocked for a minute
TOKEN_MARGIN_SECONDS = 300.0  # refresh this long before the access token expires
CONFLICT = "COMMAND_ALREADY_REGISTERED_WITH_DIFFERENT_CONTENT"
COMMANDS = "/sale/offer-quantity-change-commands/"
PUBLICATIONS = "/sale/offer-publication-commands/"
PUBLICATION_ACTIONS = ("ACTIVATE", "END")
ORDER_EVENTS = "/order/events"
ORDER_EVENT_STATS = "/order/event-stats"
CHECKOUT_FORMS = "/order/checkout-forms/"
MAX_EVENTS_LIMIT = 1000  # GET /order/events takes limit 1..1000 (default 100)
# The checkout form's top-level fields as the OpenAPI file documents them: anything else is a
# change of shape to look at before it changes what Junction reads.
CHECKOUT_FORM_FIELDS = frozenset(
    {
        "id",
        "messageToSeller",
        "buyer",
        "payment",
        "status",
        "fulfillment",
        "delivery",
        "invoice",
        "lineItems",
        "surcharges",
        "discounts",
        "note",
        "marketplace",
        "summary",
        "updatedAt",
        "revision",
    }
)
# Command ids derived with ``derive_command_id`` live in this namespace.
COMMAND_NAMESPACE = uuid.UUID("6f1c4a52-2c1e-4e55-9d0f-2b8f5e1a7c3d")


@dataclass(frozen=True)
class AllegroSettings:
    api_url: str  # https://api.allegro.pl
    auth_url: str  # https://allegro.pl/auth/oauth
    client_id: str
    client_secret: str = field(repr=False)  # never in a log line or a traceback's locals
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    access_token_expires_at: float | None = None  # epoch seconds

    @classmethod
    def from_secret(cls, doc: Any) -> AllegroSettings:
        try:
            expires = doc.get("access_token_expires_at")
            return cls(
                api_url=str(doc["api_url"]).rstrip("/"),
                auth_url=str(doc["auth_url"]).rstrip("/"),
                client_id=str(doc["client_id"]),
                client_secret=str(doc["client_secret"]),
                refresh_token=str(doc["refresh_token"]),
                access_token=str(doc["access_token"]) if doc.get("access_token") else None,
                access_token_expires_at=_number(expires),
            )
        except (KeyError, TypeError, AttributeError):
            raise ConfigurationError(
                "Allegro secret must hold api_url, auth_url, client_id, client_secret and refresh_token"
            ) from None


@dataclass(frozen=True)
class CommandStatus:
    id: str
    total: int  # 0 until Allegro starts the command
    success: int
    failed: int
    done: bool  # every task has finished, successfully or not


@dataclass(frozen=True)
class TaskFailure:
    offer_id: str
    code: str  # Allegro's error code, e.g. OfferNotFoundException, INVALID_OFFER_QUANTITY
    message: str


class CheckoutFormNotFound(TargetRejected):
    """Allegro does not serve this checkout form (any more): reading it again cannot help."""

    reason = "checkout_form_not_found"


class UnmappedSku(ValidationFailed):
    """A line item whose offer carries no external id: Junction cannot tell which SKU was sold."""

    reason = "unmapped_sku"


SecretSource = Callable[[bool], Mapping[str, Any]]  # refresh -> the secret (read from the store when True)
SecretStore = Callable[[dict[str, Any]], None]  # writes the whole secret document back


def derive_command_id(key: str) -> str:
    """A command id that is the same for the same ``key``: a retry re-sends the same command."""
    if not key:
        raise ValueError("a command id needs a non-empty key")
    return str(uuid.uuid5(COMMAND_NAMESPACE, key))


class AllegroClient:
    """``source(refresh)`` returns the ``allegro-api`` secret (``refresh=True`` bypasses caches);
    ``store(doc)`` writes it back whole (Secrets Manager PutSecretValue in AWS)."""

    def __init__(
        self,
        source: SecretSource,
        store: SecretStore,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._clock = clock
        self._lock = threading.RLock()  # one refresh at a time: a refresh token is single-use
        self._local = threading.local()
        self._unstored: dict[str, Any] | None = None  # a refreshed pair the store has not taken yet
        self._adopt(self._read(False))
        self.http = http or client(DEFAULT_TIMEOUT)

    @contextmanager
    def bounded(self, timeout: Callable[[float], float]) -> Iterator[None]:
        """Within the block, every call's timeout is ``timeout(default)``: a delivery passes its
        ``Attempt.timeout`` so its calls end before the invocation does."""
        outer = getattr(self._local, "timeout", None)
        self._local.timeout = timeout
        try:
            yield
        finally:
            self._local.timeout = outer

    @contextmanager
    def _within(self, timeout: float | None) -> Iterator[None]:
        """Every call in the block waits at most ``timeout`` seconds (and no longer than an
        enclosing ``bounded`` allows)."""
        if timeout is None:
            yield
            return
        outer = getattr(self._local, "timeout", None)
        ceiling = max(timeout, 0.1)

        def bound(wanted: float) -> float:
            return min(outer(wanted) if outer else wanted, ceiling)

        self._local.timeout = bound
        try:
            yield
        finally:
            self._local.timeout = outer

    def close(self) -> None:
        self.http.close()

    # -- stock -----------------------------------------------------------------------------
    def change_quantity(
        self, command_id: str, offer_ids: Sequence[str], quantity: int, *, ids: dict[str, str] | None = None
    ) -> CommandStatus:
        """Set the stock of ``offer_ids`` to ``quantity`` with one command. Sending the same
        command again changes nothing; the same id with other offers or another quantity is
        ``IdempotencyConflict``. Bad input (more than 1000 offers, a quantity Allegro cannot
        set) is ``ValueError`` before anything is sent."""
        _check_command_id(command_id)
        offers = _check_offer_ids(offer_ids)
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise ValueError("quantity must be an integer")
        if not MIN_QUANTITY <= quantity <= MAX_QUANTITY:
            raise ValueError(
                f"Allegro sets a quantity between {MIN_QUANTITY} and {MAX_QUANTITY}, not {quantity}; "
                "an offer without stock is ended instead"
            )
        modification = {"changeType": "FIXED", "value": quantity}
        return self._put(COMMANDS, command_id, {"modification": modification, **_criteria(offers)}, ids)

    def command(self, command_id: str, *, ids: dict[str, str] | None = None) -> CommandStatus:
        """The command's summary; an unknown id is ``TargetRejected`` with COMMAND_NOT_FOUND."""
        return self._summary(COMMANDS, command_id, ids)

    def failed_tasks(self, command_id: str, *, ids: dict[str, str] | None = None) -> list[TaskFailure]:
        """The offers the command could not change, with Allegro's reason, from every page of
        its task report."""
        return self._failures(COMMANDS, command_id, ids)

    # -- publication (an offer without stock is ended; activated again once it has stock) --
    def change_publication(
        self, command_id: str, offer_ids: Sequence[str], action: str, *, ids: dict[str, str] | None = None
    ) -> CommandStatus:
        """END or ACTIVATE the offers with one command (``PUT /sale/offer-publication-commands``),
        idempotent by its id like ``change_quantity``. Allegro activates an ended offer only
        once it has stock: set the quantity first."""
        _check_command_id(command_id)
        offers = _check_offer_ids(offer_ids)
        if action not in PUBLICATION_ACTIONS:
            raise ValueError(f"action must be one of {PUBLICATION_ACTIONS}, not {action!r}")
        return self._put(PUBLICATIONS, command_id, {"publication": {"action": action}, **_criteria(offers)}, ids)

    def publication(self, command_id: str, *, ids: dict[str, str] | None = None) -> CommandStatus:
        return self._summary(PUBLICATIONS, command_id, ids)

    def failed_publication_tasks(self, command_id: str, *, ids: dict[str, str] | None = None) -> list[TaskFailure]:
        return self._failures(PUBLICATIONS, command_id, ids)

    # -- commands --------------------------------------------------------------------------
    def _put(self, kind: str, command_id: str, body: dict[str, Any], ids: dict[str, str] | None) -> CommandStatus:
        ids = ids or {"command_id": command_id}
        response = self._request("PUT", kind + command_id, ids, body=body, accept=(409,))
        if response.status_code == 409:
            raise IdempotencyConflict(
                "Allegro holds this command id with other content",
                entity_ids=ids,
                details={"status": 409, "target": TARGET, "codes": _codes(response) or [CONFLICT]},
            )
        return _status(response, ids)

    def _summary(self, kind: str, command_id: str, ids: dict[str, str] | None) -> CommandStatus:
        _check_command_id(command_id)
        ids = ids or {"command_id": command_id}
        return _status(self._request("GET", kind + command_id, ids), ids)

    def _failures(self, kind: str, command_id: str, ids: dict[str, str] | None) -> list[TaskFailure]:
        _check_command_id(command_id)
        ids = ids or {"command_id": command_id}
        failures: list[TaskFailure] = []
        offset = 0
        while True:
            params = {"limit": MAX_PAGE_LIMIT, "offset": offset}
            tasks = _list(self._request("GET", kind + command_id + "/tasks", ids, params=params), "tasks", ids)
            for task in tasks:
                if isinstance(task, dict) and task.get("status") == "FAIL":
                    failures.append(_failure(task))
            offset += len(tasks)
            if len(tasks) < MAX_PAGE_LIMIT:
                return failures

    def offers(
        self, page_size: int = MAX_PAGE_LIMIT, *, ids: dict[str, str] | None = None
    ) -> Iterator[tuple[str, str]]:
        """(SKU, offer id) of every ACTIVE offer that has an external id, each once.

        Pages through all offers, not only ACTIVE ones: an offer ending while we page would
        shift a status-filtered list and hide the next one; a new offer shifts this list the
        other way, and the repeat it causes is dropped."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_LIMIT:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_LIMIT}")
        ids = ids or {}
        seen: set[str] = set()
        offset = 0
        while True:
            response = self._request("GET", "/sale/offers", ids, params={"limit": page_size, "offset": offset})
            offers = _list(response, "offers", ids)
            total = response.json().get("totalCount")
            for doc in offers:
                if not isinstance(doc, dict) or doc.get("id") is None:
                    continue
                offer_id = str(doc["id"])
                if offer_id in seen:
                    continue
                seen.add(offer_id)
                external = doc.get("external")
                sku = external.get("id") if isinstance(external, dict) else None
                publication = doc.get("publication")
                status = publication.get("status") if isinstance(publication, dict) else None
                if status == "ACTIVE" and isinstance(sku, str) and sku:
                    yield sku, offer_id
            offset += len(offers)
            if not offers or not isinstance(total, int) or offset >= total:
                return

    # -- orders ----------------------------------------------------------------------------
    def order_event_stats(self, timeout: float | None = None) -> dict[str, Any]:
        """``{"latestEvent": {"id", "occurredAt"}}``: the starting point for a reader that wants
        nothing older. ``latestEvent`` is null while the seller has no events."""
        ids: dict[str, str] = {}
        with self._within(timeout):
            body = _object(self._request("GET", ORDER_EVENT_STATS, ids), ids)
        latest = body.get("latestEvent")
        if latest is not None and not (isinstance(latest, dict) and _text(latest.get("id"))):
            raise TargetUnavailable(
                "Allegro answered event stats without the latest event's id", details={"target": TARGET}
            )
        return body

    def order_events(self, from_id: str | None, limit: int, timeout: float | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` events after ``from_id`` (exclusive; None: the oldest Allegro keeps),
        oldest first. Every event has a string ``id``: the position to read on from."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_EVENTS_LIMIT}")
        if from_id is not None and not _text(from_id):
            raise ValueError("from_id must be a non-empty event id or None")
        ids = {"from_event_id": from_id} if from_id else {}
        params: dict[str, Any] = {"limit": limit, **({"from": from_id} if from_id else {})}
        with self._within(timeout):
            events = _list(self._request("GET", ORDER_EVENTS, ids, params=params), "events", ids)
        if not all(isinstance(e, dict) and _text(e.get("id")) for e in events):
            raise TargetUnavailable(
                "Allegro answered an event without an id", entity_ids=ids, details={"target": TARGET}
            )
        return events

    def checkout_form(self, form_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The order as it is now. One Allegro does not serve is ``CheckoutFormNotFound``."""
        if not _text(form_id):
            raise ValueError("form_id must be a non-empty checkout form id")
        ids = {"checkout_form_id": form_id}
        with self._within(timeout):
            response = self._request("GET", CHECKOUT_FORMS + quote(form_id, safe=""), ids, accept=(404,))
        if response.status_code == 404:
            raise CheckoutFormNotFound(
                "Allegro has no such checkout form",
                entity_ids=ids,
                details={"status": 404, "target": TARGET, "codes": _codes(response)},
            )
        return _object(response, ids)

    # -- transport -------------------------------------------------------------------------
    def _timeout(self) -> httpx.Timeout:
        bound = getattr(self._local, "timeout", None)
        configured = self.http.timeout
        read = configured.read or 10.0
        seconds = bound(read) if bound else read
        return httpx.Timeout(seconds, connect=min(seconds, configured.connect or 3.0))

    def _send(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        token: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": MEDIA_TYPE}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = MEDIA_TYPE
        try:
            return self.http.request(
                method,
                self.settings.api_url + path,
                params=params,
                content=content,
                headers=headers,
                timeout=self._timeout(),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc

    def _request(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send with a valid access token; one that Allegro refuses (a newer pair ended it, or
        it expired early) is replaced once. Statuses in ``accept`` are returned unclassified."""
        token = self._access_token(ids)
        response = self._send(method, path, ids, token, params=params, body=body)
        if response.status_code == 401:
            token = self._replace(token, ids)
            response = self._send(method, path, ids, token, params=params, body=body)
            if response.status_code == 401:
                raise CredentialsRejected(
                    "Allegro refused a fresh access token: check the allegro-api secret",
                    entity_ids=ids,
                    details={"status": 401, "target": TARGET, "error": _oauth_error(response)},
                )
        if response.status_code not in accept:
            _classify(response, ids)
        return response

    # -- OAuth -----------------------------------------------------------------------------
    def _read(self, refresh: bool) -> dict[str, Any]:
        doc = self._source(refresh)
        if not isinstance(doc, Mapping):
            raise ConfigurationError("Allegro secret must be a JSON object")
        return dict(doc)

    def _adopt(self, doc: dict[str, Any]) -> None:
        self.settings = AllegroSettings.from_secret(doc)
        self._doc = doc

    def _usable(self, avoid: tuple[str | None, ...] = ()) -> str | None:
        """The held access token if it is valid for a while yet and not one known to be refused."""
        s = self.settings
        if not s.access_token or s.access_token in avoid or s.access_token_expires_at is None:
            return None
        return s.access_token if s.access_token_expires_at - TOKEN_MARGIN_SECONDS > self._clock() else None

    def _access_token(self, ids: dict[str, str]) -> str:
        """The held access token while it is valid. Else the secret is read again first: another
        invocation may have refreshed already, and refreshing again would end its pair."""
        with self._lock:
            if self._unstored is not None:  # never use a pair the secret does not hold
                self._keep(self._unstored)
            held = self._usable()
            if held is not None:
                return held
            self._adopt(self._read(True))
            return self._usable() or self._refresh(ids)

    def _replace(self, refused: str, ids: dict[str, str]) -> str:
        """Allegro refused ``refused``: take a newer token another thread or invocation stored,
        else refresh."""
        with self._lock:
            held = self._usable(avoid=(refused,))
            if held is not None:
                return held
            self._adopt(self._read(True))
            return self._usable(avoid=(refused,)) or self._refresh(ids, avoid=(refused,))

    def _refresh(self, ids: dict[str, str], avoid: tuple[str | None, ...] = ()) -> str:
        """A new pair for the held refresh token. Refused (another invocation rotated it, or the
        secret was replaced), the secret is read again once: its access token is used if valid,
        else its refresh token; refused again, it is ``CredentialsRejected``."""
        used = self.settings
        response = self._grant(used, ids)
        if _refused(response):
            self._adopt(self._read(True))
            held = self._usable(avoid=(*avoid, used.access_token))
            if held is not None:
                return held
            fresh = self.settings
            same = (fresh.refresh_token, fresh.client_id, fresh.client_secret) == (
                used.refresh_token,
                used.client_id,
                used.client_secret,
            )
            if not same:
                response = self._grant(fresh, ids)
            if same or _refused(response):
                raise CredentialsRejected(
                    "Allegro refused the refresh token: authorise the application again",
                    entity_ids=ids,
                    details={"status": response.status_code, "target": TARGET, "error": _oauth_error(response)},
                )
        return self._accept_grant(response, ids)

    def _grant(self, s: AllegroSettings, ids: dict[str, str]) -> httpx.Response:
        try:
            response = self.http.post(
                s.auth_url + "/token",
                data={"grant_type": "refresh_token", "refresh_token": s.refresh_token},
                auth=(s.client_id, s.client_secret),
                headers={"Accept": "application/json"},
                timeout=self._timeout(),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc
        if response.status_code == 429:
            _classify(response, ids)
        if response.status_code >= 500 or response.status_code == 408:
            raise TargetUnavailable(
                f"Allegro's token endpoint unavailable ({response.status_code})",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                entity_ids=ids,
                details={"status": response.status_code, "target": TARGET},
            )
        return response

    def _accept_grant(self, response: httpx.Response, ids: dict[str, str]) -> str:
        try:
            payload = response.json()
            access = str(payload["access_token"])
            refresh = str(payload["refresh_token"])
            lifetime = float(payload["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise TargetUnavailable(
                "Allegro's token endpoint answered without a token pair",
                entity_ids=ids,
                details={"status": response.status_code, "target": TARGET},
            ) from None
        doc = {
            **self._doc,
            "access_token": access,
            "access_token_expires_at": self._clock() + lifetime,
            "refresh_token": refresh,
        }
        self._keep(doc)
        return access

    def _keep(self, doc: dict[str, Any]) -> None:
        """Store the pair, then hold it. The old refresh token is spent: if the store fails the
        pair is kept aside and stored before any use, so it is never lost while in use."""
        self._unstored = doc
        self._store(dict(doc))
        self._unstored = None
        self._adopt(doc)


def _refused(response: httpx.Response) -> bool:
    """The token endpoint refused the grant or the client: 400 (``invalid_grant`` and the other
    OAuth errors), 401 (client credentials), any other 4xx but 408 and 429 (handled before)."""
    return 400 <= response.status_code < 500


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


def _codes(response: httpx.Response) -> list[str]:
    """Allegro's error codes from ``{"errors": [{"code": ...}]}``."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return []
    if not isinstance(errors, list):
        return []
    return [str(e["code"]) for e in errors if isinstance(e, dict) and e.get("code")]


def _classify(response: httpx.Response, ids: dict[str, str]) -> None:
    """Raise the right error for a failed response, with Allegro's error codes in ``details``."""
    status = response.status_code
    if status < 400:
        return
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    details: dict[str, Any] = {"status": status, "target": TARGET, "codes": _codes(response)}
    if status == 429:
        # Allegro says how long to wait; without a Retry-After, assume the documented block of a
        # client id over its request limit (a minute). The offer-change limit's 429 names the
        # seconds until the changes fit the window, often far less.
        raise RateLimited(
            f"{TARGET} rate limited (429)",
            retry_after=retry_after if retry_after is not None else BLOCK_SECONDS,
            entity_ids=ids,
            details=details,
        )
    if status >= 500 or status == 408:
        raise TargetUnavailable(
            f"{TARGET} unavailable ({status})", retry_after=retry_after, entity_ids=ids, details=details
        )
    raise TargetRejected(f"{TARGET} rejected the request ({status})", entity_ids=ids, details=details)


def _status(response: httpx.Response, ids: dict[str, str]) -> CommandStatus:
    try:
        payload = response.json()
        counts = payload["taskCount"]
        total, success, failed = int(counts["total"]), int(counts["success"]), int(counts["failed"])
        command_id = str(payload["id"])
    except (ValueError, KeyError, TypeError):
        raise TargetUnavailable(
            "Allegro answered a command without its task count",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        ) from None
    return CommandStatus(command_id, total, success, failed, done=total > 0 and success + failed >= total)


def _list(response: httpx.Response, key: str, ids: dict[str, str]) -> list[Any]:
    try:
        items = response.json()[key]
    except (ValueError, KeyError, TypeError):
        items = None
    if not isinstance(items, list):
        raise TargetUnavailable(
            f"Allegro answered without {key!r}",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return items


def _object(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TargetUnavailable(
            "Allegro answered without a JSON object",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return body


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _failure(task: dict[str, Any]) -> TaskFailure:
    offer = task.get("offer")
    offer_id = str(offer.get("id")) if isinstance(offer, dict) else ""
    errors = task.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    message = str(task.get("message") or "")
    return TaskFailure(offer_id, str(first.get("code") or message or "FAIL"), str(first.get("message") or message))


def _criteria(offers: list[str]) -> dict[str, Any]:
    return {"offerCriteria": [{"type": "CONTAINS_OFFERS", "offers": [{"id": o} for o in offers]}]}


def _check_command_id(command_id: str) -> None:
    try:
        canonical = str(uuid.UUID(command_id))
    except (ValueError, TypeError, AttributeError):
        canonical = None
    if canonical is None or canonical != command_id.lower():
        raise ValueError(f"command id must be a UUID (see derive_command_id), not {command_id!r}")


def _check_offer_ids(offer_ids: Sequence[str]) -> list[str]:
    if isinstance(offer_ids, str):
        raise ValueError("offer_ids must be a sequence of offer ids, not one string")
    offers = list(offer_ids)
    if not offers:
        raise ValueError("a command needs at least one offer")
    if len(offers) > MAX_OFFERS_PER_COMMAND:
        raise ValueError(f"a command changes at most {MAX_OFFERS_PER_COMMAND} offers, not {len(offers)}")
    bad = next((o for o in offers if not (isinstance(o, str) and o.isascii() and o.isdigit())), None)
    if bad is not None:
        raise ValueError(f"offer ids are numeric strings, not {bad!r}")
    if len(set(offers)) != len(offers):
        raise ValueError("an offer is named more than once")
    return offers


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- orders: checkout form -> canonical Order ------------------------------------------------
def unknown_checkout_form_fields(form: Mapping[str, Any]) -> list[str]:
    """Top-level fields the documented checkout form does not have: Allegro changed its shape."""
    return sorted(str(k) for k in form if k not in CHECKOUT_FORM_FIELDS)


def order_from_checkout_form(form: Any) -> Order:
    """The canonical order of a checkout form. Allegro's prices are gross and already discounted,
    so a line's unit price is what the buyer pays for one, and the total is ``totalToPay``. A line
    whose offer has no external id is ``UnmappedSku``; anything else invalid is
    ``ValidationFailed``, naming fields and ids, never the buyer's data."""
    if not isinstance(form, dict) or not _text(form.get("id")):
        raise ValidationFailed("payload is not an Allegro checkout form")
    form_id = str(form["id"])
    ids = {"checkout_form_id": form_id}
    try:
        return _order(form, form_id)
    except ValidationFailed:
        raise
    except ValidationError as exc:
        # Field paths and error types only: pydantic's messages can quote personal data.
        fields = sorted({".".join(str(p) for p in e["loc"]) + ":" + e["type"] for e in exc.errors()})
        raise ValidationFailed(f"invalid checkout form: {', '.join(fields)[:500]}", entity_ids=ids) from None
    except _Invalid as exc:
        raise ValidationFailed(f"invalid checkout form: {exc}"[:500], entity_ids=ids) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationFailed(f"invalid checkout form: {type(exc).__name__}", entity_ids=ids) from None


class _Invalid(ValueError):
    """A field the mapping cannot read; its message names the field, never its value."""


def _order(form: dict[str, Any], form_id: str) -> Order:
    total = _price(_mapping(form.get("summary")).get("totalToPay"), "summary.totalToPay")
    currency = total.currency
    items = form.get("lineItems")
    if not isinstance(items, list) or not items:
        raise _Invalid("lineItems is empty")
    lines = tuple(_line(item, n, form_id, currency) for n, item in enumerate(items))
    subtotal = sum((line.unit_price.amount * line.quantity for line in lines), Decimal("0"))
    delivery = _mapping(form.get("delivery"))
    invoice = _mapping(form.get("invoice"))
    invoice_address = _mapping(invoice.get("address")) if invoice.get("required") is True else {}
    delivery_address = _address(_mapping(delivery.get("address")), "delivery.address")
    return Order(
        source=TARGET,
        source_id=form_id,
        number=form_id,
        created_at=_bought_at(items, form),
        currency=currency,
        customer=_customer(_mapping(form.get("buyer")), invoice_address, delivery_address),
        billing_address=_address(invoice_address, "invoice.address") if invoice_address else delivery_address,
        shipping_address=_shipping_address(delivery, delivery_address),
        lines=lines,
        shipping=_shipping(delivery, currency),
        subtotal=Money(amount=subtotal, currency=currency),
        total_tax=Money(amount=Decimal("0"), currency=currency),
        total_discounts=Money(amount=Decimal("0"), currency=currency),
        total=total,
        taxes_included=True,
        note=form.get("messageToSeller") or None,
    )


def _line(item: Any, n: int, form_id: str, currency: str) -> OrderLine:
    item = _mapping(item)
    offer = _mapping(item.get("offer"))
    sku = _mapping(offer.get("external")).get("id")
    if not _text(sku):
        raise UnmappedSku(
            "a line item's offer has no external id (the seller's SKU)",
            entity_ids={
                "checkout_form_id": form_id,
                "offer_id": str(offer.get("id") or ""),
                "line_item_id": str(item.get("id") or ""),
            },
        )
    price = _price(item.get("price"), f"lineItems[{n}].price")
    if price.currency != currency:
        raise _Invalid(f"lineItems[{n}].price is not in the order's currency")
    quantity = item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int | str):
        raise _Invalid(f"lineItems[{n}].quantity is not a number")
    return OrderLine(
        source_id=str(item["id"]) if item.get("id") is not None else None,
        sku=str(sku).strip(),
        title=str(offer.get("name") or sku),
        quantity=_decimal(quantity, f"lineItems[{n}].quantity"),
        unit_price=price,
    )


def _customer(buyer: dict[str, Any], invoice_address: dict[str, Any], delivery: Address | None) -> Customer:
    company = _mapping(invoice_address.get("company"))
    country = invoice_address.get("countryCode") or _mapping(buyer.get("address")).get("countryCode")
    return Customer(
        source_id=str(buyer["id"]) if buyer.get("id") is not None else None,
        email=buyer.get("email") or None,
        first_name=buyer.get("firstName") or None,
        last_name=buyer.get("lastName") or None,
        company=company.get("name") or buyer.get("companyName") or None,
        phone=buyer.get("phoneNumber") or None,
        tax_id=company.get("taxId") or None,
        country=country or (delivery.country if delivery else None),
    )


def _address(raw: dict[str, Any], field: str) -> Address | None:
    """Allegro's address (``street``, ``zipCode``, ``countryCode``; invoice addresses name a
    company or a natural person instead of first and last name)."""
    if not raw:
        return None
    person = _mapping(raw.get("naturalPerson")) or raw
    name = " ".join(str(p) for p in (person.get("firstName"), person.get("lastName")) if p) or None
    if not _text(raw.get("street")) or not _text(raw.get("city")):
        raise _Invalid(f"{field} has no street or city")
    return Address(
        name=name,
        company=_mapping(raw.get("company")).get("name") or raw.get("companyName") or None,
        line1=raw["street"],
        city=raw["city"],
        postal_code=raw.get("zipCode") or raw.get("postCode") or None,
        country=raw.get("countryCode") or "",
        phone=raw.get("phoneNumber") or None,
    )


def _shipping_address(delivery: dict[str, Any], address: Address | None) -> Address | None:
    """Delivery to a pickup point (a parcel locker) goes to the point's address, with the point's
    id and name kept in the address line: the carrier needs them, the recipient's name and phone
    stay those the buyer gave."""
    point = _mapping(delivery.get("pickupPoint"))
    if not point:
        return address
    place = _mapping(point.get("address"))
    if not _text(point.get("id")) or not _text(place.get("street")) or not _text(place.get("city")):
        raise _Invalid("delivery.pickupPoint has no id, street or city")
    label = " ".join(str(p) for p in (point.get("name"), f"[{point['id']}]") if p)
    return Address(
        name=address.name if address else None,
        company=address.company if address else None,
        line1=label,
        line2=place["street"],
        city=place["city"],
        postal_code=place.get("zipCode") or None,
        country=place.get("countryCode") or "",
        phone=address.phone if address else None,
    )


def _shipping(delivery: dict[str, Any], currency: str) -> tuple[ShippingLine, ...]:
    if not delivery.get("cost"):
        return ()
    cost = _price(delivery["cost"], "delivery.cost")
    if cost.currency != currency:
        raise _Invalid("delivery.cost is not in the order's currency")
    method = _mapping(delivery.get("method"))
    return (ShippingLine(title=str(method.get("name") or "delivery"), code=method.get("id") or None, price=cost),)


def _bought_at(items: list[Any], form: dict[str, Any]) -> str:
    """When the buyer bought: the earliest line's ``boughtAt`` (the form has no creation date)."""
    stamps = sorted(str(i["boughtAt"]) for i in items if isinstance(i, dict) and _text(i.get("boughtAt")))
    if stamps:
        return stamps[0]
    if _text(form.get("updatedAt")):
        return str(form["updatedAt"])
    raise _Invalid("no lineItems[].boughtAt nor updatedAt")


def _price(raw: Any, field: str) -> Money:
    """Allegro's ``{"amount": "123.45", "currency": "PLN"}``: the amount is a decimal string."""
    raw = _mapping(raw)
    if not raw:
        raise _Invalid(f"{field} is missing")
    amount = raw.get("amount")
    if not isinstance(amount, str):
        raise _Invalid(f"{field}.amount is not a decimal string")
    return Money(amount=_decimal(amount, f"{field}.amount"), currency=str(raw.get("currency") or ""))


def _decimal(value: int | str, field: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(f"{field} is not a decimal") from None
    if not number.is_finite():
        raise _Invalid(f"{field} is not finite")
    return number


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
