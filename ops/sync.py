"""``junction sync``: the pollers of scheduled integrations, and moving their cursors by hand.

- ``status``: where each poller's cursor is, how far behind it is, its last run, its lease and
  how many runs failed in the last hour.
- ``reset``: put a cursor at a position (or back to the start), dropping the pass in progress.
- ``backfill``: the same cursor write, then the poller run at once and followed until the source
  has been read to the end and every target queue has drained.

Every cursor write goes through ``shared.polling.write_cursor``, conditional on the version read:
a poller that moved the cursor in the meantime wins and the command changes nothing. A run in
progress (its lease held) refuses the change unless forced; forced, the run's next cursor write
fails on the version and the run stops (``lost_lease``), so the reset still wins, but what the
run enqueued before stays enqueued. Every change is logged as one JSON line: who, when, what,
the cursor before and after.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from functions import registry
from shared import state_keys
from shared.aws import item_from_ddb
from shared.declaration import Integration, function_name, queue_name, state_table_name
from shared.declaration import Target as Delivery
from shared.polling import CursorState, read_cursor, write_cursor

from . import auditing
from .app import JsonOption, JunctionGroup, emit_json, err, fmt_age, fmt_when, global_options, out
from .auditing import caller
from .context import OpsError
from .context import Target as Stack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

START = "start"  # ``--to start``: clear the position, a full resync
POLL_SECONDS = 2.0  # how often ``backfill --wait`` looks at the history and the queues
HOUR = 3600.0
# Runs counted as the backfill's start this long before the command's own clock says it started:
# the history is stamped by the poller's clock, which may lag the operator's. Only the counts
# shown depend on it; "caught up" is read from the cursor itself.
CLOCK_SLACK_SECONDS = 10.0
# ApproximateNumberOfMessages* may lag the queue: empty only when seen so this many times in a row.
DRAINED_CONFIRMATIONS = 2
# A timestamp position this far past today is refused: the poller would skip every change until
# then. A day of slack: the source's clock (the ERP's own, without an offset) may run ahead of UTC.
FUTURE_SLACK = timedelta(days=1)
DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

_TIMESTAMP = re.compile(
    r"(?P<day>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<clock>\d{2}:\d{2}(?::\d{2})?)(?P<fraction>\.\d{1,9})?(?P<offset>Z|[+-]\d{2}:?\d{2})?)?"
)
_UTC_OFFSETS = frozenset({"Z", "+00:00", "+0000", "-00:00", "-0000"})

audit_log = logging.getLogger("junction.ops.audit")


# -- integrations ------------------------------------------------------------------------------
def scheduled(name: str | None = None) -> tuple[Integration, ...]:
    """Every scheduled integration of the registry, or the named one (which must be scheduled)."""
    if name is not None:
        return (scheduled_integration(name),)
    return tuple(i for i in registry.INTEGRATIONS if i.schedule is not None)


def scheduled_integration(name: str) -> Integration:
    try:
        integration = registry.get(name)
    except KeyError as exc:
        raise OpsError(str(exc.args[0])) from None
    if integration.schedule is None:
        raise OpsError(f"{name} is not scheduled: it has no poller and no cursor (it is triggered by webhooks)")
    return integration


# -- reading the sync partition ----------------------------------------------------------------
def _iso(epoch: float) -> str:
    """The sync history's time format (``shared.polling``): its sort keys sort by it."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float | Decimal) else None


@dataclass(frozen=True)
class Lease:
    """The poller's lease item: a run in progress holds it until it ends or the lease lapses."""

    holder: str
    taken_at: float | None
    expires_at: float

    def held(self, now: float) -> bool:
        # The poller takes the lease when ``lease_expires < now``: until then it is held.
        return self.expires_at >= now

    def as_json(self, now: float) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "taken_at": _iso(self.taken_at) if self.taken_at is not None else None,
            "expires_at": _iso(self.expires_at),
            "held": self.held(now),
        }


def read_lease(ddb: DynamoDBClient, table: str, integration: str) -> Lease | None:
    key = {"pk": {"S": state_keys.sync_pk(integration)}, "sk": {"S": state_keys.LEASE_SK}}
    item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    if not item:
        return None
    doc = item_from_ddb(dict(item))
    return Lease(str(doc.get("holder") or "?"), _number(doc.get("taken_at")), _number(doc.get("lease_expires")) or 0.0)


