"""The message ingress puts on a queue and the processor reads back.

Stdlib only: it sits on the ingress cold-start path. The raw body travels unchanged (UTF-8
text, or base64 when it is not valid UTF-8) so a processor, a replay or an operator sees
exactly the bytes whose signature was verified.

Two forms, both readable by every processor:
- version 1, the body inline (every envelope before claim checks, and every one that fits);
- version 2, a claim check: the raw body lies in S3 and ``claim_check`` says where
  (``shared.claim_check`` writes and reads it). ``to_json()`` of a claim-check envelope is
  always the pointer form, also once its body has been loaded, so idempotency records and
  replays stay small.

``to_json()`` is SQS-safe: SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
#x10000-#x10FFFF in a message; any other code point (U+FFFE, U+FFFF, a lone surrogate in a
header) is written as a JSON ``\\uXXXX`` escape, which reads back as the same character.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import MalformedEnvelope

VERSION = 1  # inline body
CLAIM_CHECK_VERSION = 2  # body in S3
READABLE_VERSIONS = (VERSION, CLAIM_CHECK_VERSION)
CLAIM_CHECK_ENCODING = "s3"  # body_encoding of an envelope whose body has not been loaded
# SQS's limit on one message: the body plus every attribute's name, type and value, in bytes.
SQS_MAX_MESSAGE_BYTES = 262_144
# SQS message attributes every hop carries (ingress -> queue -> DLQ -> redrive or replay).
CARRIED_ATTRIBUTES = ("junction-idempotency-key", "junction-delivery-id")

# Everything SQS refuses; json.dumps already escapes U+0000-U+001F, so in practice this finds
# U+FFFE, U+FFFF and lone surrogates.
_REFUSED_BY_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def sqs_safe(text: str) -> str:
    """``text`` (JSON) with every character SQS refuses written as a ``\\uXXXX`` escape. Such
    characters can stand only inside JSON strings, where the escape means the same character."""
    return _REFUSED_BY_SQS.sub(_escape, text) if _REFUSED_BY_SQS.search(text) else text


class UnresolvedClaimCheck(RuntimeError):
    """The body of a claim-check envelope was read before ``shared.claim_check.resolve``: a bug."""


@dataclass(frozen=True)
class ClaimCheck:
    """Where the raw body of a claim-check envelope lies, and how to know it is the right one."""

    bucket: str
    key: str
    size: int  # bytes
    sha256: str  # hex digest of the raw body

    @classmethod
    def from_doc(cls, doc: Any) -> ClaimCheck:
        if not isinstance(doc, dict) or set(doc) != {"bucket", "key", "size", "sha256"}:
            raise ValueError("claim_check must have bucket, key, size and sha256")
        bucket, key, size, digest = doc["bucket"], doc["key"], doc["size"], doc["sha256"]
        if not (isinstance(bucket, str) and isinstance(key, str) and isinstance(digest, str)):
            raise ValueError("claim_check fields have the wrong types")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("claim_check size must be a non-negative integer")
        return cls(bucket, key, size, digest)


@dataclass(frozen=True)
class Envelope:
    integration: str
    delivery_id: str  # the provider's delivery id (X-Shopify-Webhook-Id, webhook-id, ...)
    idempotency_key: str  # "<integration>:<delivery id>"
    source: str
    topic: str | None
    received_at: str  # ISO 8601 UTC
    body: str
    body_encoding: str = "utf-8"  # or "base64"; "s3" while a claim check's body is not loaded
    headers: dict[str, str] = field(default_factory=dict)  # non-secret provider headers kept for mapping
    # Set only by an operator's deliberate replay: the event takes effect again, once per replay id.
    replay_id: str | None = None
    # Set by an upstream target's processor for the targets after it (``Target.after``): the ids
    # its effect made ({"erp_doc_entry": "57"}).
    upstream: dict[str, str] = field(default_factory=dict)
    v: int = VERSION
    claim_check: ClaimCheck | None = None  # set: the raw body lies in S3 (version 2)

    @property
    def raw_body(self) -> bytes:
        if self.body_encoding == CLAIM_CHECK_ENCODING:
            raise UnresolvedClaimCheck("call shared.claim_check.resolve before reading the body")
        return base64.b64decode(self.body) if self.body_encoding == "base64" else self.body.encode()

    @property
    def body_loaded(self) -> bool:
        return self.body_encoding != CLAIM_CHECK_ENCODING

    def payload(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a permanent failure."""
        try:
            return json.loads(self.raw_body)
        except ValueError as exc:
            raise MalformedEnvelope("body is not valid JSON", entity_ids={"delivery_id": self.delivery_id}) from exc

    def to_json(self) -> str:
        """The queue message (SQS-safe); for a claim check, the pointer form (no body)."""
        doc = asdict(self)
        if not self.upstream:
            del doc["upstream"]
        if self.claim_check is None:
            del doc["claim_check"]
            doc["v"] = VERSION
        else:
            doc.update(body="", body_encoding=CLAIM_CHECK_ENCODING, v=CLAIM_CHECK_VERSION)
        return sqs_safe(json.dumps(doc, separators=(",", ":"), ensure_ascii=False))

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") not in READABLE_VERSIONS:
                raise ValueError("not a version 1 or 2 envelope")
            check = doc.pop("claim_check", None)
            if (doc["v"] == CLAIM_CHECK_VERSION) != (check is not None):
                raise ValueError("a version 2 envelope, and only one, has a claim_check")
            if check is not None:
                doc["claim_check"] = ClaimCheck.from_doc(check)
                doc["body"], doc["body_encoding"] = "", CLAIM_CHECK_ENCODING
            return cls(**doc)
        except (ValueError, TypeError, KeyError) as exc:
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


def message_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """The size SQS counts for a message: the body's UTF-8 bytes plus, for each attribute, its
    name, data type and value."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, attr in attributes.items():
        value = attr.get("StringValue")
        size += len(name.encode("utf-8", "surrogatepass")) + len(attr.get("DataType", "").encode())
        if value is not None:
            size += len(value.encode("utf-8", "surrogatepass"))
        else:
            size += len(attr.get("BinaryValue", ""))  # base64 text: an upper bound of the bytes
    return size
