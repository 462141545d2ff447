"""Payment provider events mapped to one canonical payment event.

- **Stripe** (signed webhook event ``{"id", "type", "data": {"object": ...}}``):
  ``payment_intent.succeeded`` is a payment of the PaymentIntent's ``amount_received``;
  ``charge.refunded`` is a refund of the Charge's newest refund in ``refunds.data`` (each refund
  of a charge is announced by its own ``charge.refunded``, and each makes one refund document,
  keyed by its id). From API version 2022-11-15 on, Stripe leaves ``refunds`` out of the Charge;
  then the event says only the charge's total refunded so far (``amount_refunded``): it becomes a
  refund *up to* that total (``cumulative``, keyed ``refunded-to-<total>``), whose document is the
  difference from what the ERP already holds, so however the events of several partial refunds
  are ordered or repeated, the ERP ends at Stripe's total. The order is
  ``metadata.order_reference`` (``woocommerce:727``), or, as the WooCommerce Stripe Gateway
  writes it, ``metadata.order_id`` with ``metadata.site_url`` -> ``woocommerce:<order_id>``.
  Every other event type is not routed (None: no effect).
- **Przelewy24** (a transaction notification, then the verify hop's ids in
  ``envelope.upstream``): a payment of the verified amount. The shop sets ``sessionId`` to the
  order reference, optionally followed by ``#<suffix>`` for a repeated attempt. Nothing is paid
  until the verify hop said ``p24_verified`` "yes", and its amount, currency and ids must be the
  notification's.

Amounts arrive in minor units (integers) and become exact ``Decimal`` amounts by the currency's
exponent (``to_decimal``), never through a float. A malformed event is ``ValidationFailed``,
dead-lettered with a message saying what is wrong.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from shared.envelope import Envelope
from shared.errors import MalformedEnvelope, ValidationFailed
from shared.models import Canonical, order_entity_id

Kind = Literal["payment", "refund"]
Provider = Literal["stripe", "przelewy24"]

# Minor units per currency, as Stripe counts them: zero-decimal and three-decimal currencies;
# every other ISO 4217 currency has two (PLN, EUR, USD, GBP, CZK, ...). ISK, HUF, TWD and UGX
# travel at Stripe in a two-decimal representation, so two is right for them here.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
ROUTED_STRIPE_TYPES = ("payment_intent.succeeded", "charge.refunded")
# A reference is "<source>:<source id>"; a P24 session id may add "#<suffix>" for a retried payment.
_REFERENCE = re.compile(r"(?P<source>[a-z][a-z0-9_]{0,30}):(?P<id>[A-Za-z0-9._\-]{1,64})")
_SESSION = re.compile(rf"(?P<reference>{_REFERENCE.pattern})(?:#[A-Za-z0-9._\-]{{1,30}})?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def exponent(currency: str) -> int:
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """``12345`` PLN -> ``Decimal("123.45")``; ``500`` JPY -> ``Decimal("500")``. Exact."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("an amount in minor units is an integer")
    return Decimal(amount_minor).scaleb(-exponent(currency))


SESSION_MAX = 100  # characters of a P24 sessionId


def order_reference_of_session(session_id: str) -> str | None:
    """The order reference a P24 ``sessionId`` names (``woocommerce:727#2`` -> ``woocommerce:727``),
    or None when the session is not one."""
    if len(session_id) > SESSION_MAX:
        return None
    match = _SESSION.fullmatch(session_id)
    return match.group("reference") if match else None