@dataclass(frozen=True)
class RunRecord:
    """One item of the sync history (``run#<iso start>#<run id>``), as the poller wrote it."""

    run_id: str
    started_at: str
    ended_at: str | None
    outcome: str  # caught_up | deadline | failed | overlap | lost_lease
    pages: int = 0
    changes: int = 0
    rejected: int = 0
    skipped: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    lag_seconds: float | None = None
    error: str | None = None

    @classmethod
    def from_item(cls, doc: Mapping[str, Any]) -> RunRecord:
        def count(name: str) -> int:
            value = doc.get(name)
            return int(value) if isinstance(value, int | float | Decimal) else 0

        def text(name: str) -> str | None:
            value = doc.get(name)
            return None if value is None else str(value)

        return cls(
            run_id=str(doc.get("run_id") or str(doc.get("sk", "")).rsplit("#", 1)[-1]),
            started_at=str(doc.get("started_at") or ""),
            ended_at=text("ended_at"),
            outcome=str(doc.get("outcome") or "?"),
            pages=count("pages"),
            changes=count("changes"),
            rejected=count("rejected"),
            skipped=count("skipped"),
            cursor_before=text("cursor_before"),
            cursor_after=text("cursor_after"),
            lag_seconds=_number(doc.get("lag_seconds")),
            error=text("error"),
        )

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def runs(
    ddb: DynamoDBClient, table: str, integration: str, *, since: float | None = None, newest_first: bool = False
) -> Iterator[RunRecord]:
    """The sync history, from ``since`` (epoch seconds) on, or all of it."""
    lower = state_keys.RUN_SK_PREFIX + (_iso(since) if since is not None else "")
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": state_keys.sync_pk(integration)},
            ":lo": {"S": lower},
            ":hi": {"S": state_keys.RUN_SK_PREFIX + "~"},  # "~" sorts after every ISO time
        },
        "ScanIndexForward": not newest_first,
    }
    while True:
        page = ddb.query(**params)
        for item in page.get("Items", []):
            yield RunRecord.from_item(item_from_ddb(dict(item)))
        if not page.get("LastEvaluatedKey"):
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def last_run(ddb: DynamoDBClient, table: str, integration: str, *, look_back: int = 200) -> RunRecord | None:
    """The newest run that ran: a run refused by the lease (``overlap``) did nothing, and while a
    long run holds the lease every scheduled one is refused. Falls back to the newest of any kind."""
    newest: RunRecord | None = None
    for n, run in enumerate(runs(ddb, table, integration, newest_first=True)):
        newest = newest or run
        if run.outcome != "overlap":
            return run
        if n + 1 >= look_back:
            break
    return newest


@dataclass(frozen=True)
class SyncStatus:
    integration: str
    cursor_kind: str
    lookback_seconds: int
    cursor: CursorState
    lag_seconds: float | None  # now - the start of the last run that caught up
    last_run: RunRecord | None
    lease: Lease | None
    lease_held: bool
    runs_last_hour: int
    failed_last_hour: int
    now: float

    def as_json(self) -> dict[str, Any]:
        c = self.cursor
        return {
            "integration": self.integration,
            "cursor": {
                "kind": self.cursor_kind,
                "lookback_seconds": self.lookback_seconds,
                "position": c.position,
                "next": c.next,
                "pass_high": c.pass_high,
                "seen_keys": len(c.seen),
                "version": c.version,
                "caught_up_at": _iso(c.caught_up_at) if c.caught_up_at is not None else None,
                "rules": c.rules,
            },
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "last_run": self.last_run.as_json() if self.last_run else None,
            "lease": self.lease.as_json(self.now) if self.lease else None,
            "lease_held": self.lease_held,
            "runs_last_hour": self.runs_last_hour,
            "failed_last_hour": self.failed_last_hour,
        }


def sync_status(ddb: DynamoDBClient, stage: str, integration: Integration, *, now: float | None = None) -> SyncStatus:
    schedule = integration.schedule
    if schedule is None:
        raise OpsError(f"{integration.name} is not scheduled")
    at = time.time() if now is None else now
    table = state_table_name(stage)
    cursor = read_cursor(ddb, table, integration.name)
    lease = read_lease(ddb, table, integration.name)
    recent = list(runs(ddb, table, integration.name, since=at - HOUR))
    return SyncStatus(
        integration=integration.name,
        cursor_kind=schedule.cursor.kind,
        lookback_seconds=schedule.cursor.lookback_seconds,
        cursor=cursor,
        lag_seconds=None if cursor.caught_up_at is None else max(0.0, at - cursor.caught_up_at),
        last_run=last_run(ddb, table, integration.name),
        lease=lease,
        lease_held=lease is not None and lease.held(at),
        runs_last_hour=len(recent),
        failed_last_hour=sum(1 for r in recent if r.outcome == "failed"),
        now=at,
    )


