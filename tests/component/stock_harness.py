"""The stock sync pipeline in one process: the real poller and both target processors, on the
AWS stand-in of the test (moto, or the local hot path) and the ERP, Shopify and Allegro stand-ins.

Nothing runs by itself: a test polls (``poll``), then drains each target's queue through its
processor (``drain``). Time is the harness's ``clock`` (the real time plus an offset the test
moves with ``advance``): the processors, flows, breakers, version gates and rate budgets read it,
and a redelivery a processor asks for (a message's visibility, a delayed send) is kept by
``TimedSqs`` against that clock, so a backoff of ten minutes passes without waiting for it.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from botocore.exceptions import ClientError

from functions.erp_stock_to_channels import source as erp_source
from functions.erp_stock_to_channels import to_allegro, to_shopify
from functions.erp_stock_to_channels.declaration import ALLEGRO_API, ERP_CREDENTIALS, INTEGRATION, SHOPIFY_ADMIN
from functions.erp_stock_to_channels.rules import RULES, sellable
from junction_local.provision import queue_attributes
from junction_local.standins import allegro as allegro_standin
from junction_local.standins import erp as erp_standin
from junction_local.standins import shopify_admin as shopify_standin
from shared import state_keys
from shared.aws import item_from_ddb
from shared.connectors.erp import ErpClient, ErpSettings
from shared.declaration import Target, queue_name, secret_id, state_table_name
from shared.envelope import CARRIED_ATTRIBUTES, Envelope
from shared.parameters import Secrets
from shared.polling import Poller, PollerContext, RunResult
from shared.processing import BatchProcessor, FlowContext
from shared.sync_state import IdMap
from tests.component.poller_harness import TamperingTransport

STAGE = "test"
REGION = "eu-central-1"
STATE = state_table_name(STAGE)
IDEMPOTENCY = f"junction-{STAGE}-idempotency"
HIDDEN = 43_200  # SQS's longest visibility: a parked message stays out of sight until released


class FakeContext:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


class Clock:
    """Real time plus an offset: it runs on by itself (a pacer that sleeps sees it move) and a
    test jumps it forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class _Parked:
    queue_url: str
    receipt: str
    due: float


@dataclass
class _Held:
    due: float
    params: dict[str, Any]


