"""Runs the erp-stock-to-channels poller the way its Lambda does, with time under the test's control.

The real ``Poller`` and the real ``ErpStockSource`` (built by the integration's ``build`` from
its secret in the AWS stand-in) read the ERP stand-in over HTTP and send to the integration's
target queues, with the names and settings the stack deploys. One manual clock drives the ERP's
stamps and session expiry and the poller's lease, cursor and history. Faults are injected around
the real clients: SendMessageBatch answers with chosen ``Failed`` entries, DynamoDB calls that
kill the execution environment, ERP answers whose items are malformed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS, INTEGRATION
from functions.erp_stock_to_channels.source import ErpStockSource, build
from junction_local.standins.erp import LOCAL as ERP_LOCAL
from junction_local.standins.erp import ErpStandIn
from shared import state_keys
from shared.aws import item_from_ddb
from shared.declaration import TABLE_KEYS, Integration, queue_name, secret_id, state_table_name
from shared.envelope import Envelope
from shared.parameters import Secrets
from shared.polling import CursorState, Page, Poller, PollerContext, RunResult, read_cursor
from tests.component.harness import FaultyClient

STAGE = "test"
REGION = "eu-central-1"
# Small pages and messages, so a few dozen items make several of each.
PAGE_SIZE = 10
ITEMS_PER_MESSAGE = 4
PLENTY = 100.0  # seconds left of an invocation that is nowhere near its deadline


def at(iso: str) -> float:
    """Epoch seconds of a UTC moment written "YYYY-MM-DDTHH:MM:SS"."""
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def stamp(epoch: float) -> str:
    """A moment as the ERP stamps an item and the cursor keeps it."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


