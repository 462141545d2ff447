"""What an integration costs per million events: counted requests times the prices of
``ops.prices`` (one table, with its date and region).

- ``order_to_one_target``: a pure model of one order from its webhook to one target, from the
  requests each hop makes per event (``OrderProfile`` states every assumption), for the README.
- ``aws_usage``: the requests a deployed stage counted in a window, from CloudWatch
  (``GetMetricData``): Lambda invocations and duration per function, SQS messages per queue,
  DynamoDB consumed capacity per table, API Gateway requests per webhook route (the HTTP API's
  route metrics, or the REST API's method metrics for a route open to its sender's addresses only),
  EventBridge rule invocations. Secrets Manager reads are estimated from the caches' refresh interval.
- ``local_usage``: the same from the local runtime's counters (requests its AWS stand-in served,
  invocations per processor).

All arithmetic is Decimal: no float ever touches a price.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from shared.declaration import Integration, function_name, queue_name, state_table_name

from .prices import PRICES, PRICES_AS_OF, REGION, Price

MILLION = Decimal(1_000_000)
SECRET_CACHE_SECONDS = 300  # shared/parameters.py MAX_AGE_SECONDS: one read per secret per environment per 5 min


def gb_seconds(memory_mb: int | Decimal, milliseconds: int | Decimal) -> Decimal:
    """Lambda's compute unit: memory in GB (1024 MB) times billed seconds."""
    return Decimal(memory_mb) / Decimal(1024) * Decimal(milliseconds) / Decimal(1000)


@dataclass(frozen=True)
class Usage:
    """Counted (or modelled) requests, and the source events they served."""

    events: Decimal = Decimal(0)
    lambda_requests: Decimal = Decimal(0)
    lambda_gb_seconds: Decimal = Decimal(0)
    sqs_requests: Decimal = Decimal(0)
    sqs_fifo_requests: Decimal = Decimal(0)
    dynamodb_write_units: Decimal = Decimal(0)
    dynamodb_read_units: Decimal = Decimal(0)
    apigateway_requests: Decimal = Decimal(0)
    eventbridge_invocations: Decimal = Decimal(0)
    secrets_calls: Decimal = Decimal(0)
    api: Literal["rest", "http"] = "rest"

    def __add__(self, other: Usage) -> Usage:
        return replace(self, **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _COUNTS})

    def scaled(self, factor: Decimal | int) -> Usage:
        return replace(self, **{f.name: getattr(self, f.name) * Decimal(factor) for f in _COUNTS})

    def as_json(self) -> dict[str, Any]:
        return {f.name: _num(getattr(self, f.name)) for f in _COUNTS} | {"api": self.api}


_COUNTS = tuple(f for f in fields(Usage) if f.name != "api")

# Which price each count is billed at.
PRICE_OF = {
    "lambda_requests": "lambda_request",
    "lambda_gb_seconds": "lambda_gb_second_arm",
    "sqs_requests": "sqs_request_standard",
    "sqs_fifo_requests": "sqs_request_fifo",
    "dynamodb_write_units": "dynamodb_write_unit",
    "dynamodb_read_units": "dynamodb_read_unit",
    "apigateway_requests": "apigateway_rest_request",
    "eventbridge_invocations": "eventbridge_scheduled_invocation",
    "secrets_calls": "secretsmanager_api_call",
}


def _num(value: Decimal) -> int | str:
    """A count for JSON: an int when whole, else the exact decimal as text."""
    return int(value) if value == value.to_integral_value() else str(value.normalize())


@dataclass(frozen=True)
class Cost:
    lines: dict[str, Decimal]  # count name -> USD
    events: Decimal
    usage: Usage

    @property
    def total(self) -> Decimal:
        return sum(self.lines.values(), Decimal(0))

    @property
    def per_million(self) -> Decimal | None:
        """USD per million events; None when no event was counted."""
        return None if not self.events else self.total * MILLION / self.events

    def per_million_lines(self) -> dict[str, Decimal]:
        return {k: v * MILLION / self.events for k, v in self.lines.items()} if self.events else {}

    def as_json(self) -> dict[str, Any]:
        per = self.per_million
        return {
            "events": _num(self.events),
            "usd": usd(self.total),
            "usd_per_million_events": None if per is None else usd(per),
            "usd_per_million_by_item": {k: usd(v) for k, v in self.per_million_lines().items()},
            "usage": self.usage.as_json(),
            "prices_as_of": PRICES_AS_OF,
            "region": REGION,
        }


