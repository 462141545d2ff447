"""``junction sync`` (ops/sync.py) against moto and the local AWS stand-in: the cursor, lease and
history the real poller writes, read back by ``status``; ``reset`` and ``backfill`` writing the
cursor through the same versioned write, refused or failing cleanly when a run is in the way.

The CLI runs as ``sync_app`` alone: the target comes from the environment (``JUNCTION_OPS_ON``,
``JUNCTION_STAGE``, ``JUNCTION_LOCAL_STATE``). The local runtime's function host is a fake on
127.0.0.1 that records the schedule firings (and, where a test says so, runs the real poller).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from typer.testing import CliRunner, Result

from functions import registry
from junction_local.provision import provision
from ops import sync
from ops.sync import CursorMoved, LeaseHeld, apply_cursor_change, parse_position, plan_cursor_change, sync_app
from shared.declaration import (
    Cursor,
    FunctionSettings,
    Integration,
    RateBudget,
    ScheduleTrigger,
    Target,
    queue_name,
    state_table_name,
)
from shared.errors import TargetUnavailable
from shared.polling import Change, CursorState, Page, Poller, read_cursor, write_cursor
from tests.component.harness import REGION, STAGE
from tests.sample import SHOP_ORDERS_TO_ERP as WEBHOOK_INTEGRATION

STOCK = Integration(
    name="stock-sync-test",
    description="a scheduled integration with a timestamp cursor and two rate-limited targets",
    source="erp",
    package="tests.component.no_such_package",
    trigger=ScheduleTrigger(
        expression="rate(1 minute)",
        cursor=Cursor("timestamp", lookback_seconds=120),
        page_size=100,
        items_per_message=2,
        function=FunctionSettings(512, 120),
    ),
    targets=(
        Target(name="shopify", rate=RateBudget(account="shopify", per_second=20, burst=40)),
        Target(name="allegro", rate=RateBudget(account="allegro", per_second=100, burst=100)),
    ),
)
EVENTS = Integration(
    name="events-sync-test",
    description="a scheduled integration with a token cursor",
    source="shopify",
    package="tests.component.no_such_package",
    trigger=ScheduleTrigger(expression="rate(5 minutes)", cursor=Cursor("token")),
    targets=(Target(name="erp"),),
)
TABLE = state_table_name(STAGE)
runner = CliRunner()
# The command-line flow alone (prompts, dry runs, what is fired): the AWS stand-ins' behaviour it
# relies on (conditional writes, history queries) is covered on both by the other tests.
moto_only = pytest.mark.parametrize("aws", ["moto"], indirect=True)


# -- fixtures and helpers --------------------------------------------------------------------------
@dataclass
class Stack:
    ddb: Any
    sqs: Any

    def urls(self, i: Integration, *, dead_letter: bool = False) -> list[str]:
        return [
            self.sqs.get_queue_url(QueueName=queue_name(STAGE, i, t, dead_letter=dead_letter))["QueueUrl"]
            for t in i.targets
        ]

    def depth(self, i: Integration) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        return sum(
            int(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].get(n, 0))
            for url in self.urls(i)
            for n in names
        )

    def drain(self, i: Integration) -> int:
        """The targets' processors, reduced to taking every message off their queues."""
        taken = 0
        for url in self.urls(i):
            while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for m in messages:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                taken += len(messages)
        return taken

    def cursor(self, i: Integration = STOCK) -> CursorState:
        return read_cursor(self.ddb, TABLE, i.name)


@pytest.fixture(autouse=True)
def declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry with the test's scheduled integrations next to the webhook one."""
    monkeypatch.setattr(registry, "INTEGRATIONS", (WEBHOOK_INTEGRATION, STOCK, EVENTS))
    monkeypatch.setattr(sync, "POLL_SECONDS", 0.01)
    # Every CLI run makes a boto3 session of its own, which parses the service models again:
    # one loader (it keeps what it parsed) for them all keeps the tests quick.
    loader = botocore.loaders.create_loader()
    monkeypatch.setattr(botocore.session, "create_loader", lambda *_a, **_kw: loader)


