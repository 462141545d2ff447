"""In-memory stand-ins for the ingress's clients, as strict as SQS and S3 where it matters (the
size SQS counts, the characters it refuses), and the checks that they are."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping
from typing import Any

import pytest

from junction_local.events import apigw_event
from shared.aws import AwsError
from shared.declaration import Integration, SecretRef, Target, WebhookTrigger
from shared.envelope import SQS_MAX_MESSAGE_BYTES, message_size
from shared.ingress import Ingress
from shared.webhooks import shopify, standard

SHOP_SECRET = "shpss_unit_secret_0001"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret
BUCKET = "junction-unit-payloads"
NOW = 1_795_000_000.0
QUEUE_URL = "https://sqs.eu-central-1.amazonaws.com/000000000000/q"
# The characters SQS accepts in a message body or attribute value (its documented set).
SQS_ALLOWED = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def integration(scheme: str = "shopify", *, targets: tuple[str, ...] = ("erp",), **trigger: Any) -> Integration:
    return Integration(
        name=f"unit-{scheme}",
        description="ingress under test",
        source="shop" if scheme == "shopify" else "svix",
        targets=tuple(Target(name) for name in targets),
        trigger=WebhookTrigger(
            path=f"/webhooks/{scheme}",
            scheme=scheme,  # type: ignore[arg-type]
            secret=SecretRef(f"{scheme}-webhook", "signing secret"),
            topic_header=trigger.pop("topic_header", "x-shopify-topic" if scheme == "shopify" else "x-event-type"),
            **trigger,
        ),
        package="tests.unit",
    )


class StrictSqs:
    """SendMessage with SQS's rules on size (body plus attributes) and characters; the queues in
    ``unreachable`` answer as an SQS that cannot be reached does."""

    def __init__(self, max_bytes: int = SQS_MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.sent: list[dict[str, Any]] = []
        self.unreachable: set[str] = set()

    def call(self, action: str, params: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]:
        assert action == "SendMessage"
        if params.get("QueueUrl") in self.unreachable:
            raise AwsError("sqs", action, 503, "ServiceUnavailable", "injected")
        body = params["MessageBody"]
        attributes = params.get("MessageAttributes") or {}
        values = [body] + [a.get("StringValue", "") for a in attributes.values()]
        if not all(SQS_ALLOWED.fullmatch(v) for v in values):
            raise AwsError("sqs", action, 400, "InvalidMessageContents", "Invalid characters found")
        if message_size(body, attributes) > self.max_bytes:
            raise AwsError("sqs", action, 400, "InvalidParameterValue", "Message must be shorter than 262144 bytes")
        self.sent.append(params)
        return {"MessageId": f"m-{len(self.sent)}"}


class NotFound(Exception):
    """Shaped like botocore's ClientError for a missing key."""

    def __init__(self, code: str = "NoSuchKey", status: int = 404) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class MemoryS3:
    """The lean client's put_object and boto3's get_object over a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.fail_puts = False

    def put_object(
        self, bucket: str, key: str, body: bytes, *, content_type: str = "", deadline: float | None = None
    ) -> dict[str, str | None]:
        if self.fail_puts:
            raise AwsError("s3", "PutObject", 503, "SlowDown", "injected", "req-s3")
        self.objects[(bucket, key)] = bytes(body)
        return {"ETag": '"x"', "RequestId": "req"}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        try:
            return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}
        except KeyError:
            raise NotFound() from None


class StaticSecrets:
    def __init__(self, *values: str) -> None:
        self.values = list(values)

    def get_json(self, secret_id: str, *, deadline: float | None = None) -> Any:
        return {"secrets": self.values}

    def invalidate(self, secret_id: str) -> None:
        pass


def queue_url(target: str) -> str:
    return f"{QUEUE_URL}-{target}"


def make_ingress(
    scheme: str = "shopify", *, bucket: str | None = BUCKET, targets: tuple[str, ...] = ("erp",), **trigger: Any
) -> tuple[Ingress, StrictSqs, MemoryS3]:
    sqs, s3 = StrictSqs(), MemoryS3()
    ingress = Ingress(
        integration(scheme, targets=targets, **trigger),
        stage="unit",
        queue_urls=[queue_url(t) for t in targets],
        sqs=sqs,
        secrets=StaticSecrets(SHOP_SECRET if scheme == "shopify" else SW_SECRET),
        clock=lambda: NOW,
        s3=s3,
        payload_bucket=bucket or "",
    )
    return ingress, sqs, s3


def signed_headers(
    scheme: str, body: bytes, delivery_id: str = "d-1", extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    if scheme == "shopify":
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": shopify.sign(body, SHOP_SECRET),
            "X-Shopify-Shop-Domain": "demo-shop.myshopify.com",
            "X-Shopify-Webhook-Id": delivery_id,
        }
    else:
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(int(NOW)),
            "webhook-signature": standard.sign(delivery_id, int(NOW), body, SW_SECRET),
            "x-event-type": "invoice.paid",
        }
    headers.update(extra or {})
    return headers


def event(
    scheme: str,
    body: bytes,
    delivery_id: str = "d-1",
    *,
    base64_body: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    built = apigw_event("POST", f"/webhooks/{scheme}", signed_headers(scheme, body, delivery_id, extra), body)
    if base64_body:
        built["body"], built["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return built


# -- the fakes hold SQS's rules ---------------------------------------------------------------
@pytest.mark.parametrize("text", ["\ufffe", "\uffff", "\ud800", "\x00", "\x1f", "\x0b"])
def test_strict_sqs_refuses_what_sqs_refuses(text: str) -> None:
    with pytest.raises(AwsError, match="InvalidMessageContents"):
        StrictSqs().call("SendMessage", {"MessageBody": f"a{text}b"})


@pytest.mark.parametrize("text", ["\t\r\n", " ~\x7f\x85", "\ud7ff\ue000\ufffd", "\U00010000\U0010ffff🎉"])
def test_strict_sqs_accepts_what_sqs_accepts(text: str) -> None:
    StrictSqs().call("SendMessage", {"MessageBody": text})


def test_strict_sqs_counts_attributes_toward_the_limit() -> None:
    attributes = {"k": {"DataType": "String", "StringValue": "v"}}  # 1 + 6 + 1 bytes
    StrictSqs(max_bytes=10).call("SendMessage", {"MessageBody": "12", "MessageAttributes": attributes})
    with pytest.raises(AwsError, match="shorter"):
        StrictSqs(max_bytes=10).call("SendMessage", {"MessageBody": "123", "MessageAttributes": attributes})
