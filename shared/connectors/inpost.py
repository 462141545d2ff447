"""InPost's parcel API: ShipX (see docs/inpost-contract.md).

- Auth: an organisation's API token as ``Authorization: Bearer``; shipments are created under
  ``/v1/organizations/{organization_id}``. A 401/403 reads the secret again once (a rotated
  token, a corrected organisation); refused again, it is ``CredentialsRejected``.
- Create: ``POST /v1/organizations/{id}/shipments``. With ``service`` given (the simplified
  flow) ShipX chooses and buys the offer itself, but asynchronously: the answer is the shipment
  in status ``created`` without a tracking number; it becomes ``confirmed`` (through
  ``offers_prepared``/``offer_selected``), and only then has its ``tracking_number``.
- ShipX does NOT keep references unique: a second create with the same ``reference`` makes a
  second shipment, a second label, a second fee. Whoever creates looks first
  (``find_by_reference``), which pages through ``GET /v1/organizations/{id}/shipments
  ?reference=`` and checks every item's reference itself.
- Read: ``GET /v1/shipments/{id}`` (404: no such shipment for this token).
- Errors: ``400 validation_failed`` with ``details`` (field -> error codes, nested) becomes
  ``ShipmentRefused`` naming the fields, never their values; 429 is ``RateLimited`` with the
  ``Retry-After`` (a minute without one); 5xx and timeouts are ``TargetUnavailable``.
- Statuses: ``GET /v1/statuses`` lists them; ``status_rank`` orders them so an older status
  never overwrites a newer one (``delivered`` and the return statuses end a shipment).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import (
    ConfigurationError,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
    ValidationFailed,
)
from shared.http import HttpConnector, retry_after_seconds, transport_error

TARGET = "inpost"
LOCKER = "inpost_locker_standard"  # to a parcel locker: custom_attributes.target_point
COURIER = "inpost_courier_standard"  # to the receiver's address
SERVICES = (LOCKER, COURIER)
TEMPLATES = ("small", "medium", "large")  # gabaryt A, B, C
REFERENCE_MAX = 100  # characters of ``reference``
PER_PAGE = 100  # shipments asked per page of a reference search
MAX_PAGES = 20  # a reference search reads at most this many pages
RATE_LIMIT_WAIT_SECONDS = 60.0  # when a 429 carries no Retry-After
TRACKING_URL = "https://inpost.pl/sledzenie-przesylek?number={number}"

# ShipX's statuses (``GET /v1/statuses``) in the order a parcel passes them. A status later in
# the list is newer; the terminal ones end the shipment and share the top rank, so once one is
# held nothing replaces it.
PROGRESS: tuple[str, ...] = (
    "created",
    "offers_prepared",
    "offer_selected",
    "confirmed",
    "dispatched_by_sender",
    "dispatched_by_sender_to_pok",
    "collected_from_sender",
    "taken_by_courier",
    "taken_by_courier_from_pok",
    "adopted_at_source_branch",
    "sent_from_source_branch",
    "adopted_at_sorting_center",
    "sent_from_sorting_center",
    "adopted_at_target_branch",
    "out_for_delivery",
    "out_for_delivery_to_address",
    "ready_to_pickup",
    "ready_to_pickup_from_pok",
    "ready_to_pickup_from_branch",
    "pickup_reminder_sent",
    "avizo",
    "pickup_time_expired",
    "undelivered",
    "rejected_by_receiver",
)
DELIVERED = "delivered"
RETURNED = ("returned_to_sender",)  # the parcel went back to the sender: the order came back
CANCELED = "canceled"
TERMINAL = frozenset({DELIVERED, *RETURNED, CANCELED})
STATUSES: tuple[str, ...] = (*PROGRESS, DELIVERED, *RETURNED, CANCELED)
UNCONFIRMED = frozenset({"created", "offers_prepared", "offer_selected"})  # no label, no tracking number yet
_RANK = {status: n for n, status in enumerate(PROGRESS)}
TERMINAL_RANK = len(PROGRESS)
UNKNOWN_RANK = -1


def status_rank(status: str) -> int:
    """Where ``status`` lies on a parcel's way: larger is newer. Terminal statuses share the top
    rank; a status ShipX added after this list ranks lowest (it never replaces a known one)."""
    if status in TERMINAL:
        return TERMINAL_RANK
    return _RANK.get(status, UNKNOWN_RANK)


def is_newer(status: str, than: str | None) -> bool:
    return than is None or status_rank(status) > status_rank(than)


def tracking_url(tracking_number: str) -> str:
    return TRACKING_URL.format(number=quote(tracking_number, safe=""))


def has_tracking(shipment: Mapping[str, Any]) -> bool:
    """Whether the shipment is confirmed with its tracking number (its label exists)."""
    number = shipment.get("tracking_number")
    return isinstance(number, str) and bool(number) and shipment.get("status") not in UNCONFIRMED


@dataclass(frozen=True)
class InPostSettings:
    base_url: str  # e.g. https://api-shipx-pl.easypack24.net
    token: str = field(repr=False)  # the organisation's API token: never in a log line
    organization_id: str

    @classmethod
    def from_secret(cls, doc: Any) -> InPostSettings:
        try:
            settings = cls(
                base_url=str(doc["base_url"]).rstrip("/"),
                token=str(doc["token"]),
                organization_id=str(doc["organization_id"]),
            )
        except (KeyError, TypeError):
            raise ConfigurationError("InPost secret must hold base_url, token and organization_id") from None
        if not settings.token or not settings.organization_id.isdigit():
            raise ConfigurationError("InPost secret needs a token and a numeric organization_id")
        return settings


class ShipmentRefused(TargetRejected):
    """ShipX refused the shipment's content (400 validation_failed): ``details["fields"]`` names
    the fields (``receiver.phone``, ``custom_attributes.target_point``), never their values."""

    reason = "shipment_refused"


class ShipmentNotFound(TargetRejected):
    """No shipment with this id for this organisation's token."""

    reason = "shipment_not_found"


