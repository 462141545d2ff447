"""HTTP delivery helpers: one place that turns transport failures and status codes into our
error types (by type and status, never by message text), and parses ``Retry-After``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx

from shared.errors import CredentialsRejected, RateLimited, TargetRejected, TargetUnavailable

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=10.0, pool=3.0)


def client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.Client:
    """The HTTP client connectors use: explicit timeouts, kept-alive connections, TCP_NODELAY
    (requests go out as separate header and body writes, which Nagle's algorithm would delay)."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], retries=0)
    return httpx.Client(timeout=timeout, transport=transport)


MAX_RETRY_AFTER = 12 * 3600.0  # SQS visibility timeout ceiling


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date; None when absent or unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone accepts '²' and other scripts' digits
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    delta = when.timestamp() - (now if now is not None else time.time())
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def classify_response(response: httpx.Response, *, entity_ids: dict[str, str], target: str) -> None:
    """Raise the right error for a failed response; return quietly for 2xx/3xx."""
    status = response.status_code
    if status < 400:
        return
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    details: dict[str, Any] = {"status": status, "target": target}
    if status == 429:
        raise RateLimited(
            f"{target} rate limited (429)", retry_after=retry_after, entity_ids=entity_ids, details=details
        )
    if status >= 500 or status == 408:
        raise TargetUnavailable(
            f"{target} unavailable ({status})",
            retry_after=retry_after,
            entity_ids=entity_ids,
            details=details,
        )
    raise TargetRejected(f"{target} rejected the request ({status})", entity_ids=entity_ids, details=details)


def transport_error(exc: httpx.TransportError, *, entity_ids: dict[str, str], target: str) -> TargetUnavailable:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return TargetUnavailable(
        f"{target} {kind} ({type(exc).__name__})", entity_ids=entity_ids, details={"target": target}
    )


S = TypeVar("S")


class HttpConnector(Generic[S]):
    """What every connector's client shares: its settings, read again (``reload_settings``) when
    the target refuses them, so rotated credentials are picked up without a restart; a kept-alive
    HTTP client; and per-call timeouts bounded by the delivery's deadline (``bounded``)."""

    def __init__(self, settings: S | Callable[[bool], S], http: httpx.Client | None = None) -> None:
        self._source: Callable[[bool], S] = settings if callable(settings) else (lambda _refresh: settings)
        self.settings: S = self._source(False)
        self.http = http or client(DEFAULT_TIMEOUT)
        self._local = threading.local()

    def reload_settings(self) -> S:
        self.settings = self._source(True)
        return self.settings

    def with_credentials(
        self,
        send: Callable[[], httpx.Response],
        ids: dict[str, str],
        *,
        target: str,
        refused: str,
        statuses: tuple[int, ...] = (401, 403),
        details: Callable[[httpx.Response], dict[str, Any]] | None = None,
    ) -> httpx.Response:
        """``send()``; when the target refuses our credentials (``statuses``), the settings are
        read again and the request sent once more (``send`` builds it from ``self.settings``, so
        a rotated secret is used). Refused again: ``CredentialsRejected`` with ``refused``."""
        response = send()
        if response.status_code in statuses:
            self.reload_settings()
            response = send()
            if response.status_code in statuses:
                raise CredentialsRejected(
                    refused,
                    entity_ids=ids,
                    details=details(response) if details else {"status": response.status_code, "target": target},
                )
        return response

    @contextmanager
    def bounded(self, timeout: Callable[[float], float]) -> Iterator[None]:
        """Within the block, every call's timeout is ``timeout(default)``: a delivery passes its
        ``Attempt.timeout`` so its calls end before the invocation does. Nested blocks restore
        the outer bound."""
        outer = getattr(self._local, "timeout", None)
        self._local.timeout = timeout
        try:
            yield
        finally:
            self._local.timeout = outer

    def call_timeout(self) -> httpx.Timeout:
        """The timeout of the next call: the client's read timeout, cut to what the bound leaves."""
        bound = getattr(self._local, "timeout", None)
        configured = self.http.timeout
        read = configured.read or 10.0
        seconds = bound(read) if bound else read
        return httpx.Timeout(seconds, connect=min(seconds, configured.connect or 3.0))

    def close(self) -> None:
        self.http.close()
