"""A circuit breaker per integration and target, shared by every concurrent invocation.

State lives in one item of the state table (``state_keys.breaker``):

- ``closed``: deliveries run. Each transient target failure (timeout, 5xx, refused login) adds
  one to ``failures``; a success resets it. At ``failure_threshold`` consecutive failures the
  breaker opens for ``open_seconds``.
- ``open``: nobody calls the target. Messages wait (their visibility is set to the rest of the
  open period); waiting is not an attempt and does not use up the retry horizon's backoff.
- ``half_open``: once the open period is over, one invocation wins a conditional write and
  probes with its next delivery. Success closes the breaker; failure opens it again for twice
  as long (up to ``max_open_seconds``). If the prober dies, its probe lease lapses and another
  invocation probes.

Every transition is a conditional write, so concurrent invocations agree on one state. A
failure to read or write the breaker never blocks delivery: it fails open (closed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.aws import item_from_ddb
from shared.declaration import CircuitBreakerSettings

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerView:
    state: str = CLOSED
    failures: int = 0
    open_until: float = 0.0
    open_seconds: float = 0.0
    probe_until: float = 0.0

    def wait_seconds(self, now: float) -> float:
        """How long a message should wait before the target may be called again (0: call it)."""
        if self.state == OPEN and now < self.open_until:
            return self.open_until - now
        if self.state == HALF_OPEN and now < self.probe_until:
            return self.probe_until - now
        return 0.0


class CircuitBreaker:
    def __init__(
        self,
        ddb: Any,
        table: str,
        integration: str,
        target: str,
        settings: CircuitBreakerSettings,
        *,
        probe_seconds: float,
        clock: Callable[[], float] = time.time,
        on_open: Callable[[float], None] | None = None,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.key = state_keys.breaker(integration, target)
        self.settings = settings
        self.probe_seconds = probe_seconds
        self.clock = clock
        self.on_open = on_open or (lambda _seconds: None)

    def _update(self, expression: str, condition: str | None, values: dict[str, Any]) -> dict[str, Any] | None:
        params: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": self.key[0]}, "sk": {"S": self.key[1]}},
            "UpdateExpression": expression,
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if condition:
            params["ConditionExpression"] = condition
        try:
            return item_from_ddb(self.ddb.update_item(**params).get("Attributes") or {})
        except (ClientError, BotoCoreError):
            return None  # lost a race or the store is down: the state stays as others wrote it

    def read(self) -> BreakerView:
        try:
            item = self.ddb.get_item(
                TableName=self.table, Key={"pk": {"S": self.key[0]}, "sk": {"S": self.key[1]}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError):
            return BreakerView()
        return _view(item_from_ddb(item) if item else {})

    def try_probe(self, view: BreakerView) -> bool:
        """Become the one invocation that probes an open breaker whose period is over."""
        now = self.clock()
        if view.state == CLOSED or view.wait_seconds(now) > 0:
            return False
        done = self._update(
            "SET #s = :h, probe_until = :until",
            "(#s = :o AND open_until <= :now) OR (#s = :h AND probe_until <= :now)",
            {
                ":h": {"S": HALF_OPEN},
                ":o": {"S": OPEN},
                ":until": {"N": str(round(now + self.probe_seconds, 3))},
                ":now": {"N": str(round(now, 3))},
            },
        )
        return done is not None

    def success(self, view: BreakerView) -> None:
        """A delivery reached the target: close the breaker (written only when it was not clean)."""
        if view.state == CLOSED and view.failures == 0:
            return
        self._update(
            "SET #s = :c, failures = :zero, open_seconds = :zero REMOVE open_until, probe_until",
            None,
            {":c": {"S": CLOSED}, ":zero": {"N": "0"}},
        )

    def failure(self, view: BreakerView, *, probing: bool) -> BreakerView:
        """A transient target failure; returns the breaker as it now stands."""
        now = self.clock()
        s = self.settings
        if probing or view.state == HALF_OPEN:
            seconds = min(s.max_open_seconds, max(s.open_seconds, view.open_seconds * 2))
            return self._open(now, seconds, "#s = :h", {":h": {"S": HALF_OPEN}}) or view
        counted = self._update(
            "SET failures = if_not_exists(failures, :zero) + :one, #s = if_not_exists(#s, :c)",
            None,
            {":zero": {"N": "0"}, ":one": {"N": "1"}, ":c": {"S": CLOSED}},
        )
        if counted is None:
            return view
        current = _view(counted)
        if current.state == CLOSED and current.failures >= s.failure_threshold:
            return (
                self._open(
                    now,
                    s.open_seconds,
                    "#s = :c AND failures >= :n",
                    {":c": {"S": CLOSED}, ":n": {"N": str(s.failure_threshold)}},
                )
                or current
            )
        return current

    def _open(self, now: float, seconds: float, condition: str, values: dict[str, Any]) -> BreakerView | None:
        opened = self._update(
            "SET #s = :o, open_until = :until, open_seconds = :secs, opened_at = :now, failures = :zero "
            "REMOVE probe_until",
            condition,
            {
                ":o": {"S": OPEN},
                ":until": {"N": str(round(now + seconds, 3))},
                ":secs": {"N": str(seconds)},
                ":now": {"N": str(round(now, 3))},
                ":zero": {"N": "0"},
                **values,
            },
        )
        if opened is None:
            return None
        self.on_open(seconds)
        return _view(opened)


def _view(item: dict[str, Any]) -> BreakerView:
    return BreakerView(
        state=str(item.get("state") or CLOSED),
        failures=int(item.get("failures") or 0),
        open_until=float(item.get("open_until") or 0),
        open_seconds=float(item.get("open_seconds") or 0),
        probe_until=float(item.get("probe_until") or 0),
    )