def check_reference(reference: str, ids: dict[str, str]) -> None:
    if not 1 <= len(reference) <= REFERENCE_MAX:
        raise ValidationFailed(f"reference must be 1-{REFERENCE_MAX} characters", entity_ids=ids)


class InPostClient(HttpConnector[InPostSettings]):
    """``settings``: fixed settings, or a source that reads them again (``source(True)``) when
    ShipX refuses the token."""

    def find_by_reference(self, reference: str, ids: dict[str, str]) -> dict[str, Any] | None:
        """The shipment holding ``reference`` (the oldest, should an earlier client have made two),
        or None. Every page of the search is read: the filter's answer is checked item by item."""
        check_reference(reference, ids)
        path = f"/v1/organizations/{quote(self.settings.organization_id)}/shipments"
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"reference": reference, "page": str(page), "per_page": str(PER_PAGE)}
            doc = _object(self._request("GET", path, ids, params=params), ids)
            items = doc.get("items")
            if not isinstance(items, list):
                raise TargetUnavailable(
                    "ShipX answered a shipment search without items",
                    entity_ids=ids,
                    details={"target": TARGET},
                )
            found += [i for i in items if isinstance(i, dict) and i.get("reference") == reference]
            count, per_page = _int(doc.get("count")), _int(doc.get("per_page")) or PER_PAGE
            if not items or count is None or page * per_page >= count:
                break
        else:
            raise TargetUnavailable(
                f"ShipX's search for a reference spans more than {MAX_PAGES} pages",
                entity_ids=ids,
                details={"target": TARGET},
            )
        if not found:
            return None
        found.sort(key=lambda s: _int(s.get("id")) or 0)
        return dict(found[0])

    def create_shipment(self, body: Mapping[str, Any], ids: dict[str, str]) -> dict[str, Any]:
        """Create a shipment; ShipX's answer (``id``, ``status`` ``created``, no tracking number
        yet). Refusals of the content raise ``ShipmentRefused``. Never call without looking
        first: ShipX would make a second shipment with the same reference."""
        reference = body.get("reference")
        if isinstance(reference, str):
            check_reference(reference, ids)
        path = f"/v1/organizations/{quote(self.settings.organization_id)}/shipments"
        return _object(self._request("POST", path, ids, body=dict(body)), ids)

    def get_shipment(self, shipment_id: int | str, ids: dict[str, str]) -> dict[str, Any]:
        """The shipment as ShipX holds it now. ``ShipmentNotFound`` when the token sees none."""
        response = self._request("GET", f"/v1/shipments/{quote(str(shipment_id), safe='')}", ids, accept=(404,))
        if response.status_code == 404:
            raise ShipmentNotFound("ShipX holds no such shipment", entity_ids=ids, details={"status": 404})
        return _object(response, ids)

    def statuses(self, ids: dict[str, str]) -> list[str]:
        """ShipX's status names, in its order (``GET /v1/statuses``)."""
        doc = _object(self._request("GET", "/v1/statuses", ids), ids)
        items = doc.get("items")
        return [str(i["name"]) for i in items or [] if isinstance(i, dict) and isinstance(i.get("name"), str)]

    # -- transport -------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, ids: dict[str, str], params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.token}", "Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(
                method,
                f"{s.base_url}{path}",
                params=params,
                content=content,
                headers=headers,
                timeout=self.call_timeout(),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc

    def _request(
        self,
        method: str,
        path: str,
        ids: dict[str, str],
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send; statuses in ``accept`` come back unclassified. A refused token (401/403) reads
        the secret again and sends once more (the path is rebuilt only by the caller: the
        organisation in it is the one read before)."""
        response = self.with_credentials(
            lambda: self._send(method, path, ids, params, body),
            ids,
            target=TARGET,
            refused="ShipX refused the token or organisation: check the inpost-shipx secret",
        )
        if response.status_code not in accept:
            _classify(response, ids)
        return response


def _classify(response: httpx.Response, ids: dict[str, str]) -> None:
    status = response.status_code
    if status < 400:
        return
    details = problem(response)
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        raise RateLimited(
            f"{TARGET} rate limited (429)",
            retry_after=wait if wait is not None else RATE_LIMIT_WAIT_SECONDS,
            entity_ids=ids,
            details=details,
        )
    if status >= 500 or status == 408:
        raise TargetUnavailable(
            f"{TARGET} unavailable ({status})",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            entity_ids=ids,
            details=details,
        )
    if status == 400:
        fields = ", ".join(details.get("fields") or []) or "no field named"
        raise ShipmentRefused(f"ShipX refused the shipment ({fields})", entity_ids=ids, details=details)
    raise TargetRejected(f"{TARGET} rejected the request ({status})", entity_ids=ids, details=details)


def problem(response: httpx.Response) -> dict[str, Any]:
    """Status, ShipX's error code and the paths of the fields it complained about; never the
    message or the values, which may quote the receiver's data."""
    details: dict[str, Any] = {"status": response.status_code, "target": TARGET}
    try:
        doc = response.json()
    except ValueError:
        return details
    if not isinstance(doc, dict):
        return details
    if isinstance(doc.get("error"), str):
        details["error"] = doc["error"][:60]
    if isinstance(doc.get("details"), dict):
        details["fields"] = sorted(set(field_paths(doc["details"])))[:20]
    return details


def field_paths(details: Any, prefix: str = "") -> list[str]:
    """``{"receiver": [{"phone": ["invalid"]}]}`` -> ``["receiver.phone"]``: the keys, never the
    values (list positions are dropped)."""
    paths: list[str] = []
    if isinstance(details, dict):
        for key, value in details.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            nested = field_paths(value, path)
            paths += nested or [path]
    elif isinstance(details, list):
        for value in details:
            paths += field_paths(value, prefix)
    return paths


def _object(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise TargetUnavailable(
            "ShipX answered without a JSON object",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET},
        )
    return payload


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