@pytest.fixture
def stack(aws: str) -> Stack:
    sqs = boto3.client("sqs", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    provision(
        (STOCK, EVENTS),
        stage=STAGE,
        sqs=sqs,
        ddb=ddb,
        secretsmanager=boto3.client("secretsmanager", region_name=REGION),
        secret_values={},
    )
    return Stack(ddb, sqs)


class FakeSource:
    """A source that hands out the pages it was given, or fails."""

    rules_version = "rules-1"

    def __init__(self, pages: list[Page] | None = None, error: Exception | None = None) -> None:
        self.pages = list(pages or [])
        self.error = error

    def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
        if self.error is not None:
            raise self.error
        return self.pages.pop(0)


def changes(*stamps: str) -> list[Change]:
    return [Change(f"SKU-{n}", stamp, {"qty": n}) for n, stamp in enumerate(stamps)]


def poller(stack: Stack, source: FakeSource, clock: Callable[[], float] | None = None) -> Poller:
    kw: dict[str, Any] = {"clock": clock} if clock else {}
    return Poller(STOCK, source, sqs=stack.sqs, ddb=stack.ddb, state_table=TABLE, queue_urls=stack.urls(STOCK), **kw)


def poll(stack: Stack, source: FakeSource, clock: Callable[[], float] | None = None) -> str:
    return poller(stack, source, clock).run(lambda: 100.0).outcome


def place_cursor(stack: Stack) -> CursorState:
    """A cursor in the middle of a pass, as a poller leaves it between pages."""
    state = CursorState(
        position="2024-05-01T10:00:00",
        next="page-2",
        pass_high="2024-05-01T10:05:00",
        seen={"SKU-1": ["2024-05-01T10:04:00", "abc"]},
        caught_up_at=1_714_557_600.0,
        rules="rules-1",
    )
    current = stack.cursor()
    assert write_cursor(stack.ddb, TABLE, STOCK.name, state, expected_version=current.version)
    return stack.cursor()


def cli(*args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Result:
    base: dict[str, str | None] = {
        "COLUMNS": "250",
        "JUNCTION_OPS_ON": "aws",
        "JUNCTION_STAGE": STAGE,
        "JUNCTION_LOCAL_STATE": None,
    }
    return runner.invoke(sync_app, list(args), env={**base, **(env or {})}, input=input)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def failed(result: Result) -> str:
    """Exit code 1 with one 'error:' line on stderr, no traceback; that line."""
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def audit_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"event":"junction.ops"')]


# -- a fake local runtime ------------------------------------------------------------------------
@dataclass
class FakeHost:
    """The local runtime's function host: POST /_local/schedules/<integration>."""

    answer: Callable[[str], tuple[int, dict[str, Any]]]
    posts: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def fake_host() -> Iterator[FakeHost]:
    host = FakeHost(answer=lambda name: (200, {"fired": name, "response": {"outcome": "caught_up", "pages": 0}}))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            host.posts.append(self.path)
            status, body = host.answer(self.path.rsplit("/", 1)[-1])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    host.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=host.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield host
    host.server.shutdown()
    host.server.server_close()


def local_env(tmp_path: Path, host: FakeHost) -> dict[str, str | None]:
    """A local stack's state file, as the runtime writes it, pointing at the AWS stand-ins here."""
    import os

    default = os.environ["AWS_ENDPOINT_URL"]
    state = {
        "stage": STAGE,
        "region": REGION,
        "endpoints": {
            "default": default,
            "sqs": os.environ.get("AWS_ENDPOINT_URL_SQS", default),
            "dynamodb": os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", default),
        },
        "hosts": {"gateway": "http://127.0.0.1:9", "workers-0": host.url},
    }
    path = tmp_path / "local.json"
    path.write_text(json.dumps(state))
    return {"JUNCTION_OPS_ON": "local", "JUNCTION_LOCAL_STATE": str(path), "JUNCTION_STAGE": None}


# -- status ----------------------------------------------------------------------------------------
def test_status_shows_cursor_lag_last_run_lease_and_failures(stack: Stack) -> None:
    now = time.time()
    page = Page(changes("2024-05-01T10:00:00", "2024-05-01T10:02:00", "2024-05-01T10:03:00"))
    assert poll(stack, FakeSource([page]), clock=lambda: now - 300) == "caught_up"
    down = FakeSource(error=TargetUnavailable("ERP answered 503"))
    assert poll(stack, down, clock=lambda: now - 60) == "failed"
    assert poller(stack, FakeSource()).take_lease("run-in-progress")

    doc = json.loads(ok(cli("status", "--json")))
    assert [row["integration"] for row in doc] == [STOCK.name, EVENTS.name]  # webhook integrations have no cursor
    stock, events = doc
    assert stock["cursor"]["position"] == "2024-05-01T10:03:00"
    assert stock["cursor"]["version"] == 1 and stock["cursor"]["next"] is None
    assert stock["cursor"]["kind"] == "timestamp" and stock["cursor"]["seen_keys"] == 2  # within the 120 s lookback
    assert 300 <= stock["lag_seconds"] < 3600  # since the start of the run that caught up
    last = stock["last_run"]
    assert last["outcome"] == "failed" and "ERP answered 503" in last["error"]
    assert (stock["runs_last_hour"], stock["failed_last_hour"]) == (2, 1)
    assert stock["lease"]["holder"] == "run-in-progress" and stock["lease_held"] is True
    assert events["cursor"]["position"] is None and events["cursor"]["version"] == 0
    assert events["last_run"] is None and events["lease"] is None and events["lag_seconds"] is None

    table = ok(cli("status"))
    row = next(line for line in table.splitlines() if STOCK.name in line)
    assert "2024-05-01T10:03:00" in row and "failed" in row and "ERP answered 503" in row
    assert "run-in-progress" in row and "1 of 2" in row
    row = next(line for line in table.splitlines() if EVENTS.name in line)
    assert "start" in row and "never caught up" in row and "free" in row and "0 of 0" in row


@moto_only
def test_status_shows_a_pass_in_progress(stack: Stack) -> None:
    place_cursor(stack)
    row = ok(cli("status", STOCK.name))
    assert "2024-05-01T10:00:00 (+ pass in progress: next page-2)" in row
    assert "never" in row  # no run yet


# -- reset -----------------------------------------------------------------------------------------
@moto_only
def test_reset_dry_run_shows_the_change_and_changes_nothing(stack: Stack) -> None:
    before = place_cursor(stack)
    result = cli("reset", STOCK.name, "--to", "2024-04-01", "--dry-run")
    text = ok(result)
    assert "2024-04-01T00:00:00" in text and "page-2" in text and "dry run: nothing changed" in text
    assert stack.cursor() == before
    assert audit_lines(result) == []


@moto_only
def test_reset_answered_no_changes_nothing(stack: Stack) -> None:
    before = place_cursor(stack)
    result = cli("reset", STOCK.name, "--to", "2024-04-01", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert stack.cursor() == before
    assert audit_lines(result) == []


def test_reset_moves_the_cursor_and_drops_the_pass_in_progress(stack: Stack) -> None:
    before = place_cursor(stack)
    result = cli("reset", STOCK.name, "--to", "2024-04-01T08:30", input="y\n")
    assert "set to 2024-04-01T08:30:00 (version 2)" in ok(result)
    after = stack.cursor()
    assert (after.position, after.next, after.pass_high, after.seen) == ("2024-04-01T08:30:00", None, None, {})
    assert after.version == before.version + 1
    assert (after.rules, after.caught_up_at) == (before.rules, before.caught_up_at)  # no rules resync, lag kept
    (line,) = audit_lines(result)
    assert line["action"] == "sync.reset" and line["integration"] == STOCK.name and line["stage"] == STAGE
    assert line["who"].startswith("arn:aws:") and line["at"]
    assert line["before"]["position"] == "2024-05-01T10:00:00" and line["before"]["next"] == "page-2"
    assert line["after"] == {
        "position": "2024-04-01T08:30:00",
        "next": None,
        "pass_high": None,
        "seen_keys": 0,
        "version": 2,
    }

    ok(cli("reset", STOCK.name, "--to", "start", "--yes"))
    assert stack.cursor().position is None and stack.cursor().version == 3


@moto_only
def test_the_next_run_reads_from_the_reset_position(stack: Stack) -> None:
    """The poller takes the cursor as reset: it reads from the new position and sends again what
    the lookback had remembered as sent."""
    page = Page(changes("2024-05-01T10:00:00"))
    assert poll(stack, FakeSource([page])) == "caught_up"
    stack.drain(STOCK)
    ok(cli("reset", STOCK.name, "--to", "2024-04-30", "--yes"))
    seen: list[CursorState] = []

    class Recording(FakeSource):
        def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
            seen.append(cursor)
            return super().read(cursor, page_size, lookback_seconds, timeout)

    assert poll(stack, Recording([Page(changes("2024-05-01T10:00:00"))])) == "caught_up"
    assert seen[0].position == "2024-04-30T00:00:00" and seen[0].seen == {}
    assert stack.depth(STOCK) == 2  # the same change sent again, to each target


def test_reset_fails_cleanly_when_a_poller_moves_the_cursor_meanwhile(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    place_cursor(stack)
    plan = sync.plan_cursor_change

    def plan_then_a_poller_page(*args: Any, **kw: Any) -> sync.CursorChange:
        change = plan(*args, **kw)
        moved = CursorState(position="2024-05-01T10:06:00", caught_up_at=change.before.caught_up_at, rules="rules-1")
        assert write_cursor(stack.ddb, TABLE, STOCK.name, moved, expected_version=change.before.version)
        return change

    monkeypatch.setattr(sync, "plan_cursor_change", plan_then_a_poller_page)
    result = cli("reset", STOCK.name, "--to", "2024-04-01", "--yes")
    line = failed(result)
    assert "moved while this command ran (version 1 -> 2" in line and "Nothing was changed" in line
    assert stack.cursor().position == "2024-05-01T10:06:00"  # the poller's write stands
    assert audit_lines(result) == []


def test_a_real_poller_run_between_plan_and_apply_wins(stack: Stack) -> None:
    place_cursor(stack)
    change = plan_cursor_change(stack.ddb, STAGE, STOCK, "2024-04-01T00:00:00")
    assert poll(stack, FakeSource([Page(changes("2024-05-01T10:07:00"))])) == "caught_up"
    moved = stack.cursor()
    with pytest.raises(CursorMoved):
        apply_cursor_change(stack.ddb, STAGE, change)
    assert stack.cursor() == moved


def test_reset_is_refused_while_a_run_holds_the_lease_unless_forced(stack: Stack) -> None:
    before = place_cursor(stack)
    running = poller(stack, FakeSource())
    assert running.take_lease("run-7")

    line = failed(cli("reset", STOCK.name, "--to", "2024-04-01", "--yes"))
    assert "lease held by run-7" in line and "--force" in line
    assert stack.cursor() == before
    with pytest.raises(LeaseHeld):
        apply_cursor_change(stack.ddb, STAGE, plan_cursor_change(stack.ddb, STAGE, STOCK, None))

    result = cli("reset", STOCK.name, "--to", "2024-04-01", "--yes", "--force")
    ok(result)
    assert stack.cursor().position == "2024-04-01T00:00:00"
    assert audit_lines(result)[0]["forced"] is True
    # The run under it loses its next cursor write and stops.
    assert not running.write_cursor(replace_position(before, "2024-05-02T00:00:00"), before.version)


def replace_position(cursor: CursorState, position: str) -> CursorState:
    return CursorState(position=position, version=cursor.version, rules=cursor.rules)


@moto_only
def test_a_lease_that_ran_out_does_not_refuse(stack: Stack) -> None:
    place_cursor(stack)
    assert poller(stack, FakeSource(), clock=lambda: 1_000_000.0).take_lease("crashed-run")
    ok(cli("reset", STOCK.name, "--to", "2024-04-01", "--yes"))
    assert stack.cursor().position == "2024-04-01T00:00:00"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "not an ISO date"),
        ("01.05.2024", "not an ISO date"),
        ("2024-13-01", "not a valid date"),
        ("2024-02-30", "not a valid date"),
        ("2024-05-01T25:00", "not a valid date"),
        ("2024-05-01T10:00:00+02:00", "offset +02:00"),
        ("2999-01-01", "in the future"),
        ("", "not an ISO date"),
    ],
)
def test_bad_timestamps_are_refused_with_the_reason(value: str, reason: str) -> None:
    result = cli("reset", STOCK.name, "--to", value, "--yes")
    assert result.exit_code == 2, result.output
    assert "--to" in result.output and reason in " ".join(result.output.split())


@moto_only
def test_a_refused_position_changes_nothing(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    before = place_cursor(stack)
    assert cli("reset", STOCK.name, "--to", "2024-02-30", "--yes").exit_code == 2
    result = cli(
        "backfill", STOCK.name, "--since", "2024-05-01T10:00+02:00", "--yes", env=local_env(tmp_path, fake_host)
    )
    assert result.exit_code == 2 and "--since" in result.output
    assert stack.cursor() == before and fake_host.posts == []


def test_reset_of_an_unscheduled_or_unknown_integration_is_refused() -> None:
    assert "is not scheduled" in failed(cli("reset", WEBHOOK_INTEGRATION.name, "--to", "start", "--yes"))
    assert "unknown integration" in failed(cli("reset", "no-such-thing", "--to", "start", "--yes"))


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("2024-05-01", "2024-05-01T00:00:00"),
        ("2024-05-01T10:15", "2024-05-01T10:15:00"),
        ("2024-05-01T10:15:30", "2024-05-01T10:15:30"),
        ("2024-05-01 10:15:30.123456Z", "2024-05-01T10:15:30"),
        ("2024-05-01T10:15:30+00:00", "2024-05-01T10:15:30"),
        (" 2024-05-01T10:15:30 ", "2024-05-01T10:15:30"),
        ("start", None),
        ("START", None),
    ],
)
def test_timestamp_positions_are_normalised(value: str, position: str | None) -> None:
    assert parse_position(STOCK, value) == position