class ManualClock:
    """Time that moves only when the test moves it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Crash(BaseException):
    """The execution environment dies here (kill -9): nothing after it runs, and no handler of
    ours may catch it."""


class RecordingSource:
    """The integration's source, recording the cursor each read starts from. ``before_read(n)``
    runs before the n-th read (1-based): how a test changes the world between two pages of one
    run. Each read takes ``tick`` seconds of the clock."""

    def __init__(self, inner: ErpStockSource, clock: ManualClock, tick: float = 1.0) -> None:
        self.inner = inner
        self.rules_version = inner.rules_version
        self.clock = clock
        self.tick = tick
        self.reads: list[CursorState] = []
        self.before_read: Callable[[int], None] | None = None

    def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
        self.reads.append(cursor)
        if self.before_read is not None:
            self.before_read(len(self.reads))
        page = self.inner.read(cursor, page_size, lookback_seconds, timeout)
        self.clock.advance(self.tick)
        return page


@dataclass
class BatchFault:
    queue_url: str
    call: int  # the n-th SendMessageBatch to that queue (1-based)
    entries: int  # how many of its entries fail (the first ones)
    sender_fault: bool
    code: str


class ScriptedSqs:
    """The poller's SQS client (boto3), whose SendMessageBatch can answer with ``Failed``
    entries: the failed entries are not sent, the others are, as SQS does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[str]]] = []  # (queue url, entry ids) of every batch
        self.faults: list[BatchFault] = []

    def fail(self, queue_url: str, call: int, *, entries: int = 1, sender_fault: bool = False) -> None:
        code = "InvalidParameterValue" if sender_fault else "InternalError"
        self.faults.append(BatchFault(queue_url, call, entries, sender_fault, code))

    def calls_to(self, queue_url: str) -> int:
        return sum(1 for url, _ in self.calls if url == queue_url)

    def send_message_batch(self, **params: Any) -> dict[str, Any]:
        url = params["QueueUrl"]
        entries: list[dict[str, Any]] = params["Entries"]
        self.calls.append((url, [e["Id"] for e in entries]))
        number = self.calls_to(url)
        fault = next((f for f in self.faults if f.queue_url == url and f.call == number), None)
        if fault is None:
            answer: dict[str, Any] = self.inner.send_message_batch(**params)
            return answer
        failed, accepted = entries[: fault.entries], entries[fault.entries :]
        successful = self.inner.send_message_batch(**{**params, "Entries": accepted})["Successful"] if accepted else []
        return {
            "Successful": successful,
            "Failed": [
                {"Id": e["Id"], "SenderFault": fault.sender_fault, "Code": fault.code, "Message": "injected"}
                for e in failed
            ],
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TamperingTransport(httpx.BaseTransport):
    """Passes requests to the ERP stand-in; ``tamper[item code]`` rewrites that item in every
    ``GET /Items`` answer (a malformed item as an ERP might send one)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.tamper: dict[str, Callable[[dict[str, Any]], None]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not self.tamper or request.method != "GET" or not request.url.path.endswith("/Items"):
            return response
        response.read()
        body = json.loads(response.content)
        for item in body.get("value", []):
            rewrite = self.tamper.get(item.get("ItemCode"))
            if rewrite is not None:
                rewrite(item)
        return httpx.Response(response.status_code, json=body, request=request)

    def close(self) -> None:
        self.inner.close()


def scheduled(page_size: int = PAGE_SIZE, items_per_message: int = ITEMS_PER_MESSAGE) -> Integration:
    """The real integration with smaller pages and messages (same name, queues and cursor)."""
    schedule = INTEGRATION.schedule
    assert schedule is not None
    return replace(INTEGRATION, trigger=replace(schedule, page_size=page_size, items_per_message=items_per_message))


@dataclass
class Sent:
    """One message a target queue received."""

    envelope: Envelope
    attributes: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.envelope.payload()
        return doc

    @property
    def keys(self) -> list[str]:
        return [c["key"] for c in self.payload.get("changes", [])]


@dataclass
class PollerRig:
    erp: ErpStandIn
    clock: ManualClock
    integration: Integration
    state_table: str
    queues: dict[str, str]  # target -> queue URL, in declaration order
    sqs: ScriptedSqs
    ddb: FaultyClient
    boto_sqs: Any
    boto_ddb: Any
    http: httpx.Client
    transport: TamperingTransport
    source: RecordingSource
    poller: Poller

    @classmethod
    def start(cls, erp: ErpStandIn, clock: ManualClock, integration: Integration | None = None) -> PollerRig:
        """The poller's resources as the stack names them: the state table, every target's
        queue (``queue_name``) and the ERP secret, which the source is built from."""
        integration = integration or scheduled()
        boto_sqs = boto3.client("sqs", region_name=REGION)
        boto_ddb = boto3.client("dynamodb", region_name=REGION)
        secretsmanager = boto3.client("secretsmanager", region_name=REGION)
        state_table = state_table_name(STAGE)
        hash_key, range_key = TABLE_KEYS["state"]
        assert range_key is not None
        boto_ddb.create_table(
            TableName=state_table,
            KeySchema=[
                {"AttributeName": hash_key, "KeyType": "HASH"},
                {"AttributeName": range_key, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in (hash_key, range_key)],
            BillingMode="PAY_PER_REQUEST",
        )
        queues = {
            t.name: boto_sqs.create_queue(QueueName=queue_name(STAGE, integration, t))["QueueUrl"]
            for t in integration.targets
        }
        secretsmanager.create_secret(
            Name=secret_id(STAGE, ERP_CREDENTIALS), SecretString=json.dumps(ERP_LOCAL.credentials(erp.root_url))
        )
        transport = TamperingTransport()
        http = httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, connect=2.0))
        ctx = PollerContext(integration, STAGE, Secrets(secretsmanager), clock)
        source = RecordingSource(build(ctx, http=http), clock)
        sqs = ScriptedSqs(boto_sqs)
        ddb = FaultyClient(boto_ddb, lambda name: Crash(f"died during {name}"))
        poller = Poller(
            integration,
            source,
            sqs=sqs,
            ddb=ddb,
            state_table=state_table,
            queue_urls=list(queues.values()),
            clock=clock,
        )
        return cls(
            erp, clock, integration, state_table, queues, sqs, ddb, boto_sqs, boto_ddb, http, transport, source, poller
        )

    def close(self) -> None:
        self.http.close()

    # -- running ---------------------------------------------------------------------------
    def run(self, seconds_left: Callable[[], float] = lambda: PLENTY) -> RunResult:
        return self.poller.run(seconds_left)

    def another_poller(self) -> Poller:
        """A second execution environment of the poller, with the same source."""
        return Poller(
            self.integration,
            self.source,
            sqs=self.boto_sqs,
            ddb=self.boto_ddb,
            state_table=self.state_table,
            queue_urls=list(self.queues.values()),
            clock=self.clock,
        )

    # -- what happened ---------------------------------------------------------------------
    def queue_url(self, target: str) -> str:
        return self.queues[target]

    def take(self, target: str) -> list[Sent]:
        """Every message on the target's queue, removed from it."""
        url = self.queue_url(target)
        out: list[Sent] = []
        while True:
            got = self.boto_sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=600,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                return out
            for message in got:
                attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
                out.append(Sent(Envelope.from_json(message["Body"]), attributes))
            self.boto_sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)],
            )

    def take_all(self) -> dict[str, list[Sent]]:
        return {t.name: self.take(t.name) for t in self.integration.targets}

    def cursor(self) -> CursorState:
        return read_cursor(self.boto_ddb, self.state_table, self.integration.name)

    def history(self) -> list[dict[str, Any]]:
        """The sync history items, oldest first."""
        items = self.boto_ddb.query(
            TableName=self.state_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
            ExpressionAttributeValues={
                ":pk": {"S": state_keys.sync_pk(self.integration.name)},
                ":run": {"S": state_keys.RUN_SK_PREFIX},
            },
            ConsistentRead=True,
        )["Items"]
        return sorted((item_from_ddb(i) for i in items), key=lambda i: i["sk"])

    def history_of(self, result: RunResult) -> dict[str, Any]:
        found = [h for h in self.history() if h["run_id"] == result.run_id]
        assert len(found) == 1, f"one history item per run, found {len(found)}"
        return found[0]

    def lease(self) -> dict[str, Any] | None:
        item = self.boto_ddb.get_item(
            TableName=self.state_table,
            Key={"pk": {"S": state_keys.sync_pk(self.integration.name)}, "sk": {"S": state_keys.LEASE_SK}},
            ConsistentRead=True,
        ).get("Item")
        return item_from_ddb(item) if item else None

    def expected_data(self, code: str) -> dict[str, Any]:
        """What the targets should receive for an item: its stock per warehouse, as the ERP holds it."""
        rows = self.erp.stock()[code]
        return {
            "warehouses": {
                wh: {"in_stock": str(q["InStock"]), "committed": str(q["Committed"])} for wh, q in sorted(rows.items())
            }
        }