# -- moving a cursor ---------------------------------------------------------------------------
def parse_position(integration: Integration, value: str, *, now: datetime | None = None) -> str | None:
    """The cursor position ``value`` names; None for ``start`` (a full resync). Raises ValueError
    with the reason for anything the integration's cursor cannot take.

    A timestamp cursor holds the source's own change stamps, "YYYY-MM-DDTHH:MM:SS" without an
    offset (``shared.connectors.erp.item_version``): a date or a date and time is normalised to
    that; a UTC marker is dropped; any other offset is refused rather than guessed at."""
    schedule = integration.schedule
    if schedule is None:
        raise ValueError(f"{integration.name} has no cursor")
    text = value.strip()
    if text.lower() == START:
        return None
    if schedule.cursor.kind == "token":
        if not text:
            raise ValueError("a token cursor takes a non-empty token (or 'start')")
        return text
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{value!r} is not an ISO date or date and time: give YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or 'start'"
        )
    offset = match.group("offset")
    if offset is not None and offset not in _UTC_OFFSETS:
        raise ValueError(
            f"{value!r} has the offset {offset}: the source's change stamps carry none, give the time in "
            "the source's own clock without an offset"
        )
    try:
        moment = datetime.fromisoformat(f"{match.group('day')}T{match.group('clock') or '00:00'}")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date or time: {exc}") from None
    today = (now or datetime.now(UTC)).replace(tzinfo=None)
    if moment > today + FUTURE_SLACK:
        raise ValueError(f"{value!r} is in the future: the poller would skip every change until then")
    return moment.isoformat(timespec="seconds")


def poller_rules_version(integration: Integration) -> str | None:
    """The business rules' version the integration's source declares (its ``rules_version``), or
    None when it cannot be told from here.

    A poller restarts from the beginning when the cursor's rules differ from its source's: a
    cursor placed by hand before any run must carry them, or the first run would discard it."""
    if integration.poller_module is None:
        return None
    try:
        module = importlib.import_module(integration.poller_module)
    except ImportError:
        return None
    found = {
        version
        for obj in vars(module).values()
        if isinstance(obj, type) and isinstance(version := getattr(obj, "rules_version", None), str)
    }
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class CursorChange:
    """A cursor write planned from the cursor and lease as read: shown, confirmed, then applied."""

    integration: Integration
    before: CursorState
    after: CursorState
    lease: Lease | None
    read_at: float
    notes: tuple[str, ...] = ()

    @property
    def lease_held(self) -> bool:
        return self.lease is not None and self.lease.held(self.read_at)


class LeaseHeld(OpsError):
    """A poller run is in progress: moving the cursor under it needs ``--force``."""


class CursorMoved(OpsError):
    """The cursor's version changed between the read and the write: nothing was written."""


def plan_cursor_change(
    ddb: DynamoDBClient, stage: str, integration: Integration, position: str | None, *, now: float | None = None
) -> CursorChange:
    """The cursor as it is and as it would be at ``position`` (None: cleared): the pass in
    progress (``next``, ``pass_high``) and the lookback's memory of what was sent (``seen``) are
    dropped, so the poller reads from ``position`` and sends everything it reads again."""
    table = state_table_name(stage)
    before = read_cursor(ddb, table, integration.name)
    notes: list[str] = []
    rules = before.rules
    if rules is None and position is not None:
        rules = poller_rules_version(integration)
        if rules is None:
            notes.append(
                "the cursor records no business-rules version and the source's could not be read here: "
                "the poller's first run may start from the beginning instead"
            )
    after = replace(before, position=position, next=None, pass_high=None, seen={}, rules=rules)
    after = replace(after, version=before.version + 1)
    lease = read_lease(ddb, table, integration.name)
    return CursorChange(integration, before, after, lease, time.time() if now is None else now, tuple(notes))


def lease_refusal(change: CursorChange) -> LeaseHeld:
    lease = change.lease
    assert lease is not None
    left = max(0, int(lease.expires_at - change.read_at))
    return LeaseHeld(
        f"a poller run of {change.integration.name} is in progress (lease held by {lease.holder}, "
        f"{left} s left): wait for it to end, or pass --force to move the cursor under it "
        "(the run then stops at its next cursor write)"
    )


def apply_cursor_change(
    ddb: DynamoDBClient, stage: str, change: CursorChange, *, force: bool = False, now: float | None = None
) -> CursorState:
    """Write the planned cursor if nobody moved it since it was read. Raises LeaseHeld (a run
    took the lease meanwhile; not with ``force``) or CursorMoved (a run wrote the cursor)."""
    table = state_table_name(stage)
    name = change.integration.name
    lease = read_lease(ddb, table, name)
    at = time.time() if now is None else now
    if not force and lease is not None and lease.held(at):
        raise lease_refusal(replace(change, lease=lease, read_at=at))
    if not write_cursor(ddb, table, name, change.after, expected_version=change.before.version):
        current = read_cursor(ddb, table, name)
        raise CursorMoved(
            f"the cursor of {name} moved while this command ran (version {change.before.version} -> "
            f"{current.version}, position now {current.position or 'start'}): a poller run wrote it. "
            "Nothing was changed; look at `junction sync status` and run the command again"
        )
    return replace(change.after, version=change.before.version + 1)