def usd(value: Decimal, places: str = "0.0001") -> str:
    return str(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def cost(usage: Usage, prices: Mapping[str, Price] = PRICES) -> Cost:
    """Each count times its price (USD)."""
    lines: dict[str, Decimal] = {}
    for f in _COUNTS:
        if f.name == "events":
            continue
        name = PRICE_OF[f.name]
        if f.name == "apigateway_requests" and usage.api == "http":
            name = "apigateway_http_request"
        lines[f.name] = getattr(usage, f.name) * prices[name].each
    return Cost(lines, usage.events, usage)


# -- the modelled order ------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderProfile:
    """The requests one order makes from its webhook to one target (shared/ingress.py,
    shared/processing.py), and the assumptions behind them."""

    # Signed webhook routes are served by the HTTP API (infra/stack.py ``serves_over_rest``).
    api: Literal["rest", "http"] = "http"
    ingress_memory_mb: int = 256
    ingress_ms: int = 40  # warm: verify, key, one SendMessage
    processor_memory_mb: int = 512
    processor_ms_per_order: int = 120  # mapping plus the target's API round trip, per message
    batch_size: int = 10  # messages per processor invocation (and per receive and delete request)
    fifo: bool = False
    # DynamoDB: the idempotency claim (one conditional write), its completion keeping the event for
    # replay (a write unit per started KB of the record), the trace item, the target's last success
    # (one per batch) and the breaker's read (one consistent read per batch).
    record_kb: int = 2
    trace_writes: int = 1
    cross_reference_writes: int = 0  # the entity's ids item plus one alias per id (order targets: 3)
    # Secrets Manager: one read per secret per warm environment per cache interval.
    secrets_per_function: int = 1
    warm_environments: int = 2
    orders_per_hour: int = 1_400  # about a million a month

    def usage(self) -> Usage:
        """The requests of ONE order (fractions: what a batch or a cache shares)."""
        batch = Decimal(self.batch_size)
        per_batch = Decimal(1) / batch
        sqs = Decimal(1) + per_batch * 2  # SendMessage; ReceiveMessage and DeleteMessageBatch per batch
        writes = Decimal(1 + self.record_kb + self.trace_writes + self.cross_reference_writes) + per_batch
        secret_reads_per_hour = Decimal(self.secrets_per_function * self.warm_environments * 2 * 3600)
        secret_reads_per_hour /= Decimal(SECRET_CACHE_SECONDS)
        return Usage(
            events=Decimal(1),
            lambda_requests=Decimal(1) + per_batch,
            lambda_gb_seconds=gb_seconds(self.ingress_memory_mb, self.ingress_ms)
            + gb_seconds(self.processor_memory_mb, self.processor_ms_per_order),
            sqs_requests=Decimal(0) if self.fifo else sqs,
            sqs_fifo_requests=sqs if self.fifo else Decimal(0),
            dynamodb_write_units=writes,
            dynamodb_read_units=per_batch,
            apigateway_requests=Decimal(1),
            secrets_calls=secret_reads_per_hour / Decimal(self.orders_per_hour),
            api=self.api,
        )


def order_to_one_target(profile: OrderProfile | None = None) -> Cost:
    """The modelled cost of a million orders from their webhook to one target."""
    return cost((profile or OrderProfile()).usage().scaled(1_000_000))


# -- counted on AWS ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    id: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    integration: str
    count: str  # the Usage field it adds to ("events" too), or "duration_ms:<memory>"
    # A CloudWatch search instead of one metric (its series are summed): the HTTP API's route
    # metrics carry the API's generated id, which the declarations do not know.
    search: str | None = None


def api_kind(i: Integration) -> Literal["rest", "http"]:
    """Which API serves a webhook: REST for a route open to its sender's addresses only (it needs a
    resource policy), else the HTTP API (infra/stack.py ``serves_over_rest``)."""
    return "rest" if i.webhook is not None and i.webhook.source_ips else "http"


def http_route_search(stage: str, method: str, path: str, metric: str = "Count") -> str:
    """The search for one HTTP API route's metric of a stage: dimensions ``ApiId``, ``Stage``,
    ``Route`` (``POST /webhooks/...``, detailed route metrics are on), any API id."""
    return f'{{AWS/ApiGateway,ApiId,Stage,Route}} MetricName="{metric}" Stage="{stage}" Route="{method.upper()} {path}"'


def metrics_for(stage: str, integrations: Iterable[Integration]) -> list[Metric]:
    """Every metric ``aws_usage`` reads, per integration."""
    out: list[Metric] = []

    def add(
        i: Integration, namespace: str, name: str, dims: dict[str, str], count: str, search: str | None = None
    ) -> None:
        out.append(Metric(f"m{len(out)}", namespace, name, tuple(dims.items()), i.name, count, search))

    for i in integrations:
        functions: list[tuple[str, int]] = []
        if i.webhook:
            functions.append((function_name(stage, i, "ingress"), i.ingress.memory_mb))
            webhook = i.webhook
            if api_kind(i) == "rest":
                dims = {"ApiName": f"junction-{stage}", "Method": webhook.method.upper(), "Resource": webhook.path}
                add(i, "AWS/ApiGateway", "Count", dims | {"Stage": stage}, "apigateway_requests")
            else:
                search = http_route_search(stage, webhook.method, webhook.path)
                add(i, "AWS/ApiGateway", "Count", {}, "apigateway_requests", search)
        if i.schedule:
            functions.append((function_name(stage, i, "poller"), i.schedule.function.memory_mb))
            add(i, "AWS/Events", "Invocations", {"RuleName": f"junction-{stage}-{i.name}"}, "eventbridge_invocations")
        for t in i.targets:
            functions.append((function_name(stage, i, f"{t.name}-processor"), t.processor.memory_mb))
            for dead in (False, True):
                queue = queue_name(stage, i, t, dead_letter=dead)
                field_name = "sqs_fifo_requests" if t.queue.fifo else "sqs_requests"
                for name in ("NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted"):
                    add(i, "AWS/SQS", name, {"QueueName": queue}, field_name)
                add(i, "AWS/SQS", "NumberOfEmptyReceives", {"QueueName": queue}, field_name)
            if t in i.entry_targets:
                # Source events: what the source put on its targets' queues, per entry target.
                share = f"events/{len(i.entry_targets)}"
                add(i, "AWS/SQS", "NumberOfMessagesSent", {"QueueName": queue_name(stage, i, t)}, share)
        for fn, memory in functions:
            add(i, "AWS/Lambda", "Invocations", {"FunctionName": fn}, "lambda_requests")
            add(i, "AWS/Lambda", "Duration", {"FunctionName": fn}, f"duration_ms:{memory}")
    return out


TABLE_METRICS = ("ConsumedWriteCapacityUnits", "ConsumedReadCapacityUnits")


def aws_usage(
    cloudwatch: Any,
    stage: str,
    integrations: Iterable[Integration],
    since: datetime,
    until: datetime,
    *,
    secrets_of: Mapping[str, int] | None = None,
) -> dict[str, Usage]:
    """Per integration, the requests CloudWatch counted in the window.

    SQS metrics count messages, not requests: a batch of ten received or deleted is one request,
    so the SQS figure is an upper bound. DynamoDB's consumed units are per table, shared by every
    integration: each integration gets the share of its Lambda invocations. Secrets Manager reads
    are estimated: one per secret per function per cache interval while the function ran."""
    chosen = list(integrations)
    metrics = metrics_for(stage, chosen)
    tables = [f"junction-{stage}-idempotency", state_table_name(stage)]
    queries = [_query(m.id, m.namespace, m.name, m.dimensions, since, until, search=m.search) for m in metrics]
    table_ids: dict[str, str] = {}
    for table in tables:
        for name in TABLE_METRICS:
            qid = f"t{len(table_ids)}"
            table_ids[qid] = name
            queries.append(_query(qid, "AWS/DynamoDB", name, (("TableName", table),), since, until))
    values = _metric_sums(cloudwatch, queries, since, until)
    usage = {i.name: Usage(api=api_kind(i)) for i in chosen}
    for m in metrics:
        value = values.get(m.id, Decimal(0))
        if m.count.startswith("duration_ms:"):
            delta = Usage(lambda_gb_seconds=gb_seconds(int(m.count.split(":", 1)[1]), value))
        elif m.count.startswith("events/"):
            delta = Usage(events=value / Decimal(m.count.split("/", 1)[1]))
        else:
            counted: dict[str, Any] = {m.count: value}
            delta = Usage(**counted)
        usage[m.integration] = usage[m.integration] + delta
    writes = sum((v for k, v in values.items() if table_ids.get(k) == TABLE_METRICS[0]), Decimal(0))
    reads = sum((v for k, v in values.items() if table_ids.get(k) == TABLE_METRICS[1]), Decimal(0))
    invocations = sum((u.lambda_requests for u in usage.values()), Decimal(0))
    hours = Decimal(max(1, math.ceil((until - since).total_seconds() / 3600)))
    for i in chosen:
        u = usage[i.name]
        share = u.lambda_requests / invocations if invocations else Decimal(0)
        ran = u.lambda_requests > 0
        secret_count = (secrets_of or {}).get(i.name, len(i.all_secrets))
        per_hour = Decimal(3600 // SECRET_CACHE_SECONDS)
        estimated = Decimal(secret_count) * per_hour * hours if ran else Decimal(0)
        usage[i.name] = replace(
            u,
            dynamodb_write_units=writes * share,
            dynamodb_read_units=reads * share,
            secrets_calls=estimated,
        )
    return usage


def _query(
    qid: str,
    namespace: str,
    name: str,
    dimensions: tuple[tuple[str, str], ...],
    since: datetime,
    until: datetime,
    *,
    search: str | None = None,
) -> dict[str, Any]:
    period = max(60, math.ceil((until - since).total_seconds() / 60) * 60)
    period = min(period, 86_400)
    if search is not None:
        return {"Id": qid, "Expression": f"SEARCH('{search}', 'Sum', {period})", "ReturnData": True}
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions],
            },
            "Period": period,
            "Stat": "Sum",
        },
        "ReturnData": True,
    }


