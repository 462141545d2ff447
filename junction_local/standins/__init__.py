"""Local stand-ins of the systems Junction integrates, speaking their documented APIs, and the
registry the generic local code loops over.

Each stand-in declares what only it knows: the secret it fills and the local value (a source's
signing secret, a target's connection credentials), where a source's sample events are
(``tests/events/<system>/``), how a target runs as a process. The local runtime, the
benchmarks and the test harnesses look a system up by the name an integration declares
(``Integration.source`` / ``Integration.target``) and never name a provider themselves.
Adding a system: its stand-in module with a ``LOCAL`` declaration, and one line in ``_MODULES``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.declaration import Integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"  # sample payloads, one folder per source system


class Sender(Protocol):
    """Delivers events to a webhook URL the way the source system does (signed, retried)."""

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]: ...

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, float]: ...

    def send(self, payload: dict[str, Any], *, delivery_id: str | None = None, retry: bool = True) -> Any: ...

    def send_raw(self, body: bytes, headers: dict[str, str]) -> Any: ...


@dataclass(frozen=True)
class SourceStandIn:
    """A source system played locally."""

    system: str  # the name integrations use as their ``source``
    fills: str  # name of the SecretRef it fills: the webhook signing secret, JSON {"secrets": [...]}
    signing_secret: str  # the local value (public on purpose: anyone may sign a local request)
    samples: Path  # tests/events/<system>/: payloads as the provider documents them
    event: Callable[[int], dict[str, Any]]  # n -> a realistic event for a distinct business entity n
    sender: Callable[..., Sender]  # (webhook URL, signing secret, **options) -> a sender

    def secret_value(self, *extra_secrets: str) -> dict[str, Any]:
        """The secret's value: the local signing secret first, then any older ones still accepted."""
        return {"secrets": [self.signing_secret, *extra_secrets]}

    def sample(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.samples / f"{name}.json").read_text(encoding="utf-8"))
        return loaded


@dataclass(frozen=True)
class TargetStandIn:
    """A target system played locally, as a process of its own."""

    system: str  # the name integrations use as their ``target``
    module: str  # run as ``python -m <module> --port <port> <args>``
    fills: str  # name of the SecretRef it fills: the connection credentials
    credentials: Callable[[str], dict[str, str]]  # its root URL -> the secret's value
    args: tuple[str, ...] = ()  # flags that make it as strict as the real system
    health_path: str = "/"  # answers once the stand-in is up
    control_path: str = "/_standin"  # state, summary, behaviour (down, slow, rate limited, ...)
    # The count in its control summary (``<control_path>/summary``) that grows by one for each
    # effect an integration makes in it (an ERP's orders): how a benchmark sees an event arrive.
    effect_count: str = ""


def _declared(module: str) -> Callable[[], SourceStandIn | TargetStandIn]:
    def load() -> SourceStandIn | TargetStandIn:
        declared: SourceStandIn | TargetStandIn = importlib.import_module(module).LOCAL
        return declared

    return load


# System name -> its declaration, loaded on first use (a stand-in process imports only itself).
_MODULES: dict[str, Callable[[], SourceStandIn | TargetStandIn]] = {
    "shopify": _declared("junction_local.standins.shop"),
    "erp": _declared("junction_local.standins.erp"),
}


def standin(system: str) -> SourceStandIn | TargetStandIn:
    if system not in _MODULES:
        raise KeyError(f"no local stand-in for {system!r}: add its module to junction_local/standins/__init__.py")
    return _MODULES[system]()


def source(system: str) -> SourceStandIn:
    found = standin(system)
    if not isinstance(found, SourceStandIn):
        raise TypeError(f"the stand-in of {system!r} is not a source")
    return found


def target(system: str) -> TargetStandIn:
    found = standin(system)
    if not isinstance(found, TargetStandIn):
        raise TypeError(f"the stand-in of {system!r} is not a target")
    return found


def targets(integrations: Iterable[Integration]) -> list[TargetStandIn]:
    """The target stand-ins the integrations need, each once, in declaration order."""
    seen: dict[str, TargetStandIn] = {}
    for integration in integrations:
        if integration.target not in seen:
            seen[integration.target] = target(integration.target)
    return list(seen.values())


def secret_values(integrations: Iterable[Integration], target_urls: Mapping[str, str]) -> dict[str, Any]:
    """The local value of every secret the integrations declare, from their stand-ins' declarations.

    ``target_urls`` maps a target system to the root URL its stand-in listens on."""
    values: dict[str, Any] = {}
    for integration in integrations:
        fillers: list[SourceStandIn | TargetStandIn] = [standin(integration.source), standin(integration.target)]
        for ref in integration.all_secrets:
            if ref.name in values:
                continue
            filler = next((s for s in fillers if s.fills == ref.name), None)
            if filler is None:
                raise KeyError(
                    f"no local value for secret {ref.name!r} of {integration.name}: "
                    f"declare it in the stand-in of {integration.source!r} or {integration.target!r}"
                )
            if isinstance(filler, SourceStandIn):
                values[ref.name] = filler.secret_value()
            else:
                if filler.system not in target_urls:
                    raise KeyError(f"no URL for the {filler.system!r} stand-in")
                values[ref.name] = filler.credentials(target_urls[filler.system])
    return values