# -- who did what ------------------------------------------------------------------------------
class _Stderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _audit_logger() -> logging.Logger:
    if not audit_log.handlers:
        audit_log.addHandler(_Stderr())
        audit_log.setLevel(logging.INFO)
        audit_log.propagate = False
    return audit_log


def cursor_json(cursor: CursorState) -> dict[str, Any]:
    return {
        "position": cursor.position,
        "next": cursor.next,
        "pass_high": cursor.pass_high,
        "seen_keys": len(cursor.seen),
        "version": cursor.version,
    }


def audit(
    action: str,
    *,
    who: str,
    stack: Stack,
    integration: str,
    before: CursorState | None = None,
    after: CursorState | None = None,
    ddb: DynamoDBClient | None = None,
    **details: Any,
) -> dict[str, Any]:
    """One structured line per change of state on stderr (who, when, what, before and after)
    and, given the state table's client, the same as an audit record there (``junction audit``)."""
    record: dict[str, Any] = {
        "event": "junction.ops",
        "action": action,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who,
        "target": stack.kind,
        "stage": stack.stage,
        "integration": integration,
        **({"before": cursor_json(before)} if before is not None else {}),
        **({"after": cursor_json(after)} if after is not None else {}),
        **details,
    }
    _audit_logger().info(json.dumps(record, default=str, separators=(",", ":")))
    if ddb is not None:
        kept = {k: v for k, v in record.items() if k not in ("event", "action", "at", "who", "target", "stage")}
        kept.pop("integration", None)
        auditing.write(ddb, stack, action, who=who, integration=integration, details=kept)
    return record


# -- running the poller ------------------------------------------------------------------------
def local_host(stack: Stack) -> str:
    """The local runtime's function host that runs the schedules (from its state file)."""
    path = stack.state_file
    try:
        doc: Any = json.loads(Path(path).read_text()) if path is not None else {}
    except (OSError, ValueError) as exc:
        raise OpsError(f"local stack state file {path} is unreadable: {exc}") from None
    hosts = doc.get("hosts") if isinstance(doc, dict) else None
    host = (hosts or {}).get("workers-0") if isinstance(hosts, dict) else None
    if not host:
        raise OpsError("the local stack runs no function hosts, so nothing can run the poller: start it with `make up`")
    return str(host).rstrip("/")


def fire_local(stack: Stack, integration: Integration, *, timeout: float) -> dict[str, Any]:
    """Run the poller once on the local runtime, as its schedule would; the host answers when the
    run has ended, with the run's result."""
    url = f"{local_host(stack)}/_local/schedules/{integration.name}"
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - the local stack only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer: Any = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise OpsError(f"the local host did not run the poller of {integration.name}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OpsError(
            f"local function host not reachable at {url}: {reason} (start the stack with `make up`)"
        ) from None
    return answer if isinstance(answer, dict) else {"answer": answer}


def fire_aws(lambda_client: Any, stage: str, integration: Integration, *, who: str) -> str:
    """Invoke the poller function asynchronously (as EventBridge does); the invocation's request id."""
    event = {
        "source": "junction.ops",
        "detail-type": "Backfill",
        "detail": {"integration": integration.name, "by": who},
    }
    answer = lambda_client.invoke(
        FunctionName=function_name(stage, integration, "poller"),
        InvocationType="Event",
        Payload=json.dumps(event).encode(),
    )
    status = int(answer.get("StatusCode") or 0)
    if status != 202:
        raise OpsError(f"Lambda did not queue the poller of {integration.name}: status {status}")
    return str(answer.get("ResponseMetadata", {}).get("RequestId") or "")


def lambda_client() -> Any:
    return boto3.session.Session().client("lambda", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class Firing:
    """A local poller run in a thread of its own (the host answers only when the run ends), so
    the progress of a backfill shows while it runs."""

    def __init__(self, fire: Callable[[], dict[str, Any]]) -> None:
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fire,), name="junction-sync-fire", daemon=True)
        self._thread.start()

    def _run(self, fire: Callable[[], dict[str, Any]]) -> None:
        try:
            self.answer = fire()
        except BaseException as exc:  # reported by check() in the waiting thread
            self.error = exc

    def check(self) -> None:
        if self.error is None:
            return
        line = str(self.error) if isinstance(self.error, OpsError) else f"{type(self.error).__name__}: {self.error}"
        raise OpsError(
            f"the cursor is set, but running the poller failed: {line}; its schedule carries the backfill on"
        )


