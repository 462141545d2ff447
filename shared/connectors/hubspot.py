"""HubSpot CRM: a contact per customer and a deal per order (docs/hubspot-contract.md).

- Contacts are upserted by email (``POST /crm/v3/objects/contacts/batch/upsert`` with
  ``idProperty: email``): HubSpot keys contacts by email, so a customer without one gets no
  contact rather than a duplicate.
- Deals are upserted by ``junction_order_key``, a custom deal property with unique values
  (``hasUniqueValue``): a redelivered order updates its deal instead of creating another one.
  Delivery is at least once, so nothing here creates without a key HubSpot enforces.
- A deal is associated with its contact through the v4 default association
  (``PUT /crm/v4/objects/deal/{id}/associations/default/contact/{id}``), which may be repeated.
- A private app token authenticates every call; a refused token is read again once from the
  secret (it may have been rotated), as the ERP client does with its credentials.
- Errors are classified by status and HubSpot's ``category`` and ``policyName``, never by text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import ConfigurationError, RateLimited, TargetRejected, TargetUnavailable
from shared.http import HttpConnector, retry_after_seconds, transport_error
from shared.models import Customer, Order

TARGET = "hubspot"
MAX_BATCH_INPUTS = 100  # HubSpot's batch endpoints take at most 100 inputs
ORDER_KEY_PROPERTY = "junction_order_key"  # custom deal property, "require unique values" on
CONTACT_KEY_PROPERTY = "email"
PIPELINE = "default"  # every account's first deal pipeline has the internal id "default"
# The default pipeline's stages, by internal id (the API takes ids, not labels).
STAGE_OPEN = "appointmentscheduled"
STAGE_WON = "closedwon"
STAGE_LOST = "closedlost"
DEFAULT_STAGES = (
    STAGE_OPEN,
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    STAGE_WON,
    STAGE_LOST,
)
BURST_INTERVAL_SECONDS = 10.0  # TEN_SECONDLY_ROLLING: the window a 429 without Retry-After waits out
# A DAILY 429 lasts until midnight in the account's time zone, which the client does not know:
# retry hourly until the day turns.
DAILY_RETRY_SECONDS = 3600.0

_log = logging.getLogger("junction.hubspot")


@dataclass(frozen=True)
class HubSpotSettings:
    base_url: str  # https://api.hubapi.com
    access_token: str = field(repr=False)  # the private app's token; never in a log line

    @classmethod
    def from_secret(cls, doc: Any) -> HubSpotSettings:
        try:
            base_url, token = str(doc["base_url"]).rstrip("/"), str(doc["access_token"])
        except (KeyError, TypeError):
            raise ConfigurationError("HubSpot secret must hold base_url and access_token") from None
        if not base_url or not token:
            raise ConfigurationError("HubSpot secret must hold a non-empty base_url and access_token")
        return cls(base_url=base_url, access_token=token)


SettingsSource = Callable[[bool], HubSpotSettings]  # refresh -> settings (read again when True)


def contact_properties(customer: Customer) -> dict[str, str]:
    """What HubSpot keeps of a customer: the default contact properties we have values for."""
    values = {
        "email": customer.email,
        "firstname": customer.first_name,
        "lastname": customer.last_name,
        "company": customer.company,
        "phone": customer.phone,
    }
    return {name: value for name, value in values.items() if value}


def deal_properties(order: Order, stage: str) -> dict[str, str]:
    """The deal of an order. The name carries the order's number, never the customer's name;
    the amount is a decimal string (HubSpot's number properties take strings exactly)."""
    return {
        "dealname": f"{order.source} order {order.number}"[:255],
        "amount": str(order.total.amount),
        "deal_currency_code": order.currency,
        "pipeline": PIPELINE,
        "dealstage": stage,
        "closedate": order.created_at.isoformat(),
    }


class HubSpotClient(HttpConnector[HubSpotSettings]):
    """``settings``: fixed settings, or a source that reads the secret again (``source(True)``)
    when HubSpot refuses the token, so a rotated token is picked up without a restart."""

    # -- contacts --------------------------------------------------------------------------
    def upsert_contact(self, customer: Customer, ids: Mapping[str, str]) -> str | None:
        """The contact id of the customer, created or updated by email; None for a customer
        without an email (HubSpot's contact key), which gets no contact."""
        entity_ids = dict(ids)
        if not customer.email:
            _log.info("hubspot contact skipped: the customer has no email", extra={"ctx": entity_ids})
            return None
        record = self._upsert(
            "contacts", customer.email, CONTACT_KEY_PROPERTY, contact_properties(customer), entity_ids
        )
        return _record_id(record, entity_ids)

    # -- deals -----------------------------------------------------------------------------
    def upsert_deal(self, order_key: str, order: Order, stage: str, ids: Mapping[str, str]) -> str:
        """The deal id of the order, created or updated by ``order_key``: sending it again
        updates the same deal. ``stage`` is a stage id of the default pipeline."""
        _check_key(order_key)
        if stage not in DEFAULT_STAGES:
            raise ValueError(f"stage must be a stage id of the default pipeline {DEFAULT_STAGES}, not {stage!r}")
        entity_ids = dict(ids)
        record = self._upsert("deals", order_key, ORDER_KEY_PROPERTY, deal_properties(order, stage), entity_ids)
        return _record_id(record, entity_ids)

    def get_deal(self, order_key: str, ids: Mapping[str, str]) -> dict[str, Any] | None:
        """The deal holding ``order_key`` (``{"id", "properties", ...}``), or None."""
        _check_key(order_key)
        entity_ids = dict(ids)
        params = {"idProperty": ORDER_KEY_PROPERTY, "properties": "dealstage,amount,deal_currency_code,dealname"}
        path = f"/crm/v3/objects/deals/{quote(order_key, safe='')}"
        response = self._request("GET", path, entity_ids, params=params, accept=(404,))
        if response.status_code == 404:
            return None
        doc = _json(response, entity_ids)
        if not isinstance(doc.get("id"), str | int):
            raise TargetRejected("HubSpot answered a deal read without an id", entity_ids=entity_ids)
        return doc

    def close_lost(self, order_key: str, ids: Mapping[str, str]) -> str | None:
        """Move the order's deal to closed-lost; None when HubSpot holds no deal for it (a
        cancellation that overtook its order, or an order that never reached the CRM). The
        lookup comes first because an upsert would create the deal it was meant to close."""
        found = self.get_deal(order_key, ids)
        if found is None:
            return None
        entity_ids = dict(ids)
        properties = {"pipeline": PIPELINE, "dealstage": STAGE_LOST}
        record = self._upsert("deals", order_key, ORDER_KEY_PROPERTY, properties, entity_ids)
        return _record_id(record, entity_ids)

    # -- associations ----------------------------------------------------------------------
    def associate(self, deal_id: str, contact_id: str, ids: Mapping[str, str]) -> None:
        """Associate the deal with the contact (HubSpot's default, unlabeled type); repeating
        it changes nothing."""
        for value in (deal_id, contact_id):
            if not isinstance(value, str) or not value.isascii() or not value.isdigit():
                raise ValueError("HubSpot record ids are numeric strings")
        path = f"/crm/v4/objects/deal/{deal_id}/associations/default/contact/{contact_id}"
        self._request("PUT", path, dict(ids))

    # -- records ---------------------------------------------------------------------------
    def _upsert(
        self, object_type: str, key: str, id_property: str, properties: dict[str, str], ids: dict[str, str]
    ) -> dict[str, Any]:
        body = {"inputs": [{"id": key, "idProperty": id_property, "properties": properties}]}
        response = self._request("POST", f"/crm/v3/objects/{object_type}/batch/upsert", ids, body=body)
        doc = _json(response, ids)
        results = doc.get("results")
        if isinstance(results, list) and results and isinstance(results[0], dict):
            return results[0]
        categories = sorted({str(e.get("category")) for e in doc.get("errors") or [] if isinstance(e, dict)})
        raise TargetRejected(
            f"HubSpot upserted no {object_type[:-1]}",
            entity_ids=ids,
            details={"status": response.status_code, "target": TARGET, "categories": categories},
        )

    # -- transport -------------------------------------------------------------------------
    def _send(
        self, method: str, path: str, ids: dict[str, str], *, params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.access_token}", "Accept": "application/json"}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self.http.request(
                method,
                self.settings.base_url + path,
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
        """Send with the private app token; a refused token is read again from the secret once.
        Statuses in ``accept`` are returned unclassified."""
        response = self.with_credentials(
            lambda: self._send(method, path, ids, params=params, body=body),
            ids,
            target=TARGET,
            refused="HubSpot refused the private app token: check the hubspot-private-app secret",
            statuses=(401,),
            details=lambda answer: {"status": 401, "target": TARGET, "category": _category(answer)},
        )
        if response.status_code not in accept:
            _classify(response, ids)
        return response


def _classify(response: httpx.Response, ids: dict[str, str]) -> None:
    status = response.status_code
    if status < 400:
        return
    details: dict[str, Any] = {"status": status, "target": TARGET, "category": _category(response)}
    if status == 429:
        policy = _field(response, "policyName")
        details["policy"] = policy
        raise RateLimited(
            f"HubSpot rate limited ({policy or 429})",
            retry_after=_rate_limit_wait(response, policy),
            entity_ids=ids,
            details=details,
        )
    if status >= 500 or status == 408:
        raise TargetUnavailable(
            f"HubSpot unavailable ({status})",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            entity_ids=ids,
            details=details,
        )
    if status == 409 and response.request.url.path.endswith("/batch/upsert"):
        # An upsert conflicts only with a concurrent write of the same key: the retry finds it.
        raise TargetUnavailable("HubSpot upsert conflicted with a concurrent write", entity_ids=ids, details=details)
    raise TargetRejected(f"HubSpot rejected the request ({status})", entity_ids=ids, details=details)


def _rate_limit_wait(response: httpx.Response, policy: str | None) -> float:
    """Retry-After when HubSpot sends one; else the rest of the window the policy names."""
    given = retry_after_seconds(response.headers.get("Retry-After"))
    if given is not None:
        return given
    if policy is not None and policy.upper() == "DAILY":
        return DAILY_RETRY_SECONDS
    interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
    if interval.isascii() and interval.isdigit() and int(interval) > 0:
        return int(interval) / 1000.0
    return BURST_INTERVAL_SECONDS


def _json(response: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise TargetUnavailable(
            "HubSpot answered without a JSON object", entity_ids=ids, details={"status": response.status_code}
        )
    return doc


def _field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _category(response: httpx.Response) -> str | None:
    return _field(response, "category")


def _record_id(record: Mapping[str, Any], ids: dict[str, str]) -> str:
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
        raise TargetRejected("HubSpot answered an upsert without a record id", entity_ids=ids)
    return str(value)


def _check_key(order_key: str) -> None:
    if not isinstance(order_key, str) or not order_key.strip():
        raise ValueError("an order key must be a non-empty string")
