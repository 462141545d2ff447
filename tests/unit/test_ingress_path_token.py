"""A provider that cannot sign (InPost ShipX): the route's last path segment is a secret token,
compared in constant time with every active value (rotation), read again after a mismatch; the
body is then only a pointer (the processor re-reads the shipment). And a provider that stops
re-sending only on a 200 (Przelewy24) gets its 200."""

from __future__ import annotations

import json
from typing import Any

import pytest

from junction_local.events import apigw_event
from shared.declaration import Integration, SecretRef, Target, WebhookTrigger
from shared.envelope import Envelope
from shared.ingress import Ingress
from tests.unit.test_ingress_fakes import NOW, StrictSqs, queue_url

TOKEN = "k3J9xq0vT7mZpL2rW8sN4bY6cF1hD5gA"
BODY = json.dumps({"event": "shipment_status_changed", "payload": {"shipment_id": 49, "status": "delivered"}}).encode()


class RotatingSecrets:
    """The secret store: ``values`` now; ``cached`` what a cold cache read last."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.cached: list[str] | None = None
        self.reads = 0

    def get_json(self, secret_id: str, *, deadline: float | None = None) -> Any:
        if self.cached is None:
            self.reads += 1
            self.cached = list(self.values)
        return {"secrets": self.cached}

    def invalidate(self, secret_id: str) -> None:
        self.cached = None


def tracking(**trigger: Any) -> Integration:
    return Integration(
        name="unit-shipx",
        description="path-token ingress under test",
        source="inpost",
        package="tests.unit",
        targets=(Target("inpost"),),
        trigger=WebhookTrigger(
            path="/webhooks/inpost/{token}", scheme="shipx", secret=SecretRef("inpost-token", "t"), **trigger
        ),
    )


def ingress(secrets: RotatingSecrets) -> tuple[Ingress, StrictSqs]:
    sqs = StrictSqs()
    built = Ingress(
        tracking(), stage="unit", queue_urls=[queue_url("inpost")], sqs=sqs, secrets=secrets, clock=lambda: NOW
    )
    return built, sqs


def call(ing: Ingress, token: str | None, body: bytes = BODY) -> dict[str, Any]:
    path = f"/webhooks/inpost/{token}"
    params = {"token": token} if token is not None else None
    return ing.handle(
        apigw_event(
            "POST",
            path,
            {"Content-Type": "application/json"},
            body,
            resource="/webhooks/inpost/{token}",
            path_parameters=params,
        )
    )


def test_the_right_token_is_accepted_and_the_body_digest_is_the_delivery_id() -> None:
    ing, sqs = ingress(RotatingSecrets(TOKEN))
    answer = call(ing, TOKEN)
    assert answer["statusCode"] == 202
    envelope = Envelope.from_json(sqs.sent[0]["MessageBody"])
    assert envelope.topic == "shipment_status_changed"
    assert envelope.delivery_id.startswith("shipx:")
    # The same status of the same shipment sent again is the same delivery (a duplicate downstream).
    assert call(ing, TOKEN)["statusCode"] == 202
    assert Envelope.from_json(sqs.sent[1]["MessageBody"]).delivery_id == envelope.delivery_id


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "ż" * 300])
def test_a_wrong_or_missing_token_is_a_401_and_nothing_is_queued(token: str | None) -> None:
    ing, sqs = ingress(RotatingSecrets(TOKEN))
    answer = call(ing, token)
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"]) == {"error": "signature verification failed"}
    assert sqs.sent == []


def test_a_rotated_token_is_read_again_once_and_both_values_work_during_the_rotation() -> None:
    secrets = RotatingSecrets("old-token-0000000000000000000000")
    ing, sqs = ingress(secrets)
    assert call(ing, "old-token-0000000000000000000000")["statusCode"] == 202
    secrets.values = [TOKEN, "old-token-0000000000000000000000"]  # rotation: new first, old kept
    assert call(ing, TOKEN)["statusCode"] == 202  # a mismatch re-read the secret
    assert secrets.reads == 2
    assert call(ing, "old-token-0000000000000000000000")["statusCode"] == 202
    # A second mismatch within 30 s does not read the store again: a wrong token cannot hammer it.
    assert call(ing, "wrong")["statusCode"] == 401
    assert secrets.reads == 2
    assert len(sqs.sent) == 3


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"payload": {}}', b'{"event": 5}', b'{"action": ""}'])
def test_a_right_token_with_a_body_that_is_no_shipx_webhook_is_a_400(body: bytes) -> None:
    ing, sqs = ingress(RotatingSecrets(TOKEN))
    assert call(ing, TOKEN, body)["statusCode"] == 400
    assert sqs.sent == []


def test_the_token_is_never_kept_in_the_envelope_or_its_headers() -> None:
    ing, sqs = ingress(RotatingSecrets(TOKEN))
    call(ing, TOKEN)
    assert TOKEN not in sqs.sent[0]["MessageBody"]
    assert TOKEN not in json.dumps(sqs.sent[0]["MessageAttributes"])


def test_a_provider_that_wants_a_200_gets_a_200() -> None:
    from tests.unit.test_ingress_fakes import make_ingress, signed_headers

    ing, sqs, _ = make_ingress("shopify", accepted_status=200)
    body = json.dumps({"id": 1}).encode()
    answer = ing.handle(apigw_event("POST", "/webhooks/shopify", signed_headers("shopify", body), body))
    assert answer["statusCode"] == 200 and len(sqs.sent) == 1


def test_declarations_refuse_a_parameter_that_is_not_the_last_segment_and_odd_statuses() -> None:
    with pytest.raises(ValueError, match="path parameter"):
        Integration(
            name="bad",
            description="",
            source="x",
            package="p",
            targets=(Target("t"),),
            trigger=WebhookTrigger(path="/webhooks/{token}/x", scheme="shipx", secret=SecretRef("s", "")),
        )
    with pytest.raises(ValueError, match="accepted_status"):
        tracking(accepted_status=204)