# -- following a backfill ----------------------------------------------------------------------
@dataclass
class BackfillProgress:
    """What the runs since the backfill started enqueued, and what the targets have yet to take.

    ``caught_up`` comes from the cursor, not the history's clock: a run has caught up since the
    backfill's write when the cursor's version went past it and its ``caught_up_at`` changed."""

    runs: int = 0
    changes: int = 0
    rejected: int = 0
    failed: int = 0
    caught_up: bool = False
    last_error: str | None = None
    cursor: CursorState = field(default_factory=CursorState)
    waiting: dict[str, int] = field(default_factory=dict)  # target -> messages visible, in flight, delayed
    dead_lettered: dict[str, int] = field(default_factory=dict)  # target -> DLQ growth since the start
    elapsed: float = 0.0

    @property
    def enqueued(self) -> int:
        return self.changes + self.rejected

    @property
    def drained(self) -> bool:
        return all(n == 0 for n in self.waiting.values())

    @property
    def done(self) -> bool:
        return self.caught_up and self.drained

    def left(self, target: Delivery, items_per_message: int) -> int:
        """Changes a target has yet to take, estimated from its queue: a message carries up to
        ``items_per_message`` of them."""
        return self.waiting.get(target.name, 0) * items_per_message


class Queues:
    """The depths of an integration's target queues and DLQs (their URLs looked up once)."""

    def __init__(self, sqs: SQSClient, stage: str, integration: Integration) -> None:
        self.sqs = sqs
        self.stage = stage
        self.integration = integration
        self._urls: dict[str, str] = {}

    def _url(self, target: Delivery, dead_letter: bool) -> str:
        name = queue_name(self.stage, self.integration, target, dead_letter=dead_letter)
        if name not in self._urls:
            try:
                self._urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in MISSING_QUEUE_CODES:
                    raise OpsError(f"queue {name} not found: stack not deployed for stage {self.stage}?") from None
                raise
        return self._urls[name]

    def waiting(self) -> dict[str, int]:
        """Messages visible, in flight and delayed, per target queue."""
        out: dict[str, int] = {}
        for target in self.integration.targets:
            raw = self.sqs.get_queue_attributes(QueueUrl=self._url(target, False), AttributeNames=["All"])
            attrs = {str(k): v for k, v in raw["Attributes"].items()}
            out[target.name] = sum(int(attrs.get(n, "0")) for n in DEPTH_ATTRIBUTES)
        return out

    def dead_letters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for target in self.integration.targets:
            url = self._url(target, True)
            attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            out[target.name] = int(attrs["Attributes"].get("ApproximateNumberOfMessages", 0))
        return out


def caught_up_since(cursor: CursorState, written: CursorState) -> bool:
    """Whether a poller run reached the end of the source after ``written`` was written."""
    return (
        cursor.version > written.version
        and cursor.next is None
        and cursor.caught_up_at is not None
        and cursor.caught_up_at != written.caught_up_at
    )


def backfill_progress(
    ddb: DynamoDBClient,
    queues: Queues,
    stage: str,
    integration: Integration,
    written: CursorState,
    since: float,
    dlq_before: Mapping[str, int],
) -> BackfillProgress:
    table = state_table_name(stage)
    cursor = read_cursor(ddb, table, integration.name)
    progress = BackfillProgress(cursor=cursor, caught_up=caught_up_since(cursor, written))
    for run in runs(ddb, table, integration.name, since=since - CLOCK_SLACK_SECONDS):
        progress.runs += 1
        progress.changes += run.changes
        progress.rejected += run.rejected
        if run.outcome == "failed":
            progress.failed += 1
            progress.last_error = run.error
    # The queues are read after the cursor: a run records that it caught up only once SQS has
    # accepted everything it read, so "caught up and drained" cannot be seen too early.
    progress.waiting = queues.waiting()
    progress.dead_lettered = {t: max(0, n - dlq_before.get(t, 0)) for t, n in queues.dead_letters().items()}
    return progress