def test_token_positions_take_any_non_empty_token() -> None:
    assert parse_position(EVENTS, "evt_01HZX#42") == "evt_01HZX#42"
    assert parse_position(EVENTS, "start") is None
    with pytest.raises(ValueError, match="non-empty token"):
        parse_position(EVENTS, "  ")


# -- backfill --------------------------------------------------------------------------------------
def test_backfill_no_wait_sets_the_cursor_and_fires_the_local_poller_once(
    stack: Stack, fake_host: FakeHost, tmp_path: Path
) -> None:
    place_cursor(stack)
    result = cli(
        "backfill", STOCK.name, "--since", "2024-04-01", "--no-wait", "--yes", env=local_env(tmp_path, fake_host)
    )
    text = " ".join(ok(result).split())
    assert fake_host.posts == [f"/_local/schedules/{STOCK.name}"]
    cursor = stack.cursor()
    assert (cursor.position, cursor.next, cursor.seen, cursor.version) == ("2024-04-01T00:00:00", None, {}, 2)
    assert "local poller run: caught_up" in text
    assert "shopify 20/s (burst 40" in text and "allegro 100/s" in text  # paced by the rate budgets
    assert "target: local" in result.stderr
    actions = [(line["action"], line["who"]) for line in audit_lines(result)]
    assert [a for a, _ in actions] == ["sync.backfill", "sync.poller_invoked"]
    assert all(who.endswith("(local)") for _, who in actions)


