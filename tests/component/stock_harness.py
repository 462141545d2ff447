"""The stock sync pipeline in one process: the real poller and both target processors, on the
AWS stand-in of the test (moto, or the local hot path) and the ERP, Shopify and Allegro stand-ins.

Nothing runs by itself: a test polls (``poll``), then drains each target's queue through its
processor (``drain``), with an injected clock where a test needs time to pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from functions.erp_stock_to_channels import source as erp_source
from functions.erp_stock_to_channels import to_allegro, to_shopify
from functions.erp_stock_to_channels.declaration import ALLEGRO_API, ERP_CREDENTIALS, INTEGRATION, SHOPIFY_ADMIN
from functions.erp_stock_to_channels.rules import RULES, sellable
from junction_local.provision import queue_attributes
from junction_local.standins import allegro as allegro_standin
from junction_local.standins import erp as erp_standin
from junction_local.standins import shopify_admin as shopify_standin
from shared.declaration import Target, queue_name, secret_id, state_table_name
from shared.parameters import Secrets
from shared.polling import Poller, PollerContext, RunResult
from shared.processing import BatchProcessor, FlowContext

STAGE = "test"
REGION = "eu-central-1"
STATE = state_table_name(STAGE)
IDEMPOTENCY = f"junction-{STAGE}-idempotency"


class FakeContext:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@dataclass
class StockPipeline:
    erp: erp_standin.ErpStandIn
    shopify: shopify_standin.ShopifyAdminStandIn
    allegro: allegro_standin.AllegroStandIn
    sqs: Any
    ddb: Any
    secrets: Secrets
    queues: dict[str, tuple[str, str]]  # target -> (queue url, dlq url)
    clock: Callable[[], float] = time.time
    processors: dict[str, BatchProcessor] = field(default_factory=dict)
    poller: Poller | None = None

    @classmethod
    def start(
        cls,
        erp: erp_standin.ErpStandIn,
        shopify: shopify_standin.ShopifyAdminStandIn,
        allegro: allegro_standin.AllegroStandIn,
    ) -> StockPipeline:
        sqs = boto3.client("sqs", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
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

    # -- the functions -----------------------------------------------------------------------
    def make_poller(self) -> Poller:
        source = erp_source.build(PollerContext(INTEGRATION, STAGE, self.secrets, self.clock))
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
            sqs=self.sqs,
            ddb=self.ddb,
            queue_url=main,
            dlq_url=dlq,
            idempotency_table=IDEMPOTENCY,
            state_table=STATE,
            clock=self.clock,
        )

    def processor(self, name: str) -> BatchProcessor:
        if name not in self.processors:
            self.processors[name] = self.make_processor(INTEGRATION.target(name))
        return self.processors[name]

    def receive(self, name: str, *, dlq: bool = False, wait: int = 0) -> list[dict[str, Any]]:
        url = self.queues[name][1 if dlq else 0]
        answer = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def drain(self, name: str, *, rounds: int = 200, seconds: float = 110.0) -> list[dict[str, Any]]:
        """Deliver what the target's queue holds now, batch by batch, as Lambda would; the
        processors' own redelivery (visibility) decides what comes back. The responses."""
        responses = []
        for _ in range(rounds):
            messages = self.receive(name)
            if not messages:
                break
            event = {"Records": [_record(m, self.queues[name][0]) for m in messages]}
            response = self.processor(name).process(event, FakeContext(seconds))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in failed]
            for m in done:
                self.sqs.delete_message(QueueUrl=self.queues[name][0], ReceiptHandle=m["ReceiptHandle"])
            responses.append(response)
        return responses

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            batch = self.receive(name, dlq=True)
            if not batch:
                return out
            out.extend(batch)

    # -- what each system holds --------------------------------------------------------------
    def expected(self, channel: str) -> dict[str, int]:
        rule = RULES[channel]
        stock = self.erp.stock()
        return {
            sku: sellable({wh: {"in_stock": v["InStock"], "committed": v["Committed"]} for wh, v in levels.items()}, rule)
            for sku, levels in stock.items()
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
