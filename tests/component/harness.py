"""Runs the shopify-orders pipeline the way AWS does, with time under the test's control.

Webhooks go through the real ingress code into the ERP target's moto SQS queue; batches are received the way
Lambda's SQS event source receives them and handed to the real processor; Lambda's rules then
apply (delete what succeeded, leave the reported failures). Waiting out a visibility timeout is
fast-forwarded: the delay the processor asked for is recorded and the message made visible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
from botocore.exceptions import ClientError

from functions.orders.to_erp import build
from junction_local.events import LambdaContext, apigw_event, sqs_event
from junction_local.provision import Resources
from junction_local.runtime import provision_local
from junction_local.standins import source
from junction_local.standins.erp import ErpStandIn
from shared.aws import SecretCache, s3_client, secretsmanager_client, sqs_client
from shared.envelope import CARRIED_ATTRIBUTES
from shared.ingress import Ingress
from shared.parameters import Secrets
from shared.processing import BatchProcessor, FlowContext
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION

STAGE = "test"
REGION = "eu-central-1"
TARGET = INTEGRATION.target("erp")  # the integration's one target: its queue, retry, breaker, processor
PROCESSOR = f"{TARGET.name}-processor"  # the function role whose environment the processor gets
SHOPIFY = source(INTEGRATION.source)  # the source's local stand-in: its secret, samples and sender
SHOP_SECRET = SHOPIFY.signing_secret
SHOP_OLD_SECRET = "shpss_previous_secret_0000"  # rotated out, still accepted: the tests' own


class Clock:
    """Wall-clock time plus whatever the test has fast-forwarded."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class RecordingSqs:
    """The processor's SQS client (boto3): records the delays it asks for, and fast-forwards
    them like the visibility timeouts (a message sent again with ``DelaySeconds`` is visible at
    once); ``fail_actions`` makes chosen methods fail."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.delays: list[int] = []
        self.fail_actions: set[str] = set()
        self.sent_again = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(**params: Any) -> Any:
            if name in self.fail_actions:
                raise ClientError({"Error": {"Code": "InternalFailure", "Message": "injected"}}, name)
            if name == "change_message_visibility":
                self.delays.append(int(params["VisibilityTimeout"]))
            if name == "send_message" and "DelaySeconds" in params:
                self.delays.append(int(params.pop("DelaySeconds")))
                self.sent_again += 1
            return method(**params)

        return call


class FaultyClient:
    """A boto3 client that raises ``error(method)`` on chosen calls: the next ``count`` calls of
    ``method`` for which ``when(params)`` holds. Wrappers nest, so fault kinds combine."""

    def __init__(self, inner: Any, error: Callable[[str], BaseException]) -> None:
        self.inner = inner
        self.error = error
        self.faults: list[tuple[str, Callable[[dict[str, Any]], bool], list[int]]] = []

    def add(self, method: str, count: int = 1, when: Callable[[dict[str, Any]], bool] = lambda _p: True) -> None:
        self.faults.append((method, when, [count]))

    def clear(self) -> None:
        self.faults.clear()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(**params: Any) -> Any:
            for wanted, when, left in self.faults:
                if wanted == name and left[0] > 0 and when(params):
                    left[0] -= 1
                    raise self.error(name)
            return method(**params)

        return call


class FlakyDynamo(FaultyClient):
    """The processor's DynamoDB client (boto3), able to fail chosen calls on demand."""

    def __init__(self, inner: Any) -> None:
        super().__init__(
            inner, lambda name: ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, name)
        )

    def fail(self, method: str, count: int = 1, when: Callable[[dict[str, Any]], bool] = lambda _p: True) -> None:
        """Make the next ``count`` calls of ``method`` (for which ``when(params)`` holds) fail."""
        self.add(method, count, when)


def completing(params: dict[str, Any]) -> bool:
    """The idempotency store's write of COMPLETED records (one BatchWriteItem per batch)."""
    return any(
        r.get("PutRequest", {}).get("Item", {}).get("status") == {"S": "COMPLETED"}
        for requests in params.get("RequestItems", {}).values()
        for r in requests
    )


def attempted(params: dict[str, Any]) -> bool:
    """The idempotency store's record of an attempt whose outcome is unknown."""
    return bool(params.get("ExpressionAttributeValues", {}).get(":a") == {"S": "ATTEMPTED"}) and ":r" in str(
        params.get("ExpressionAttributeValues", {})
    )