class PaymentEvent(Canonical):
    kind: Kind
    provider: Provider
    provider_payment_id: str = Field(min_length=1, max_length=80)  # pi_..., or P24's orderId
    refund_id: str | None = Field(default=None, min_length=1, max_length=80)  # refunds only: re_...
    # A refund that says the payment's total refunded so far (``amount_minor``), not one refund.
    cumulative: bool = False
    order_reference: str  # "woocommerce:727"
    amount_minor: int = Field(gt=0)
    currency: str  # upper-case ISO 4217
    occurred_at: datetime

    @field_validator("order_reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        if _REFERENCE.fullmatch(value) is None:
            raise ValueError("an order reference is '<source>:<source id>'")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if _CURRENCY.fullmatch(value) is None:
            raise ValueError("a currency is a three-letter ISO 4217 code")
        return value.upper()

    @property
    def amount(self) -> Decimal:
        return to_decimal(self.amount_minor, self.currency)

    @property
    def payment_reference(self) -> str:
        """The payment's unique reference (the ERP document's U_JunctionRef): ``stripe:pi_...``."""
        return f"{self.provider}:{self.provider_payment_id}"

    @property
    def reference(self) -> str:
        """This effect's reference: the payment's, or ``<payment>#refund:<refund id>``."""
        return self.payment_reference if self.kind == "payment" else f"{self.payment_reference}#refund:{self.refund_id}"

    @property
    def business_key(self) -> str:
        return f"{self.payment_reference}#payment" if self.kind == "payment" else self.reference

    @property
    def entity_id(self) -> str:
        return order_entity_id(self.order_reference)


def payment_from_envelope(envelope: Envelope) -> PaymentEvent | None:
    """The envelope's payment event; None for an event that is not routed (no effect)."""
    ids = {"delivery_id": envelope.delivery_id}
    try:
        body = envelope.payload()
    except MalformedEnvelope:
        raise ValidationFailed("payment event body is not JSON", entity_ids=ids) from None
    if not isinstance(body, dict):
        raise ValidationFailed("payment event body is not a JSON object", entity_ids=ids)
    if envelope.source == "stripe":
        fields = _stripe(body, ids)
    elif envelope.source == "przelewy24":
        fields = _przelewy24(body, envelope.upstream, ids, envelope.received_at)
    else:
        raise ValidationFailed(f"no payment mapping for source {envelope.source!r}", entity_ids=ids)
    if fields is None:
        return None
    try:
        return PaymentEvent(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValidationFailed(f"payment event is not valid: {problems}", entity_ids=ids) from None


# -- Stripe ------------------------------------------------------------------------------------
def _stripe(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any] | None:
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ValidationFailed("Stripe event has no type", entity_ids=ids)
    if kind not in ROUTED_STRIPE_TYPES:
        return None
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValidationFailed(f"Stripe {kind} event has no data.object", entity_ids=ids)
    if kind == "payment_intent.succeeded":
        return {
            "kind": "payment",
            "provider": "stripe",
            "provider_payment_id": _text(obj, "id", kind, ids, prefix="pi_"),
            "order_reference": _stripe_order(obj, kind, ids),
            "amount_minor": _minor(obj, "amount_received", kind, ids),
            "currency": _text(obj, "currency", kind, ids),
            "occurred_at": _moment(body.get("created"), kind, ids),
        }
    refunds = obj.get("refunds")
    listed = refunds.get("data") if isinstance(refunds, dict) else None
    if refunds is None:  # API versions from 2022-11-15: the total refunded so far, not the refund
        total = _minor(obj, "amount_refunded", kind, ids)
        return {
            "kind": "refund",
            "provider": "stripe",
            "provider_payment_id": _text(obj, "payment_intent", kind, ids, prefix="pi_"),
            "refund_id": f"refunded-to-{total}",
            "cumulative": True,
            "order_reference": _stripe_order(obj, kind, ids),
            "amount_minor": total,
            "currency": _text(obj, "currency", kind, ids),
            "occurred_at": _moment(body.get("created"), kind, ids),
        }
    if not isinstance(listed, list) or not listed or not all(isinstance(r, dict) for r in listed):
        raise ValidationFailed("Stripe charge.refunded has a refunds list without refunds", entity_ids=ids)
    refund = max(listed, key=lambda r: r.get("created") if isinstance(r.get("created"), int) else 0)
    if refund.get("status") in ("failed", "canceled"):
        return None  # no money went back
    currency = _text(refund, "currency", "refund", ids) if "currency" in refund else _text(obj, "currency", kind, ids)
    return {
        "kind": "refund",
        "provider": "stripe",
        "provider_payment_id": _text(obj, "payment_intent", kind, ids, prefix="pi_"),
        "refund_id": _text(refund, "id", "refund", ids, prefix="re_"),
        "order_reference": _stripe_order(obj, kind, ids),
        "amount_minor": _minor(refund, "amount", "refund", ids),
        "currency": currency,
        "occurred_at": _moment(refund.get("created", body.get("created")), kind, ids),
    }


def _stripe_order(obj: dict[str, Any], kind: str, ids: dict[str, str]) -> str:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    reference = metadata.get("order_reference")
    if isinstance(reference, str) and reference:
        return reference
    order_id = metadata.get("order_id")
    if isinstance(order_id, str | int) and not isinstance(order_id, bool) and metadata.get("site_url"):
        return f"woocommerce:{order_id}"  # the WooCommerce Stripe Gateway's metadata
    raise ValidationFailed(
        f"Stripe {kind} names no order: metadata.order_reference (or the WooCommerce gateway's "
        "metadata.order_id and site_url) is missing",
        entity_ids=ids,
    )


# -- Przelewy24 --------------------------------------------------------------------------------
def _przelewy24(
    body: dict[str, Any], upstream: dict[str, str], ids: dict[str, str], received_at: str
) -> dict[str, Any]:
    what = "Przelewy24 notification"
    if upstream.get("p24_verified") != "yes":
        raise ValidationFailed(
            f"{what} not verified by Przelewy24 (p24_verified is not 'yes'): never paid unverified", entity_ids=ids
        )
    session = _text(body, "sessionId", what, ids)
    reference = order_reference_of_session(session)
    if reference is None:
        raise ValidationFailed(f"{what} sessionId is not an order reference", entity_ids=ids)
    order_id = body.get("orderId")
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
        raise ValidationFailed(f"{what} orderId is not a positive integer", entity_ids=ids)
    amount = _minor(body, "amount", what, ids)
    currency = _text(body, "currency", what, ids).upper()
    verified = {
        "p24_order_id": str(order_id),
        "p24_session_id": session,
        "amount_minor": str(amount),
        "currency": currency,
        "order_reference": reference,
    }
    differ = sorted(k for k, v in verified.items() if k in upstream and upstream[k] != v)
    missing = sorted(k for k in ("p24_order_id", "amount_minor", "currency") if k not in upstream)
    if differ or missing:
        raise ValidationFailed(
            f"{what} differs from what Przelewy24 verified ({', '.join(differ + missing)})",
            entity_ids=ids,
            details={"fields": differ + missing},
        )
    return {
        "kind": "payment",
        "provider": "przelewy24",
        "provider_payment_id": str(order_id),
        "order_reference": reference,
        "amount_minor": amount,
        "currency": currency,
        "occurred_at": _received(received_at),
    }


# -- fields ------------------------------------------------------------------------------------
def _text(obj: dict[str, Any], name: str, what: str, ids: dict[str, str], *, prefix: str = "") -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip() or not value.startswith(prefix):
        shape = f" starting with {prefix!r}" if prefix else ""
        raise ValidationFailed(f"{what} has no {name} (a string{shape})", entity_ids=ids, details={"field": name})
    return value.strip()


def _minor(obj: dict[str, Any], name: str, what: str, ids: dict[str, str]) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed(
            f"{what} {name} is not a positive integer of minor units", entity_ids=ids, details={"field": name}
        )
    return value


def _received(value: str) -> datetime:
    """When ingress took the notification (P24 sends no time of its own)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(value: Any, what: str, ids: dict[str, str]) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(f"{what} has no created time (epoch seconds)", entity_ids=ids)
    return datetime.fromtimestamp(value, UTC)
