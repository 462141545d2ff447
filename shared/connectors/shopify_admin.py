"""Shopify Admin GraphQL API, the inventory part (see docs/shopify-contract.md).

- ``set_quantities``: ``inventorySetQuantities`` with ``@idempotent(key:)`` and a
  ``changeFromQuantity`` on every quantity (both mandatory from API version 2026-04): the whole
  call is applied or none of it; a stale ``changeFromQuantity`` is reported per inventory item
  so the caller can read the current levels again and retry with a new key.
- ``read_available``: ``nodes(ids:)`` for up to 250 inventory items per call, their
  ``available`` quantity at one location.
- ``variants``: every (sku, inventory item id), paging ``productVariants`` with cursors.
- ``bulk_variants``: the same from one bulk query operation: Shopify reads the catalogue
  asynchronously and we stream the JSONL file it writes. A run, a few status polls and the
  download cost 10 points and 1 per poll where paging 100,000 variants costs about 200,000.

Cost throttling: every answer carries ``extensions.cost.throttleStatus``, kept as
``last_throttle`` so a pacer can wait before it is throttled; a ``THROTTLED`` answer raises
``RateLimited`` with the wait computed from the bucket's restore rate. Errors are classified by
HTTP status and by the GraphQL error's ``extensions.code`` or the user error's ``code``, never by
message text. Documents are plain strings: nothing here parses GraphQL.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    IdempotencyConflict,
    InProgressElsewhere,
    JunctionError,
    RateLimited,
    TargetRejected,
    TargetUnavailable,
)
from shared.http import (
    DEFAULT_TIMEOUT,
    MAX_RETRY_AFTER,
    classify_response,
    client,
    retry_after_seconds,
    transport_error,
)

TARGET = "shopify"
MAX_QUANTITIES = 250  # input arrays are limited to 250 items
MAX_PAGE_SIZE = 250
# Reading page after page, wait for the bucket up to this long rather than be throttled: a full
# page of variants (502 points) refills in about 5 s on the Standard plan's 100 points/second.
DEFAULT_MAX_PAUSE = 6.0
QUANTITY_NAME = "available"
# User error codes of inventorySetQuantities, and what they mean to a caller.
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
UNKNOWN_ITEM = "INVALID_INVENTORY_ITEM"
NOT_STOCKED = "ITEM_NOT_STOCKED_AT_LOCATION"
CONCURRENT = "IDEMPOTENCY_CONCURRENT_REQUEST"
KEY_MISMATCH = "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
PREVIOUS_FAILED = "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"
THROTTLED = "THROTTLED"
# bulkOperationRunQuery's user error codes when the app's bulk query slots are taken (five from
# 2026-01); which of the two Shopify answers then is not documented.
BULK_BUSY = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})
BULK_RUNNING = frozenset({"CREATED", "RUNNING"})

_VERSION = re.compile(r"^([0-9]{4}-(01|04|07|10)|unstable)$")
_LOCATION = re.compile(r"^gid://shopify/Location/[0-9]+$")

SET_QUANTITIES = """
mutation SetQuantities($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) @idempotent(key: %s) {
    inventoryAdjustmentGroup { id }
    userErrors { field message code }
  }
}
"""

READ_AVAILABLE = """
query ReadAvailable($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } }
    }
  }
}
"""

VARIANTS = """
query Variants($first: Int!, $after: String) {
  productVariants(first: $first, after: $after) {
    nodes { id sku inventoryItem { id } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# A bulk query: no page size (Shopify ignores one), one JSONL line per variant.
BULK_VARIANTS = "{ productVariants { edges { node { id sku inventoryItem { id } } } } }"

RUN_BULK_QUERY = """
mutation RunBulkQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_OPERATION = """
query BulkOperation($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl }
}
"""

CANCEL_BULK_OPERATION = """
mutation CancelBulkOperation($id: ID!) {
  bulkOperationCancel(id: $id) {
    bulkOperation { id status }
    userErrors { field message }
  }
}
"""

LOCATIONS = """
query Locations($first: Int!, $after: String) {
  locations(first: $first, after: $after) {
    nodes { id name }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@dataclass(frozen=True)
class ShopifySettings:
    base_url: str  # the shop's root, e.g. https://example.myshopify.com
    access_token: str = field(repr=False)  # never in a log line or a traceback's locals
    api_version: str  # e.g. 2026-04
    location_id: str  # gid://shopify/Location/<n>: where the ERP's stock is kept

    @classmethod
    def from_secret(cls, doc: Any) -> ShopifySettings:
        fields = ("base_url", "access_token", "api_version", "location_id")
        if not isinstance(doc, dict):
            raise ConfigurationError("Shopify secret must be an object holding " + ", ".join(fields))
        missing = [name for name in fields if not isinstance(doc.get(name), str) or not doc[name].strip()]
        if missing:
            raise ConfigurationError("Shopify secret lacks " + ", ".join(missing), details={"missing": missing})
        base_url = doc["base_url"].strip().rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError("Shopify base_url must be an http(s) URL")
        if not _VERSION.match(doc["api_version"].strip()):
            raise ConfigurationError("Shopify api_version must be a release such as 2026-04")
        if not _LOCATION.match(doc["location_id"].strip()):
            raise ConfigurationError("Shopify location_id must be a gid://shopify/Location/<n> id")
        return cls(base_url, doc["access_token"].strip(), doc["api_version"].strip(), doc["location_id"].strip())

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/admin/api/{self.api_version}/graphql.json"


SettingsSource = Callable[[bool], ShopifySettings]  # refresh -> settings (read again when True)


@dataclass(frozen=True)
class ThrottleStatus:
    """The cost bucket as the last answer reported it."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    def wait_seconds(self, cost: float, elapsed: float = 0.0) -> float:
        """Seconds until ``cost`` points are available, ``elapsed`` seconds after this report."""
        if cost > self.maximum_available:
            raise ValueError(f"a cost of {cost} never fits a bucket of {self.maximum_available}")
        available = min(self.maximum_available, self.currently_available + elapsed * self.restore_rate)
        if available >= cost:
            return 0.0
        if self.restore_rate <= 0:
            return MAX_RETRY_AFTER
        return math.ceil((cost - available) / self.restore_rate * 1000) / 1000

    @classmethod
    def parse(cls, extensions: Any) -> ThrottleStatus | None:
        try:
            status = extensions["cost"]["throttleStatus"]
            return cls(
                float(status["maximumAvailable"]), float(status["currentlyAvailable"]), float(status["restoreRate"])
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class QuantityChange:
    inventory_item_id: str
    location_id: str
    quantity: int
    change_from: int | None  # the quantity we expect Shopify to hold now; None skips the check


@dataclass(frozen=True)
class SetResult:
    """The outcome of one ``inventorySetQuantities`` call: all of it applied, or none of it."""

    applied: bool
    mismatched: list[str] = field(default_factory=list)  # items whose change_from was stale
    throttle: ThrottleStatus | None = None
    unknown: list[str] = field(default_factory=list)  # items Shopify does not know
    not_stocked: list[str] = field(default_factory=list)  # items with no level at the location
    # The key was used by an earlier attempt that failed: nothing applied; read the levels again
    # and send with a new key.
    retry_with_new_key: bool = False


class ShopifyAdmin:
    """``settings``: fixed settings, or a source that reads them again (``source(True)``) when
    Shopify refuses the token, so a rotated token is picked up without a restart."""

    def __init__(
        self,
        settings: ShopifySettings | SettingsSource,
        http: httpx.Client | None = None,
        *,
        max_pause: float = DEFAULT_MAX_PAUSE,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source: SettingsSource = settings if callable(settings) else (lambda _refresh: settings)
        self._refreshable = callable(settings)
        self.settings = self._source(False)
        self.http = http or client(DEFAULT_TIMEOUT)
        self._local = threading.local()
        self.last_throttle: ThrottleStatus | None = None
        self._throttle_at = 0.0  # monotonic time of last_throttle
        self._costs: dict[str, float] = {}  # document -> the requested cost Shopify last reported
        self.max_pause = max_pause
        self._pause = pause
        self.served_version: str | None = None  # the version Shopify answered with, when it says

    @contextmanager
    def bounded(self, timeout: Callable[[float], float]) -> Iterator[None]:
        """Within the block, every call's timeout is ``timeout(default)``: a delivery passes its
        ``Attempt.timeout`` so its calls end before the invocation does."""
        self._local.timeout = timeout
        try:
            yield
        finally:
            self._local.timeout = None

    def close(self) -> None:
        self.http.close()

    def wait_seconds(self, cost: float) -> float:
        """How long until ``cost`` points are available, by the last reported bucket."""
        if self.last_throttle is None:
            return 0.0
        return self.last_throttle.wait_seconds(cost, time.monotonic() - self._throttle_at)

    # -- transport -------------------------------------------------------------------------
    def _timeout(self) -> httpx.Timeout:
        bound = getattr(self._local, "timeout", None)
        configured = self.http.timeout
        read = configured.read or 10.0
        seconds = bound(read) if bound else read
        return httpx.Timeout(seconds, connect=min(seconds, configured.connect or 3.0))

    def _post(self, body: bytes, ids: dict[str, str]) -> httpx.Response:
        timeout = self._timeout()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Shopify-Access-Token": self.settings.access_token,
        }
        try:
            return self.http.post(self.settings.graphql_url, content=body, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids=ids, target=TARGET) from exc

    def graphql(self, query: str, variables: dict[str, Any], ids: dict[str, str] | None = None) -> dict[str, Any]:
        """``data`` of one GraphQL request, or the error its answer calls for."""
        ids = dict(ids or {})
        body = json.dumps({"query": query, "variables": variables}).encode()
        response = self._post(body, ids)
        if response.status_code in (401, 403):
            if self._refreshable:  # the token may have been rotated: read the secret once more
                self.settings = self._source(True)
                response = self._post(body, ids)
            if response.status_code in (401, 403):
                raise CredentialsRejected(
                    f"Shopify refused the access token ({response.status_code}): check the Shopify Admin secret",
                    entity_ids=ids,
                    details={"status": response.status_code, "target": TARGET},
                )
        if response.status_code == 429:
            raise RateLimited(
                "Shopify rate limited (429)",
                retry_after=_retry_after(response.headers.get("Retry-After")),
                entity_ids=ids,
                details={"status": 429, "target": TARGET},
            )
        classify_response(response, entity_ids=ids, target=TARGET)
        self.served_version = response.headers.get("X-Shopify-API-Version") or self.served_version
        try:
            answer = response.json()
        except ValueError:
            raise TargetUnavailable(
                "Shopify answered with a body that is not JSON",
                entity_ids=ids,
                details={"status": response.status_code, "target": TARGET},
            ) from None
        if not isinstance(answer, dict):
            raise TargetUnavailable(
                "Shopify answered with an unexpected body", entity_ids=ids, details={"target": TARGET}
            )
        throttle = ThrottleStatus.parse(answer.get("extensions"))
        if throttle is not None:
            self.last_throttle, self._throttle_at = throttle, time.monotonic()
        requested = _requested_cost(answer.get("extensions"))
        if requested:
            self._costs[query] = requested
        errors = answer.get("errors")
        if errors:
            self._raise_for_errors(errors, answer.get("extensions"), throttle, ids)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise TargetUnavailable("Shopify answered without data", entity_ids=ids, details={"target": TARGET})
        return data

    @staticmethod
    def _raise_for_errors(errors: Any, extensions: Any, throttle: ThrottleStatus | None, ids: dict[str, str]) -> None:
        codes = _error_codes(errors)
        if THROTTLED in codes:
            retry_after: float | None = None
            requested = _requested_cost(extensions)
            if throttle is not None and requested is not None:
                retry_after = throttle.wait_seconds(min(requested, throttle.maximum_available))
                retry_after = max(retry_after, 0.001)
            raise RateLimited(
                "Shopify throttled the request (cost bucket short)",
                retry_after=retry_after,
                entity_ids=ids,
                details={"target": TARGET, "codes": codes, "requested_cost": requested},
            )
        raise TargetRejected(
            "Shopify refused the GraphQL request", entity_ids=ids, details={"target": TARGET, "codes": codes}
        )

    # -- inventory -------------------------------------------------------------------------
    def set_quantities(
        self,
        changes: Sequence[QuantityChange],
        *,
        idempotency_key: str,
        reason: str = "correction",
        reference: str | None = None,
        ids: dict[str, str] | None = None,
    ) -> SetResult:
        """Set the ``available`` quantities, all of them or none.

        Raises ``ValueError`` above 250 changes or without a key; ``RateLimited`` when throttled
        (with the wait), ``InProgressElsewhere`` while an attempt with the same key is still being
        applied, ``IdempotencyConflict`` when the key was used with other changes,
        ``TargetRejected`` for any other refusal (reason, location, quantity out of range)."""
        if len(changes) > MAX_QUANTITIES:
            raise ValueError(f"at most {MAX_QUANTITIES} quantities per call, got {len(changes)}")
        if not isinstance(idempotency_key, str) or not idempotency_key.strip():
            raise ValueError("an idempotency key is required")
        if not changes:
            return SetResult(applied=True, throttle=self.last_throttle)
        ids = dict(ids or {})
        payload: dict[str, Any] = {
            "name": QUANTITY_NAME,
            "reason": reason,
            "quantities": [
                {
                    "inventoryItemId": c.inventory_item_id,
                    "locationId": c.location_id,
                    "quantity": c.quantity,
                    "changeFromQuantity": c.change_from,  # always sent: null skips the check
                }
                for c in changes
            ],
        }
        if reference is not None:
            payload["referenceDocumentUri"] = reference
        # A JSON string is a valid GraphQL string literal: the key cannot break out of it.
        data = self.graphql(SET_QUANTITIES % json.dumps(idempotency_key), {"input": payload}, ids)
        result = data.get("inventorySetQuantities")
        if not isinstance(result, dict):
            raise TargetUnavailable("Shopify answered without a mutation result", entity_ids=ids)
        user_errors = [e for e in result.get("userErrors") or [] if isinstance(e, dict)]
        if not user_errors:
            return SetResult(applied=True, throttle=self.last_throttle)
        return self._refusal(user_errors, changes, ids)

    def _refusal(
        self, user_errors: list[dict[str, Any]], changes: Sequence[QuantityChange], ids: dict[str, str]
    ) -> SetResult:
        codes = [str(e.get("code")) for e in user_errors]
        if CONCURRENT in codes:
            raise InProgressElsewhere(
                "Shopify is still applying an attempt with this idempotency key",
                retry_after=1.0,
                entity_ids=ids,
                details={"target": TARGET, "codes": codes},
            )
        if KEY_MISMATCH in codes:
            raise IdempotencyConflict(
                "Shopify holds this idempotency key for other changes",
                entity_ids=ids,
                details={"target": TARGET, "codes": codes},
            )
        if PREVIOUS_FAILED in codes:
            return SetResult(applied=False, throttle=self.last_throttle, retry_with_new_key=True)
        mismatched: list[str] = []
        unknown: list[str] = []
        not_stocked: list[str] = []
        others: list[dict[str, Any]] = []
        for error in user_errors:
            code = error.get("code")
            change = _change_at(error.get("field"), changes)
            if change is not None and code in STALE_CODES:
                mismatched.append(change.inventory_item_id)
            elif change is not None and code == UNKNOWN_ITEM:
                unknown.append(change.inventory_item_id)
            elif change is not None and code == NOT_STOCKED:
                not_stocked.append(change.inventory_item_id)
            else:
                others.append(error)
        if others:
            raise TargetRejected(
                "Shopify refused the quantities: " + "; ".join(str(e.get("message")) for e in others),
                entity_ids=ids,
                details={
                    "target": TARGET,
                    "codes": [e.get("code") for e in others],
                    "fields": [e.get("field") for e in others],
                },
            )
        return SetResult(
            applied=False,
            mismatched=_unique(mismatched),
            throttle=self.last_throttle,
            unknown=_unique(unknown),
            not_stocked=_unique(not_stocked),
        )

    def read_available(
        self, inventory_item_ids: Sequence[str], location_id: str, ids: dict[str, str] | None = None
    ) -> dict[str, int | None]:
        """``available`` per inventory item at the location; None: no level there. Items Shopify
        does not know are left out. Any number of ids: read 250 per request."""
        wanted = _unique(list(inventory_item_ids))
        found: dict[str, int | None] = {}
        for start in range(0, len(wanted), MAX_QUANTITIES):
            chunk = wanted[start : start + MAX_QUANTITIES]
            data = self._paced(READ_AVAILABLE, {"ids": chunk, "locationId": location_id}, ids)
            nodes = data.get("nodes")
            if not isinstance(nodes, list) or len(nodes) != len(chunk):
                raise TargetUnavailable("Shopify answered nodes that do not match the ids asked", entity_ids=ids or {})
            for asked, node in zip(chunk, nodes, strict=True):
                if not isinstance(node, dict) or node.get("id") != asked:
                    continue  # unknown, or not an inventory item
                level = node.get("inventoryLevel")
                if level is None:
                    found[asked] = None
                    continue
                found[asked] = _available(level.get("quantities"), ids or {})
        return found

    def variants(self, page_size: int = MAX_PAGE_SIZE) -> Iterator[tuple[str, str]]:
        """(sku, inventory item id) of every variant that has a sku, in Shopify's order."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        for node in self._paged(VARIANTS, "productVariants", page_size):
            sku = node.get("sku")
            item = node.get("inventoryItem") or {}
            if isinstance(sku, str) and sku.strip() and isinstance(item.get("id"), str):
                yield sku, item["id"]

    def bulk_variants(self, *, poll_seconds: float = 1.0, timeout: float = 600.0) -> Iterator[tuple[str, str]]:
        """(sku, inventory item id) of every variant that has a sku, read by one bulk query.

        Iterating runs the query, polls it every ``poll_seconds`` until it completes and streams
        the result file line by line. Raises ``InProgressElsewhere`` when the app's bulk query
        slots are taken, ``TargetUnavailable`` when the operation fails, is canceled or expires,
        or has not completed after ``timeout`` seconds (it is then canceled, freeing its slot),
        ``CredentialsRejected`` when it fails for want of access scopes, ``TargetRejected`` when
        Shopify refuses the query."""
        if poll_seconds <= 0 or timeout <= 0:
            raise ValueError("poll_seconds and timeout must be positive")
        return self._bulk_variants(poll_seconds, timeout)

    def _bulk_variants(self, poll_seconds: float, timeout: float) -> Iterator[tuple[str, str]]:
        operation = self.start_bulk_query(BULK_VARIANTS)
        url = self.wait_bulk_query(operation, poll_seconds=poll_seconds, timeout=timeout)
        if url is None:
            return  # the query selected nothing: Shopify writes no file
        for doc in self.bulk_results(url):
            sku = doc.get("sku")
            item = doc.get("inventoryItem")
            if isinstance(sku, str) and sku.strip() and isinstance(item, dict) and isinstance(item.get("id"), str):
                yield sku, item["id"]

    def start_bulk_query(self, query: str) -> str:
        """Start a bulk query operation; its id. ``InProgressElsewhere`` when the app's bulk query
        slots are taken (retry later), ``TargetRejected`` when Shopify refuses the query."""
        data = self._paced(RUN_BULK_QUERY, {"query": query})
        result = data.get("bulkOperationRunQuery")
        if not isinstance(result, dict):
            raise TargetUnavailable("Shopify answered without a bulk operation result", entity_ids={})
        errors = [e for e in result.get("userErrors") or [] if isinstance(e, dict)]
        codes = [str(e.get("code")) for e in errors]
        details = {"target": TARGET, "codes": codes, "messages": [str(e.get("message")) for e in errors]}
        if BULK_BUSY.intersection(codes):
            raise InProgressElsewhere(
                "Shopify is running as many bulk queries for this app as it allows", entity_ids={}, details=details
            )
        if errors:
            raise TargetRejected(
                "Shopify refused the bulk query: " + "; ".join(details["messages"]), entity_ids={}, details=details
            )
        operation = result.get("bulkOperation")
        if not isinstance(operation, dict) or not isinstance(operation.get("id"), str):
            raise TargetUnavailable("Shopify started no bulk operation and said why not", entity_ids={})
        return str(operation["id"])

    def wait_bulk_query(self, operation_id: str, *, poll_seconds: float = 1.0, timeout: float = 600.0) -> str | None:
        """Poll ``bulkOperation(id:)`` until the operation completes: its result URL, or None when
        it selected nothing. Errors as for ``bulk_variants``."""
        deadline = time.monotonic() + timeout
        while True:
            data = self._paced(BULK_OPERATION, {"id": operation_id})
            operation = data.get("bulkOperation")
            if not isinstance(operation, dict):
                raise TargetUnavailable(
                    "Shopify does not know the bulk operation", entity_ids={}, details={"operation": operation_id}
                )
            status = operation.get("status")
            if status == "COMPLETED":
                url = operation.get("url")
                return url if isinstance(url, str) and url else None
            details = {
                "target": TARGET,
                "operation": operation_id,
                "status": status,
                "error_code": operation.get("errorCode"),
                "object_count": operation.get("objectCount"),
            }
            if status not in BULK_RUNNING:
                if operation.get("errorCode") == "ACCESS_DENIED":
                    raise CredentialsRejected(
                        "Shopify's bulk query failed for want of access scopes: check the app's grants",
                        entity_ids={},
                        details=details,
                    )
                raise TargetUnavailable(f"Shopify's bulk query ended {status}", entity_ids={}, details=details)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._cancel_bulk_query(operation_id)
                raise TargetUnavailable(
                    f"Shopify's bulk query did not complete within {timeout:g} s", entity_ids={}, details=details
                )
            self._pause(min(poll_seconds, remaining))

    def _cancel_bulk_query(self, operation_id: str) -> None:
        """Free the slot of a bulk query we stopped waiting for; a failure here changes nothing
        for the caller, who is told of the timeout either way."""
        try:
            self.graphql(CANCEL_BULK_OPERATION, {"id": operation_id})
        except JunctionError:
            pass

    def bulk_results(self, url: str) -> Iterator[dict[str, Any]]:
        """The objects of a bulk query's JSONL file, streamed a line at a time. The URL is signed:
        no access token goes with it."""
        try:
            with self.http.stream("GET", url, headers={"Accept": "application/jsonl"}, timeout=self._timeout()) as got:
                classify_response(got, entity_ids={}, target=TARGET)
                for line in got.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        doc = None
                    if not isinstance(doc, dict):
                        raise TargetUnavailable(
                            "Shopify's bulk result holds a line that is not a JSON object", entity_ids={}
                        )
                    yield doc
        except httpx.TransportError as exc:
            raise transport_error(exc, entity_ids={}, target=TARGET) from exc

    def locations(self) -> list[tuple[str, str]]:
        """(location id, name) of every active location."""
        return [(str(n["id"]), str(n["name"])) for n in self._paged(LOCATIONS, "locations", MAX_PAGE_SIZE)]

    def _paced(self, query: str, variables: dict[str, Any], ids: dict[str, str] | None = None) -> dict[str, Any]:
        """One of several requests of a long read. It waits for the bucket to hold what this
        document cost last time, and once more after a throttled answer, when the wait is short
        (``max_pause``): a long read is not abandoned halfway for want of a few seconds."""
        cost = self._costs.get(query)
        if cost is not None and self.last_throttle is not None and cost <= self.last_throttle.maximum_available:
            wait = self.wait_seconds(cost)
            if 0 < wait <= self.max_pause:
                self._pause(wait)
        try:
            return self.graphql(query, variables, ids)
        except RateLimited as exc:
            if exc.retry_after is None or exc.retry_after > self.max_pause:
                raise
            self._pause(exc.retry_after)
        return self.graphql(query, variables, ids)

    def _paged(self, query: str, root: str, page_size: int) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            data = self._paced(query, {"first": page_size, "after": after})
            connection = data.get(root)
            if not isinstance(connection, dict):
                raise TargetUnavailable(f"Shopify answered without {root}", entity_ids={})
            for node in connection.get("nodes") or []:
                if isinstance(node, dict):
                    yield node
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return
            after = page.get("endCursor")
            if not isinstance(after, str):
                raise TargetUnavailable(f"Shopify said more {root} follow but gave no cursor", entity_ids={})


def _retry_after(value: str | None) -> float | None:
    """Shopify sends Retry-After as decimal seconds ("2.0")."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return retry_after_seconds(value)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _error_codes(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    codes: list[str] = []
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        codes.append(str(code) if code is not None else "")
    return codes


def _requested_cost(extensions: Any) -> float | None:
    try:
        return float(extensions["cost"]["requestedQueryCost"])
    except (KeyError, TypeError, ValueError):
        return None


def _change_at(path: Any, changes: Sequence[QuantityChange]) -> QuantityChange | None:
    """The change a user error's field path (["input", "quantities", "<i>", ...]) points at."""
    if not isinstance(path, list) or len(path) < 3 or path[:2] != ["input", "quantities"]:
        return None
    index = path[2]
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if isinstance(index, int) and 0 <= index < len(changes):
        return changes[index]
    return None


def _available(quantities: Any, ids: dict[str, str]) -> int:
    for quantity in quantities or []:
        if isinstance(quantity, dict) and quantity.get("name") == QUANTITY_NAME:
            value = quantity.get("quantity")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    raise TargetUnavailable("Shopify answered a level without its available quantity", entity_ids=ids)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