def claiming(params: dict[str, Any]) -> bool:
    """The idempotency store's claim of a key."""
    return "claim_token = :token, expires_at" in str(params.get("UpdateExpression", ""))


def flow_for(resources: Resources, ddb: Any, clock: Clock, http: httpx.Client) -> Any:
    """The target's flow as the generic processor builds it (``make_sqs_handler``): its secrets
    read from the AWS stand-in (re-read on a refused login), its HTTP client the test's."""
    secrets = Secrets(boto3.client("secretsmanager", region_name=REGION))
    return build(FlowContext(INTEGRATION, TARGET, STAGE, secrets, ddb, resources.state_table, clock), http=http)


def processor_for(resources: Resources, flow: Any, sqs: Any, ddb: Any, clock: Clock, **kw: Any) -> BatchProcessor:
    env = resources.function_env(INTEGRATION, PROCESSOR)
    assert env["JUNCTION_TARGET"] == TARGET.name
    return BatchProcessor(
        INTEGRATION,
        TARGET,
        flow,
        sqs=sqs,
        ddb=ddb,
        s3=boto3.client("s3", region_name=REGION),
        payload_bucket=env["JUNCTION_PAYLOAD_BUCKET"],
        queue_url=env["JUNCTION_QUEUE_URL"],
        dlq_url=env["JUNCTION_DLQ_URL"],
        idempotency_table=env["JUNCTION_IDEMPOTENCY_TABLE"],
        state_table=env["JUNCTION_STATE_TABLE"],
        clock=clock,
        **kw,
    )


@dataclass
class BatchRun:
    size: int
    failures: list[str]
    response: dict[str, Any]


