"""Local stand-ins of the systems Junction integrates, speaking their documented APIs, and the
registry the generic local code loops over.

Each stand-in declares what only it knows: the secret it fills and the local value (a source's
signing secret, a target's connection credentials), where a source's sample events are
(``tests/events/<system>/``), how a target runs as a process. The local runtime, the
benchmarks and the test harnesses look a system up by the name an integration declares
(``Integration.source`` / ``Target.name``) and never name a provider themselves.

Sources and targets are looked up apart, because one system may be both: Shopify sends order
webhooks (the shop, a sender) and takes inventory writes (the Admin API, a server process); the
ERP takes sales orders and is polled for stock (one server process for both). A source that is a
server process (what a poller reads) declares a ``TargetStandIn``.
Adding a system: its stand-in module with a ``LOCAL`` declaration, and one line in ``_SOURCES``
and/or ``_TARGETS``.
"""

from __future__ import annotations

import http.client
import importlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.declaration import Integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"  # sample payloads, one folder per source system


class Sender(Protocol):
    """Delivers events to a webhook URL the way the source system does (signed, retried)."""

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]: ...

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, float]: ...

    def send(
        self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True, topic: str | None = None
    ) -> Any: ...

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Any: ...


class WebhookPoster:
    """How a sender stand-in puts a request on the wire: one kept-alive connection per thread to
    the webhook URL, opened again once when it was closed under it (TCP_NODELAY: headers and body
    are separate writes)."""

    def __init__(self, webhook_url: str, timeout: float) -> None:
        parts = urlsplit(webhook_url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.timeout = timeout
        self._local = threading.local()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
        """One HTTP attempt: (status, latency ms); status 0 when there was no answer."""
        started = time.perf_counter()
        for fresh in (False, True):
            conn = self._connection(fresh)
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                return response.status, (time.perf_counter() - started) * 1000
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if fresh:
                    break
        return 0, (time.perf_counter() - started) * 1000

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn


@dataclass(frozen=True)
class SourceStandIn:
    """A source system played locally."""

    system: str  # the name integrations use as their ``source``
    fills: str  # name of the SecretRef it fills: the webhook signing secret, JSON {"secrets": [...]}
    signing_secret: str  # the local value (public on purpose: anyone may sign a local request)
    samples: Path  # tests/events/<system>/: payloads as the provider documents them
    event: Callable[[int], dict[str, Any]]  # n -> a realistic event for a distinct business entity n
    sender: Callable[..., Sender]  # (webhook URL, signing secret, **options) -> a sender
    # The target system whose stand-in holds what this source's events speak of (Przelewy24's
    # notifications name transactions its API must know): its root URL reaches the sender as
    # ``api_url``.
    api: str = ""

    def secret_value(self, *extra_secrets: str) -> dict[str, Any]:
        """The secret's value: the local signing secret first, then any older ones still accepted."""
        return {"secrets": [self.signing_secret, *extra_secrets]}

    def sample(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.samples / f"{name}.json").read_text(encoding="utf-8"))
        return loaded


@dataclass(frozen=True)
class TargetStandIn:
    """A target system played locally, as a process of its own."""

    system: str  # the name integrations use (a ``Target.name``, or a polled ``source``)
    module: str  # run as ``python -m <module> --port <port> <args>``
    fills: str  # name of the SecretRef it fills: the connection credentials
    credentials: Callable[[str], dict[str, str]]  # its root URL -> the secret's value
    args: tuple[str, ...] = ()  # flags that make it as strict as the real system
    health_path: str = "/"  # answers once the stand-in is up
    control_path: str = "/_standin"  # state, summary, behaviour (down, slow, rate limited, ...)
    # The count in its control summary (``<control_path>/summary``) that grows by one for each
    # effect an integration makes in it (an ERP's orders): how a benchmark sees an event arrive.
    effect_count: str = ""
    # The source system whose webhooks this process also sends (ShipX posts status changes): the
    # local runtime tells it the webhook URL of that source's integration, token filled in, through
    # ``<control_path>/settings`` {"webhook_url"}.
    notifies: str = ""


