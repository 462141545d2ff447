"""Message history over time, per integration: every delivery to every target (delivered,
duplicate, retried, dead-lettered, with its reason and whether that is a business or a system
failure) and every poller run, read back from the state table.

Plain Python over boto3 clients, shared by the ops CLI (``junction history``), the hourly export to
S3 (``functions/history_export.py``) and any console.

Where the records are and how they are read:

- Poller runs: ``sync#<integration>`` / ``run#<iso start>#<run id>``. One paged Query per
  integration on its own partition, the window on the sort key.
- Deliveries: trace items, ``trace#<entity>`` / ``<iso time>#<integration>/<target>#<outcome>#...``,
  with ``integration`` and ``target`` attributes. Their partition is the entity, so "one
  integration over time" is not a key of the table itself. Two ways:

  * ``index`` given: a global secondary index with partition key ``integration`` and sort key
    ``sk`` (both attributes every trace item already has; ``HISTORY_INDEX``): one paged Query per
    integration, the window on ``sk``, newest first, stopping at ``limit``.
  * no index: a paged Scan with a filter (``pk`` begins with ``trace#``, ``sk`` in the window, the
    integration, the outcomes). A Scan reads (and bills) every item it passes, not what matches,
    so it is bounded by ``max_scanned`` items; a result cut by that bound says so
    (``complete=False``) and the caller narrows the window or raises the bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from shared import state_keys
from shared.aws import item_from_ddb
from shared.errors import error_class as reason_class

# The index a stage may have for deliveries by integration and time (partition key ``integration``,
# sort key ``sk``, projection ALL).
HISTORY_INDEX = "history-by-integration"
DEFAULT_MAX_SCANNED = 200_000  # items a Scan may read before it stops (about 50 MB of 250-byte items)
SCAN_PAGE = 1000  # items per Scan request

# Outcomes as history names them; the trace's ``retry_scheduled`` is ``retried`` here.
DELIVERY_OUTCOMES = ("delivered", "duplicate", "retried", "dead_lettered")
RUN_OUTCOMES = ("caught_up", "deadline", "failed", "overlap", "lost_lease")
_TRACE_OUTCOME = {"retried": "retry_scheduled"}
_HISTORY_OUTCOME = {v: k for k, v in _TRACE_OUTCOME.items()}

ErrorClass = Literal["business", "system"]
Method = Literal["index", "scan"]


def error_class(outcome: str, reason: str | None) -> ErrorClass | None:
    """``business`` or ``system`` for a failed delivery (retried or dead-lettered); None otherwise.

    A retry is always a system matter (only transient failures are retried). A dead letter is a
    system failure when its reason is one (``shared.errors.SYSTEM_REASONS``), else a business one."""
    if outcome == "retried":
        return "system"
    if outcome != "dead_lettered":
        return None
    return "system" if reason_class(reason) == "system" else "business"


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float | Decimal) else None


@dataclass(frozen=True)
class HistoryEvent:
    """One delivery to one target, or one poller run."""

    at: str  # ISO 8601 UTC with milliseconds: when the hop was recorded, or the run started
    kind: Literal["delivery", "poller_run"]
    integration: str
    outcome: str  # a DELIVERY_OUTCOMES or RUN_OUTCOMES value
    target: str | None = None
    reason: str | None = None
    error_class: ErrorClass | None = None
    entity_id: str | None = None
    attempts: int | None = None
    latency_ms: int | None = None
    delivery_id: str | None = None
    replay_id: str | None = None
    # poller runs
    run_id: str | None = None
    ended_at: str | None = None
    pages: int | None = None
    changes: int | None = None
    rejected: int | None = None
    error: str | None = None
    key: str = field(default="", compare=False, repr=False)  # the item's sort key: a stable tie-break

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "at": self.at,
            "kind": self.kind,
            "integration": self.integration,
            "target": self.target,
            "outcome": self.outcome,
            "reason": self.reason,
            "error_class": self.error_class,
        }
        if self.kind == "delivery":
            doc.update(
                entity_id=self.entity_id,
                attempts=self.attempts,
                latency_ms=self.latency_ms,
                delivery_id=self.delivery_id,
                replay_id=self.replay_id,
            )
        else:
            doc.update(
                run_id=self.run_id,
                ended_at=self.ended_at,
                pages=self.pages,
                changes=self.changes,
                rejected=self.rejected,
                error=self.error,
            )
        return doc

    def jsonl(self) -> str:
        return json.dumps(self.as_json(), separators=(",", ":"), sort_keys=True)

    @property
    def order(self) -> tuple[str, str]:
        return (self.at, self.key)


def delivery_from_item(doc: dict[str, Any]) -> HistoryEvent:
    """A trace item (``shared/processing.py``) as a history event."""
    sk = str(doc.get("sk", ""))
    outcome = str(doc.get("outcome") or (sk.split("#")[2] if sk.count("#") >= 3 else "?"))
    outcome = _HISTORY_OUTCOME.get(outcome, outcome)
    reason = doc.get("reason")
    return HistoryEvent(
        at=sk.split("#", 1)[0],
        kind="delivery",
        integration=str(doc.get("integration") or ""),
        target=str(doc.get("target")) if doc.get("target") else None,
        outcome=outcome,
        reason=str(reason) if reason else None,
        error_class=error_class(outcome, str(reason) if reason else None),
        entity_id=str(doc.get("pk", "")).removeprefix(state_keys.TRACE) or None,
        attempts=_number(doc.get("attempts")),
        latency_ms=_number(doc.get("latency_ms")),
        delivery_id=doc.get("delivery_id"),
        replay_id=doc.get("replay_id"),
        key=f"{sk}|{doc.get('pk', '')}",
    )


def run_from_item(integration: str, doc: dict[str, Any]) -> HistoryEvent:
    """A poller's run item (``shared/polling.py``) as a history event."""
    sk = str(doc.get("sk", ""))
    outcome = str(doc.get("outcome") or "?")
    error = doc.get("error")
    return HistoryEvent(
        at=str(doc.get("started_at") or sk.removeprefix(state_keys.RUN_SK_PREFIX).split("#", 1)[0]),
        kind="poller_run",
        integration=integration,
        outcome=outcome,
        reason=str(error)[:200] if outcome == "failed" and error else None,
        error_class="system" if outcome == "failed" else None,
        run_id=str(doc.get("run_id") or sk.rsplit("#", 1)[-1]),
        ended_at=doc.get("ended_at"),
        pages=_number(doc.get("pages")),
        changes=_number(doc.get("changes")),
        rejected=_number(doc.get("rejected")),
        error=str(error) if error else None,
        key=sk,
    )