@dataclass
class Pipeline:
    erp: ErpStandIn
    resources: Resources
    ingress: Ingress
    processor: BatchProcessor
    sqs: RecordingSqs
    ddb: FlakyDynamo
    clock: Clock
    boto_sqs: Any
    boto_ddb: Any
    erp_http: httpx.Client
    batches: list[BatchRun] = field(default_factory=list)
    auto_advance: bool = True  # let the test clock run forward by the delays the processor asks for

    @classmethod
    def start(cls, erp: ErpStandIn) -> Pipeline:
        boto_sqs = boto3.client("sqs", region_name=REGION)
        boto_ddb = boto3.client("dynamodb", region_name=REGION)
        # The one local provisioning (queues, tables, secrets, claim-check bucket), with the
        # stand-ins' declared secrets; the shop's also accepts a rotated-out one.
        resources = provision_local(
            (INTEGRATION,),
            stage=STAGE,
            target_urls={TARGET.name: erp.root_url},
            secret_overrides={SHOPIFY.fills: SHOPIFY.secret_value(SHOP_OLD_SECRET)},
        )
        env = resources.function_env(INTEGRATION, "ingress")
        clock = Clock()
        ingress = Ingress(
            INTEGRATION,
            stage=STAGE,
            queue_urls=env["JUNCTION_QUEUE_URLS"].split(","),
            sqs=sqs_client(),
            secrets=SecretCache(secretsmanager_client()),
            clock=clock,
            s3=s3_client(),
            payload_bucket=env["JUNCTION_PAYLOAD_BUCKET"],
        )
        # A short read timeout keeps the "target hangs" cases fast; everything else is production
        # code, the flow and its secrets (read from the AWS stand-in, re-read on a refused login).
        erp_http = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))
        sqs = RecordingSqs(boto3.client("sqs", region_name=REGION))
        ddb = FlakyDynamo(boto3.client("dynamodb", region_name=REGION))
        flow = flow_for(resources, ddb, clock, erp_http)
        processor = processor_for(resources, flow, sqs, ddb, clock)
        return cls(erp, resources, ingress, processor, sqs, ddb, clock, boto_sqs, boto_ddb, erp_http)

    def another_processor(self, http: httpx.Client | None = None, **kw: Any) -> BatchProcessor:
        """A second execution environment of the same processor (its own clients and flow)."""
        flow = flow_for(self.resources, self.ddb, self.clock, http or self.erp_http)
        return processor_for(self.resources, flow, self.sqs, self.ddb, self.clock, **kw)

    def invoke(
        self, processor: BatchProcessor, messages: list[dict[str, Any]], timeout_seconds: float
    ) -> dict[str, Any]:
        """Run ``processor`` on received ``messages`` as an invocation with ``timeout_seconds`` left."""
        arn = self.resources.queue(INTEGRATION, TARGET).arn
        context = LambdaContext("processor", TARGET.processor.timeout_seconds)
        context._deadline = time.monotonic() + timeout_seconds
        return processor.process(sqs_event(messages, queue_arn=arn, region=REGION), context)

    def release(self, messages: list[dict[str, Any]]) -> None:
        """Time passes for messages left on the queue: their visibility timeouts run out."""
        for message in messages:
            try:
                self.boto_sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            except ClientError:
                pass  # deleted meanwhile

    def receive(self, max_messages: int = 10) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.boto_sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        return messages

    def redrive(self) -> list[dict[str, Any]]:
        """Move every DLQ message back to the main queue, as an operator's redrive does."""
        moved = []
        for message in self.dlq():
            carried = {k: v for k, v in message.get("MessageAttributes", {}).items() if k in CARRIED_ATTRIBUTES}
            self.boto_sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"], MessageAttributes=carried)
            self.boto_sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved.append(message)
        return moved

    def state_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        from shared.aws import item_from_ddb

        item = self.boto_ddb.get_item(
            TableName=self.resources.state_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        ).get("Item")
        return item_from_ddb(item) if item else None

    def close(self) -> None:
        self.erp_http.close()

    @property
    def queue_url(self) -> str:
        return self.resources.queue(INTEGRATION, TARGET).url

    @property
    def dlq_url(self) -> str:
        return self.resources.queue(INTEGRATION, TARGET).dlq_url

    # -- the webhook side --------------------------------------------------------------------
    def post(self, body: bytes, headers: dict[str, str], *, base64_body: bool = False) -> tuple[int, dict[str, Any]]:
        assert INTEGRATION.webhook is not None
        event = apigw_event("POST", INTEGRATION.webhook.path, headers, body)
        if base64_body:
            import base64

            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        response = self.ingress.handle(event)
        return int(response["statusCode"]), json.loads(response["body"])

    def send_order(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, secret: str = SHOP_SECRET
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self.post(body, shopify_headers(body, delivery_id or f"delivery-{payload['id']}", secret))

    def enqueue_raw(self, body: str) -> None:
        """A message that did not come through the ingress (a poison message)."""
        self.boto_sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    # -- the Lambda side ---------------------------------------------------------------------
    def run_batch(self, max_messages: int = 10) -> BatchRun | None:
        received = self.receive(max_messages)
        if not received:
            return None
        arn = self.resources.queue(INTEGRATION, TARGET).arn
        event = sqs_event(received, queue_arn=arn, region=REGION)
        context = LambdaContext("processor", TARGET.processor.timeout_seconds)
        asked = len(self.sqs.delays)
        response = self.processor.process(event, context)
        if self.auto_advance and len(self.sqs.delays) > asked:  # time passes until the first comes back
            self.clock.advance(min(self.sqs.delays[asked:]))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in received:  # Lambda deletes what was not reported as failed
            if message["MessageId"] not in failed:
                self.boto_sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:  # time passes: the visibility timeout runs out
                self.boto_sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        run = BatchRun(len(received), sorted(failed), response)
        self.batches.append(run)
        return run

    def drain(self, max_batches: int = 50, *, hours_between: float = 0.0) -> int:
        """Run batches until the queue is empty; returns how many ran. ``hours_between``: let
        that much time pass after each batch (a long outage in few batches)."""
        for n in range(max_batches):
            if self.run_batch() is None:
                return n
            self.clock.advance(hours_between * 3600)
        raise AssertionError(f"queue not drained after {max_batches} batches")

    # -- what happened -----------------------------------------------------------------------
    def dlq(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            got = self.boto_sqs.receive_message(
                QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
            ).get("Messages", [])
            if not got:
                return messages
            messages.extend(got)

    def queue_depth(self) -> int:
        attrs = self.boto_sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def trace(self, entity_id: str) -> list[dict[str, Any]]:
        from shared.aws import item_from_ddb

        items = self.boto_ddb.query(
            TableName=self.resources.state_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"trace#{entity_id}"}},
        )["Items"]
        return [item_from_ddb(i) for i in items]


def shopify_headers(body: bytes, delivery_id: str, secret: str = SHOP_SECRET) -> dict[str, str]:
    """The headers the source system sends with ``body``, as its stand-in's sender makes them."""
    assert INTEGRATION.webhook is not None
    return SHOPIFY.sender(f"http://127.0.0.1{INTEGRATION.webhook.path}", secret).headers(body, delivery_id)
