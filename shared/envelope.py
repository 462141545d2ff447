"""The message ingress puts on a queue and the processor reads back.

Stdlib only: it sits on the ingress cold-start path. The raw body travels unchanged (UTF-8
text, or base64 when it is not valid UTF-8) so a processor, a replay or an operator sees
exactly the bytes whose signature was verified.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import MalformedEnvelope

VERSION = 1
# SQS message attributes every hop carries (ingress -> queue -> DLQ -> redrive or replay).
CARRIED_ATTRIBUTES = ("junction-idempotency-key", "junction-delivery-id")


@dataclass(frozen=True)
class Envelope:
    integration: str
    delivery_id: str  # the provider's delivery id (X-Shopify-Webhook-Id, webhook-id, ...)
    idempotency_key: str  # "<integration>:<delivery id>"
    source: str
    topic: str | None
    received_at: str  # ISO 8601 UTC
    body: str
    body_encoding: str = "utf-8"  # or "base64"
    headers: dict[str, str] = field(default_factory=dict)  # non-secret provider headers kept for mapping
    # Set only by an operator's deliberate replay: the event takes effect again, once per replay id.
    replay_id: str | None = None
    v: int = VERSION

    @property
    def raw_body(self) -> bytes:
        return base64.b64decode(self.body) if self.body_encoding == "base64" else self.body.encode()

    def payload(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a permanent failure."""
        try:
            return json.loads(self.raw_body)
        except ValueError as exc:
            raise MalformedEnvelope("body is not valid JSON", entity_ids={"delivery_id": self.delivery_id}) from exc

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") != VERSION:
                raise ValueError("not a version 1 envelope")
            return cls(**doc)
        except (ValueError, TypeError) as exc:
            raise MalformedEnvelope(f"queue message is not a Junction envelope: {exc}") from exc

    @staticmethod
    def encode_body(raw: bytes) -> tuple[str, str]:
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"


def message_attributes(envelope: Envelope) -> dict[str, dict[str, str]]:
    """The carried SQS message attributes of an envelope, in SendMessage form."""
    key_name, delivery_name = CARRIED_ATTRIBUTES
    return {
        key_name: {"DataType": "String", "StringValue": envelope.idempotency_key},
        delivery_name: {"DataType": "String", "StringValue": envelope.delivery_id},
    }