def _metric_sums(
    cloudwatch: Any, queries: list[dict[str, Any]], since: datetime, until: datetime
) -> dict[str, Decimal]:
    """Each query's values summed over the window (500 queries per GetMetricData, paged)."""
    sums: dict[str, Decimal] = {}
    for start in range(0, len(queries), 500):
        params: dict[str, Any] = {
            "MetricDataQueries": queries[start : start + 500],
            "StartTime": since,
            "EndTime": until,
        }
        while True:
            page = cloudwatch.get_metric_data(**params)
            for result in page.get("MetricDataResults", []):
                total = sum((Decimal(repr(v)) for v in result.get("Values", [])), Decimal(0))
                sums[result["Id"]] = sums.get(result["Id"], Decimal(0)) + total
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
    return sums


# -- counted locally ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalCounts:
    """What the local runtime counts: requests its AWS stand-in served per action (SQS and
    DynamoDB together) and invocations per processor (``<integration>/<target>``)."""

    calls: dict[str, int] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)


SQS_ACTIONS = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
    }
)
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})


def read_local_counts(state_file: Path, *, timeout: float = 5.0) -> LocalCounts:
    """The counters of the local runtime named by its state file."""
    doc = json.loads(state_file.read_text())
    endpoint = str((doc.get("endpoints") or {}).get("sqs") or "")
    calls: dict[str, int] = {}
    if endpoint:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/", timeout=timeout) as response:  # noqa: S310 - local
            calls = {str(k): int(v) for k, v in (json.loads(response.read()).get("calls") or {}).items()}
    invocations: dict[str, int] = {}
    for name, url in (doc.get("hosts") or {}).items():
        if not str(name).startswith("workers-"):
            continue
        with urllib.request.urlopen(str(url).rstrip("/") + "/", timeout=timeout) as response:  # noqa: S310 - local
            for key, count in (json.loads(response.read()).get("invocations") or {}).items():
                invocations[str(key)] = invocations.get(str(key), 0) + int(count)
    return LocalCounts(calls, invocations)


