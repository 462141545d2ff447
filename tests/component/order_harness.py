"""The order route in one process: the three order sources (the Shopify and WooCommerce webhook
ingresses, the Allegro poller) and the nine target processors (each source x the ERP, HubSpot
and ShipBob), on the AWS stand-in of the test and the ERP, HubSpot, ShipBob and Allegro stand-ins
started in-process.

Nothing runs by itself: a test sends a webhook (``shopify``, ``woocommerce``) or polls Allegro
(``poll``), then drains the targets' queues through their processors (``drain``, ``settle``).
Time is the harness's clock (real time plus an offset): processors, breakers and rate budgets
read it, and a redelivery a processor asks for is kept against it (``TimedSqs``), so a backoff of
minutes passes at once (``advance``).
"""

from __future__ import annotations

import importlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from botocore.exceptions import ClientError

from functions.allegro_orders.declaration import INTEGRATION as ALLEGRO_ORDERS
from functions.orders import allegro_source
from functions.shopify_orders.declaration import INTEGRATION as SHOPIFY_ORDERS
from functions.woocommerce_orders.declaration import INTEGRATION as WOOCOMMERCE_ORDERS
from junction_local.events import apigw_event
from junction_local.provision import Resources
from junction_local.runtime import provision_local
from junction_local.standins import source
from junction_local.standins.allegro import AllegroStandIn
from junction_local.standins.erp import ErpStandIn
from junction_local.standins.hubspot import HubSpotStandIn
from junction_local.standins.shipbob import ShipBobStandIn
from shared import state_keys
from shared.aws import SecretCache, item_from_ddb, s3_client, secretsmanager_client, sqs_client
from shared.declaration import FOLLOWER_QUEUES_ENV, Integration
from shared.ingress import Ingress
from shared.parameters import Secrets
from shared.polling import Poller, PollerContext, RunResult
from shared.processing import BatchProcessor, FlowContext
from tests.component.stock_harness import Clock, FakeContext, TimedSqs

STAGE = "test"
REGION = "eu-central-1"
SOURCES: dict[str, Integration] = {
    "shopify": SHOPIFY_ORDERS,
    "woocommerce": WOOCOMMERCE_ORDERS,
    "allegro": ALLEGRO_ORDERS,
}
TARGETS = ("erp", "hubspot", "shipbob")


@dataclass
class StandIns:
    erp: ErpStandIn
    hubspot: HubSpotStandIn
    shipbob: ShipBobStandIn
    allegro: AllegroStandIn

    def urls(self) -> dict[str, str]:
        return {
            "erp": self.erp.root_url,
            "hubspot": self.hubspot.url,
            "shipbob": self.shipbob.url,
            "allegro": self.allegro.url,
        }