# -- the window ----------------------------------------------------------------------------
def iso(at: datetime) -> str:
    """A time as the processors and pollers stamp their items: UTC, milliseconds."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="milliseconds")


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (no zone: UTC), or a duration back from now: ``90s``, ``10m``, ``2h``, ``7d``.
    Raises ValueError with the reason."""
    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    if len(value) >= 2 and value[:-1].isdigit() and value[-1].lower() in units:
        return (now or datetime.now(UTC)) - timedelta(seconds=int(value[:-1]) * units[value[-1].lower()])
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-03-01T10:00:00Z) nor a duration (2h)") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class HistoryPage:
    """What a read found, and how it read it."""

    events: list[HistoryEvent]  # oldest first
    method: Method  # how deliveries were read
    scanned: int  # items DynamoDB read for the deliveries (what a Scan is billed on)
    complete: bool  # False: a Scan stopped at its bound before it had read the whole table
    limited: bool  # True: more events matched than ``limit``; the oldest were left out

    def as_json(self) -> dict[str, Any]:
        return {
            "events": [e.as_json() for e in self.events],
            "method": self.method,
            "scanned": self.scanned,
            "complete": self.complete,
            "limited": self.limited,
        }


def _outcome_filter(outcomes: Iterable[str] | None) -> list[str] | None:
    if outcomes is None:
        return None
    wanted = sorted({_TRACE_OUTCOME.get(o, o) for o in outcomes if o in DELIVERY_OUTCOMES})
    return wanted