def local_usage(
    counts: LocalCounts, integrations: Iterable[Integration], events: Mapping[str, int]
) -> dict[str, Usage]:
    """Per integration, the local counts: its processors' invocations are its own; the stand-in's
    SQS and DynamoDB requests (counted for the whole stack, per action) are shared out by each
    integration's events. The local runtime counts no duration, no gateway request and no secret
    read: those lines stay 0 (and an item's write units are counted as one per request)."""
    chosen = list(integrations)
    sqs = Decimal(sum(v for k, v in counts.calls.items() if k in SQS_ACTIONS))
    writes = Decimal(sum(v for k, v in counts.calls.items() if k in DYNAMODB_WRITES))
    reads = Decimal(sum(v for k, v in counts.calls.items() if k in DYNAMODB_READS))
    total_events = Decimal(sum(events.get(i.name, 0) for i in chosen))
    usage: dict[str, Usage] = {}
    for i in chosen:
        own = Decimal(events.get(i.name, 0))
        share = own / total_events if total_events else Decimal(0)
        invoked = sum(v for k, v in counts.invocations.items() if k.split("/", 1)[0] == i.name)
        usage[i.name] = Usage(
            events=own,
            lambda_requests=Decimal(invoked) + (own if i.webhook else Decimal(0)),
            sqs_requests=sqs * share,
            dynamodb_write_units=writes * share,
            dynamodb_read_units=reads * share,
            apigateway_requests=own if i.webhook else Decimal(0),
            api=api_kind(i),
        )
    return usage


def window(since: datetime, until: datetime) -> timedelta:
    return until - since