@dataclass
class OrderRoute:
    standins: StandIns
    resources: Resources
    sqs: Any
    ddb: Any
    secrets: Secrets
    clock: Clock = field(default_factory=Clock)
    processors: dict[tuple[str, str], BatchProcessor] = field(default_factory=dict)
    ingresses: dict[str, Ingress] = field(default_factory=dict)
    poller: Poller | None = None
    timed: TimedSqs = field(init=False)
    _http: list[httpx.Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.timed = TimedSqs(self.sqs, self.clock)

    @classmethod
    def start(cls, standins: StandIns) -> OrderRoute:
        # The one local provisioning: every source's queues per target, the tables, the secrets
        # the stand-ins declare (signing secrets, the targets' credentials, Allegro's token).
        resources = provision_local(tuple(SOURCES.values()), stage=STAGE, target_urls=standins.urls())
        sqs = boto3.client("sqs", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        secrets = Secrets(boto3.client("secretsmanager", region_name=REGION), max_age=0)
        return cls(standins, resources, sqs, ddb, secrets)

    def close(self) -> None:
        for http in self._http:
            http.close()

    def _client(self) -> httpx.Client:
        http = httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0))
        self._http.append(http)
        return http

    # -- time --------------------------------------------------------------------------------
    def advance(self, seconds: float) -> int:
        """Move the clock on; what became due comes back to its queue. How many came back."""
        self.clock.offset += seconds
        return self.timed.release()

    def waiting(self) -> int:
        """Messages of every queue that wait for the clock (retries, breaker waits)."""
        return len(self.timed.parked) + len(self.timed.held)

    def advance_to_next(self) -> int:
        """Move the clock to the next message's due time, if any, and release what is due."""
        dues = [p.due for p in self.timed.parked] + [h.due for h in self.timed.held]
        if not dues:
            return 0
        return self.advance(max(0.0, min(dues) - self.clock()) + 0.001)

    # -- the sources -------------------------------------------------------------------------
    def ingress(self, system: str) -> Ingress:
        if system not in self.ingresses:
            integration = SOURCES[system]
            env = self.resources.function_env(integration, "ingress")
            self.ingresses[system] = Ingress(
                integration,
                stage=STAGE,
                queue_urls=env["JUNCTION_QUEUE_URLS"].split(","),
                sqs=sqs_client(),
                secrets=SecretCache(secretsmanager_client()),
                clock=self.clock,
                s3=s3_client(),
                payload_bucket=env["JUNCTION_PAYLOAD_BUCKET"],
            )
        return self.ingresses[system]

    def webhook(self, system: str, payload: dict[str, Any], *, topic: str, delivery_id: str) -> int:
        """A signed webhook as the source's stand-in sends it, through the real ingress; its
        HTTP status."""
        integration = SOURCES[system]
        assert integration.webhook is not None
        standin = source(integration.source)
        sender: Any = standin.sender(f"http://127.0.0.1{integration.webhook.path}", standin.signing_secret)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = sender.headers(body, delivery_id, topic=topic)
        response = self.ingress(system).handle(apigw_event("POST", integration.webhook.path, headers, body))
        return int(response["statusCode"])

    def shopify(self, payload: dict[str, Any], *, topic: str = "orders/create", delivery_id: str = "") -> int:
        return self.webhook("shopify", payload, topic=topic, delivery_id=delivery_id or f"{topic}:{payload['id']}")

    def woocommerce(self, payload: dict[str, Any], *, topic: str = "order.created", delivery_id: str = "") -> int:
        delivery = delivery_id or f"{topic}:{payload.get('id')}:{payload.get('date_modified_gmt')}"
        return self.webhook("woocommerce", payload, topic=topic, delivery_id=delivery)

    def poll(self, seconds: float = 30.0) -> RunResult:
        """One run of the Allegro orders poller (the real source against the stand-in)."""
        if self.poller is None:
            ctx = PollerContext(ALLEGRO_ORDERS, STAGE, self.secrets, self.clock)
            self.poller = Poller(
                ALLEGRO_ORDERS,
                allegro_source.build(ctx, self._client()),
                sqs=self.sqs,
                ddb=self.ddb,
                state_table=self.resources.state_table,
                queue_urls=self.resources.queue_urls(ALLEGRO_ORDERS),
                clock=self.clock,
            )
        deadline = time.monotonic() + seconds
        return self.poller.run(lambda: deadline - time.monotonic())

    # -- the processors ----------------------------------------------------------------------
    def processor(self, system: str, target: str) -> BatchProcessor:
        """The target's processor of one source, its flow built from the target's declared
        module (``Target.flow``) as ``make_sqs_handler`` builds it."""
        key = (system, target)
        if key not in self.processors:
            integration = SOURCES[system]
            declared = integration.target(target)
            env = self.resources.function_env(integration, f"{target}-processor")
            ctx = FlowContext(
                integration, declared, STAGE, self.secrets, self.ddb, env["JUNCTION_STATE_TABLE"], self.clock
            )
            flow = importlib.import_module(declared.flow).build(ctx, self._client())
            self.processors[key] = BatchProcessor(
                integration,
                declared,
                flow,
                sqs=self.timed,
                ddb=self.ddb,
                s3=boto3.client("s3", region_name=REGION),
                payload_bucket=env["JUNCTION_PAYLOAD_BUCKET"],
                queue_url=env["JUNCTION_QUEUE_URL"],
                dlq_url=env["JUNCTION_DLQ_URL"],
                idempotency_table=env["JUNCTION_IDEMPOTENCY_TABLE"],
                state_table=env["JUNCTION_STATE_TABLE"],
                clock=self.clock,
                rng=random.Random(len(self.processors)),
                follower_queue_urls=tuple(u for u in env.get(FOLLOWER_QUEUES_ENV, "").split(",") if u),
            )
        return self.processors[key]

    def queue(self, system: str, target: str, *, dlq: bool = False) -> str:
        pair = self.resources.queue(SOURCES[system], target)
        return pair.dlq_url if dlq else pair.url

    def receive(self, url: str, most: int = 10) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=most,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def drain(self, system: str, target: str, *, rounds: int = 20) -> int:
        """Run the target's processor of one source on what its queue holds now, batch by batch,
        as Lambda would (deleting what was not reported failed). How many messages ran."""
        url = self.queue(system, target)
        processor = self.processor(system, target)
        ran = 0
        for _ in range(rounds):
            messages = self.receive(url, processor.target.queue.batch_size)
            if not messages:
                break
            response = processor.process({"Records": [_record(m, url) for m in messages]}, FakeContext(25.0))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    self._delete(url, m["ReceiptHandle"])
            ran += len(messages)
        return ran

    def _delete(self, url: str, receipt: str) -> None:
        try:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        except ClientError:
            pass  # the processor deleted it already (dead-lettered, or sent again)

    def drain_all(self, targets: tuple[str, ...] = TARGETS) -> None:
        for system in SOURCES:
            for target in targets:
                self.drain(system, target)

    def settle(self, targets: tuple[str, ...] = TARGETS, *, rounds: int = 30) -> None:
        """Drain, let the clock run to the next retry, drain again, until nothing waits."""
        for _ in range(rounds):
            self.drain_all(targets)
            if not self.waiting():
                return
            self.advance_to_next()
        raise AssertionError(f"messages still waiting after {rounds} rounds")

    # -- what happened -----------------------------------------------------------------------
    def dead_letters(self, system: str, target: str) -> list[dict[str, Any]]:
        url = self.queue(system, target, dlq=True)
        out: list[dict[str, Any]] = []
        while batch := self.receive(url):
            out.extend(batch)
        for m in out:
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return out

    def dead_reasons(self, system: str, target: str) -> list[str]:
        return sorted(
            m["MessageAttributes"]["junction-reason"]["StringValue"] for m in self.dead_letters(system, target)
        )

    def depth(self, system: str, target: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue(system, target),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        found = self.ddb.get_item(
            TableName=self.resources.state_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return item_from_ddb(found["Item"]) if found.get("Item") else None

    def budget(self, account: str) -> dict[str, Any]:
        return self.item(*state_keys.budget(account)) or {}

    def breaker(self, system: str, target: str) -> dict[str, Any]:
        return self.item(*state_keys.breaker(SOURCES[system].name, target)) or {}

    def trace(self, entity_id: str, target: str | None = None) -> list[dict[str, Any]]:
        """The entity's trace items (message history), oldest first; of one target if given."""
        items = self.ddb.query(
            TableName=self.resources.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": state_keys.trace_pk(entity_id)}},
            ConsistentRead=True,
        )["Items"]
        found = [item_from_ddb(i) for i in items]
        return sorted((i for i in found if target is None or i.get("target") == target), key=lambda i: str(i["sk"]))

    # -- what each target holds --------------------------------------------------------------
    def erp_orders(self) -> list[dict[str, Any]]:
        return self.standins.erp.orders()

    def deals(self) -> dict[str, dict[str, str]]:
        deals: dict[str, dict[str, str]] = self.standins.hubspot.state()["deals"]
        return deals

    def contacts(self) -> dict[str, dict[str, str]]:
        contacts: dict[str, dict[str, str]] = self.standins.hubspot.state()["contacts"]
        return contacts

    def shipments(self) -> list[dict[str, Any]]:
        return self.standins.shipbob.orders()

    def counts(self) -> tuple[int, int, int, int]:
        """(ERP orders, HubSpot deals, HubSpot contacts, ShipBob orders)."""
        return len(self.erp_orders()), len(self.deals()), len(self.contacts()), len(self.shipments())


def _record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """A received message as a record of Lambda's SQS event."""
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
        "eventSourceARN": f"arn:aws:sqs:{REGION}:000000000000:" + queue_url.rsplit("/", 1)[-1],
        "awsRegion": REGION,
    }
