"""Przelewy24 (REST API v1) transaction notifications, as P24 posts them to a transaction's
``urlStatus`` once the customer has paid (see docs/payments-contract.md).

The body is JSON: ``merchantId``, ``posId`` (int), ``sessionId`` (the shop's id of the
transaction, at most 100 characters), ``amount`` and ``originAmount`` (int, minor units),
``currency`` (ISO code), ``orderId`` (int, P24's transaction number), ``methodId`` (int),
``statement`` (the transfer title) and ``sign``. There is no signature header: ``sign`` is the
SHA-384 hex digest of the JSON of the other fields in that order plus ``"crc"`` (the shop's CRC
key), encoded as PHP's ``json_encode`` with ``JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES``:
no spaces, non-ASCII characters and slashes as they are. The same recipe, over other fields,
signs a registration and a verification (``sign_register``, ``sign_verify``).

A notification is not proof of payment: the merchant must still verify the transaction with
P24 (``PUT /api/v1/transaction/verify``), which is the ``przelewy24`` target's work.

Types are exact: an amount of ``"123"`` or ``123.0`` is refused (400), as P24 never sends one and
the digest would differ. The secrets are CRC keys; several are tried (a rotation). Delivery id:
``<orderId>:<sessionId>``, so a notification P24 sends again is the same delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from shared.webhooks.base import BadRequest, Headers, VerificationFailed, VerifiedDelivery

TOPIC = "transaction.notification"
NOTIFICATION_FIELDS = (
    "merchantId",
    "posId",
    "sessionId",
    "amount",
    "originAmount",
    "currency",
    "orderId",
    "methodId",
    "statement",
)
VERIFY_FIELDS = ("sessionId", "orderId", "amount", "currency")
REGISTER_FIELDS = ("sessionId", "merchantId", "amount", "currency")
INT_FIELDS = frozenset({"merchantId", "posId", "amount", "originAmount", "orderId", "methodId"})
SESSION_ID_MAX = 100  # P24: sessionId maxLength 100
STATEMENT_MAX = 2048  # not documented; bounds what is hashed and kept
MAX_INT = 2**63 - 1  # orderId is an int64
SIGN_HEX_CHARS = 96  # SHA-384
_CURRENCY = re.compile(r"[A-Z]{3}")
_SIGN = re.compile(r"[0-9a-fA-F]{96}")


class NotificationInvalid(ValueError):
    """A body that is not a P24 transaction notification (wrong shape or types)."""


def php_json(doc: Mapping[str, Any]) -> str:
    """``json_encode($doc, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)``: compact, non-ASCII
    and ``/`` unescaped. PHP still escapes U+2028 and U+2029 (without
    ``JSON_UNESCAPED_LINE_TERMINATORS``); control characters are escaped alike by both."""
    text = json.dumps(dict(doc), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _sign(fields: Mapping[str, Any], names: Sequence[str], crc: str) -> str:
    doc = {name: fields[name] for name in names}
    doc["crc"] = crc
    return hashlib.sha384(php_json(doc).encode()).hexdigest()


def sign_notification(fields: Mapping[str, Any], crc: str) -> str:
    """The ``sign`` of a transaction notification with ``fields`` (P24's names), for ``crc``."""
    return _sign(fields, NOTIFICATION_FIELDS, crc)


def sign_verify(fields: Mapping[str, Any], crc: str) -> str:
    """The ``sign`` of a verification: ``sessionId``, ``orderId``, ``amount``, ``currency``."""
    return _sign(fields, VERIFY_FIELDS, crc)


def sign_register(fields: Mapping[str, Any], crc: str) -> str:
    """The ``sign`` of a registration: ``sessionId``, ``merchantId``, ``amount``, ``currency``."""
    return _sign(fields, REGISTER_FIELDS, crc)


@dataclass(frozen=True)
class Notification:
    merchant_id: int
    pos_id: int
    session_id: str
    amount: int  # minor units
    origin_amount: int
    currency: str
    order_id: int  # P24's transaction number
    method_id: int
    statement: str
    sign: str

    def fields(self) -> dict[str, Any]:
        """The signed fields under P24's names, in P24's order."""
        return {
            "merchantId": self.merchant_id,
            "posId": self.pos_id,
            "sessionId": self.session_id,
            "amount": self.amount,
            "originAmount": self.origin_amount,
            "currency": self.currency,
            "orderId": self.order_id,
            "methodId": self.method_id,
            "statement": self.statement,
        }

    def body(self) -> dict[str, Any]:
        return {**self.fields(), "sign": self.sign}


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): PHP could not have encoded it
        return False
    return True


def parse_notification(raw_body: bytes) -> Notification:
    """The notification in ``raw_body``, its types checked exactly (the sign is not checked)."""
    try:
        doc: Any = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise NotificationInvalid("body is not JSON") from None
    if not isinstance(doc, dict):
        raise NotificationInvalid("body is not a JSON object")
    for name in (*NOTIFICATION_FIELDS, "sign"):
        if name not in doc:
            raise NotificationInvalid(f"missing {name}")
    for name in INT_FIELDS:
        value = doc[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            raise NotificationInvalid(f"{name} must be a non-negative integer")
    session_id, currency, statement, sign = doc["sessionId"], doc["currency"], doc["statement"], doc["sign"]
    if (
        not isinstance(session_id, str)
        or not 1 <= len(session_id) <= SESSION_ID_MAX
        or not session_id.isprintable()
        or not _encodable(session_id)
    ):
        raise NotificationInvalid(f"sessionId must be 1-{SESSION_ID_MAX} printable characters")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise NotificationInvalid("currency must be an ISO 4217 code")
    if not isinstance(statement, str) or len(statement) > STATEMENT_MAX or not _encodable(statement):
        raise NotificationInvalid("statement must be text")
    if not isinstance(sign, str):
        raise NotificationInvalid("sign must be a string")
    return Notification(
        merchant_id=doc["merchantId"],
        pos_id=doc["posId"],
        session_id=session_id,
        amount=doc["amount"],
        origin_amount=doc["originAmount"],
        currency=currency,
        order_id=doc["orderId"],
        method_id=doc["methodId"],
        statement=statement,
        sign=sign,
    )


def _crc_usable(crc: object) -> bool:
    return isinstance(crc, str) and bool(crc) and _encodable(crc)


class Przelewy24Verifier:
    scheme: ClassVar[str] = "przelewy24"
    kept_headers: ClassVar[tuple[str, ...]] = ()
    signature_headers: ClassVar[tuple[str, ...]] = ()

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery:
        try:
            notification = parse_notification(raw_body)
        except NotificationInvalid as exc:
            raise BadRequest(str(exc)) from None
        if not _SIGN.fullmatch(notification.sign):
            raise VerificationFailed("sign is not a SHA-384 hex digest")
        given = bytes.fromhex(notification.sign)
        fields = notification.fields()
        matched = False
        for crc in secrets:
            if not _crc_usable(crc):
                continue
            expected = bytes.fromhex(sign_notification(fields, crc))
            matched |= hmac.compare_digest(expected, given)  # no early exit: same work for every key
        if not matched:
            raise VerificationFailed("sign mismatch")
        return VerifiedDelivery(f"{notification.order_id}:{notification.session_id}", topic=TOPIC)