class TimedSqs:
    """The SQS client the processors use. A visibility timeout they set is kept here against the
    harness clock (the message itself is hidden for SQS's maximum), as is a delayed send; both
    come back at ``release`` once the clock has passed them. Everything else goes to SQS."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.parked: list[_Parked] = []
        self.held: list[_Held] = []

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> Any:
        if VisibilityTimeout > 0:
            self.parked.append(_Parked(QueueUrl, ReceiptHandle, self.clock() + VisibilityTimeout))
            VisibilityTimeout = HIDDEN
        return self.inner.change_message_visibility(
            QueueUrl=QueueUrl, ReceiptHandle=ReceiptHandle, VisibilityTimeout=VisibilityTimeout
        )

    def send_message(self, **params: Any) -> Any:
        delay = int(params.get("DelaySeconds") or 0)
        if delay > 0:
            self.held.append(_Held(self.clock() + delay, {**params, "DelaySeconds": 0}))
            return {"MessageId": f"held-{len(self.held)}"}
        return self.inner.send_message(**params)

    def pending(self, queue_url: str) -> int:
        """Messages of the queue waiting for the clock (a retry, a breaker wait)."""
        held = [h for h in self.held if h.params["QueueUrl"] == queue_url]
        return len([p for p in self.parked if p.queue_url == queue_url]) + len(held)

    def next_due(self, queue_url: str) -> float | None:
        dues = [p.due for p in self.parked if p.queue_url == queue_url]
        dues += [h.due for h in self.held if h.params["QueueUrl"] == queue_url]
        return min(dues) if dues else None

    def release(self) -> int:
        now = self.clock()
        due = [p for p in self.parked if p.due <= now]
        self.parked = [p for p in self.parked if p.due > now]
        for p in due:
            try:
                self.inner.change_message_visibility(QueueUrl=p.queue_url, ReceiptHandle=p.receipt, VisibilityTimeout=0)
            except ClientError:
                pass  # deleted meanwhile (delivered by a later copy)
        sends = [h for h in self.held if h.due <= now]
        self.held = [h for h in self.held if h.due > now]
        for h in sends:
            self.inner.send_message(**h.params)
        return len(due) + len(sends)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class StockPipeline:
    erp: erp_standin.ErpStandIn
    shopify: shopify_standin.ShopifyAdminStandIn
    allegro: allegro_standin.AllegroStandIn
    sqs: Any
    ddb: Any
    secrets: Secrets
    queues: dict[str, tuple[str, str]]  # target -> (queue url, dlq url)
    clock: Clock = field(default_factory=Clock)
    processors: dict[str, BatchProcessor] = field(default_factory=dict)
    poller: Poller | None = None
    erp_transport: TamperingTransport = field(default_factory=TamperingTransport)
    timed: TimedSqs = field(init=False)
    _http: list[httpx.Client] = field(default_factory=list)
    _seeds: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.timed = TimedSqs(self.sqs, self.clock)

    @classmethod
    def start(
        cls,
        erp: erp_standin.ErpStandIn,
        shopify: shopify_standin.ShopifyAdminStandIn,
        allegro: allegro_standin.AllegroStandIn,
    ) -> StockPipeline:
        sqs: Any = boto3.client("sqs", region_name=REGION)
        ddb: Any = boto3.client("dynamodb", region_name=REGION)
        sm: Any = boto3.client("secretsmanager", region_name=REGION)
        for name, keys in ((STATE, [("pk", "HASH"), ("sk", "RANGE")]), (IDEMPOTENCY, [("id", "HASH")])):
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                BillingMode="PAY_PER_REQUEST",
            )
        queues: dict[str, tuple[str, str]] = {}
        for target in INTEGRATION.targets:
            dlq = sqs.create_queue(
                QueueName=queue_name(STAGE, INTEGRATION, target, dead_letter=True),
                Attributes=queue_attributes(target, dead_letter=True),
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            main = sqs.create_queue(
                QueueName=queue_name(STAGE, INTEGRATION, target),
                Attributes=queue_attributes(target, dead_letter=False, dlq_arn=dlq_arn),
            )["QueueUrl"]
            queues[target.name] = (main, dlq)
        values = {
            ERP_CREDENTIALS: erp_standin.LOCAL.credentials(erp.root_url),
            SHOPIFY_ADMIN: shopify_standin.LOCAL.credentials(shopify.root_url),
            ALLEGRO_API: allegro_standin.LOCAL.credentials(allegro.url),
        }
        for ref, value in values.items():
            sm.create_secret(Name=secret_id(STAGE, ref), SecretString=json.dumps(value))
        return cls(erp, shopify, allegro, sqs, ddb, Secrets(sm, max_age=0), queues)

    def close(self) -> None:
        for http in self._http:
            http.close()

    # -- time --------------------------------------------------------------------------------
    def advance(self, seconds: float) -> int:
        """Move the clock on; what became due comes back to its queue. How many came back."""
        self.clock.offset += seconds
        return self.timed.release()

    def pending(self, name: str) -> int:
        """Messages of the target's queue that wait for the clock (retries, breaker waits)."""
        return self.timed.pending(self.queues[name][0])

    def advance_until_due(self, name: str) -> int:
        """Move the clock to the target queue's next retry (if any) and release it."""
        due = self.timed.next_due(self.queues[name][0])
        if due is None:
            return 0
        return self.advance(max(0.0, due - self.clock()) + 0.001)

    # -- the functions -----------------------------------------------------------------------
    def make_poller(self) -> Poller:
        http = httpx.Client(transport=self.erp_transport, timeout=10.0)
        self._http.append(http)
        source = erp_source.build(PollerContext(INTEGRATION, STAGE, self.secrets, self.clock), http)
        return Poller(
            INTEGRATION,
            source,
            sqs=self.sqs,
            ddb=self.ddb,
            state_table=STATE,
            queue_urls=[self.queues[t.name][0] for t in INTEGRATION.targets],
            clock=self.clock,
        )

    def poll(self, seconds: float = 60.0) -> RunResult:
        if self.poller is None:
            self.poller = self.make_poller()
        deadline = time.monotonic() + seconds
        return self.poller.run(lambda: deadline - time.monotonic())

    def make_processor(self, target: Target) -> BatchProcessor:
        ctx = FlowContext(INTEGRATION, target, STAGE, self.secrets, self.ddb, STATE, self.clock)
        flow = to_shopify.build(ctx) if target.name == "shopify" else to_allegro.build(ctx)
        main, dlq = self.queues[target.name]
        return BatchProcessor(
            INTEGRATION,
            target,
            flow,
            sqs=self.timed,
            ddb=self.ddb,
            queue_url=main,
            dlq_url=dlq,
            idempotency_table=IDEMPOTENCY,
            state_table=STATE,
            clock=self.clock,
            rng=random.Random(next(self._seeds)),
        )

    def processor(self, name: str) -> BatchProcessor:
        if name not in self.processors:
            self.processors[name] = self.make_processor(INTEGRATION.target(name))
        return self.processors[name]

    def flow(self, name: str) -> Any:
        return self.processor(name).flow

    def cold_start(self, name: str) -> None:
        """The next batch runs in a new execution environment (new clients, nothing cached)."""
        self.processors.pop(name, None)

    def receive(self, name: str, *, dlq: bool = False, wait: int = 0, most: int = 10) -> list[dict[str, Any]]:
        url = self.queues[name][1 if dlq else 0]
        answer = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=wait,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def drain(self, name: str, *, rounds: int = 200, seconds: float = 110.0) -> list[dict[str, Any]]:
        """Deliver what the target's queue holds now, batch by batch of the target's batch size,
        as Lambda would; the processors' own redelivery (visibility) decides what comes back.
        The responses."""
        responses = []
        batch_size = INTEGRATION.target(name).queue.batch_size
        for _ in range(rounds):
            messages = self.receive(name, most=batch_size)
            if not messages:
                break
            event = {"Records": [_record(m, self.queues[name][0]) for m in messages]}
            response = self.processor(name).process(event, FakeContext(seconds))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    self._delete(self.queues[name][0], m["ReceiptHandle"])
            responses.append(response)
        return responses

    def _delete(self, url: str, receipt: str) -> None:
        try:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        except ClientError:
            pass  # the processor deleted it already (dead-lettered, or sent again)

    def peek(self, name: str) -> list[dict[str, Any]]:
        """Copies of the messages the target's queue holds now, left on the queue."""
        out: list[dict[str, Any]] = []
        while batch := self.receive(name):
            out.extend(batch)
        self._show(self.queues[name][0], out)
        return out

    def _show(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Make received messages visible again at once."""
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(messages[start : start + 10])
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    def send(self, name: str, body: str, attributes: dict[str, str] | None = None) -> None:
        """Put a message on the target's queue as it is (a redelivery, a redrive, a bad message)."""
        self.sqs.send_message(
            QueueUrl=self.queues[name][0],
            MessageBody=body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in (attributes or {}).items()},
        )

    def resend(self, name: str, message: dict[str, Any]) -> None:
        """Send a received message again with the attributes every hop carries."""
        self.send(name, message["Body"], carried(message))

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Every message of the target's DLQ; they stay there (visible again)."""
        out: list[dict[str, Any]] = []
        while batch := self.receive(name, dlq=True):
            out.extend(batch)
        self._show(self.queues[name][1], out)
        return out

    def dead(self, name: str) -> list[tuple[str, str]]:
        """(reason, key or first SKU) of every dead letter of the target, sorted."""
        return sorted((reason(m), dead_key(m)) for m in self.dead_letters(name))

    def redrive(self, name: str, keys: Iterable[str]) -> int:
        """An operator's redrive of the dead letters of these keys: body and carried attributes
        back to the target's queue, then deleted from the DLQ. How many moved."""
        wanted = set(keys)
        moved = 0
        seen: list[dict[str, Any]] = []
        while batch := self.receive(name, dlq=True):
            seen.extend(batch)
        for m in seen:
            if dead_key(m) in wanted:
                self.resend(name, m)
                self.sqs.delete_message(QueueUrl=self.queues[name][1], ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        self._show(self.queues[name][1], [m for m in seen if dead_key(m) not in wanted])
        return moved

    # -- the state table ---------------------------------------------------------------------
    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        found = self.ddb.get_item(TableName=STATE, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
        return item_from_ddb(found["Item"]) if found.get("Item") else None

    def budget(self, account: str) -> dict[str, Any]:
        return self.item(*state_keys.budget(account)) or {}

    def breaker(self, name: str) -> dict[str, Any]:
        return self.item(*state_keys.breaker(INTEGRATION.name, name)) or {}

    def gate(self, name: str, sku: str) -> dict[str, Any] | None:
        return self.item(*state_keys.version(INTEGRATION.name, name, sku))

    def id_map(self, name: str) -> IdMap:
        return IdMap(self.ddb, STATE, INTEGRATION.name, name)

    def traces(self, name: str, outcome: str | None = None) -> list[dict[str, Any]]:
        """The target's trace items (message history), oldest first."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"TableName": STATE}
        while True:
            page = self.ddb.scan(**params)
            items.extend(item_from_ddb(i) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        mine = [
            i
            for i in items
            if str(i["pk"]).startswith(state_keys.TRACE)
            and i.get("target") == name
            and (outcome is None or i.get("outcome") == outcome)
        ]
        return sorted(mine, key=lambda i: str(i["sk"]))

    def delete_idempotency_record(self, name: str, message: dict[str, Any]) -> str:
        """Forget the idempotency record of a message's effect (its scope expired); the key."""
        envelope = Envelope.from_json(message["Body"])
        processor = self.processor(name)
        key = processor.record_key(processor.flow.prepare(envelope), envelope)
        assert self.ddb.get_item(TableName=IDEMPOTENCY, Key={"id": {"S": key}}).get("Item"), key
        self.ddb.delete_item(TableName=IDEMPOTENCY, Key={"id": {"S": key}})
        return key

    # -- the ERP -----------------------------------------------------------------------------
    def erp_client(self) -> ErpClient:
        http = httpx.Client(timeout=10.0)
        self._http.append(http)
        return ErpClient(ErpSettings.from_secret(erp_standin.LOCAL.credentials(self.erp.root_url)), http)

    def sales_order(self, lines: dict[str, int], *, warehouse: str = "01", customer: str = "C-STOCK") -> int:
        """A sales order through the Service Layer (it commits its quantities); its DocEntry."""
        client = self.erp_client()
        partner = {"CardCode": customer, "CardName": customer}
        client.request("POST", "/BusinessPartners", {}, body=partner, accept=(400,))  # 400: it exists
        body = {
            "CardCode": customer,
            "DocumentLines": [
                {"ItemCode": sku, "Quantity": quantity, "WarehouseCode": warehouse} for sku, quantity in lines.items()
            ],
        }
        return int(client.request("POST", "/Orders", {}, body=body).json()["DocEntry"])

    # -- what each system holds --------------------------------------------------------------
    def expected(self, channel: str) -> dict[str, int]:
        rule = RULES[channel]
        return {
            sku: sellable(
                {wh: {"in_stock": str(v["InStock"]), "committed": str(v["Committed"])} for wh, v in levels.items()},
                rule,
            )
            for sku, levels in self.erp.stock().items()
        }

    def shopify_quantities(self) -> dict[str, int | None]:
        return self.shopify.quantities()

    def allegro_quantities(self) -> dict[str, int]:
        """Sellable on Allegro: an ended offer sells nothing."""
        state = self.allegro.state()
        ended = set(state["ended"])
        return {sku: 0 if sku in ended else q for sku, q in state["quantities"].items()}

    def mismatches(self, channel: str) -> dict[str, tuple[int, int | None]]:
        """SKUs the channel sells whose quantity differs from the ERP's sellable quantity."""
        expected = self.expected(channel)
        held: dict[str, int | None] = (
            self.shopify_quantities() if channel == "shopify" else dict(self.allegro_quantities())
        )
        return {sku: (expected[sku], q) for sku, q in held.items() if sku in expected and expected[sku] != q}


def carried(message: dict[str, Any]) -> dict[str, str]:
    attributes = message.get("MessageAttributes") or {}
    return {n: attributes[n]["StringValue"] for n in CARRIED_ATTRIBUTES if n in attributes}


def reason(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["junction-reason"]["StringValue"])


def dead_key(message: dict[str, Any]) -> str:
    ids = json.loads(message["MessageAttributes"]["junction-entity-ids"]["StringValue"])
    return str(ids.get("key") or ids.get("first_sku") or ids.get("delivery_id"))


def changes_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The stock changes a queue message carries."""
    doc = Envelope.from_json(message["Body"]).payload()
    return list(doc["changes"])


def _record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    attributes = {
        k: {"stringValue": v.get("StringValue"), "dataType": v.get("DataType")}
        for k, v in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:" + REGION + ":000000000000:" + queue_url.rsplit("/", 1)[-1],
        "awsRegion": REGION,
    }