def _query_index(
    ddb: Any,
    table: str,
    index: str,
    integration: str,
    lo: str,
    hi: str,
    outcomes: list[str] | None,
    limit: int | None,
) -> tuple[list[HistoryEvent], int, bool]:
    """Deliveries of one integration in the window, newest first, at most ``limit`` (+1 to know
    there are more)."""
    values: dict[str, Any] = {":i": {"S": integration}, ":lo": {"S": lo}, ":hi": {"S": hi}}
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#integration = :i AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeNames": {"#integration": "integration"},
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
    }
    if outcomes is not None:
        names = [f":o{n}" for n in range(len(outcomes))]
        params["FilterExpression"] = f"#outcome IN ({', '.join(names)})"
        params["ExpressionAttributeNames"]["#outcome"] = "outcome"
        values.update({name: {"S": o} for name, o in zip(names, outcomes, strict=True)})
    found: list[HistoryEvent] = []
    scanned = 0
    while True:
        page = ddb.query(**params)
        scanned += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            doc = item_from_ddb(dict(item))
            if str(doc.get("pk", "")).startswith(state_keys.TRACE):
                found.append(delivery_from_item(doc))
        if limit is not None and len(found) > limit:
            return found, scanned, True
        if not page.get("LastEvaluatedKey"):
            return found, scanned, False
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def scan_deliveries(
    ddb: Any,
    table: str,
    integrations: Sequence[str] | None,
    lo: str,
    hi: str,
    outcomes: list[str] | None = None,
    *,
    max_scanned: int | None = DEFAULT_MAX_SCANNED,
) -> tuple[list[HistoryEvent], int, bool]:
    """Deliveries of the integrations (every one if None) in ``[lo, hi)`` by a paged, bounded
    Scan. Returns (events unsorted, items read, whether the whole table was read)."""
    names = {"#outcome": "outcome", "#integration": "integration"}
    values: dict[str, Any] = {":trace": {"S": state_keys.TRACE}, ":lo": {"S": lo}, ":hi": {"S": hi}}
    condition = "begins_with(pk, :trace) AND sk BETWEEN :lo AND :hi"
    if integrations is not None:
        keys = [f":i{n}" for n in range(len(integrations))]
        condition += f" AND #integration IN ({', '.join(keys)})"
        values.update({k: {"S": name} for k, name in zip(keys, integrations, strict=True)})
    if outcomes is not None:
        keys = [f":o{n}" for n in range(len(outcomes))]
        condition += f" AND #outcome IN ({', '.join(keys)})"
        values.update({k: {"S": o} for k, o in zip(keys, outcomes, strict=True)})
    else:
        names.pop("#outcome")
    if integrations is None:
        names.pop("#integration")
    params: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": condition,
        "ExpressionAttributeValues": values,
        "Limit": SCAN_PAGE,
    }
    if names:
        params["ExpressionAttributeNames"] = names
    found: list[HistoryEvent] = []
    scanned = 0
    while True:
        if max_scanned is not None:
            params["Limit"] = max(1, min(SCAN_PAGE, max_scanned - scanned))
        page = ddb.scan(**params)
        scanned += int(page.get("ScannedCount", 0))
        found += [delivery_from_item(item_from_ddb(dict(item))) for item in page.get("Items", [])]
        if not page.get("LastEvaluatedKey"):
            return found, scanned, True
        if max_scanned is not None and scanned >= max_scanned:
            return found, scanned, False
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def poller_runs(ddb: Any, table: str, integration: str, lo: str, hi: str) -> Iterator[HistoryEvent]:
    """The poller's runs that started in ``[lo, hi)``, oldest first (one paged Query)."""
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": state_keys.sync_pk(integration)},
            ":lo": {"S": state_keys.RUN_SK_PREFIX + lo},
            ":hi": {"S": state_keys.RUN_SK_PREFIX + hi},  # a run at exactly ``hi`` sorts after: left out
        },
    }
    while True:
        page = ddb.query(**params)
        for item in page.get("Items", []):
            yield run_from_item(integration, item_from_ddb(dict(item)))
        if not page.get("LastEvaluatedKey"):
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read(
    ddb: Any,
    table: str,
    integration: str,
    since: datetime,
    until: datetime,
    *,
    outcomes: Iterable[str] | None = None,
    limit: int | None = None,
    index: str | None = None,
    max_scanned: int | None = DEFAULT_MAX_SCANNED,
    runs: bool = True,
) -> HistoryPage:
    """The integration's history in ``[since, until)``, oldest first; with ``limit``, the newest
    ``limit`` events. ``outcomes`` keeps only those outcomes (delivery or run outcomes alike)."""
    lo, hi = iso(since), iso(until)
    if lo >= hi:
        raise ValueError(f"since {lo} is not before until {hi}: the window is empty")
    wanted = None if outcomes is None else set(outcomes)
    delivery_outcomes = _outcome_filter(wanted)
    events: list[HistoryEvent] = []
    scanned, complete, limited = 0, True, False
    if delivery_outcomes != []:
        if index:
            found, scanned, limited = _query_index(ddb, table, index, integration, lo, hi, delivery_outcomes, limit)
            method: Method = "index"
        else:
            found, scanned, complete = scan_deliveries(
                ddb, table, [integration], lo, hi, delivery_outcomes, max_scanned=max_scanned
            )
            method = "scan"
        events += found
    else:
        method = "index" if index else "scan"
    if runs and (wanted is None or wanted & set(RUN_OUTCOMES)):
        events += [r for r in poller_runs(ddb, table, integration, lo, hi) if wanted is None or r.outcome in wanted]
    events.sort(key=lambda e: e.order)
    if limit is not None and len(events) > limit:
        events, limited = events[-limit:], True
    return HistoryPage(events, method, scanned, complete, limited)


