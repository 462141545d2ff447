"""The Przelewy24 verify hop as AWS runs it: a notification through the real ingress onto the
``przelewy24`` target's queue, the real processor running the verify flow against the P24 API
stand-in, and the verified ids forwarded to the ERP target's queue (``after="przelewy24"``).

Each test runs on moto and on the local AWS stand-in (the ``aws`` fixture)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from functions.payments.p24_verify import build
from functions.przelewy24_payments.declaration import INTEGRATION
from junction_local.events import LambdaContext, apigw_event, sqs_event
from junction_local.provision import Resources
from junction_local.runtime import provision_local
from junction_local.standins.erp import ErpStandIn
from junction_local.standins.przelewy24_api import CRC, MERCHANT_ID, Przelewy24StandIn
from shared.aws import SecretCache, s3_client, secretsmanager_client, sqs_client
from shared.declaration import FOLLOWER_QUEUES_ENV
from shared.envelope import Envelope
from shared.ingress import Ingress
from shared.parameters import Secrets
from shared.processing import BatchProcessor, FlowContext
from shared.webhooks.przelewy24 import sign_notification
from tests.component.harness import Clock

STAGE = "test"
REGION = "eu-central-1"
TARGET = INTEGRATION.target("przelewy24")
FOLLOWER = INTEGRATION.target("erp")
CONTRACT = ("p24_order_id", "p24_session_id", "p24_verified", "amount_minor", "currency", "order_reference")


@dataclass
class VerifyHop:
    p24: Przelewy24StandIn
    resources: Resources
    ingress: Ingress
    processor: BatchProcessor
    clock: Clock
    sqs: Any
    http: httpx.Client

    @classmethod
    def start(cls, p24: Przelewy24StandIn, erp: ErpStandIn) -> VerifyHop:
        resources = provision_local(
            (INTEGRATION,), stage=STAGE, target_urls={TARGET.name: p24.url, FOLLOWER.name: erp.root_url}
        )
        clock = Clock()
        ingress_env = resources.function_env(INTEGRATION, "ingress")
        ingress = Ingress(
            INTEGRATION,
            stage=STAGE,
            queue_urls=ingress_env["JUNCTION_QUEUE_URLS"].split(","),
            sqs=sqs_client(),
            secrets=SecretCache(secretsmanager_client()),
            clock=clock,
            s3=s3_client(),
            payload_bucket=ingress_env["JUNCTION_PAYLOAD_BUCKET"],
        )
        env = resources.function_env(INTEGRATION, f"{TARGET.name}-processor")
        ddb = boto3.client("dynamodb", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        http = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))
        secrets = Secrets(boto3.client("secretsmanager", region_name=REGION))
        flow = build(FlowContext(INTEGRATION, TARGET, STAGE, secrets, ddb, env["JUNCTION_STATE_TABLE"], clock), http)
        processor = BatchProcessor(
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
            follower_queue_urls=tuple(env[FOLLOWER_QUEUES_ENV].split(",")),
        )
        return cls(p24, resources, ingress, processor, clock, sqs, http)

    def notify(self, notification: dict[str, Any]) -> int:
        assert INTEGRATION.webhook is not None
        body = json.dumps(notification, separators=(",", ":")).encode()
        event = apigw_event("POST", INTEGRATION.webhook.path, {"Content-Type": "application/json"}, body)
        return int(self.ingress.handle(event)["statusCode"])

    def run(self) -> list[str]:
        """One invocation on what the queue holds; the ids of the failed messages, released again."""
        url = self.resources.queue(INTEGRATION, TARGET).url
        received = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not received:
            return []
        event = sqs_event(received, queue_arn=self.resources.queue(INTEGRATION, TARGET).arn, region=REGION)
        response = self.processor.process(event, LambdaContext("processor", TARGET.processor.timeout_seconds))
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in received:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.clock.advance(3600)  # past any backoff the processor asked for
        return sorted(failed)

    def drain(self) -> None:
        for _ in range(10):
            if not self.run():
                return
        raise AssertionError("the queue did not drain")

    def messages(self, *, dead: bool = False, follower: bool = False) -> list[dict[str, Any]]:
        pair = self.resources.queue(INTEGRATION, FOLLOWER if follower else TARGET)
        got: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=pair.dlq_url if dead else pair.url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", [])
        return got


@pytest.fixture
def p24() -> Iterator[Przelewy24StandIn]:
    with Przelewy24StandIn() as running:
        yield running


@pytest.fixture
def hop(aws: str, p24: Przelewy24StandIn, erp: ErpStandIn) -> Iterator[VerifyHop]:
    started = VerifyHop.start(p24, erp)
    yield started
    started.http.close()


def paid(p24: Przelewy24StandIn, session: str = "woocommerce:727", amount: int = 35999) -> dict[str, Any]:
    p24.register(session, amount)
    return p24.pay(session)


def forged(notification: dict[str, Any], **change: Any) -> dict[str, Any]:
    """A notification changed and signed again with the CRC key (what only P24 or a leak could send)."""
    fields = {k: v for k, v in {**notification, **change}.items() if k != "sign"}
    return {**fields, "sign": sign_notification(fields, CRC)}


def reason(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["junction-reason"]["StringValue"])


def test_a_paid_notification_is_verified_and_the_erp_gets_the_verified_ids(
    hop: VerifyHop, p24: Przelewy24StandIn
) -> None:
    notification = paid(p24)
    assert hop.notify(notification) == 200  # P24 wants a 200
    hop.drain()
    assert p24.summary()["verified"] == 1
    (forwarded,) = hop.messages(follower=True)
    upstream = Envelope.from_json(forwarded["Body"]).upstream
    assert {k: upstream[k] for k in CONTRACT} == {
        "p24_order_id": str(notification["orderId"]),
        "p24_session_id": "woocommerce:727",
        "p24_verified": "yes",
        "amount_minor": "35999",
        "currency": "PLN",
        "order_reference": "woocommerce:727",
    }
    assert hop.messages(dead=True) == []


def test_a_notification_sent_again_is_verified_once(hop: VerifyHop, p24: Przelewy24StandIn) -> None:
    notification = paid(p24)
    assert [hop.notify(notification) for _ in range(3)] == [200, 200, 200]
    hop.drain()
    hop.notify(notification)  # P24 sends it again after the effect
    hop.drain()
    summary = p24.summary()
    assert (summary["verified"], summary["verify_requests"]) == (1, 1)
    assert hop.messages(dead=True) == []


def test_a_repeated_attempt_of_an_order_is_its_own_verification(hop: VerifyHop, p24: Przelewy24StandIn) -> None:
    first, second = paid(p24, "woocommerce:727"), paid(p24, "woocommerce:727#2")
    hop.notify(first)
    hop.notify(second)
    hop.drain()
    assert p24.summary()["verified"] == 2
    references = {Envelope.from_json(m["Body"]).upstream["order_reference"] for m in hop.messages(follower=True)}
    assert references == {"woocommerce:727"}


def test_a_refused_verification_is_dead_lettered_and_nothing_reaches_the_erp(
    hop: VerifyHop, p24: Przelewy24StandIn
) -> None:
    notification = forged(paid(p24), amount=1, originAmount=1)  # not what the customer paid
    hop.notify(notification)
    hop.drain()
    (dead,) = hop.messages(dead=True)
    assert reason(dead) == "p24_verification_refused"
    assert p24.summary()["verified"] == 0
    assert hop.messages(follower=True) == []


def test_p24_down_is_retried_and_verified_once_it_is_back(hop: VerifyHop, p24: Przelewy24StandIn) -> None:
    notification = paid(p24)
    hop.notify(notification)
    p24.set_behaviour("down")
    assert hop.run() != []  # a transient failure: the message stays
    assert hop.messages(dead=True) == []
    p24.set_behaviour("ok")
    hop.drain()
    assert p24.summary()["verified"] == 1
    assert len(hop.messages(follower=True)) == 1


def test_a_lost_answer_is_verified_once_on_the_retry(hop: VerifyHop, p24: Przelewy24StandIn) -> None:
    notification = paid(p24)
    hop.notify(notification)
    p24.set_behaviour("accept_then_hang", delay=3.0, count=1)
    assert hop.run() != []  # committed at P24, the answer lost
    hop.drain()
    summary = p24.summary()
    assert (summary["verified"], summary["verify_successes"]) == (1, 1)
    assert len(hop.messages(follower=True)) == 1
    assert hop.messages(dead=True) == []


@pytest.mark.parametrize(
    "change",
    [{"sessionId": "cart-5f2a"}, {"sessionId": "woocommerce:727#"}, {"merchantId": MERCHANT_ID + 1}],
)
def test_a_notification_not_ours_is_a_business_error_and_p24_is_not_called(
    hop: VerifyHop, p24: Przelewy24StandIn, change: dict[str, Any]
) -> None:
    notification = forged(paid(p24), **change)
    assert hop.notify(notification) == 200
    hop.drain()
    (dead,) = hop.messages(dead=True)
    assert reason(dead) == "validation_failed"
    assert p24.summary()["verify_requests"] == 0
