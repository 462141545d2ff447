"""Who did what to a stage: one record per operator action (a DLQ redrive, a replay, a backfill, a
cursor reset, a breaker override), kept in the state table.

Items are ``audit#<YYYY-MM-DD>`` / ``<iso time>#<id>`` (UTC): one partition per day, so listing a
window is a Query per day and never a Scan. They expire after ``AUDIT_TTL_DAYS``.

Plain Python over a DynamoDB client: the ops CLI writes and lists them, and a console or a
runtime function can do the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.aws import item_from_ddb, item_to_ddb

AUDIT = "audit#"
AUDIT_TTL_DAYS = 400
MAX_DAYS = 400  # a listing reads at most this many day partitions


def audit_pk(day: str) -> str:
    """The partition of one UTC day (``2026-03-01``)."""
    return f"{AUDIT}{day}"


def _plain(value: Any) -> Any:
    """DynamoDB's numbers back to int or float (for JSON), recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _storable(value: Any) -> Any:
    """Floats as exact decimals, and nothing DynamoDB refuses (empty sets, odd types as text)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bool | int | str | Decimal) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class AuditRecord:
    action: str  # "dlq.redrive", "replay", "replay.backfill", "sync.reset", "breaker.open", ...
    who: str  # the caller's AWS identity (its ARN), or the local user
    stage: str
    where: str  # "aws" or "local"
    integration: str | None = None
    target: str | None = None
    count: int | None = None  # how many messages (or items) the action moved or sent
    filters: dict[str, Any] = field(default_factory=dict)  # the filters the operator gave
    outcome: str = "done"  # "done", or "failed" when the action raised part way
    details: dict[str, Any] = field(default_factory=dict)
    at: str = ""  # ISO 8601 UTC, milliseconds; set by ``record``
    id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "id": self.id,
            "action": self.action,
            "who": self.who,
            "stage": self.stage,
            "where": self.where,
            "integration": self.integration,
            "target": self.target,
            "count": self.count,
            "filters": _plain(self.filters),
            "outcome": self.outcome,
            "details": _plain(self.details),
        }

    @classmethod
    def from_item(cls, doc: Mapping[str, Any]) -> AuditRecord:
        count = doc.get("count")
        return cls(
            action=str(doc.get("action") or "?"),
            who=str(doc.get("who") or "?"),
            stage=str(doc.get("stage") or ""),
            where=str(doc.get("where") or ""),
            integration=doc.get("integration"),
            target=doc.get("target"),
            count=None if count is None else int(count),
            filters=_plain(dict(doc.get("filters") or {})),
            outcome=str(doc.get("outcome") or "done"),
            details=_plain(dict(doc.get("details") or {})),
            at=str(doc.get("at") or ""),
            id=str(doc.get("id") or ""),
        )


def record(ddb: Any, table: str, entry: AuditRecord, *, now: datetime | None = None) -> AuditRecord:
    """Write one audit record (its time and id set here) and return it. Raises the client's
    error when the write fails: an action whose record is not kept must not look recorded."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    iso = at.isoformat(timespec="milliseconds")
    written = AuditRecord(**{**entry.__dict__, "at": iso, "id": entry.id or uuid.uuid4().hex[:12]})
    item: dict[str, Any] = {
        "pk": audit_pk(iso[:10]),
        "sk": f"{iso}#{written.id}",
        **{k: _storable(v) for k, v in written.as_json().items() if v is not None},
        "expires_at": int(at.timestamp()) + AUDIT_TTL_DAYS * 86_400,
    }
    ddb.put_item(TableName=table, Item=item_to_ddb(item))
    return written


def records(
    ddb: Any,
    table: str,
    since: datetime,
    until: datetime | None = None,
    *,
    action: str | None = None,
    integration: str | None = None,
) -> Iterator[AuditRecord]:
    """Audit records from ``since`` (included) to ``until`` (excluded; default now), oldest first:
    one paged Query per UTC day of the window."""
    low = since.astimezone(UTC)
    high = (until or datetime.now(UTC)).astimezone(UTC)
    if high <= low:
        return
    lo_key, hi_key = low.isoformat(timespec="milliseconds"), high.isoformat(timespec="milliseconds")
    day = low.date()
    for _ in range(MAX_DAYS + 1):
        if day > high.date():
            return
        params: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": audit_pk(day.isoformat())},
                ":lo": {"S": lo_key},
                ":hi": {"S": hi_key},  # an sk at exactly ``until`` is longer, so greater: left out
            },
        }
        while True:
            page = ddb.query(**params)
            for item in page.get("Items", []):
                found = AuditRecord.from_item(item_from_ddb(dict(item)))
                if action and found.action != action and not found.action.startswith(action + "."):
                    continue
                if integration and found.integration != integration:
                    continue
                yield found
            if not page.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        day += timedelta(days=1)