@moto_only
def test_backfill_dry_run_neither_writes_nor_fires(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    before = place_cursor(stack)
    ok(cli("backfill", STOCK.name, "--dry-run", env=local_env(tmp_path, fake_host)))
    assert stack.cursor() == before and fake_host.posts == []


@moto_only
def test_backfill_is_refused_while_a_run_holds_the_lease(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    before = place_cursor(stack)
    assert poller(stack, FakeSource()).take_lease("run-8")
    assert "--force" in failed(cli("backfill", STOCK.name, "--yes", "--no-wait", env=local_env(tmp_path, fake_host)))
    assert stack.cursor() == before and fake_host.posts == []


def test_backfill_waits_until_read_and_delivered(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    """The poller runs (as the local host would run it) and reads three changes from the start;
    the targets take the messages; the command follows both and ends when both are done."""
    place_cursor(stack)
    reads: list[str | None] = []

    class Recording(FakeSource):
        def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
            reads.append(cursor.position)
            return super().read(cursor, page_size, lookback_seconds, timeout)

    def run_and_deliver(name: str) -> tuple[int, dict[str, Any]]:
        pages = [
            Page(changes("2024-01-01T00:00:00", "2024-02-01T00:00:00"), next="page-2"),
            Page(changes("2024-03-01T00:00:00")),
        ]
        outcome = poll(stack, Recording(pages))
        stack.drain(STOCK)
        return 200, {"fired": name, "response": {"outcome": outcome}}

    fake_host.answer = run_and_deliver
    result = cli("backfill", STOCK.name, "--yes", "--timeout", "60", env=local_env(tmp_path, fake_host))
    text = " ".join(ok(result).split())
    assert reads == [None, None]  # a full resync: from the start
    assert f"{STOCK.name}: backfill caught up and delivered" in text
    assert "1 run(s), 3 change(s) enqueued" in text and "every target queue is empty" in text
    assert stack.cursor().position == "2024-03-01T00:00:00"
    assert fake_host.posts == [f"/_local/schedules/{STOCK.name}"]


@moto_only
def test_backfill_stops_following_at_the_timeout(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    place_cursor(stack)  # the host answers but no run reaches the end
    result = cli("backfill", STOCK.name, "--yes", "--timeout", "0.2", env=local_env(tmp_path, fake_host))
    line = failed(result)
    assert "not finished within 0.2 s" in line
    assert "not caught up yet" in " ".join(result.stdout.split())
    assert stack.cursor().position is None  # the cursor write stands: the schedule carries it on


@moto_only
def test_backfill_reports_a_poller_the_local_host_cannot_run(stack: Stack, fake_host: FakeHost, tmp_path: Path) -> None:
    fake_host.answer = lambda name: (404, {"error": f"no schedule {name!r}"})
    line = failed(cli("backfill", STOCK.name, "--yes", "--no-wait", env=local_env(tmp_path, fake_host)))
    assert "did not run the poller" in line and "404" in line


@moto_only
def test_backfill_on_aws_invokes_the_poller_asynchronously(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **params: Any) -> dict[str, Any]:
            calls.append(params)
            return {"StatusCode": 202, "ResponseMetadata": {"RequestId": "req-1"}}

    monkeypatch.setattr(sync, "lambda_client", Lambda)
    result = cli("backfill", STOCK.name, "--since", "2024-04-01T12:00:00", "--no-wait", "--yes")
    text = " ".join(ok(result).split())
    assert [(c["FunctionName"], c["InvocationType"]) for c in calls] == [
        (f"junction-{STAGE}-{STOCK.name}-poller", "Event")
    ]
    assert json.loads(calls[0]["Payload"])["detail"]["integration"] == STOCK.name
    assert "invoked asynchronously (request req-1)" in text
    assert stack.cursor().position == "2024-04-01T12:00:00"


def test_status_without_scheduled_integrations_needs_no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "INTEGRATIONS", (WEBHOOK_INTEGRATION,))
    assert "no scheduled integrations" in ok(cli("status", env={"JUNCTION_STAGE": None}))
    assert json.loads(ok(cli("status", "--json", env={"JUNCTION_STAGE": None}))) == []