def wait_for_backfill(
    ddb: DynamoDBClient,
    queues: Queues,
    stage: str,
    integration: Integration,
    written: CursorState,
    since: float,
    *,
    dlq_before: Mapping[str, int],
    timeout: float,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    check: Callable[[], None] | None = None,
    poll_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillProgress:
    """Look at the cursor, the sync history and the target queues every ``poll_seconds`` until a
    run after the backfill's cursor write (``written``) has caught up and every target queue is
    empty (``DRAINED_CONFIRMATIONS`` looks in a row), or ``timeout`` has passed."""
    interval = POLL_SECONDS if poll_seconds is None else poll_seconds
    started = clock()
    done_in_a_row = 0
    while True:
        if check is not None:
            check()
        progress = backfill_progress(ddb, queues, stage, integration, written, since, dlq_before)
        progress.elapsed = clock() - started
        done_in_a_row = done_in_a_row + 1 if progress.done else 0
        if on_progress is not None:
            on_progress(progress)
        if done_in_a_row >= DRAINED_CONFIRMATIONS or progress.elapsed >= timeout:
            return progress
        sleep(min(interval, max(0.0, timeout - progress.elapsed)))


def pacing(integration: Integration) -> str:
    """What paces a backfill: each target's rate budget, shared with the live changes."""
    parts = []
    for t in integration.targets:
        if t.rate is not None:
            parts.append(
                f"{t.name} {t.rate.per_second:g}/s (burst {t.rate.burst}, budget '{t.rate.account}' shared with "
                "every other use of the account)"
            )
        else:
            parts.append(f"{t.name}: no rate budget, up to {t.max_concurrency} concurrent processors")
    return "Pacing: the targets' rate budgets, which the backfill spends from: " + "; ".join(parts) + "."


def summary(integration: Integration, progress: BackfillProgress, timeout: float) -> str:
    name = integration.name
    read = (
        f"{progress.runs} run(s), {progress.changes} change(s) enqueued"
        + (f", {progress.rejected} rejected item(s)" if progress.rejected else "")
        + (f", {progress.failed} failed run(s) (last: {progress.last_error})" if progress.failed else "")
    )
    dead = ", ".join(f"{t} +{n}" for t, n in progress.dead_lettered.items() if n)
    dead_text = f"; dead-lettered meanwhile: {dead} (see `junction dlq list {name}`)" if dead else ""
    took = fmt_age(progress.elapsed)
    if progress.done:
        return f"{name}: backfill caught up and delivered in {took}: {read}; every target queue is empty{dead_text}"
    waiting = ", ".join(f"{t} {n}" for t, n in progress.waiting.items())
    state = "caught up" if progress.caught_up else "not caught up yet"
    return (
        f"{name}: backfill not finished after {took} (timeout {timeout:g} s): {state}, {read}; "
        f"messages waiting: {waiting}{dead_text}"
    )


# -- the commands ------------------------------------------------------------------------------
sync_app = typer.Typer(
    cls=JunctionGroup,
    help="Scheduled integrations: poller cursors, lag, last runs; reset a cursor or backfill.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Move the cursor even while a poller run holds the lease (the run stops).")
]


