"""A Shopify Admin GraphQL API stand-in (the inventory part), speaking the contract of
docs/shopify-contract.md.

A real HTTP server on 127.0.0.1 that holds locations, product variants with their inventory
items, and quantities per (inventory item, location), and answers
``POST /admin/api/<version>/graphql.json`` as strictly as Shopify does: documents are parsed and
validated against a schema subset (an unknown field is a validation error), every request is
costed the documented way and paid from a leaky bucket per access token (``THROTTLED`` when it
is short, ``MAX_COST_EXCEEDED`` above 1000 points, ``extensions.cost`` on every answer),
``inventorySetQuantities`` compares ``changeFromQuantity`` and fails whole on a mismatch, and
``@idempotent(key:)`` replays a key's first result for 24 hours. From API version 2026-04 both
``changeFromQuantity`` and ``@idempotent`` are mandatory, as Shopify made them.
Bulk query operations (``bulkOperationRunQuery``) over ``productVariants`` run asynchronously at
a declared rate, five at a time per app, and leave a JSONL file served under /_standin/bulk/ for
a week, as Shopify's signed links are.

It can be told to misbehave (down, slow, rate limited with Retry-After, flaky), and is driven
over HTTP under /_standin/ too, so another process can seed a catalogue or play a shop sale.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import random
import re
import sys
import threading
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_schema,
    execute_sync,
    get_named_type,
    get_nullable_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    parse,
    validate,
    visit,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.utilities import get_operation_ast
from graphql.validation import specified_rules

from junction_local.process import LocalHandler
from junction_local.standins import TargetStandIn
from junction_local.standins.erp import DEFAULT_ITEMS

# -- the contract's numbers (sources in docs/shopify-contract.md) ------------------------------
VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")  # the supported releases played
CURRENT_VERSION = "2026-04"
MANDATORY_FROM = "2026-04"  # changeFromQuantity and @idempotent required; compareQuantity gone
PREVIOUS_ATTEMPT_FAILED_FROM = "2026-10"  # IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED in the enum
# The Standard plan's bucket: 2000 points, restored at 100 points per second.
MAXIMUM_AVAILABLE = 2000.0
RESTORE_RATE = 100.0
MAX_SINGLE_QUERY_COST = 1000
MUTATION_COST = 10
CONNECTION_COST = 2
MAX_INPUT_ARRAY = 250
MAX_PAGE_SIZE = 250
IDEMPOTENCY_WINDOW = 24 * 3600.0
QUANTITY_LIMIT = 1_000_000_000
SETTABLE_NAMES = ("available", "on_hand")
QUANTITY_NAMES = (
    "available",
    "on_hand",
    "committed",
    "reserved",
    "damaged",
    "incoming",
    "quality_control",
    "safety_stock",
)
REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)
# The stand-in's fixed local Admin API access token, as the secret holds it.
ACCESS_TOKEN = "shpat_junction_local_admin_token"  # noqa: S105 - a fixed local value, never deployed
DEFAULT_LOCATION_ID = "gid://shopify/Location/1"
DEFAULT_LOCATION_NAME = "Warehouse PL"
VARIANT_BASE = 44_000_000_000  # variant and inventory item numbers never coincide, as in a real shop
ITEM_BASE = 46_000_000_000
# Orders and fulfilments: numbers of each kind of object apart, as a shop's ids never coincide.
FULFILLMENT_BASE = 5_000_000_000
FULFILLMENT_ORDER_BASE = 6_000_000_000
FO_LINE_BASE = 7_000_000_000
LINE_ITEM_BASE = 8_000_000_000
EVENT_BASE = 9_000_000_000
FULFILLABLE = frozenset({"OPEN", "IN_PROGRESS"})
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
# Bulk query operations (sources in docs/shopify-contract.md): from 2026-01 five may run at a time
# per app and shop; results are kept for a week; a query has 10 days to complete. The processing
# rate is the stand-in's own (Shopify states none): 100,000 variants in about two seconds.
MAX_BULK_QUERIES = 5
BULK_URL_TTL = 7 * 24 * 3600.0
BULK_QUERY_MAX_SECONDS = 10 * 24 * 3600.0
BULK_OBJECTS_PER_SECOND = 50_000.0
MAX_BULK_CONNECTIONS = 5
MAX_BULK_CONNECTION_DEPTH = 3  # a top-level connection and two levels nested under it
BULK_ERROR_CODES = ("ACCESS_DENIED", "INTERNAL_SERVER_ERROR", "TIMEOUT")
BULK_MODES = {
    "ok": "bulk queries run at `objects_per_second`",
    "hold": "bulk queries make no progress (they stay RUNNING) until the mode changes",
    "fail": "bulk queries fail with `error_code` once `fail_after` objects are processed",
}
TOO_MANY = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
DOCS_RATE_LIMITS = "https://shopify.dev/api/usage/rate-limits"

MODES = {
    "ok": "serve normally",
    "down": "503 Service Unavailable (an HTML page, as Shopify's edge answers)",
    "slow": "hold each request up to `delay` seconds (a mutation after reserving its idempotency key)",
    "rate_limited": "429 with Retry-After (seconds as a decimal, as Shopify sends it)",
    "flaky": "a seeded fraction `rate` of requests answer 503",
}

_API_PATH = re.compile(r"^/admin/api/(?P<version>[^/]+)/graphql\.json$")
_GID = re.compile(r"^gid://shopify/(?P<type>[A-Za-z]+)/(?P<number>[0-9]+)(?:\?.*)?$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:.+$")
_RELEASE = re.compile(r"^[0-9]{4}-(01|04|07|10)$")
_BULK_FILE = re.compile(r"^/_standin/bulk/(?P<number>[0-9]+)(?P<partial>-partial)?\.jsonl$")


# -- the schema subset ---------------------------------------------------------------------------
def _sdl(version: str) -> str:
    legacy = version < MANDATORY_FROM
    error_codes = [
        "CHANGE_FROM_QUANTITY_STALE",
        "COMPARE_QUANTITY_REQUIRED",
        "COMPARE_QUANTITY_STALE",
        "IDEMPOTENCY_CONCURRENT_REQUEST",
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        "INVALID_INVENTORY_ITEM",
        "INVALID_LOCATION",
        "INVALID_NAME",
        "INVALID_QUANTITY_NEGATIVE",
        "INVALID_QUANTITY_TOO_HIGH",
        "INVALID_QUANTITY_TOO_LOW",
        "INVALID_REASON",
        "INVALID_REFERENCE_DOCUMENT",
        "ITEM_NOT_STOCKED_AT_LOCATION",
        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
        "NON_MUTABLE_INVENTORY_ITEM",
    ]
    if version >= PREVIOUS_ATTEMPT_FAILED_FROM:
        error_codes.append("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED")
    page_args = "first: Int, after: String, last: Int, before: String, query: String, reverse: Boolean = false"
    return f"""
directive @idempotent(key: String!) on FIELD
scalar DateTime
scalar URL
interface Node {{ id: ID! }}
type PageInfo {{ hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }}
type Location implements Node {{
  id: ID! name: String! isActive: Boolean! fulfillsOnlineOrders: Boolean!
  inventoryLevel(inventoryItemId: ID!): InventoryLevel
}}
type LocationEdge {{ cursor: String! node: Location! }}
type LocationConnection {{ edges: [LocationEdge!]! nodes: [Location!]! pageInfo: PageInfo! }}
type InventoryQuantity {{ name: String! quantity: Int! updatedAt: DateTime }}
type InventoryLevel implements Node {{
  id: ID! item: InventoryItem! location: Location! updatedAt: DateTime!
  quantities(names: [String!]!): [InventoryQuantity!]!
}}
type InventoryItem implements Node {{
  id: ID! sku: String tracked: Boolean! variant: ProductVariant!
  inventoryLevel(locationId: ID!): InventoryLevel
}}
type InventoryItemEdge {{ cursor: String! node: InventoryItem! }}
type InventoryItemConnection {{ edges: [InventoryItemEdge!]! nodes: [InventoryItem!]! pageInfo: PageInfo! }}
type ProductVariant implements Node {{
  id: ID! sku: String title: String! displayName: String! inventoryItem: InventoryItem! inventoryQuantity: Int
}}
type ProductVariantEdge {{ cursor: String! node: ProductVariant! }}
type ProductVariantConnection {{ edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo! }}
type InventoryChange {{
  name: String! delta: Int! quantityAfterChange: Int item: InventoryItem location: Location ledgerDocumentUri: URL
}}
type InventoryAdjustmentGroup implements Node {{
  id: ID! createdAt: DateTime! reason: String! referenceDocumentUri: String
  changes(inventoryItemIds: [ID!], locationIds: [ID!], quantityNames: [String!]): [InventoryChange!]!
}}
enum InventorySetQuantitiesUserErrorCode {{ {" ".join(error_codes)} }}
type InventorySetQuantitiesUserError {{
  code: InventorySetQuantitiesUserErrorCode field: [String!] message: String!
}}
type InventorySetQuantitiesPayload {{
  inventoryAdjustmentGroup: InventoryAdjustmentGroup userErrors: [InventorySetQuantitiesUserError!]!
}}
input InventoryQuantityInput {{
  inventoryItemId: ID! locationId: ID! quantity: Int! changeFromQuantity: Int
  {"compareQuantity: Int" if legacy else ""}
}}
input InventorySetQuantitiesInput {{
  name: String! reason: String! referenceDocumentUri: String quantities: [InventoryQuantityInput!]!
  {"ignoreCompareQuantity: Boolean = false" if legacy else ""}
}}
scalar UnsignedInt64
enum BulkOperationStatus {{ CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }}
enum BulkOperationErrorCode {{ {" ".join(BULK_ERROR_CODES)} }}
enum BulkOperationType {{ MUTATION QUERY }}
enum BulkOperationUserErrorCode {{ INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }}
type BulkOperation implements Node {{
  completedAt: DateTime createdAt: DateTime! errorCode: BulkOperationErrorCode fileSize: UnsignedInt64 id: ID!
  objectCount: UnsignedInt64! partialDataUrl: URL query: String! rootObjectCount: UnsignedInt64!
  status: BulkOperationStatus! type: BulkOperationType! url: URL
}}
type BulkOperationUserError {{ code: BulkOperationUserErrorCode field: [String!] message: String! }}
type UserError {{ field: [String!] message: String! }}
type BulkOperationRunQueryPayload {{ bulkOperation: BulkOperation userErrors: [BulkOperationUserError!]! }}
type BulkOperationCancelPayload {{ bulkOperation: BulkOperation userErrors: [UserError!]! }}
{_fulfilment_sdl(page_args)}
type Query {{
  node(id: ID!): Node
  order(id: ID!): Order
  fulfillmentOrder(id: ID!): FulfillmentOrder
  fulfillment(id: ID!): Fulfillment
  nodes(ids: [ID!]!): [Node]!
  inventoryItem(id: ID!): InventoryItem
  inventoryItems({page_args}): InventoryItemConnection!
  productVariant(id: ID!): ProductVariant
  productVariants({page_args}): ProductVariantConnection!
  location(id: ID): Location
  locations({page_args}, includeInactive: Boolean = false): LocationConnection!
  bulkOperation(id: ID!): BulkOperation
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
    @deprecated(reason: "Use `bulkOperation(id:)` or `bulkOperations` instead.")
}}
type Mutation {{
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
  bulkOperationRunQuery(query: String!, groupObjects: Boolean! = false): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
  fulfillmentCreate(fulfillment: FulfillmentInput!, message: String): FulfillmentCreatePayload
  fulfillmentEventCreate(fulfillmentEvent: FulfillmentEventInput!): FulfillmentEventCreatePayload
}}
"""


def _fulfilment_sdl(page_args: str) -> str:
    """Orders, their fulfillment orders, fulfillments and fulfillment events: the subset the
    tracking hop reads and writes (``fulfillmentCreate``, ``fulfillmentEventCreate``)."""
    return """