# System name -> the module declaring its stand-in, loaded on first use (a stand-in process
# imports only itself, and a module still missing breaks only the integrations that name it).
_SOURCES: dict[str, str] = {
    "shopify": "junction_local.standins.shop",
    "woocommerce": "junction_local.standins.woocommerce",
    "erp": "junction_local.standins.erp",
    "allegro": "junction_local.standins.allegro",
    "stripe": "junction_local.standins.stripe",
    "przelewy24": "junction_local.standins.przelewy24",
    "wms": "junction_local.standins.wms",
    "inpost": "junction_local.standins.inpost_webhooks",
}
_TARGETS: dict[str, str] = {
    "erp": "junction_local.standins.erp",
    "shopify": "junction_local.standins.shopify_admin",
    "allegro": "junction_local.standins.allegro",
    "hubspot": "junction_local.standins.hubspot",
    "shipbob": "junction_local.standins.shipbob",
    "przelewy24": "junction_local.standins.przelewy24_api",
    "inpost": "junction_local.standins.inpost",
    "woocommerce": "junction_local.standins.woocommerce_api",
}
# Every system with a stand-in, as a source or a target or both.
_MODULES: dict[str, tuple[str, ...]] = {
    system: tuple(dict.fromkeys(m for m in (_SOURCES.get(system), _TARGETS.get(system)) if m))
    for system in (*_SOURCES, *_TARGETS)
}


def _load(module: str) -> SourceStandIn | TargetStandIn:
    declared: SourceStandIn | TargetStandIn = importlib.import_module(module).LOCAL
    return declared


def source_standin(system: str) -> SourceStandIn | TargetStandIn:
    """The stand-in of a system as a source: a webhook sender, or a server process a poller reads."""
    if system not in _SOURCES:
        raise KeyError(f"no local source stand-in for {system!r}: add it to _SOURCES in junction_local/standins")
    return _load(_SOURCES[system])


def source(system: str) -> SourceStandIn:
    """The stand-in of a system that sends webhooks."""
    found = source_standin(system)
    if not isinstance(found, SourceStandIn):
        raise TypeError(f"the source stand-in of {system!r} is a server process, not a webhook sender")
    return found


def target(system: str) -> TargetStandIn:
    """The stand-in of a system integrations deliver to (a server process)."""
    if system not in _TARGETS:
        raise KeyError(f"no local target stand-in for {system!r}: add it to _TARGETS in junction_local/standins")
    found = _load(_TARGETS[system])
    if not isinstance(found, TargetStandIn):
        raise TypeError(f"the target stand-in of {system!r} ({_TARGETS[system]}) does not declare a TargetStandIn")
    return found


def targets(integrations: Iterable[Integration]) -> list[TargetStandIn]:
    """The server processes the integrations need, each once, in declaration order: every target
    of every integration, and a polled source (a scheduled integration's source is read over its
    API, so it runs as a process too)."""
    seen: dict[str, TargetStandIn] = {}

    def add(found: TargetStandIn) -> None:
        known = seen.get(found.system)
        if known is None:
            seen[found.system] = found
        elif known.module != found.module:
            raise ValueError(
                f"{found.system!r} is played by two processes ({known.module}, {found.module}): "
                "one system, one stand-in process"
            )

    for integration in integrations:
        for t in integration.targets:
            add(target(t.name))
        if integration.schedule is not None:
            polled = source_standin(integration.source)
            if isinstance(polled, TargetStandIn):
                add(polled)
    return list(seen.values())


def secret_values(integrations: Iterable[Integration], target_urls: Mapping[str, str]) -> dict[str, Any]:
    """The local value of every secret the integrations declare (``Integration.all_secrets``),
    each from the stand-in that fills it among the integration's source and targets.

    ``target_urls`` maps a server stand-in's system to the root URL it listens on."""
    values: dict[str, Any] = {}
    for integration in integrations:
        fillers: list[SourceStandIn | TargetStandIn] = [
            source_standin(integration.source),
            *(target(t.name) for t in integration.targets),
        ]
        for ref in integration.all_secrets:
            if ref.name in values:
                continue
            filler = next((s for s in fillers if s.fills == ref.name), None)
            if filler is None:
                systems = ", ".join(dict.fromkeys([integration.source, *(t.name for t in integration.targets)]))
                raise KeyError(
                    f"no local value for secret {ref.name!r} of {integration.name}: "
                    f"declare it (``fills``) in the stand-in of one of {systems}"
                )
            if isinstance(filler, SourceStandIn):
                values[ref.name] = filler.secret_value()
            else:
                if filler.system not in target_urls:
                    raise KeyError(f"no URL for the {filler.system!r} stand-in")
                values[ref.name] = filler.credentials(target_urls[filler.system])
    return values