def _epoch_when(epoch: float | None) -> str:
    return fmt_when(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else "-"


def _position(cursor: CursorState) -> str:
    text = cursor.position or "start"
    return f"{text} (+ pass in progress: next {cursor.next})" if cursor.next else text


def _lease_text(s: SyncStatus) -> Text:
    if s.lease is None or not s.lease_held:
        return Text("free", style="green")
    left = max(0, int(s.lease.expires_at - s.now))
    return Text(f"{s.lease.holder} ({left} s left)", style="yellow")


_OUTCOME_STYLES = {"caught_up": "green", "deadline": "cyan", "failed": "bold red", "lost_lease": "yellow"}


@sync_app.command("status")
def status_command(
    ctx: typer.Context,
    integration: Annotated[str | None, typer.Argument(help="One integration (default: every scheduled one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Each poller's cursor, lag, last run, lease and failed runs in the last hour."""
    chosen = scheduled(integration)
    if not chosen:
        if as_json:
            typer.echo("[]")
        else:
            out().print("no scheduled integrations", markup=False)
        return
    options = global_options(ctx)
    stack, clients = options.target, options.clients
    now = time.time()
    rows = [sync_status(clients.dynamodb, stack.stage, i, now=now) for i in chosen]
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in rows], indent=2, default=str))
        return
    table = Table(title=f"Sync ({stack.kind}, stage {stack.stage})")
    for column in ("integration", "cursor", "version", "lag", "last run", "outcome", "pages", "changes", "error"):
        table.add_column(column, justify="right" if column in ("version", "pages", "changes") else "left")
    table.add_column("lease")
    table.add_column("failed (1 h)", justify="right")
    for s in rows:
        run = s.last_run
        table.add_row(
            s.integration,
            _position(s.cursor) + (f" [{s.cursor_kind}]" if s.cursor_kind == "token" else ""),
            str(s.cursor.version),
            fmt_age(s.lag_seconds) if s.lag_seconds is not None else "never caught up",
            fmt_when(run.started_at) if run else "never",
            Text(run.outcome, style=_OUTCOME_STYLES.get(run.outcome, "")) if run else Text("-"),
            str(run.pages) if run else "-",
            str(run.changes) if run else "-",
            Text(run.error or "-", style="red") if run and run.error else Text("-"),
            _lease_text(s),
            Text(
                f"{s.failed_last_hour} of {s.runs_last_hour}",
                style="bold red" if s.failed_last_hour else "green",
            ),
        )
    out().print(table)


def _position_option(integration: Integration, value: str, option: str) -> str | None:
    try:
        return parse_position(integration, value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _show_change(change: CursorChange, console: Console | None = None) -> None:
    table = Table(title=f"Cursor of {change.integration.name}")
    for column in ("", "before", "after"):
        table.add_column(column, overflow="fold")
    b, a = change.before, change.after
    table.add_row("position", b.position or "start", a.position or "start (full resync)")
    table.add_row("next (pass in progress)", b.next or "-", a.next or "-")
    table.add_row("pass high", b.pass_high or "-", a.pass_high or "-")
    table.add_row("seen keys (lookback)", str(len(b.seen)), str(len(a.seen)))
    table.add_row("version", str(b.version), str(a.version))
    table.add_row("caught up at", _epoch_when(b.caught_up_at), _epoch_when(a.caught_up_at))
    console = console or out()
    console.print(table)
    for note in change.notes:
        console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
    if change.lease is not None and change.lease_held:
        console.print(
            f"a poller run holds the lease: {change.lease.holder}, until {_iso(change.lease.expires_at)}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


def _move_cursor(
    ctx: typer.Context,
    integration: Integration,
    position: str | None,
    *,
    action: str,
    question: str,
    dry_run: bool,
    yes: bool,
    force: bool,
    as_json: bool = False,
    **details: Any,
) -> tuple[CursorChange, str] | None:
    """Plan, show, confirm and write a cursor change (reset and backfill alike); None for a dry run.
    With ``as_json`` the tables and lines go to stderr: stdout keeps the one JSON document."""
    options = global_options(ctx)
    stack, ddb = options.target, options.clients.dynamodb
    change = plan_cursor_change(ddb, stack.stage, integration, position)
    console = err() if as_json else out()
    _show_change(change, console)
    if change.lease_held and not force:
        raise lease_refusal(change)
    if dry_run:
        console.print("dry run: nothing changed", markup=False)
        if as_json:
            emit_json(
                {
                    "integration": integration.name,
                    "dry_run": True,
                    "before": cursor_json(change.before),
                    "after": cursor_json(change.after),
                }
            )
        return None
    who = caller(stack)
    if not yes:
        typer.confirm(f"{question} ({stack.kind}, stage {stack.stage})?", abort=True)
    written = apply_cursor_change(ddb, stack.stage, change, force=force)
    audit(
        action,
        who=who,
        stack=stack,
        integration=integration.name,
        before=change.before,
        after=written,
        ddb=ddb,
        forced=bool(force and change.lease_held),
        **details,
    )
    console.print(
        f"cursor of {integration.name} set to {written.position or 'start'} (version {written.version})",
        markup=False,
        soft_wrap=True,
    )
    if as_json and action == "sync.reset":
        emit_json(
            {
                "integration": integration.name,
                "dry_run": False,
                "before": cursor_json(change.before),
                "after": cursor_json(written),
                "who": who,
            }
        )
    return change, who


@sync_app.command("reset")
def reset_command(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The scheduled integration.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The new position: an ISO date or date and time (timestamp cursors), a token (token cursors), "
            "or 'start' for a full resync.",
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change; change nothing.")] = False,
    yes: YesOption = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Set a poller's cursor to a position, dropping the pass in progress."""
    chosen = scheduled_integration(integration)
    position = _position_option(chosen, to, "--to")
    _move_cursor(
        ctx,
        chosen,
        position,
        action="sync.reset",
        question=f"Set the cursor of {chosen.name} to {position or 'start (a full resync)'}",
        dry_run=dry_run,
        yes=yes,
        force=force,
        as_json=as_json,
    )


@sync_app.command("backfill")
def backfill_command(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The scheduled integration.")],
    since: Annotated[
        str | None,
        typer.Option(help="Resync from here (date or date and time; a token for token cursors). Default: everything."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the backfill until it is read and delivered.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=0, help="Stop following after this many seconds.")] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the cursor change; change and run nothing.")] = False,
    yes: YesOption = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Resync from the start (or --since), run the poller now and follow it until delivered."""
    chosen = scheduled_integration(integration)
    position = _position_option(chosen, since, "--since") if since is not None else None
    options = global_options(ctx)
    stack, clients = options.target, options.clients
    console = err() if as_json else out()
    queues = Queues(clients.sqs, stack.stage, chosen)
    dlq_before = queues.dead_letters() if wait and not dry_run else {}
    what = f"from {position}" if position else "from the start (every key)"
    moved = _move_cursor(
        ctx,
        chosen,
        position,
        action="sync.backfill",
        question=f"Backfill {chosen.name} {what}: reset its cursor and run its poller now",
        dry_run=dry_run,
        yes=yes,
        force=force,
        as_json=as_json,
    )
    if moved is None:
        return
    change, who = moved
    started = time.time()  # runs from the cursor write on are the backfill's
    console.print(pacing(chosen), markup=False, soft_wrap=True)
    schedule = chosen.schedule
    assert schedule is not None
    firing: Firing | None = None
    if stack.is_local:
        timeout_s = schedule.function.timeout_seconds + 10.0
        if wait:
            firing = Firing(lambda: fire_local(stack, chosen, timeout=timeout_s))
            how = "local poller run started"
        else:
            console.print(f"running the poller of {chosen.name} once on the local stack ...", markup=False)
            answer = fire_local(stack, chosen, timeout=timeout_s)
            how = f"local poller run: {_run_answer(answer)}"
    else:
        request_id = fire_aws(lambda_client(), stack.stage, chosen, who=who)
        how = f"poller {function_name(stack.stage, chosen, 'poller')} invoked asynchronously (request {request_id})"
    audit("sync.poller_invoked", who=who, stack=stack, integration=chosen.name, how=how, ddb=clients.dynamodb)
    console.print(how, markup=False, soft_wrap=True)
    written = replace(change.after, version=change.before.version + 1)
    document: dict[str, Any] = {
        "integration": chosen.name,
        "before": cursor_json(change.before),
        "after": cursor_json(written),
        "who": who,
        "poller": how,
    }
    if not wait:
        console.print(
            f"the schedule ({schedule.expression}) carries the backfill on; follow it with `junction sync status`",
            markup=False,
            soft_wrap=True,
        )
        if as_json:
            emit_json(document)
        return
    progress = _follow(chosen, clients.dynamodb, queues, stack.stage, written, started, dlq_before, timeout, firing)
    console.print(summary(chosen, progress, timeout), markup=False, soft_wrap=True)
    if as_json:
        emit_json(document | {"done": progress.done, "summary": summary(chosen, progress, timeout)})
    if not progress.done:
        raise OpsError(f"{chosen.name}: backfill not finished within {timeout:g} s; it goes on by its schedule")


def _run_answer(answer: Mapping[str, Any]) -> str:
    run = answer.get("response") if isinstance(answer.get("response"), dict) else answer
    if not isinstance(run, dict) or "outcome" not in run:
        return json.dumps(answer, default=str)[:300]
    text = f"{run.get('outcome')}, {run.get('pages', 0)} page(s), {run.get('changes', 0)} change(s)"
    return text + (f", error {run['error']}" if run.get("error") else "")


def _follow(
    integration: Integration,
    ddb: DynamoDBClient,
    queues: Queues,
    stage: str,
    written: CursorState,
    since: float,
    dlq_before: Mapping[str, int],
    timeout: float,
    firing: Firing | None,
) -> BackfillProgress:
    schedule = integration.schedule
    assert schedule is not None
    per = schedule.items_per_message
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        console=err(),
        transient=False,
    ) as bar:
        reading = bar.add_task(f"{integration.name}: reading the source", total=None, count="")
        tasks = {t.name: bar.add_task(f"{t.name}: delivered ≈", total=None, count="") for t in integration.targets}

        def show(p: BackfillProgress) -> None:
            where = p.cursor.pass_high or p.cursor.position or "start"
            state = "caught up" if p.caught_up else f"reading (pass at {where})"
            enqueued = p.enqueued
            bar.update(
                reading,
                description=f"{integration.name}: {state}, {p.runs} run(s)"
                + (f", {p.failed} failed" if p.failed else ""),
                completed=enqueued,
                total=enqueued if p.caught_up else None,
                count=f"{enqueued:,} change(s) enqueued",
            )
            for target in integration.targets:
                left = p.left(target, per)
                total = max(enqueued, left)
                done = total - min(left, total)
                bar.update(
                    tasks[target.name],
                    completed=done,
                    total=total or None,
                    count=f"{done:,}/{total:,} ({p.waiting.get(target.name, 0):,} message(s) waiting)",
                )

        return wait_for_backfill(
            ddb,
            queues,
            stage,
            integration,
            written,
            since,
            dlq_before=dlq_before,
            timeout=timeout,
            on_progress=show,
            check=firing.check if firing is not None else None,
        )