def counts(events: Iterable[HistoryEvent]) -> dict[str, dict[str, int]]:
    """Per target (``-`` for poller runs): how many of each outcome, and of each failure class."""
    out: dict[str, dict[str, int]] = {}
    for e in events:
        row = out.setdefault(e.target or "-", {})
        row[e.outcome] = row.get(e.outcome, 0) + 1
        if e.error_class:
            row[e.error_class] = row.get(e.error_class, 0) + 1
    return out


# -- export to S3 as JSON Lines --------------------------------------------------------------
PART_LINES = 50_000  # lines per part file


def hour_prefix(integration: str, hour: datetime) -> str:
    """``history/integration=<name>/dt=YYYY-MM-DD/hour=HH/``: Hive-style partitions (Athena, Glue)."""
    h = hour.astimezone(UTC)
    return f"history/integration={integration}/dt={h:%Y-%m-%d}/hour={h:%H}/"


def part_key(integration: str, hour: datetime, n: int) -> str:
    return f"{hour_prefix(integration, hour)}part-{n:05d}.jsonl"


def full_hour(at: datetime) -> datetime:
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class HourExport:
    integration: str
    hour: str  # ISO start of the hour
    events: int
    keys: list[str]  # the part files written
    removed: list[str]  # part files of an earlier export of the hour no longer needed
    scanned: int

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_hour(
    ddb: Any,
    s3: Any,
    table: str,
    bucket: str,
    integrations: Sequence[str],
    hour: datetime,
    *,
    index: str | None = None,
    part_lines: int = PART_LINES,
) -> list[HourExport]:
    """Write one hour of every named integration's history to S3 as JSON Lines.

    Idempotent: the same hour gives the same objects (events in a fixed order, fixed keys), so a
    re-run overwrites them with the same bytes plus anything recorded late, and removes parts an
    earlier run wrote beyond the ones now needed. An hour without events leaves no object.
    Deliveries are read by one Query per integration with ``index``, else by one unbounded Scan
    shared by every integration (the whole table, once per hour)."""
    start = full_hour(hour)
    lo, hi = iso(start), iso(start + timedelta(hours=1))
    by_integration: dict[str, list[HistoryEvent]] = {name: [] for name in integrations}
    scanned: dict[str, int] = dict.fromkeys(integrations, 0)
    if index:
        for name in integrations:
            found, scanned[name], _ = _query_index(ddb, table, index, name, lo, hi, None, None)
            by_integration[name] += found
    else:
        found, total, _ = scan_deliveries(ddb, table, list(integrations), lo, hi, None, max_scanned=None)
        for e in found:
            by_integration[e.integration].append(e)
        scanned = dict.fromkeys(integrations, total)
    results: list[HourExport] = []
    for name in integrations:
        events = by_integration[name] + list(poller_runs(ddb, table, name, lo, hi))
        events.sort(key=lambda e: e.order)
        lines = [e.jsonl() for e in events]
        keys: list[str] = []
        for n, begin in enumerate(range(0, len(lines), part_lines)):
            key = part_key(name, start, n)
            body = ("\n".join(lines[begin : begin + part_lines]) + "\n").encode()
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
            keys.append(key)
        removed: list[str] = []
        listing: dict[str, Any] = {"Bucket": bucket, "Prefix": hour_prefix(name, start)}
        while True:
            page = s3.list_objects_v2(**listing)
            removed += [str(o["Key"]) for o in page.get("Contents", []) if o["Key"] not in keys]
            if not page.get("IsTruncated"):
                break
            listing["ContinuationToken"] = page["NextContinuationToken"]
        for key in removed:
            s3.delete_object(Bucket=bucket, Key=key)
        results.append(HourExport(name, lo, len(lines), keys, removed, scanned[name]))
    return results
