"""The interface every webhook signature scheme implements.

A verifier checks the exact raw bytes of a request against one or more active secrets and
returns the provider's delivery id. It raises only ``VerificationFailed`` (the answer is 401)
or ``BadRequest`` (400): never anything else, whatever the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

MAX_SIGNATURE_HEADER = 4096  # bytes; a longer header is refused before any work is done
MAX_ID_HEADER = 256


class IngressRejection(Exception):
    """A request we refuse. ``public`` is the generic text the sender sees."""

    status = 400
    public = "bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail  # for our logs only; never echoed to the sender


class VerificationFailed(IngressRejection):
    status = 401
    public = "signature verification failed"


class BadRequest(IngressRejection):
    status = 400
    public = "malformed request"


class PayloadTooLarge(IngressRejection):
    status = 413
    public = "payload too large"


@dataclass(frozen=True)
class VerifiedDelivery:
    delivery_id: str
    topic: str | None = None
    timestamp: int | None = None


class Headers:
    """Case-insensitive, read-only view of request headers (first value wins)."""

    def __init__(self, raw: Mapping[str, str] | None) -> None:
        self._h: dict[str, str] = {}
        for key, value in (raw or {}).items():
            if isinstance(key, str) and isinstance(value, str):
                self._h.setdefault(key.lower(), value)

    def get(self, name: str) -> str | None:
        return self._h.get(name.lower())

    def items(self) -> list[tuple[str, str]]:
        return list(self._h.items())


class Verifier(Protocol):
    """A signature scheme. ``kept_headers``: the provider headers (lower case) worth keeping in
    the envelope for the processor and operators; ``signature_headers``: the ones that carry
    signatures, never kept.

    Optional: ``is_ping(headers, raw_body) -> bool`` (``PingAware``), for a provider that checks
    an endpoint with an unsigned request before it delivers; read through ``ping_check``."""

    scheme: ClassVar[str]
    kept_headers: ClassVar[tuple[str, ...]]
    signature_headers: ClassVar[tuple[str, ...]]

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery: ...


class PingAware(Protocol):
    """A scheme whose provider pings an endpoint, unsigned, and keeps the webhook only if the
    answer is a 200 (WooCommerce, when a webhook is saved). A ping has no effect."""

    def is_ping(self, headers: Headers, raw_body: bytes) -> bool: ...


def _never_a_ping(headers: Headers, raw_body: bytes) -> bool:
    return False


def ping_check(verifier: Verifier) -> Callable[[Headers, bytes], bool]:
    """The verifier's ``is_ping``; for a scheme without pings, a check that is always False."""
    check: Callable[[Headers, bytes], bool] | None = getattr(verifier, "is_ping", None)
    return check or _never_a_ping


_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def unix_seconds(value: str) -> int | None:
    """``value`` as unix seconds when it is 1 to 12 ASCII digits, else None. (``str.isdigit``
    and ``int`` accept other scripts' digits and superscripts: "²" would pass one, fail the other.)"""
    return int(value) if _UNIX_SECONDS.fullmatch(value) else None


def delivery_id_from(headers: Headers, name: str, error: type[IngressRejection] = BadRequest) -> str:
    """The provider's delivery id. ``error`` is raised when it is missing or unusable: 400 when
    the id is not covered by the signature, 401 when it is (the request cannot be verified)."""
    value = (headers.get(name) or "").strip()
    if not value:
        raise error(f"missing {name}")
    if len(value) > MAX_ID_HEADER or not value.isprintable():
        raise error(f"unusable {name}")
    return value