enum FulfillmentOrderStatus { CANCELLED CLOSED INCOMPLETE IN_PROGRESS ON_HOLD OPEN SCHEDULED }
enum FulfillmentStatus { CANCELLED ERROR FAILURE SUCCESS OPEN PENDING }
enum FulfillmentDisplayStatus {
  ATTEMPTED_DELIVERY CANCELED CARRIER_PICKED_UP CONFIRMED DELAYED DELIVERED FAILURE FULFILLED IN_TRANSIT
  LABEL_PRINTED LABEL_PURCHASED LABEL_VOIDED MARKED_AS_FULFILLED NOT_DELIVERED OUT_FOR_DELIVERY PICKED_UP
  READY_FOR_PICKUP SUBMITTED
}
enum FulfillmentEventStatus {
  ATTEMPTED_DELIVERY CARRIER_PICKED_UP CONFIRMED DELAYED DELIVERED FAILURE IN_TRANSIT LABEL_PRINTED
  LABEL_PURCHASED OUT_FOR_DELIVERY READY_FOR_PICKUP
}
enum OrderDisplayFulfillmentStatus {
  FULFILLED IN_PROGRESS ON_HOLD OPEN PARTIALLY_FULFILLED PENDING_FULFILLMENT REQUEST_DECLINED RESTOCKED
  SCHEDULED UNFULFILLED
}
type LineItem implements Node { id: ID! sku: String name: String! quantity: Int! }
type FulfillmentOrderLineItem implements Node {
  id: ID! lineItem: LineItem! sku: String remainingQuantity: Int! totalQuantity: Int!
}
type FulfillmentOrderLineItemEdge { cursor: String! node: FulfillmentOrderLineItem! }
type FulfillmentOrderLineItemConnection {
  edges: [FulfillmentOrderLineItemEdge!]! nodes: [FulfillmentOrderLineItem!]! pageInfo: PageInfo!
}
type FulfillmentOrderAssignedLocation { location: Location name: String! }
type FulfillmentOrder implements Node {
  id: ID! status: FulfillmentOrderStatus! orderId: ID! orderName: String! createdAt: DateTime! updatedAt: DateTime!
  assignedLocation: FulfillmentOrderAssignedLocation!
  lineItems(PAGE_ARGS): FulfillmentOrderLineItemConnection!
}
type FulfillmentOrderEdge { cursor: String! node: FulfillmentOrder! }
type FulfillmentOrderConnection { edges: [FulfillmentOrderEdge!]! nodes: [FulfillmentOrder!]! pageInfo: PageInfo! }
type FulfillmentTrackingInfo { company: String number: String url: URL }
type FulfillmentEvent implements Node {
  id: ID! status: FulfillmentEventStatus! message: String happenedAt: DateTime! createdAt: DateTime!
}
type FulfillmentEventEdge { cursor: String! node: FulfillmentEvent! }
type FulfillmentEventConnection { edges: [FulfillmentEventEdge!]! nodes: [FulfillmentEvent!]! pageInfo: PageInfo! }
type Fulfillment implements Node {
  id: ID! name: String! status: FulfillmentStatus! displayStatus: FulfillmentDisplayStatus createdAt: DateTime!
  deliveredAt: DateTime trackingInfo(first: Int): [FulfillmentTrackingInfo!]!
  events(PAGE_ARGS): FulfillmentEventConnection!
  fulfillmentOrders(PAGE_ARGS): FulfillmentOrderConnection!
}
type Order implements Node {
  id: ID! name: String! legacyResourceId: UnsignedInt64! displayFulfillmentStatus: OrderDisplayFulfillmentStatus!
  fulfillmentOrders(PAGE_ARGS, displayable: Boolean = false): FulfillmentOrderConnection!
  fulfillments(first: Int): [Fulfillment!]!
}
input FulfillmentOrderLineItemInput { id: ID! quantity: Int! }
input FulfillmentOrderLineItemsInput {
  fulfillmentOrderId: ID! fulfillmentOrderLineItems: [FulfillmentOrderLineItemInput!]
}
input FulfillmentTrackingInput { company: String number: String numbers: [String!] url: URL urls: [URL!] }
input FulfillmentOriginAddressInput {
  address1: String address2: String city: String countryCode: String! provinceCode: String zip: String
}
input FulfillmentInput {
  lineItemsByFulfillmentOrder: [FulfillmentOrderLineItemsInput!]! notifyCustomer: Boolean = false
  originAddress: FulfillmentOriginAddressInput trackingInfo: FulfillmentTrackingInput
}
type FulfillmentCreatePayload { fulfillment: Fulfillment userErrors: [UserError!]! }
input FulfillmentEventInput {
  fulfillmentId: ID! status: FulfillmentEventStatus! message: String happenedAt: DateTime
  estimatedDeliveryAt: DateTime address1: String city: String province: String country: String zip: String
  latitude: Float longitude: Float
}
type FulfillmentEventCreatePayload { fulfillmentEvent: FulfillmentEvent userErrors: [UserError!]! }
""".replace("PAGE_ARGS", page_args)


SCHEMAS: dict[str, GraphQLSchema] = {version: build_schema(_sdl(version)) for version in VERSIONS}

# graphql-ruby's codes for the validation rules a client most often trips over.
_RULE_CODES = {
    "FieldsOnCorrectTypeRule": "undefinedField",
    "KnownArgumentNamesRule": "argumentNotAccepted",
    "ProvidedRequiredArgumentsRule": "missingRequiredArguments",
    "KnownTypeNamesRule": "undefinedType",
    "ScalarLeafsRule": "selectionMismatch",
    "KnownDirectivesRule": "undefinedDirective",
    "NoUndefinedVariablesRule": "variableNotDefined",
    "NoUnusedVariablesRule": "variableNotUsed",
    "VariablesInAllowedPositionRule": "variableMismatch",
    "ValuesOfCorrectTypeRule": "argumentLiteralsIncompatible",
}


def resolve_version(requested: str) -> str | None:
    """The version that serves a request: a supported one as asked; a retired release falls
    forward to the oldest supported one, as Shopify does; anything else is not found (None)."""
    if requested in VERSIONS:
        return requested
    if _RELEASE.match(requested) and requested < VERSIONS[0]:
        return VERSIONS[0]
    return None


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def gid_number(value: Any, kind: str) -> int | None:
    """The number in a well-formed global id of ``kind``; None for anything else."""
    match = _GID.match(value) if isinstance(value, str) else None
    if not match or match.group("type") != kind:
        return None
    return int(match.group("number"))


def _cursor(number: int) -> str:
    raw = json.dumps({"last_id": number, "last_value": str(number)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor_number(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["last_id"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from None
    if not isinstance(value, int):
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"})
    return value


def _error(message: str, code: str, *, path: Sequence[str | int] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"message": message, "extensions": {"code": code}}
    if path is not None:
        doc["path"] = list(path)
    return doc


def _user_error(code: str, field_path: list[str] | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field_path, "message": message}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor2(value: float) -> float:
    """Points as reported: rounded down, so a client that waits for them never waits too little."""
    return math.floor(value * 100) / 100


# -- state ---------------------------------------------------------------------------------------
@dataclass
class Behaviour:
    mode: str = "ok"  # see MODES
    retry_after: float = 2.0
    delay: float = 0.0
    rate: float = 0.0  # flaky: the fraction of requests that fail
    seed: int = 0
    count: int | None = None  # apply to the next N API requests only, then back to ok


@dataclass
class _Variant:
    sku: str | None
    item: int


@dataclass
class _Bucket:
    available: float
    at: float


@dataclass
class _KeyRecord:
    fingerprint: str
    created: float
    state: str = "in_progress"  # in_progress | applied | failed
    payload: dict[str, Any] | None = None


@dataclass
class _Request:
    """What a resolver needs of the request it serves."""

    version: str
    hold: float = 0.0
    token: str = ""  # the app: buckets and bulk operations are per app and shop


@dataclass
class BulkBehaviour:
    mode: str = "ok"  # see BULK_MODES
    error_code: str = "INTERNAL_SERVER_ERROR"
    fail_after: int = 0  # fail: objects processed before the operation fails


@dataclass
class _BulkOperation:
    number: int
    token: str
    query: str
    created: float  # the stand-in's clock
    created_wall: datetime
    total: int  # objects the query selects (taken when it is created)
    lines: list[bytes] | None = None  # the JSONL file's lines, once prepared
    status: str = "CREATED"
    progress: float = 0.0  # objects processed
    progress_at: float = 0.0
    finished_at: float | None = None
    error_code: str | None = None
    _body: bytes | None = None

    def body(self, partial: bool) -> bytes:
        lines = self.lines or []
        if partial:
            return b"".join(lines[: int(self.progress)])
        if self._body is None:
            self._body = b"".join(lines)
        return self._body


# A bulk query's node, projected to a JSONL line: (response key, value of (variant, sku, item)).
_Projection = list[tuple[str, Callable[[int, "str | None", int], Any]]]


@dataclass
class _BulkPlan:
    """What a bulk query over ``productVariants`` asks for: the search, the order and the fields."""

    search: str | None
    reverse: bool
    fields: _Projection


@dataclass
class _Analysis:
    requested: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # root response key -> (kind, cost per item, requested cost): how to price what was returned
    roots: dict[str, tuple[str, int, int]] = field(default_factory=dict)


@dataclass
class _LineItem:
    number: int
    order: int
    sku: str
    quantity: int


@dataclass
class _FulfillmentOrderLine:
    number: int
    fulfillment_order: int
    line_item: int
    total: int
    remaining: int


@dataclass
class _FulfillmentOrder:
    number: int
    order: int
    location: int
    created: str
    status: str = "OPEN"
    lines: list[int] = field(default_factory=list)


@dataclass
class _FulfillmentEvent:
    number: int
    status: str
    message: str | None
    happened_at: str
    created: str


@dataclass
class _Fulfillment:
    number: int
    order: int
    name: str
    created: str
    fulfillment_orders: list[int]
    lines: list[tuple[int, int]]  # (fulfillment order line, quantity)
    tracking: list[dict[str, Any]]
    notify_customer: bool
    status: str = "SUCCESS"
    display_status: str = "FULFILLED"
    delivered_at: str | None = None
    events: list[int] = field(default_factory=list)


@dataclass
class _ShopOrder:
    number: int
    name: str
    created: str
    lines: list[int] = field(default_factory=list)
    fulfillment_orders: list[int] = field(default_factory=list)
    fulfillments: list[int] = field(default_factory=list)


class ShopifyAdminStandIn:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_token: str = ACCESS_TOKEN,
        maximum_available: float = MAXIMUM_AVAILABLE,
        restore_rate: float = RESTORE_RATE,
        location_name: str = DEFAULT_LOCATION_NAME,
        bulk_objects_per_second: float = BULK_OBJECTS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum_available <= 0 or restore_rate <= 0 or bulk_objects_per_second <= 0:
            raise ValueError("maximum_available, restore_rate and bulk_objects_per_second must be positive")
        self.bulk_objects_per_second = float(bulk_objects_per_second)
        self.access_token = access_token
        self.maximum_available = float(maximum_available)
        self.restore_rate = float(restore_rate)
        self.location_name = location_name
        self._clock = clock
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def graphql_url(self, version: str = CURRENT_VERSION) -> str:
        return f"{self.root_url}/admin/api/{version}/graphql.json"

    def start(self) -> ShopifyAdminStandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="shopify-admin-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> ShopifyAdminStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._locations: dict[int, str] = {1: self.location_name}
            self._variants: dict[int, _Variant] = {}
            self._variant_numbers: list[int] = []  # ascending: the order productVariants pages in
            self._items: dict[int, int] = {}  # inventory item -> variant
            self._item_numbers: list[int] = []
            self._by_sku: dict[str, list[int]] = {}  # sku -> variants
            self._levels: dict[tuple[int, int], int] = {}  # (item, location) -> available
            self._buckets: dict[str, _Bucket] = {}
            self._keys: OrderedDict[str, _KeyRecord] = OrderedDict()
            self._groups = itertools.count(1)
            self._flaky = random.Random(0)
            self.behaviour = Behaviour()
            self.bulk_behaviour = BulkBehaviour()
            self._bulk: dict[int, _BulkOperation] = {}
            self._bulk_numbers = itertools.count(1)
            self._counts = dict.fromkeys(
                (
                    "requests",
                    "mutations",
                    "throttled",
                    "errors_429",
                    "compare_mismatches",
                    "idempotent_replays",
                    "adjustment_groups",
                    "quantities_set",
                    "rejected_by_behaviour",
                    "graphql_errors",
                    "bulk_operations",
                    "bulk_refused",
                    "bulk_downloads",
                    "orders",
                    "fulfillments_created",
                    "fulfillment_events_created",
                ),
                0,
            )
            self._reset_orders()

    def now(self) -> float:
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> None:
        """Move the stand-in's clock on: buckets refill and idempotency keys age without waiting."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds

    def set_behaviour(
        self,
        mode: str = "ok",
        *,
        retry_after: float = 2.0,
        delay: float = 0.0,
        rate: float = 0.0,
        seed: int = 0,
        count: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if retry_after < 0 or delay < 0 or (count is not None and count < 0):
            raise ValueError("retry_after, delay and count must not be negative")
        with self._lock:
            self.behaviour = Behaviour(mode, retry_after, delay, rate, seed, count)
            self._flaky = random.Random(seed)
            self._release.clear()

    def release(self) -> None:
        """End the holds of ``slow`` now: held requests go on at once."""
        self._release.set()

    def set_access_token(self, token: str) -> None:
        """A token rotation: the old token is refused from now on."""
        with self._lock:
            self.access_token = token

    def add_location(self, name: str) -> str:
        with self._lock:
            number = max(self._locations) + 1
            self._locations[number] = name
            return gid("Location", number)

    def add_variant(self, sku: str | None, *, quantity: int | None = 0, location_id: str = DEFAULT_LOCATION_ID) -> str:
        """One variant with its inventory item; stocked at ``location_id`` with ``quantity``
        (not stocked anywhere when ``quantity`` is None). Returns the inventory item id."""
        with self._lock:
            location = self._location_number(location_id)
            number = len(self._variant_numbers) + 1
            self._add(number, sku, quantity, location)
            return gid("InventoryItem", ITEM_BASE + number)

    def seed_catalogue(
        self, count: int, *, prefix: str = "SKU-", quantity: int = 0, location_id: str = DEFAULT_LOCATION_ID
    ) -> int:
        """``count`` variants with skus f"{prefix}{n:06d}", n from 1, stocked at ``location_id``."""
        if count < 0 or count > 1_000_000:
            raise ValueError("count must be between 0 and 1,000,000")
        if abs(quantity) > QUANTITY_LIMIT:
            raise ValueError("quantity out of range")
        skus = [f"{prefix}{n:06d}" for n in range(1, count + 1)]
        with self._lock:
            location = self._location_number(location_id)
            taken = [sku for sku in skus if sku in self._by_sku]
            if taken:
                raise ValueError(f"{len(taken)} skus exist already, e.g. {taken[0]}")
            start = len(self._variant_numbers)
            for offset, sku in enumerate(skus, start=1):
                self._add(start + offset, sku, quantity, location)
            return count

    def _add(self, number: int, sku: str | None, quantity: int | None, location: int) -> None:
        variant, item = VARIANT_BASE + number, ITEM_BASE + number
        self._variants[variant] = _Variant(sku, item)
        self._variant_numbers.append(variant)
        self._items[item] = variant
        self._item_numbers.append(item)
        if sku:
            self._by_sku.setdefault(sku, []).append(variant)
        if quantity is not None:
            self._levels[(item, location)] = quantity

    def _location_number(self, location_id: str) -> int:
        number = gid_number(location_id, "Location")
        if number is None or number not in self._locations:
            raise ValueError(f"unknown location {location_id!r}")
        return number

    def set_quantities(self, quantities: Mapping[str, int], *, location_id: str = DEFAULT_LOCATION_ID) -> None:
        """Set available quantities by sku directly, as a shop sale or a merchant's edit does."""
        with self._lock:
            location = self._location_number(location_id)
            unknown = [sku for sku in quantities if sku not in self._by_sku]
            if unknown:
                raise KeyError(f"unknown skus: {', '.join(sorted(unknown)[:10])}")
            for sku, quantity in quantities.items():
                if isinstance(quantity, bool) or not isinstance(quantity, int) or abs(quantity) > QUANTITY_LIMIT:
                    raise ValueError(f"quantity for {sku!r} must be an integer within ±1,000,000,000")
            for sku, quantity in quantities.items():
                for variant in self._by_sku[sku]:
                    self._levels[(self._variants[variant].item, location)] = quantity

    def quantities(self, location_id: str = DEFAULT_LOCATION_ID) -> dict[str, int | None]:
        """sku -> available at the location (None: not stocked there)."""
        with self._lock:
            location = self._location_number(location_id)
            return {
                sku: self._levels.get((self._variants[variants[0]].item, location))
                for sku, variants in self._by_sku.items()
            }

    def item_id(self, sku: str) -> str:
        with self._lock:
            return gid("InventoryItem", self._variants[self._by_sku[sku][0]].item)

    def in_progress(self) -> list[str]:
        """Idempotency keys whose mutation is being applied right now."""
        with self._lock:
            return [key for key, record in self._keys.items() if record.state == "in_progress"]

    def lookup(self, skus: Sequence[str], *, location_id: str = DEFAULT_LOCATION_ID) -> dict[str, Any]:
        """Available per sku at the location (None: not stocked there), and the skus the shop
        does not know: a point read for benchmarks and tests, cheap on a large catalogue."""
        with self._lock:
            location = self._location_number(location_id)
            found: dict[str, int | None] = {}
            unknown: list[str] = []
            for sku in skus:
                variants = self._by_sku.get(sku)
                if variants is None:
                    unknown.append(sku)
                else:
                    found[sku] = self._levels.get((self._variants[variants[0]].item, location))
            return {"quantities": found, "unknown": unknown}

    def set_bulk_behaviour(
        self,
        mode: str = "ok",
        *,
        error_code: str = "INTERNAL_SERVER_ERROR",
        fail_after: int = 0,
        objects_per_second: float | None = None,
    ) -> None:
        """How bulk queries progress from now on (running ones too): see BULK_MODES."""
        if mode not in BULK_MODES:
            raise ValueError(f"unknown bulk mode {mode!r}; one of {sorted(BULK_MODES)}")
        if error_code not in BULK_ERROR_CODES:
            raise ValueError(f"error_code must be one of {', '.join(BULK_ERROR_CODES)}")
        if fail_after < 0 or (objects_per_second is not None and objects_per_second <= 0):
            raise ValueError("fail_after must not be negative and objects_per_second must be positive")
        with self._lock:
            now = self.now()
            for operation in self._bulk.values():  # progress so far counts at the old pace
                self._advance_bulk(operation, now)
            self.bulk_behaviour = BulkBehaviour(mode, error_code, fail_after)
            if objects_per_second is not None:
                self.bulk_objects_per_second = float(objects_per_second)

    def bulk_operations(self) -> list[dict[str, Any]]:
        """Every bulk operation as it stands now, oldest first."""
        with self._lock:
            now = self.now()
            found = []
            for number, operation in sorted(self._bulk.items()):
                self._advance_bulk(operation, now)
                found.append(
                    {
                        "id": gid("BulkOperation", number),
                        "status": operation.status,
                        "objectCount": int(operation.progress),
                        "total": operation.total,
                        "errorCode": operation.error_code,
                    }
                )
            return found

    def limits(self) -> dict[str, float]:
        return {"maximum_available": self.maximum_available, "restore_rate": self.restore_rate}

    def bulk_limits(self) -> dict[str, Any]:
        return {
            "max_bulk_queries": MAX_BULK_QUERIES,
            "objects_per_second": self.bulk_objects_per_second,
            "url_ttl_seconds": BULK_URL_TTL,
            "max_query_seconds": BULK_QUERY_MAX_SECONDS,
            "behaviour": dict(self.bulk_behaviour.__dict__),
        }

    def summary(self) -> dict[str, Any]:
        """Counts only: cheap enough to poll while a large catalogue is synchronised."""
        with self._lock:
            return {
                **self._counts,
                "variants": len(self._variant_numbers),
                "locations": len(self._locations),
                "idempotency_keys": len(self._keys),
                "limits": self.limits(),
                "bulk": self.bulk_limits(),
            }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "quantities": self.quantities(),
                "locations": [{"id": gid("Location", n), "name": name} for n, name in sorted(self._locations.items())],
                "versions": list(VERSIONS),
                "behaviour": dict(self.behaviour.__dict__),
                "limits": self.limits(),
                "counts": dict(self._counts),
                "bulk_operations": self.bulk_operations(),
            }

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    # -- behaviour -------------------------------------------------------------------------
    def _misbehave(self) -> tuple[int, dict[str, str], bytes] | float | None:
        """An answer forced by the current behaviour, a hold in seconds (slow), or None."""
        with self._lock:
            b = self.behaviour
            if b.mode == "ok":
                return None
            if b.count is not None:
                if b.count <= 0:
                    self.behaviour = Behaviour()
                    return None
                b.count -= 1
            if b.mode == "slow":
                return b.delay
            if b.mode == "flaky" and self._flaky.random() >= b.rate:
                return None
            self._counts["rejected_by_behaviour"] += 1
            if b.mode == "rate_limited":
                self._counts["errors_429"] += 1
                body = json.dumps({"errors": TOO_MANY}).encode()
                return 429, {"Retry-After": f"{float(b.retry_after):.1f}"}, body
        page = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>503</body></html>"
        return 503, {"Content-Type": "text/html; charset=utf-8"}, page

    def _hold(self, seconds: float) -> None:
        if seconds > 0:
            self._release.wait(seconds)

    # -- the API ---------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        download = _BULK_FILE.match(path)
        if download:
            return self._download(method, int(download.group("number")), bool(download.group("partial")))
        if path.startswith("/_standin/"):
            status, payload = self._control(method, path, raw)
            return status, {}, json.dumps(payload).encode()
        match = _API_PATH.match(path)
        version = resolve_version(match.group("version")) if match else None
        if version is None:
            return 404, {}, json.dumps({"errors": "Not Found"}).encode()
        self._count("requests")
        forced = self._misbehave()
        if isinstance(forced, tuple):
            return forced
        if headers.get("x-shopify-access-token") != self.access_token:
            return 401, {}, json.dumps({"errors": UNAUTHORIZED}).encode()
        if method != "POST":
            return 405, {"Allow": "POST"}, json.dumps({"errors": "Method Not Allowed"}).encode()
        request = self._request_body(headers.get("content-type", ""), raw)
        extra = {"X-Shopify-API-Version": version}
        if request is None:
            body = {"errors": {"query": "Required parameter missing or invalid"}}
            return 400, extra, json.dumps(body).encode()
        query, variables, operation_name = request
        token = headers["x-shopify-access-token"]
        answer = self._graphql(version, token, query, variables, operation_name, forced or 0.0)
        if answer.get("errors"):
            self._count("graphql_errors")
        return 200, extra, json.dumps(answer).encode()

    @staticmethod
    def _request_body(content_type: str, raw: bytes) -> tuple[str, dict[str, Any], str | None] | None:
        if content_type.split(";", maxsplit=1)[0].strip() == "application/graphql":
            text = raw.decode("utf-8", errors="replace")
            return (text, {}, None) if text.strip() else None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
            return None
        variables = body.get("variables") or {}
        operation_name = body.get("operationName")
        if not isinstance(variables, dict) or not (operation_name is None or isinstance(operation_name, str)):
            return None
        return body["query"], variables, operation_name

    def _status(self, bucket: _Bucket) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": _floor2(bucket.available),
            "restoreRate": self.restore_rate,
        }

    def _bucket(self, token: str) -> _Bucket:
        """The token's bucket, refilled for the time since it was last touched (under the lock)."""
        now = self.now()
        bucket = self._buckets.get(token)
        if bucket is None:
            bucket = self._buckets[token] = _Bucket(self.maximum_available, now)
        bucket.available = min(self.maximum_available, bucket.available + (now - bucket.at) * self.restore_rate)
        bucket.at = now
        return bucket

    def _answer(
        self, token: str, errors: list[dict[str, Any]], requested: int, data: Any = None, *, with_data: bool = False
    ) -> dict[str, Any]:
        """A refused request: nothing executed, nothing charged."""
        with self._lock:
            status = self._status(self._bucket(token))
        answer: dict[str, Any] = {"errors": errors}
        if with_data:
            answer["data"] = data
        answer["extensions"] = {
            "cost": {"requestedQueryCost": requested, "actualQueryCost": 0, "throttleStatus": status}
        }
        return answer

    def _graphql(
        self, version: str, token: str, query: str, variables: dict[str, Any], operation_name: str | None, hold: float
    ) -> dict[str, Any]:
        schema = SCHEMAS[version]
        try:
            document = parse(query)
        except GraphQLError as exc:
            return self._answer(token, [_formatted(exc, None)], 0)
        problems = validate(schema, document)
        if problems:
            return self._answer(token, _validation_errors(schema, document), 0)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (
                f'No operation named "{operation_name}"'
                if operation_name
                else "An operation name is required when the document holds more than one operation"
            )
            return self._answer(token, [_error(message, "BAD_REQUEST")], 0)
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            return self._answer(token, [_formatted(e, "INVALID_VARIABLE") for e in coerced], 0)
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        analysis = _Analyser(schema, version, fragments, coerced).run(operation)
        if analysis.errors:
            return self._answer(token, analysis.errors, analysis.requested, with_data=True)
        requested = analysis.requested
        if requested > MAX_SINGLE_QUERY_COST:
            message = (
                f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({MAX_SINGLE_QUERY_COST}).\n\nSee {DOCS_RATE_LIMITS} for more information on how the cost of "
                "a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations "
                "should be used instead."
            )
            extensions = {
                "code": "MAX_COST_EXCEEDED",
                "cost": requested,
                "maxCost": MAX_SINGLE_QUERY_COST,
                "documentation": DOCS_RATE_LIMITS,
            }
            return self._answer(token, [{"message": message, "extensions": extensions}], requested)
        is_mutation = operation.operation == OperationType.MUTATION
        with self._lock:
            bucket = self._bucket(token)
            if requested > bucket.available:
                self._counts["throttled"] += 1
                return {
                    "errors": [
                        {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": DOCS_RATE_LIMITS}}
                    ],
                    "extensions": {
                        "cost": {
                            "requestedQueryCost": requested,
                            "actualQueryCost": None,
                            "throttleStatus": self._status(bucket),
                        }
                    },
                }
            bucket.available -= requested
            if is_mutation:
                self._counts["mutations"] += 1
        if not is_mutation:
            self._hold(hold)
        root = self._mutation_root() if is_mutation else self._query_root()
        result = execute_sync(
            schema,
            document,
            root_value=root,
            context_value=_Request(version, hold if is_mutation else 0.0, token),
            variable_values=variables,
            operation_name=operation_name,
        )
        actual = _actual_cost(analysis, result.data)
        with self._lock:
            bucket = self._bucket(token)
            bucket.available = min(self.maximum_available, bucket.available + requested - actual)
            status = self._status(bucket)
        answer: dict[str, Any] = {}
        if result.errors:
            answer["errors"] = [_formatted(e, None) for e in result.errors]
        answer["data"] = result.data
        answer["extensions"] = {
            "cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status}
        }
        return answer

    # -- objects -----------------------------------------------------------------------------
    def _location_obj(self, number: int) -> dict[str, Any] | None:
        name = self._locations.get(number)
        if name is None:
            return None
        return {
            "__typename": "Location",
            "id": gid("Location", number),
            "name": name,
            "isActive": True,
            "fulfillsOnlineOrders": True,
            "inventoryLevel": lambda _info, inventoryItemId: self._level_obj(
                gid_number(inventoryItemId, "InventoryItem"), number
            ),
        }

    def _item_obj(self, number: int) -> dict[str, Any] | None:
        variant = self._items.get(number)
        if variant is None:
            return None
        return {
            "__typename": "InventoryItem",
            "id": gid("InventoryItem", number),
            "sku": self._variants[variant].sku,
            "tracked": True,
            "variant": lambda _info: self._variant_obj(variant),
            "inventoryLevel": lambda _info, locationId: self._level_obj(number, gid_number(locationId, "Location")),
        }

    def _variant_obj(self, number: int) -> dict[str, Any] | None:
        variant = self._variants.get(number)
        if variant is None:
            return None
        item = variant.item
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", number),
            "sku": variant.sku,
            "title": "Default Title",
            "displayName": f"{variant.sku or 'Untitled'} - Default Title",
            "inventoryItem": lambda _info: self._item_obj(item),
            "inventoryQuantity": lambda _info: self._total(item),
        }

    def _total(self, item: int) -> int:
        with self._lock:
            return sum(q for (i, _), q in self._levels.items() if i == item)

    def _level_obj(self, item: int | None, location: int | None) -> dict[str, Any] | None:
        if item is None or location is None:
            return None
        with self._lock:
            if (item, location) not in self._levels:
                return None

        def quantities(_info: Any, names: list[str]) -> list[dict[str, Any]]:
            unknown = [n for n in names if n not in QUANTITY_NAMES]
            if unknown:
                raise GraphQLError(
                    f"Invalid quantity name: {unknown[0]}. Valid names: {', '.join(QUANTITY_NAMES)}",
                    extensions={"code": "BAD_REQUEST"},
                )
            with self._lock:
                available = self._levels.get((item, location), 0)
            values = {"available": available, "on_hand": available}
            return [{"name": n, "quantity": values.get(n, 0), "updatedAt": _now_iso()} for n in names]

        return {
            "__typename": "InventoryLevel",
            "id": f"{gid('InventoryLevel', location)}?inventory_item_id={item}",
            "item": lambda _info: self._item_obj(item),
            "location": lambda _info: self._location_obj(location),
            "updatedAt": _now_iso(),
            "quantities": quantities,
        }

    def _node(self, value: str, token: str = "") -> dict[str, Any] | None:
        match = _GID.match(value)
        if not match:
            raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"})
        number = int(match.group("number"))
        with self._lock:
            kind = match.group("type")
            if kind == "BulkOperation":
                return self._bulk_node(number, token)
            if kind == "ProductVariant":
                return self._variant_obj(number)
            if kind == "InventoryItem":
                return self._item_obj(number)
            if kind == "Location":
                return self._location_obj(number)
            found = {
                "Order": self._order_obj,
                "FulfillmentOrder": self._fulfillment_order_obj,
                "FulfillmentOrderLineItem": self._fo_line_obj,
                "LineItem": self._line_item_obj,
                "Fulfillment": self._fulfillment_obj,
                "FulfillmentEvent": self._event_obj,
            }.get(kind)
            if found is not None:
                return found(number)
            if kind == "InventoryLevel":
                item = re.search(r"inventory_item_id=([0-9]+)", value)
                return self._level_obj(int(item.group(1)), number) if item else None
        return None

    # -- queries -------------------------------------------------------------------------------
    def _query_root(self) -> dict[str, Any]:
        def page_args(args: dict[str, Any]) -> tuple[Any, Any, Any, Any, bool]:
            return (args.get("first"), args.get("after"), args.get("last"), args.get("before"), args["reverse"])

        def variants(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                numbers = self._filter(args.get("query"), self._variant_numbers, self._variants_by_term)
                return self._page(numbers, *page_args(args), self._variant_obj)

        def items(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                numbers = self._filter(args.get("query"), self._item_numbers, self._items_by_term)
                return self._page(numbers, *page_args(args), self._item_obj)

        def locations(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                if args.get("query"):
                    raise GraphQLError("the stand-in filters locations by nothing", extensions={"code": "BAD_REQUEST"})
                return self._page(sorted(self._locations), *page_args(args), self._location_obj)

        def location(_info: Any, id: str | None = None) -> dict[str, Any] | None:
            with self._lock:
                return self._location_obj(1 if id is None else (gid_number(id, "Location") or 0))

        def bulk_operation(info: Any, id: str) -> dict[str, Any] | None:
            number = gid_number(id, "BulkOperation")
            if number is None:
                if not _GID.match(id):
                    raise GraphQLError(f"Invalid global id '{id}'", extensions={"code": "argumentLiteralsIncompatible"})
                return None
            with self._lock:
                return self._bulk_node(number, info.context.token)

        def current_bulk_operation(info: Any, type: str = "QUERY") -> dict[str, Any] | None:
            if type != "QUERY":
                return None  # the stand-in runs no bulk mutations
            with self._lock:
                mine = [n for n, op in self._bulk.items() if op.token == info.context.token]
                return self._bulk_node(max(mine), info.context.token) if mine else None

        return {
            "order": lambda _info, id: self._node_of(id, "Order", self._order_obj),
            "fulfillmentOrder": lambda _info, id: self._node_of(id, "FulfillmentOrder", self._fulfillment_order_obj),
            "fulfillment": lambda _info, id: self._node_of(id, "Fulfillment", self._fulfillment_obj),
            "node": lambda info, id: self._node(id, info.context.token),
            "nodes": lambda info, ids: [self._node(i, info.context.token) for i in ids],
            "bulkOperation": bulk_operation,
            "currentBulkOperation": current_bulk_operation,
            "inventoryItem": lambda _info, id: self._node_of(id, "InventoryItem", self._item_obj),
            "productVariant": lambda _info, id: self._node_of(id, "ProductVariant", self._variant_obj),
            "productVariants": variants,
            "inventoryItems": items,
            "location": location,
            "locations": locations,
        }

    def _node_of(self, value: str, kind: str, make: Callable[[int], dict[str, Any] | None]) -> dict[str, Any] | None:
        number = gid_number(value, kind)
        if number is None:
            if not _GID.match(value):
                raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"})
            return None
        with self._lock:
            return make(number)

    def _variants_by_term(self, name: str, value: str) -> list[int]:
        if name == "sku":
            return sorted(self._by_sku.get(value, []))
        if name == "id":
            return [int(value)] if value.isdigit() and int(value) in self._variants else []
        raise GraphQLError(
            f"the stand-in filters variants by sku or id, not {name!r}", extensions={"code": "BAD_REQUEST"}
        )

    def _items_by_term(self, name: str, value: str) -> list[int]:
        if name == "sku":
            return sorted(self._variants[v].item for v in self._by_sku.get(value, []))
        if name == "id":
            return [int(value)] if value.isdigit() and int(value) in self._items else []
        raise GraphQLError(f"the stand-in filters items by sku or id, not {name!r}", extensions={"code": "BAD_REQUEST"})

    @staticmethod
    def _filter(query: str | None, every: list[int], by_term: Callable[[str, str], list[int]]) -> list[int]:
        """Shopify search syntax, the subset the integration uses: ``sku:X`` or ``id:N`` terms
        joined by OR."""
        if not query or not query.strip():
            return every
        found: set[int] = set()
        for term in re.split(r"\s+OR\s+", query.strip()):
            name, colon, value = term.partition(":")
            if not colon or not value:
                raise GraphQLError(
                    f"the stand-in does not search free text: {term!r}", extensions={"code": "BAD_REQUEST"}
                )
            found.update(by_term(name.strip(), value.strip().strip('"')))
        return sorted(found)

    @staticmethod
    def _page(
        numbers: Sequence[int],
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
        reverse: bool,
        make: Callable[[int], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """One page of an ascending list, in Relay's terms (first/after, last/before, reverse)."""
        lo, hi = 0, len(numbers)
        after_n = _cursor_number(after) if after else None
        before_n = _cursor_number(before) if before else None
        if not reverse:
            lo = bisect_right(numbers, after_n) if after_n is not None else lo
            hi = bisect_left(numbers, before_n) if before_n is not None else hi
        else:
            hi = bisect_left(numbers, after_n) if after_n is not None else hi
            lo = bisect_right(numbers, before_n) if before_n is not None else lo
        hi = max(lo, hi)
        # the page as a range of the ascending list, then in display order
        if first is not None:
            page_lo, page_hi = (lo, min(hi, lo + first)) if not reverse else (max(lo, hi - first), hi)
        else:
            size = last or 0
            page_lo, page_hi = (max(lo, hi - size), hi) if not reverse else (lo, min(hi, lo + size))
        picked = list(numbers[page_lo:page_hi])
        if reverse:
            picked.reverse()
        more_above, more_below = page_hi < len(numbers), page_lo > 0
        has_next, has_previous = (more_below, more_above) if reverse else (more_above, more_below)
        if not picked:
            has_next = has_previous = False
        nodes = [make(n) for n in picked]
        edges = [{"cursor": _cursor(n), "node": node} for n, node in zip(picked, nodes, strict=True)]
        return {
            "nodes": nodes,
            "edges": edges,
            "pageInfo": {
                "hasNextPage": has_next,
                "hasPreviousPage": has_previous,
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
            },
        }

    # -- the mutation --------------------------------------------------------------------------
    def _mutation_root(self) -> dict[str, Any]:
        return {
            "inventorySetQuantities": self._set_quantities_field,
            "bulkOperationRunQuery": self._run_bulk_query,
            "bulkOperationCancel": self._cancel_bulk,
            "fulfillmentCreate": self._fulfillment_create,
            "fulfillmentEventCreate": self._fulfillment_event_create,
        }

    def _set_quantities_field(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        request: _Request = info.context
        key = _idempotency_key(info.schema, info.field_nodes[0], info.variable_values)
        fingerprint = json.dumps({"inventorySetQuantities": input}, sort_keys=True, default=str)
        record: _KeyRecord | None = None
        if key is not None:
            with self._lock:
                now = self.now()
                while self._keys:
                    oldest = next(iter(self._keys.values()))
                    if now - oldest.created < IDEMPOTENCY_WINDOW:
                        break
                    self._keys.popitem(last=False)
                known = self._keys.get(key)
                if known is not None:
                    return self._replay(known, fingerprint, request.version)
                record = self._keys[key] = _KeyRecord(fingerprint, now)
        self._hold(request.hold)
        with self._lock:
            payload, applied = self._apply(input, request.version)
            if record is not None:
                record.state = "applied" if applied else "failed"
                record.payload = payload
        return payload

    def _replay(self, known: _KeyRecord, fingerprint: str, version: str) -> dict[str, Any]:
        if known.fingerprint != fingerprint:
            message = "The same idempotency key cannot be used with different operation parameters."
            return _payload([_user_error("IDEMPOTENCY_KEY_PARAMETER_MISMATCH", None, message)])
        if known.state == "in_progress" or known.payload is None:
            message = "This request is currently in progress, please try again."
            return _payload([_user_error("IDEMPOTENCY_CONCURRENT_REQUEST", None, message)])
        self._counts["idempotent_replays"] += 1
        if known.state == "failed" and version >= PREVIOUS_ATTEMPT_FAILED_FROM:
            message = "A previous request with this idempotency key failed. Retry with a new idempotency key."
            return _payload([_user_error("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED", None, message)])
        return known.payload

    def _apply(self, input: dict[str, Any], version: str) -> tuple[dict[str, Any], bool]:
        """Check every quantity, then set all of them or none (under the lock)."""
        errors: list[dict[str, Any]] = []
        name = input["name"]
        if name not in SETTABLE_NAMES:
            errors.append(
                _user_error(
                    "INVALID_NAME", ["input", "name"], "The quantity name must be either 'available' or 'on_hand'."
                )
            )
        if input["reason"] not in REASONS:
            errors.append(_user_error("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        reference = input.get("referenceDocumentUri")
        if reference is not None and not _URI.match(reference):
            errors.append(
                _user_error(
                    "INVALID_REFERENCE_DOCUMENT",
                    ["input", "referenceDocumentUri"],
                    "The specified reference document is invalid.",
                )
            )
        legacy = version < MANDATORY_FROM
        ignore_compare = bool(input.get("ignoreCompareQuantity")) if legacy else False
        seen: set[tuple[int, int]] = set()
        planned: list[tuple[int, int, int]] = []  # (item, location, quantity)
        mismatches = 0
        for i, q in enumerate(input["quantities"]):
            at = ["input", "quantities", str(i)]
            item = gid_number(q["inventoryItemId"], "InventoryItem")
            if item is None or item not in self._items:
                errors.append(
                    _user_error(
                        "INVALID_INVENTORY_ITEM",
                        [*at, "inventoryItemId"],
                        "The specified inventory item could not be found.",
                    )
                )
                continue
            location = gid_number(q["locationId"], "Location")
            if location is None or location not in self._locations:
                errors.append(
                    _user_error("INVALID_LOCATION", [*at, "locationId"], "The specified location could not be found.")
                )
                continue
            if (item, location) in seen:
                errors.append(
                    _user_error(
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                        at,
                        "The combination of inventoryItemId and locationId must be unique.",
                    )
                )
                continue
            seen.add((item, location))
            current = self._levels.get((item, location))
            if current is None:
                errors.append(
                    _user_error(
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        [*at, "locationId"],
                        "The specified inventory item is not stocked at the location.",
                    )
                )
                continue
            quantity = q["quantity"]
            if quantity > QUANTITY_LIMIT:
                errors.append(
                    _user_error(
                        "INVALID_QUANTITY_TOO_HIGH",
                        [*at, "quantity"],
                        "The total quantity can't be higher than 1,000,000,000.",
                    )
                )
                continue
            if name == "on_hand" and quantity < 0:
                errors.append(
                    _user_error("INVALID_QUANTITY_NEGATIVE", [*at, "quantity"], "The quantity can't be negative.")
                )
                continue
            if quantity < -QUANTITY_LIMIT:
                errors.append(
                    _user_error(
                        "INVALID_QUANTITY_TOO_LOW",
                        [*at, "quantity"],
                        "The total quantity can't be lower than -1,000,000,000.",
                    )
                )
                continue
            stale = self._compare(q, current, at, legacy, ignore_compare)
            if stale is not None:
                mismatches += stale["code"] != "COMPARE_QUANTITY_REQUIRED"
                errors.append(stale)
                continue
            planned.append((item, location, quantity))
        self._counts["compare_mismatches"] += mismatches
        if errors:
            return _payload(errors), False
        changes: list[dict[str, Any]] = []
        for item, location, quantity in planned:
            delta = quantity - self._levels[(item, location)]
            self._levels[(item, location)] = quantity
            if delta:
                for changed in ("available", "on_hand"):
                    changes.append(
                        {
                            "name": changed,
                            "delta": delta,
                            "quantityAfterChange": quantity,
                            "itemNumber": item,
                            "locationNumber": location,
                            "item": self._item_obj(item),
                            "location": self._location_obj(location),
                            "ledgerDocumentUri": None,
                        }
                    )
        self._counts["adjustment_groups"] += 1
        self._counts["quantities_set"] += len(planned)
        number = next(self._groups)

        def select(
            _info: Any,
            inventoryItemIds: list[str] | None = None,
            locationIds: list[str] | None = None,
            quantityNames: list[str] | None = None,
        ) -> list[dict[str, Any]]:
            items = {gid_number(i, "InventoryItem") for i in inventoryItemIds} if inventoryItemIds else None
            locations = {gid_number(i, "Location") for i in locationIds} if locationIds else None
            return [
                c
                for c in changes
                if (items is None or c["itemNumber"] in items)
                and (locations is None or c["locationNumber"] in locations)
                and (quantityNames is None or c["name"] in quantityNames)
            ]

        group = {
            "__typename": "InventoryAdjustmentGroup",
            "id": gid("InventoryAdjustmentGroup", number),
            "createdAt": _now_iso(),
            "reason": input["reason"],
            "referenceDocumentUri": reference,
            "changes": select,
        }
        return {"inventoryAdjustmentGroup": group, "userErrors": []}, True

    @staticmethod
    def _compare(
        q: Mapping[str, Any], current: int, at: list[str], legacy: bool, ignore_compare: bool
    ) -> dict[str, Any] | None:
        """The compare-and-set check of one quantity: None when it may be set."""
        if "changeFromQuantity" in q:  # given (even null) it decides, in every version
            expected = q["changeFromQuantity"]
            if expected is not None and expected != current:
                return _user_error(
                    "CHANGE_FROM_QUANTITY_STALE",
                    [*at, "changeFromQuantity"],
                    "The changeFromQuantity value does not match persisted value.",
                )
            return None
        if not legacy:  # caught before execution; kept for safety
            raise GraphQLError("changeFromQuantity is mandatory", extensions={"code": "INVALID_FIELD_ARGUMENTS"})
        expected = q.get("compareQuantity")
        if expected is None:
            if ignore_compare:
                return None
            return _user_error(
                "COMPARE_QUANTITY_REQUIRED",
                [*at, "compareQuantity"],
                "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.",
            )
        if expected != current:
            return _user_error(
                "COMPARE_QUANTITY_STALE",
                [*at, "compareQuantity"],
                "The compareQuantity value does not match persisted value.",
            )
        return None

    # -- bulk query operations -------------------------------------------------------------------
    def _run_bulk_query(self, info: Any, query: str, groupObjects: bool = False) -> dict[str, Any]:
        """Validate the query, take one of the app's bulk slots and start the operation; the
        JSONL lines are prepared before the answer, the file appears as the operation completes."""
        token: str = info.context.token
        plan = _bulk_plan(info.schema, query)
        if isinstance(plan, list):
            self._count("bulk_refused")
            return {"bulkOperation": None, "userErrors": [_user_error("INVALID", ["query"], m) for m in plan]}
        with self._lock:
            now = self.now()
            running = []
            for number, operation in sorted(self._bulk.items()):
                if operation.token == token:
                    self._advance_bulk(operation, now)
                    if operation.status in ("CREATED", "RUNNING", "CANCELING"):
                        running.append(gid("BulkOperation", number))
            if len(running) >= MAX_BULK_QUERIES:
                self._counts["bulk_refused"] += 1
                message = f"A bulk query operation for this app and shop is already in progress: {', '.join(running)}."
                return {"bulkOperation": None, "userErrors": [_user_error("OPERATION_IN_PROGRESS", None, message)]}
            try:
                numbers = self._filter(plan.search, self._variant_numbers, self._variants_by_term)
            except GraphQLError as exc:
                self._counts["bulk_refused"] += 1
                return {"bulkOperation": None, "userErrors": [_user_error("INVALID", ["query"], exc.message)]}
            if plan.reverse:
                numbers = numbers[::-1]
            rows = [(n, self._variants[n].sku, self._variants[n].item) for n in numbers]
            number = next(self._bulk_numbers)
            operation = _BulkOperation(number, token, query, now, datetime.now(UTC), len(rows), progress_at=now)
            self._bulk[number] = operation
            self._counts["bulk_operations"] += 1
        lines = [_jsonl_line(plan.fields, *row) for row in rows]  # outside the lock: 100k lines take a while
        with self._lock:
            operation.lines = lines
            operation.progress_at = max(operation.progress_at, self.now())
            return {"bulkOperation": self._bulk_obj(operation), "userErrors": []}

    def _cancel_bulk(self, info: Any, id: str) -> dict[str, Any]:
        number = gid_number(id, "BulkOperation")
        with self._lock:
            operation = self._bulk.get(number) if number is not None else None
            if operation is None or operation.token != info.context.token:
                return {
                    "bulkOperation": None,
                    "userErrors": [{"field": ["id"], "message": "Bulk operation not found."}],
                }
            self._advance_bulk(operation, self.now())
            if operation.status not in ("CREATED", "RUNNING"):
                message = f"A bulk operation cannot be canceled when it is {operation.status.lower()}."
                return {"bulkOperation": self._bulk_obj(operation), "userErrors": [{"field": None, "message": message}]}
            operation.status = "CANCELING"  # canceled by the next look at it
            return {"bulkOperation": self._bulk_obj(operation), "userErrors": []}

    def _advance_bulk(self, op: _BulkOperation, now: float) -> None:
        """Bring an operation up to ``now`` (under the lock): objects processed at the declared
        rate, then COMPLETED, FAILED (behaviour ``fail``, or 10 days gone) or EXPIRED a week on."""
        if op.status == "COMPLETED" and op.finished_at is not None and now >= op.finished_at + BULK_URL_TTL:
            op.status = "EXPIRED"
        if op.status in ("COMPLETED", "EXPIRED", "FAILED", "CANCELED"):
            return
        if op.status == "CANCELING":
            op.status, op.finished_at = "CANCELED", now
            return
        if op.lines is None:
            return  # still being prepared
        op.status = "RUNNING"
        behaviour = self.bulk_behaviour
        rate = 0.0 if behaviour.mode == "hold" else self.bulk_objects_per_second
        deadline = op.created + BULK_QUERY_MAX_SECONDS
        goal = float(op.total if behaviour.mode != "fail" else min(op.total, behaviour.fail_after))
        if rate > 0 and op.progress + (min(now, deadline) - op.progress_at) * rate >= goal:
            op.finished_at = op.progress_at + max(0.0, goal - op.progress) / rate
            op.progress = goal
            if behaviour.mode == "fail":
                op.status, op.error_code = "FAILED", behaviour.error_code
            else:
                op.status = "COMPLETED"
        elif now >= deadline:
            op.progress += max(0.0, deadline - op.progress_at) * rate
            op.status, op.error_code, op.finished_at = "FAILED", "TIMEOUT", deadline
        else:
            op.progress = min(float(op.total), op.progress + max(0.0, now - op.progress_at) * rate)
            op.progress_at = now

    def _bulk_node(self, number: int, token: str) -> dict[str, Any] | None:
        operation = self._bulk.get(number)
        if operation is None or operation.token != token:
            return None
        self._advance_bulk(operation, self.now())
        return self._bulk_obj(operation)

    def _bulk_url(self, operation: _BulkOperation, partial: bool) -> str:
        return f"{self.root_url}/_standin/bulk/{operation.number}{'-partial' if partial else ''}.jsonl"

    def _bulk_obj(self, op: _BulkOperation) -> dict[str, Any]:
        """The operation as the API shows it (under the lock, after ``_advance_bulk``)."""
        count = int(op.progress)
        url = self._bulk_url(op, False) if op.status in ("COMPLETED", "EXPIRED") and op.total else None
        partial = self._bulk_url(op, True) if op.status == "FAILED" and count else None
        finished = None
        if op.finished_at is not None and op.status in ("COMPLETED", "EXPIRED"):
            finished = (op.created_wall + timedelta(seconds=op.finished_at - op.created)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "__typename": "BulkOperation",
            "id": gid("BulkOperation", op.number),
            "status": op.status,
            "errorCode": op.error_code,
            "createdAt": op.created_wall.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "completedAt": finished,
            "objectCount": str(count),
            "rootObjectCount": str(count),
            "fileSize": str(len(op.body(False))) if url else None,
            "url": url,
            "partialDataUrl": partial,
            "query": op.query,
            "type": "QUERY",
        }

    def _download(self, method: str, number: int, partial: bool) -> tuple[int, dict[str, str], bytes]:
        """A result file, as the storage behind Shopify's signed URLs serves it: no access token,
        gone a week after the operation finished (``ExpiredToken``)."""
        if method != "GET":
            return 405, {"Allow": "GET", "Content-Type": "application/xml"}, _storage_error("MethodNotAllowed")
        with self._lock:
            operation = self._bulk.get(number)
            if operation is not None:
                self._advance_bulk(operation, self.now())
            finished = operation.finished_at if operation is not None else None
            ready = operation is not None and (
                (partial and operation.status == "FAILED" and int(operation.progress) > 0)
                or (not partial and operation.status in ("COMPLETED", "EXPIRED") and operation.total > 0)
            )
            if operation is None or finished is None or not ready:
                return 404, {"Content-Type": "application/xml"}, _storage_error("NoSuchKey")
            if self.now() >= finished + BULK_URL_TTL:
                return 400, {"Content-Type": "application/xml"}, _storage_error("ExpiredToken")
            body = operation.body(partial)
            self._counts["bulk_downloads"] += 1
        return 200, {"Content-Type": "application/jsonl"}, body

    # -- orders and fulfilments ----------------------------------------------------------------
    def _reset_orders(self) -> None:
        self._orders: dict[int, _ShopOrder] = {}
        self._line_items: dict[int, _LineItem] = {}
        self._fulfillment_orders: dict[int, _FulfillmentOrder] = {}
        self._fo_lines: dict[int, _FulfillmentOrderLine] = {}
        self._fulfillments: dict[int, _Fulfillment] = {}
        self._events: dict[int, _FulfillmentEvent] = {}
        self._numbers = itertools.count(1)

    def _next(self, base: int) -> int:
        return base + next(self._numbers)

    def seed_order(
        self,
        order_id: int,
        line_items: Sequence[Mapping[str, Any]],
        *,
        name: str | None = None,
        location_id: str = DEFAULT_LOCATION_ID,
    ) -> dict[str, Any]:
        """An order as a checkout makes it: line items ``[{"sku", "quantity", "location_id"?}]``
        and one fulfillment order per location, OPEN. ValueError for a taken id, an unknown
        location or a quantity that is not a positive integer."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 1:
            raise ValueError("id must be a positive integer")
        if not line_items:
            raise ValueError("an order needs line items")
        with self._lock:
            if order_id in self._orders:
                raise ValueError(f"order {order_id} exists already")
            planned: list[tuple[str, int, int]] = []
            for line in line_items:
                sku, quantity = line.get("sku"), line.get("quantity")
                if not isinstance(sku, str) or not sku:
                    raise ValueError("each line item needs a sku")
                if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                    raise ValueError(f"{sku}: quantity must be a positive integer")
                planned.append((sku, quantity, self._location_number(str(line.get("location_id", location_id)))))
            order = _ShopOrder(order_id, name or f"#{order_id % 100000}", _now_iso())
            by_location: dict[int, _FulfillmentOrder] = {}
            for sku, quantity, location in planned:
                line_number = self._next(LINE_ITEM_BASE)
                self._line_items[line_number] = _LineItem(line_number, order_id, sku, quantity)
                order.lines.append(line_number)
                fo = by_location.get(location)
                if fo is None:
                    fo = _FulfillmentOrder(self._next(FULFILLMENT_ORDER_BASE), order_id, location, _now_iso())
                    by_location[location] = fo
                    self._fulfillment_orders[fo.number] = fo
                    order.fulfillment_orders.append(fo.number)
                fo_line = _FulfillmentOrderLine(self._next(FO_LINE_BASE), fo.number, line_number, quantity, quantity)
                self._fo_lines[fo_line.number] = fo_line
                fo.lines.append(fo_line.number)
            self._orders[order_id] = order
            self._counts["orders"] += 1
            return self.order_state(order_id)

    def order_state(self, order_id: int) -> dict[str, Any]:
        """The order's fulfillment orders and fulfilments, for tests and the control API."""
        with self._lock:
            order = self._orders[order_id]
            return {
                "id": gid("Order", order_id),
                "name": order.name,
                "fulfillment_orders": [
                    {
                        "id": gid("FulfillmentOrder", n),
                        "status": self._fulfillment_orders[n].status,
                        "location_id": gid("Location", self._fulfillment_orders[n].location),
                        "remaining": sum(self._fo_lines[i].remaining for i in self._fulfillment_orders[n].lines),
                    }
                    for n in order.fulfillment_orders
                ],
                "fulfillments": [
                    {
                        "id": gid("Fulfillment", n),
                        "status": self._fulfillments[n].status,
                        "display_status": self._fulfillments[n].display_status,
                        "tracking": [dict(t) for t in self._fulfillments[n].tracking],
                        "notify_customer": self._fulfillments[n].notify_customer,
                        "events": [
                            {"status": self._events[e].status, "message": self._events[e].message}
                            for e in self._fulfillments[n].events
                        ],
                    }
                    for n in order.fulfillments
                ],
            }

    def fulfil_elsewhere(self, order_id: int, *, company: str | None = None, number: str | None = None) -> str:
        """Fulfil every open fulfillment order of the order as the merchant would by hand (with
        their own tracking, or none): they close. Returns the fulfilment's id."""
        with self._lock:
            order = self._orders[order_id]
            open_fos = [n for n in order.fulfillment_orders if self._fulfillment_orders[n].status in FULFILLABLE]
            if not open_fos:
                raise ValueError(f"order {order_id} has no open fulfillment order")
            lines = [(i, self._fo_lines[i].remaining) for n in open_fos for i in self._fulfillment_orders[n].lines]
            tracking = [{"company": company, "number": number, "url": None}] if number else []
            return gid("Fulfillment", self._fulfil(order, open_fos, lines, tracking, notify=False))

    def set_fulfillment_order_status(self, fulfillment_order_id: str, status: str) -> None:
        """Put a fulfillment order on hold, release it or cancel it, as the merchant can."""
        if status not in ("OPEN", "ON_HOLD", "CANCELLED", "SCHEDULED"):
            raise ValueError("status must be OPEN, ON_HOLD, CANCELLED or SCHEDULED")
        with self._lock:
            fo = self._fulfillment_orders.get(gid_number(fulfillment_order_id, "FulfillmentOrder") or 0)
            if fo is None:
                raise KeyError(fulfillment_order_id)
            fo.status = status

    def _fulfil(
        self,
        order: _ShopOrder,
        fo_numbers: list[int],
        lines: list[tuple[int, int]],
        tracking: list[dict[str, Any]],
        *,
        notify: bool,
    ) -> int:
        """Take ``lines`` (fulfillment order line, quantity) off their fulfillment orders and record
        the fulfilment (under the lock)."""
        for line_number, quantity in lines:
            self._fo_lines[line_number].remaining -= quantity
        for fo_number in fo_numbers:
            fo = self._fulfillment_orders[fo_number]
            left = sum(self._fo_lines[i].remaining for i in fo.lines)
            fo.status = "CLOSED" if left == 0 else "IN_PROGRESS"
        number = self._next(FULFILLMENT_BASE)
        fulfillment = _Fulfillment(
            number,
            order.number,
            f"{order.name}-F{len(order.fulfillments) + 1}",
            _now_iso(),
            list(fo_numbers),
            [(i, q) for i, q in lines if q > 0],
            tracking,
            notify,
        )
        self._fulfillments[number] = fulfillment
        order.fulfillments.append(number)
        self._counts["fulfillments_created"] += 1
        return number

    def _order_obj(self, number: int) -> dict[str, Any] | None:
        order = self._orders.get(number)
        if order is None:
            return None

        def fulfillment_orders(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                numbers = sorted(order.fulfillment_orders)
                page = (args.get("first"), args.get("after"), args.get("last"), args.get("before"), args["reverse"])
                return self._page(numbers, *page, self._fulfillment_order_obj)

        def fulfillments(_info: Any, first: int | None = None) -> list[dict[str, Any] | None]:
            with self._lock:
                numbers = order.fulfillments[: first if first is not None else None]
                return [self._fulfillment_obj(n) for n in numbers]

        return {
            "__typename": "Order",
            "id": gid("Order", number),
            "name": order.name,
            "legacyResourceId": str(number),
            "displayFulfillmentStatus": lambda _info: self._display_fulfillment_status(order),
            "fulfillmentOrders": fulfillment_orders,
            "fulfillments": fulfillments,
        }

    def _display_fulfillment_status(self, order: _ShopOrder) -> str:
        with self._lock:
            total = sum(self._line_items[n].quantity for n in order.lines)
            left = sum(
                self._fo_lines[i].remaining
                for n in order.fulfillment_orders
                if self._fulfillment_orders[n].status != "CANCELLED"
                for i in self._fulfillment_orders[n].lines
            )
            if left == 0:
                return "FULFILLED"
            if any(self._fulfillment_orders[n].status == "ON_HOLD" for n in order.fulfillment_orders):
                return "ON_HOLD"
            return "UNFULFILLED" if left == total else "PARTIALLY_FULFILLED"

    def _fulfillment_order_obj(self, number: int) -> dict[str, Any] | None:
        fo = self._fulfillment_orders.get(number)
        if fo is None:
            return None

        def line_items(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                page = (args.get("first"), args.get("after"), args.get("last"), args.get("before"), args["reverse"])
                return self._page(sorted(fo.lines), *page, self._fo_line_obj)

        return {
            "__typename": "FulfillmentOrder",
            "id": gid("FulfillmentOrder", number),
            "status": fo.status,
            "orderId": gid("Order", fo.order),
            "orderName": self._orders[fo.order].name,
            "createdAt": fo.created,
            "updatedAt": _now_iso(),
            "assignedLocation": {
                "name": self._locations.get(fo.location, ""),
                "location": lambda _info: self._location_obj(fo.location),
            },
            "lineItems": line_items,
        }

    def _fo_line_obj(self, number: int) -> dict[str, Any] | None:
        line = self._fo_lines.get(number)
        if line is None:
            return None
        item = self._line_items[line.line_item]
        return {
            "__typename": "FulfillmentOrderLineItem",
            "id": gid("FulfillmentOrderLineItem", number),
            "sku": item.sku,
            "remainingQuantity": line.remaining,
            "totalQuantity": line.total,
            "lineItem": self._line_item_obj(item.number),
        }

    def _line_item_obj(self, number: int) -> dict[str, Any] | None:
        item = self._line_items.get(number)
        if item is None:
            return None
        return {
            "__typename": "LineItem",
            "id": gid("LineItem", number),
            "sku": item.sku,
            "name": item.sku,
            "quantity": item.quantity,
        }

    def _fulfillment_obj(self, number: int) -> dict[str, Any] | None:
        fulfillment = self._fulfillments.get(number)
        if fulfillment is None:
            return None

        def tracking(_info: Any, first: int | None = None) -> list[dict[str, Any]]:
            with self._lock:
                return [dict(t) for t in fulfillment.tracking[: first if first is not None else None]]

        def events(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                page = (args.get("first"), args.get("after"), args.get("last"), args.get("before"), args["reverse"])
                return self._page(sorted(fulfillment.events), *page, self._event_obj)

        def fulfillment_orders(_info: Any, **args: Any) -> dict[str, Any]:
            with self._lock:
                page = (args.get("first"), args.get("after"), args.get("last"), args.get("before"), args["reverse"])
                return self._page(sorted(fulfillment.fulfillment_orders), *page, self._fulfillment_order_obj)

        return {
            "__typename": "Fulfillment",
            "id": gid("Fulfillment", number),
            "name": fulfillment.name,
            "status": fulfillment.status,
            "displayStatus": fulfillment.display_status,
            "createdAt": fulfillment.created,
            "deliveredAt": fulfillment.delivered_at,
            "trackingInfo": tracking,
            "events": events,
            "fulfillmentOrders": fulfillment_orders,
        }

    def _event_obj(self, number: int) -> dict[str, Any] | None:
        event = self._events.get(number)
        if event is None:
            return None
        return {
            "__typename": "FulfillmentEvent",
            "id": gid("FulfillmentEvent", number),
            "status": event.status,
            "message": event.message,
            "happenedAt": event.happened_at,
            "createdAt": event.created,
        }

    def _fulfillment_create(self, info: Any, fulfillment: dict[str, Any], message: str | None = None) -> dict[str, Any]:
        """``fulfillmentCreate``: every fulfillment order named must be fulfillable (OPEN or
        IN_PROGRESS), of one order and one location; the quantities asked (all that remains
        when no line items are named) must remain. Then the fulfilment is made and, under
        ``slow``, its answer held: the lost answer of a change that was made."""
        request: _Request = info.context
        with self._lock:
            planned = self._plan_fulfilment(fulfillment)
            if isinstance(planned, list):
                return {"fulfillment": None, "userErrors": planned}
            order, fo_numbers, lines = planned
            tracking_input = fulfillment.get("trackingInfo") or {}
            tracking = self._tracking(tracking_input)
            if isinstance(tracking, dict):
                return {"fulfillment": None, "userErrors": [tracking]}
            number = self._fulfil(order, fo_numbers, lines, tracking, notify=bool(fulfillment.get("notifyCustomer")))
            answer: dict[str, Any] = {"fulfillment": self._fulfillment_obj(number), "userErrors": []}
        self._hold(request.hold)
        return answer

    def _plan_fulfilment(
        self, fulfillment: dict[str, Any]
    ) -> tuple[_ShopOrder, list[int], list[tuple[int, int]]] | list[dict[str, Any]]:
        groups = fulfillment["lineItemsByFulfillmentOrder"]
        at = ["fulfillment", "lineItemsByFulfillmentOrder"]
        if not groups:
            return [{"field": at, "message": "Line items by fulfillment order can't be blank."}]
        errors: list[dict[str, Any]] = []
        fos: list[_FulfillmentOrder] = []
        lines: list[tuple[int, int]] = []
        for i, group in enumerate(groups):
            here = [*at, str(i)]
            fo_id = group["fulfillmentOrderId"]
            fo = self._fulfillment_orders.get(gid_number(fo_id, "FulfillmentOrder") or 0)
            if fo is None:
                errors.append({"field": [*here, "fulfillmentOrderId"], "message": "Fulfillment order does not exist."})
                continue
            if fo.status not in FULFILLABLE:
                errors.append(
                    {
                        "field": [*here, "fulfillmentOrderId"],
                        "message": f"Fulfillment order {fo_id} has an unfulfillable status= {fo.status.lower()}.",
                    }
                )
                continue
            fos.append(fo)
            asked = group.get("fulfillmentOrderLineItems")
            if not asked:
                lines.extend((n, self._fo_lines[n].remaining) for n in fo.lines if self._fo_lines[n].remaining > 0)
                continue
            for j, line in enumerate(asked):
                number = gid_number(line["id"], "FulfillmentOrderLineItem")
                fo_line = self._fo_lines.get(number or 0)
                where = [*here, "fulfillmentOrderLineItems", str(j)]
                if fo_line is None or fo_line.fulfillment_order != fo.number:
                    errors.append({"field": [*where, "id"], "message": "Fulfillment order line item does not exist."})
                elif not 0 < line["quantity"] <= fo_line.remaining:
                    errors.append(
                        {"field": [*where, "quantity"], "message": "Invalid fulfillment order line item quantity."}
                    )
                else:
                    lines.append((fo_line.number, line["quantity"]))
        if errors:
            return errors
        if len({fo.order for fo in fos}) > 1 or len({fo.location for fo in fos}) > 1:
            message = "All fulfillment orders must belong to the same order and be assigned to the same location."
            return [{"field": at, "message": message}]
        if len({fo.number for fo in fos}) != len(fos):
            return [{"field": at, "message": "A fulfillment order can be named only once."}]
        if not any(q > 0 for _, q in lines):
            return [{"field": at, "message": "The fulfillment orders have nothing left to fulfill."}]
        return self._orders[fos[0].order], [fo.number for fo in fos], lines

    @staticmethod
    def _tracking(given: dict[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
        """The tracking of a fulfilment, or the user error of an unusable URL."""
        numbers = [given["number"]] if given.get("number") else list(given.get("numbers") or [])
        urls = [given["url"]] if given.get("url") else list(given.get("urls") or [])
        for url in urls:
            parts = urlsplit(str(url))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return {"field": ["fulfillment", "trackingInfo", "url"], "message": "Tracking url is invalid."}
        company = given.get("company")
        return [
            {"company": company, "number": n, "url": urls[i] if i < len(urls) else None} for i, n in enumerate(numbers)
        ]

    def _fulfillment_event_create(self, info: Any, fulfillmentEvent: dict[str, Any]) -> dict[str, Any]:
        """``fulfillmentEventCreate``: an event on a fulfilment that is not cancelled; the
        fulfilment's display status follows its latest event, DELIVERED sets ``deliveredAt``."""
        request: _Request = info.context
        given = fulfillmentEvent
        with self._lock:
            fulfillment = self._fulfillments.get(gid_number(given["fulfillmentId"], "Fulfillment") or 0)
            if fulfillment is None:
                error = {"field": ["fulfillmentEvent", "fulfillmentId"], "message": "Fulfillment does not exist."}
                return {"fulfillmentEvent": None, "userErrors": [error]}
            if fulfillment.status == "CANCELLED":
                error = {"field": ["fulfillmentEvent", "fulfillmentId"], "message": "Fulfillment is cancelled."}
                return {"fulfillmentEvent": None, "userErrors": [error]}
            now = _now_iso()
            happened = given.get("happenedAt") or now
            event = _FulfillmentEvent(self._next(EVENT_BASE), given["status"], given.get("message"), str(happened), now)
            self._events[event.number] = event
            fulfillment.events.append(event.number)
            fulfillment.display_status = event.status
            if event.status == "DELIVERED":
                fulfillment.delivered_at = event.happened_at
            self._counts["fulfillment_events_created"] += 1
            answer: dict[str, Any] = {"fulfillmentEvent": self._event_obj(event.number), "userErrors": []}
        self._hold(request.hold)
        return answer

    # -- control ---------------------------------------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/_standin/state":
            return 200, self.state()
        if method == "GET" and path == "/_standin/summary":
            return 200, self.summary()
        if method != "POST":
            return 404, {"error": "unknown control endpoint"}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            return self._control_post(path, body)
        except (TypeError, ValueError, KeyError) as exc:
            return 400, {"error": str(exc)}

    def _control_post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/_standin/behaviour":
            self.set_behaviour(
                str(body.get("mode", "ok")),
                retry_after=float(body.get("retry_after", 2.0)),
                delay=float(body.get("delay", 0.0)),
                rate=float(body.get("rate", 0.0)),
                seed=int(body.get("seed", 0)),
                count=None if body.get("count") is None else int(body["count"]),
            )
            return 200, dict(self.behaviour.__dict__)
        if path == "/_standin/release":
            self.release()
            return 200, {"released": True}
        if path == "/_standin/reset":
            self.reset()
            return 200, {"reset": True}
        if path == "/_standin/catalogue/seed":
            count = _strict_int(body.get("count"), "count")
            created = self.seed_catalogue(
                count,
                prefix=str(body.get("prefix", "SKU-")),
                quantity=_strict_int(body.get("quantity", 0), "quantity"),
                location_id=str(body.get("location_id", DEFAULT_LOCATION_ID)),
            )
            return 201, {"created": created, "variants": self.summary()["variants"]}
        if path == "/_standin/quantities":
            self.set_quantities({str(sku): _strict_int(q, str(sku)) for sku, q in body.items()})
            return 200, {"updated": len(body)}
        if path == "/_standin/locations":
            return 201, {"id": self.add_location(str(body["name"]))}
        if path == "/_standin/clock/advance":
            self.advance_clock(float(body["seconds"]))
            return 200, {"advanced": float(body["seconds"])}
        if path == "/_standin/access-token":
            self.set_access_token(str(body["access_token"]))
            return 200, {"rotated": True}
        if path == "/_standin/lookup":
            skus = body.get("skus")
            if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus):
                raise ValueError("skus must be a list of strings")
            return 200, self.lookup(skus, location_id=str(body.get("location_id", DEFAULT_LOCATION_ID)))
        if path == "/_standin/orders":
            unknown = set(body) - {"id", "name", "line_items", "location_id"}
            if unknown:
                raise ValueError(f"unknown order fields {sorted(unknown)}")
            lines = body.get("line_items")
            if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
                raise ValueError("line_items must be a list of {sku, quantity}")
            return 201, self.seed_order(
                _strict_int(body.get("id"), "id"),
                lines,
                name=None if body.get("name") is None else str(body["name"]),
                location_id=str(body.get("location_id", DEFAULT_LOCATION_ID)),
            )
        if path == "/_standin/orders/state":
            return 200, self.order_state(_strict_int(body.get("id"), "id"))
        if path == "/_standin/orders/fulfil":
            fulfilled = self.fulfil_elsewhere(
                _strict_int(body.get("id"), "id"),
                company=None if body.get("company") is None else str(body["company"]),
                number=None if body.get("number") is None else str(body["number"]),
            )
            return 200, {"fulfillment_id": fulfilled}
        if path == "/_standin/fulfillment-orders/status":
            self.set_fulfillment_order_status(str(body["id"]), str(body["status"]))
            return 200, {"status": str(body["status"])}
        if path == "/_standin/bulk/behaviour":
            rate = body.get("objects_per_second")
            self.set_bulk_behaviour(
                str(body.get("mode", "ok")),
                error_code=str(body.get("error_code", "INTERNAL_SERVER_ERROR")),
                fail_after=_strict_int(body.get("fail_after", 0), "fail_after"),
                objects_per_second=None if rate is None else float(rate),
            )
            return 200, self.bulk_limits()
        return 404, {"error": "unknown control endpoint"}


# -- analysis: cost and the checks Shopify makes before it executes ---------------------------------
class _Analyser:
    """Walks an operation once: prices it the documented way (scalars and enums 0, objects 1,
    connections 2 plus their page size times a node, mutations 10; an abstract type its dearest
    possibility) and finds what Shopify refuses before executing (page sizes, input arrays over
    250, and from 2026-04 a missing ``changeFromQuantity`` or ``@idempotent``)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        version: str,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.version = version
        self.fragments = fragments
        self.variables = variables
        self.result = _Analysis()
        self._seen: set[str] = set()

    def run(self, operation: OperationDefinitionNode) -> _Analysis:
        mutation = operation.operation == OperationType.MUTATION
        root = self.schema.mutation_type if mutation else self.schema.query_type
        if root is None:
            self._fail(_error("Schema is not configured for this operation", "BAD_REQUEST"))
            return self.result
        for node in self._fields(operation.selection_set, root):
            name = node.name.value
            if name == "__typename":
                continue
            key = node.alias.value if node.alias else name
            definition = root.fields[name]
            args = self._args(definition, node, [key])
            if args is None:
                continue
            if mutation:
                self._check_mutation(node, name, args, key)
                self._set_cost(get_named_type(definition.type), node.selection_set, [key], price=False)
                self.result.requested += MUTATION_COST
                self.result.roots[key] = ("mutation", MUTATION_COST, MUTATION_COST)
                continue
            cost, kind, per_item = self._field_cost(definition, node, args, [key])
            self.result.requested += cost
            self.result.roots[key] = (kind, per_item, cost)
        return self.result

    def _fail(self, error: dict[str, Any]) -> None:
        marker = json.dumps(error, sort_keys=True)
        if marker not in self._seen:
            self._seen.add(marker)
            self.result.errors.append(error)

    def _args(self, definition: GraphQLField, node: FieldNode, path: list[str]) -> dict[str, Any] | None:
        try:
            args = get_argument_values(definition, node, self.variables)
        except GraphQLError as exc:
            self._fail(_formatted(exc, "argumentLiteralsIncompatible"))
            return None
        for name, value in args.items():
            self._oversized(value, [*path, name], node)
        return args

    def _oversized(self, value: Any, path: list[str], node: FieldNode) -> None:
        if isinstance(value, list):
            if len(value) > MAX_INPUT_ARRAY:
                message = (
                    f"The input array size of {len(value)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}."
                )
                self._fail(_located(message, "MAX_INPUT_SIZE_EXCEEDED", node, path))
            for item in value:
                self._oversized(item, path, node)
        elif isinstance(value, dict):
            for name, item in value.items():
                self._oversized(item, [*path, name], node)

    def _check_mutation(self, node: FieldNode, name: str, args: dict[str, Any], key: str) -> None:
        if name != "inventorySetQuantities" or self.version < MANDATORY_FROM:
            return
        if not any(d.name.value == "idempotent" for d in node.directives or ()):
            message = "The @idempotent directive is required for this mutation but was not provided."
            self._fail(_located(message, "BAD_REQUEST", node, [key]))
        quantities = args.get("input", {}).get("quantities", [])
        if any("changeFromQuantity" not in q for q in quantities):
            message = "InventoryQuantityInput must include the following argument: changeFromQuantity."
            self._fail(_located(message, "INVALID_FIELD_ARGUMENTS", node, [key, "input", "quantities"]))

    def _check_page(self, node: FieldNode, args: dict[str, Any], path: list[str]) -> int:
        first, last = args.get("first"), args.get("last")
        if first is None and last is None:
            self._fail(_located("you must provide one of first or last", "BAD_REQUEST", node, path))
            return 0
        if first is not None and last is not None:
            self._fail(_located("providing both first and last is not supported", "BAD_REQUEST", node, path))
            return 0
        chosen: Any = first if first is not None else last
        size = int(chosen)
        if not 0 <= size <= MAX_PAGE_SIZE:
            which = "first" if first is not None else "last"
            message = (
                f"Argument '{which}' on Field '{node.name.value}' has an invalid value ({size}). "
                f"Expected a page size from 0 to {MAX_PAGE_SIZE}."
            )
            self._fail(_located(message, "BAD_REQUEST", node, path))
            return 0
        return size

    def _field_cost(
        self, definition: GraphQLField, node: FieldNode, args: dict[str, Any], path: list[str]
    ) -> tuple[int, str, int]:
        """(cost, kind, cost per item) of one field; kind is leaf, object, list or connection."""
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0, "leaf", 0
        if named.name.endswith("Connection") and isinstance(named, GraphQLObjectType):
            size = self._check_page(node, args, path)
            per_node = 1 + self._connection_children(named, node.selection_set, path)
            return CONNECTION_COST + size * per_node, "connection", per_node
        per_item = 1 + self._set_cost(named, node.selection_set, path)
        if is_list_type(get_nullable_type(definition.type)):
            sized = args.get("ids", args.get("names"))
            first = args.get("first")
            size = len(sized) if isinstance(sized, list) else (first if isinstance(first, int) and first > 0 else 1)
            return size * per_item, "list", per_item
        return per_item, "object", per_item

    def _connection_children(
        self, connection: GraphQLObjectType, selection_set: SelectionSetNode | None, path: list[str]
    ) -> int:
        """The cost of one node's selection, asked for through ``nodes`` or ``edges { node }``."""
        if selection_set is None:
            return 0
        best = 0
        for node in self._fields(selection_set, connection):
            name = node.name.value
            definition = connection.fields.get(name)
            if definition is None or node.selection_set is None:
                continue
            target = get_named_type(definition.type)
            if name == "nodes":
                best = max(best, self._set_cost(target, node.selection_set, [*path, "nodes"]))
            elif name == "edges" and isinstance(target, GraphQLObjectType):
                for inner in self._fields(node.selection_set, target):
                    inner_def = target.fields.get(inner.name.value)
                    if inner.name.value == "node" and inner_def is not None:
                        inner_type = get_named_type(inner_def.type)
                        best = max(best, self._set_cost(inner_type, inner.selection_set, [*path, "edges", "node"]))
        return best

    def _set_cost(
        self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None, path: list[str], price: bool = True
    ) -> int:
        if selection_set is None:
            return 0
        if is_abstract_type(parent):
            possible = self.schema.get_possible_types(parent)
            return max((self._object_cost(t, selection_set, path, price) for t in possible), default=0)
        if isinstance(parent, GraphQLObjectType):
            return self._object_cost(parent, selection_set, path, price)
        return 0

    def _object_cost(
        self, parent: GraphQLObjectType, selection_set: SelectionSetNode, path: list[str], price: bool
    ) -> int:
        total = 0
        for node in self._fields(selection_set, parent):
            name = node.name.value
            definition = parent.fields.get(name)
            if definition is None:
                continue
            key = node.alias.value if node.alias else name
            args = self._args(definition, node, [*path, key])
            if args is None:
                continue
            cost, _kind, _per = self._field_cost(definition, node, args, [*path, key])
            total += cost if price else 0
        return total

    def _fields(self, selection_set: SelectionSetNode, parent: GraphQLNamedType) -> list[FieldNode]:
        """The fields selected on ``parent``, through fragments whose type condition applies."""
        found: list[FieldNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                if condition is None or self._applies(condition, parent):
                    found.extend(self._fields(selection.selection_set, parent))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and self._applies(fragment.type_condition.name.value, parent):
                    found.extend(self._fields(fragment.selection_set, parent))
        return found

    def _applies(self, condition: str, parent: GraphQLNamedType) -> bool:
        wanted = self.schema.get_type(condition)
        if wanted is None:
            return False
        if wanted is parent:
            return True
        if is_abstract_type(wanted) and isinstance(parent, GraphQLObjectType):
            return self.schema.is_sub_type(wanted, parent)
        if is_abstract_type(parent) and isinstance(wanted, GraphQLObjectType):
            return self.schema.is_sub_type(parent, wanted)
        return False


# -- bulk queries: what Shopify checks before it runs one, and the stand-in's export ----------------
_VARIANT_FIELDS: dict[str, Callable[[int, str | None, int], Any]] = {
    "__typename": lambda _v, _sku, _item: "ProductVariant",
    "id": lambda v, _sku, _item: gid("ProductVariant", v),
    "sku": lambda _v, sku, _item: sku,
    "title": lambda _v, _sku, _item: "Default Title",
    "displayName": lambda _v, sku, _item: f"{sku or 'Untitled'} - Default Title",
}
_ITEM_FIELDS: dict[str, Callable[[int, str | None, int], Any]] = {
    "__typename": lambda _v, _sku, _item: "InventoryItem",
    "id": lambda _v, _sku, item: gid("InventoryItem", item),
    "sku": lambda _v, sku, _item: sku,
    "tracked": lambda _v, _sku, _item: True,
}


class _Connections(Visitor):
    """Counts a document's connection fields and how deep they nest."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.count = 0
        self.depth = 0
        self.deepest = 0
        self._stack: list[bool] = []

    def enter_field(self, *_: Any) -> None:
        field_type = self.type_info.get_type()
        named = get_named_type(field_type) if field_type is not None else None
        is_connection = named is not None and named.name.endswith("Connection")
        self._stack.append(is_connection)
        if is_connection:
            self.count += 1
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)

    def leave_field(self, *_: Any) -> None:
        if self._stack.pop():
            self.depth -= 1


def _selected(
    selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    """The fields of a selection, through its fragments (validation has checked they apply)."""
    found: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_selected(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            found.extend(_selected(fragments[selection.name.value].selection_set, fragments))
    return found


def _nested(inner: _Projection) -> Callable[[int, str | None, int], Any]:
    def make(variant: int, sku: str | None, item: int) -> dict[str, Any]:
        return {key: value(variant, sku, item) for key, value in inner}

    return make


def _projection(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    known: Mapping[str, Callable[[int, str | None, int], Any]],
    problems: list[str],
) -> _Projection:
    fields: _Projection = []
    for node in _selected(selection_set, fragments):
        name = node.name.value
        key = node.alias.value if node.alias else name
        if name in known:
            fields.append((key, known[name]))
        elif name == "inventoryItem" and known is _VARIANT_FIELDS:
            inner = _projection(node.selection_set, fragments, _ITEM_FIELDS, problems)
            fields.append((key, _nested(inner)))
        else:
            problems.append(f"The stand-in's bulk export of productVariants does not include the field {name}.")
    return fields


def _bulk_plan(schema: GraphQLSchema, query: str) -> _BulkPlan | list[str]:
    """The plan of a bulk query, or why it is refused (messages for ``userErrors``): Shopify's
    rules (a single query operation, one top-level field that is not node/nodes, one to five
    connections nested at most two levels), then the shape the stand-in exports."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return [f"Invalid bulk query: {exc.message}"]
    problems = validate(schema, document)
    if problems:
        return [f"Invalid bulk query: {e.message}" for e in problems]
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return ["A bulk query must hold exactly one query operation."]
    operation = operations[0]
    if operation.variable_definitions:
        return ["A bulk query cannot take variables."]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    top = [f for f in _selected(operation.selection_set, fragments) if f.name.value != "__typename"]
    if len({f.alias.value if f.alias else f.name.value for f in top}) != 1:
        return ["A bulk query must select a single top-level field."]
    root = top[0]
    if root.name.value in ("node", "nodes"):
        return ["The top-level node and nodes fields can't be used in a bulk query."]
    type_info = TypeInfo(schema)
    connections = _Connections(type_info)
    visit(document, TypeInfoVisitor(type_info, connections))
    if connections.count == 0:
        return ["A bulk query must contain at least one connection."]
    if connections.count > MAX_BULK_CONNECTIONS:
        return [f"A bulk query can contain at most {MAX_BULK_CONNECTIONS} connections."]
    if connections.deepest > MAX_BULK_CONNECTION_DEPTH:
        return ["A bulk query can nest connections at most two levels deep."]
    if root.name.value != "productVariants":
        return [f"The stand-in runs bulk queries over productVariants, not {root.name.value}."]
    field = schema.query_type.fields["productVariants"] if schema.query_type else None
    if field is None:
        return ["The stand-in runs bulk queries over productVariants only."]
    args = get_argument_values(field, root, None)
    if args.get("after") is not None or args.get("before") is not None:
        return ["The stand-in's bulk queries read every variant: after and before are not supported."]
    problems_found: list[str] = []
    node_selections: list[SelectionSetNode | None] = []
    for part in _selected(root.selection_set, fragments):
        if part.name.value == "nodes":
            node_selections.append(part.selection_set)
        elif part.name.value == "edges":
            node_selections.extend(
                e.selection_set for e in _selected(part.selection_set, fragments) if e.name.value == "node"
            )
    fields: _Projection = []
    for selection in node_selections:  # cursor and pageInfo are ignored, as Shopify ignores them
        fields.extend(_projection(selection, fragments, _VARIANT_FIELDS, problems_found))
    if problems_found:
        return problems_found
    if not fields:
        return ["A bulk query over productVariants must select fields of the variants."]
    return _BulkPlan(args.get("query"), bool(args.get("reverse")), list(dict(fields).items()))


def _jsonl_line(fields: _Projection, variant: int, sku: str | None, item: int) -> bytes:
    doc = {key: make(variant, sku, item) for key, make in fields}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _storage_error(code: str) -> bytes:
    messages = {
        "NoSuchKey": "The specified key does not exist.",
        "ExpiredToken": "Invalid argument.",
        "MethodNotAllowed": "The specified method is not allowed against this resource.",
    }
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{messages[code]}</Message></Error>"
    ).encode()


def _actual_cost(analysis: _Analysis, data: dict[str, Any] | None) -> int:
    """What a request really cost: connections and lists priced by what they returned."""
    if data is None:
        return 0
    total = 0
    for key, (kind, per_item, requested) in analysis.roots.items():
        value = data.get(key)
        if kind == "mutation":
            total += requested
        elif value is None:
            continue
        elif kind == "connection" and isinstance(value, dict):
            returned = value.get("nodes") or value.get("edges") or []
            total += CONNECTION_COST + per_item * len(returned)
        elif kind == "list" and isinstance(value, list):
            total += per_item * sum(1 for v in value if v is not None)
        else:
            total += requested
    return total


def _idempotency_key(schema: GraphQLSchema, node: FieldNode, variables: Any) -> str | None:
    directive = schema.get_directive("idempotent")
    for used in node.directives or ():
        if used.name.value == "idempotent" and directive is not None:
            key = get_argument_values(directive, used, variables).get("key")
            return str(key) if key is not None else None
    return None


def _payload(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inventoryAdjustmentGroup": None, "userErrors": errors}


def _strict_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _formatted(error: GraphQLError, code: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = dict(error.formatted)
    extensions = dict(doc.get("extensions") or {})
    if code and "code" not in extensions:
        extensions["code"] = code
    if extensions:
        doc["extensions"] = extensions
    return doc


def _located(message: str, code: str, node: FieldNode, path: Sequence[str]) -> dict[str, Any]:
    return _formatted(GraphQLError(message, nodes=[node], extensions={"code": code}), None) | {"path": list(path)}


def _validation_errors(schema: GraphQLSchema, document: DocumentNode) -> list[dict[str, Any]]:
    """Validation errors with the code of the rule that found each, as graphql-ruby names it."""
    found: list[dict[str, Any]] = []
    for rule in specified_rules:
        name = rule.__name__
        code = _RULE_CODES.get(name, name.removesuffix("Rule")[:1].lower() + name.removesuffix("Rule")[1:])
        found.extend(_formatted(error, code) for error in validate(schema, document, [rule]))
    return found


def _handler_for(standin: ShopifyAdminStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            raw = self.body()
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = standin.handle(self.command, unquote(parts.path), headers, raw)
            try:
                self.reply(status, dict(extra), body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a held answer): nothing to tell

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def main() -> None:
    """Run the stand-in on its own: ``python -m junction_local.standins.shopify_admin --port 8093``."""
    import argparse
    import signal

    from junction_local.process import exit_with_parent

    parser = argparse.ArgumentParser(description="Shopify Admin GraphQL (inventory) stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--maximum-available", type=float, default=MAXIMUM_AVAILABLE, help="bucket size (points)")
    parser.add_argument("--restore-rate", type=float, default=RESTORE_RATE, help="points restored per second")
    parser.add_argument("--location-name", default=DEFAULT_LOCATION_NAME)
    parser.add_argument(
        "--bulk-objects-per-second", type=float, default=BULK_OBJECTS_PER_SECOND, help="bulk query processing rate"
    )
    parser.add_argument("--seed", type=int, default=0, help="variants to create at start (skus SKU-000001...)")
    parser.add_argument("--skus", default="", help="comma-separated SKUs the catalogue starts with")
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    standin = ShopifyAdminStandIn(
        args.host,
        args.port,
        maximum_available=args.maximum_available,
        restore_rate=args.restore_rate,
        location_name=args.location_name,
        bulk_objects_per_second=args.bulk_objects_per_second,
    )
    if args.seed:
        standin.seed_catalogue(args.seed)
    for sku in filter(None, args.skus.split(",")):
        standin.add_variant(sku, quantity=0)
    standin.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    stop.wait()
    standin.stop()


def _credentials(root_url: str) -> dict[str, str]:
    """The Admin API secret's value for a stand-in listening on ``root_url``."""
    return {
        "base_url": root_url,
        "access_token": ACCESS_TOKEN,
        "api_version": CURRENT_VERSION,
        "location_id": DEFAULT_LOCATION_ID,
    }


# Run as a process of its own. No flag needed: the defaults are the Standard plan's bucket and the
# current API version's mandatory compare-and-set and idempotency.
LOCAL = TargetStandIn(
    system="shopify",
    module="junction_local.standins.shopify_admin",
    fills="shopify-admin",
    credentials=_credentials,
    # The local company sells on this channel what its ERP stocks (junction_local.standins.erp).
    args=("--skus", ",".join(DEFAULT_ITEMS)),
    health_path="/_standin/summary",
    effect_count="quantities_set",
)


if __name__ == "__main__":
    main()
