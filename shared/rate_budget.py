"""A request budget per target account, shared by every concurrent invocation: a token bucket in
the state table (``budget#<account>``/``bucket``).

Why a bucket in DynamoDB and not concurrency x pacing: a target's limit is per account (Allegro:
per client id; Shopify: per shop), while invocations come and go with the queue's depth and several
targets may share one account. Pacing each invocation at limit / max_concurrency wastes the limit
whenever fewer run, and breaks when a second integration uses the same account. The bucket costs
two DynamoDB calls per target request (a consistent read and a conditional write), each carrying up
to 250 items' worth of work, so about 0.01 DynamoDB writes per item pushed.

- ``acquire(n)`` takes n tokens, refilled at ``per_second`` up to ``burst``; if they are not there
  yet it waits (within the invocation's time) or raises ``RateLimited`` with how long to wait.
- ``hold(seconds)``: a target answered 429 with ``Retry-After`` (or Shopify's throttle status said
  the bucket is empty): every invocation on the account holds until then, not only the one that
  was told.
Writes are conditional on the item's revision, so two invocations never spend the same tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.declaration import RateBudget
from shared.errors import RateLimited, StoreUnavailable

CONTENTION_ATTEMPTS = 20


class TokenBucket:
    def __init__(
        self,
        ddb: Any,
        table: str,
        budget: RateBudget,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        self.pk, self.sk = state_keys.budget(budget.account)
        self.waited = 0.0  # seconds this client spent waiting for tokens (for metrics)

    def _key(self) -> dict[str, Any]:
        return {"pk": {"S": self.pk}, "sk": {"S": self.sk}}

    def try_take(self, n: float = 1.0) -> float:
        """Take ``n`` units now and return 0, or return how many seconds until they are there."""
        for _ in range(CONTENTION_ATTEMPTS):
            try:
                item = self.ddb.get_item(TableName=self.table, Key=self._key(), ConsistentRead=True).get("Item") or {}
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(f"rate budget read: {type(exc).__name__}") from exc
            now = self.clock()
            blocked = float(item.get("blocked_until", {}).get("N", 0))
            if blocked > now:
                return blocked - now
            plan = self._plan(item, now, n)
            if isinstance(plan, float):
                return plan
            if self._write(item, plan):
                return 0.0
        return self._contended()

    def _plan(self, item: dict[str, Any], now: float, n: float) -> float | dict[str, Any]:
        """Seconds to wait, or the attributes to write for taking ``n`` now."""
        at = item.get("refilled_at", {}).get("N")
        tokens = float(item.get("tokens", {}).get("N", self.budget.burst))
        if at is not None:
            tokens = min(float(self.budget.burst), tokens + max(0.0, now - float(at)) * self.budget.per_second)
        if tokens < n:
            return (n - tokens) / self.budget.per_second
        return {"tokens": {"N": repr(tokens - n)}, "refilled_at": {"N": repr(now)}}

    def _contended(self) -> float:
        return 1.0 / self.budget.per_second  # heavy contention: come back after one unit's time

    def _write(self, item: dict[str, Any], sets: dict[str, Any]) -> bool:
        """Write ``sets`` if the item is still the one read; False if another taker wrote first.
        Conditional on the item's revision, not on a time: two takers in the same instant would
        both match an unchanged time and spend the same units."""
        revision = item.get("revision", {}).get("N")
        names = {f"#a{k}": name for k, name in enumerate(sets)}
        values = {f":a{k}": value for k, value in enumerate(sets.values())}
        values[":next"] = {"N": str(int(revision or 0) + 1)}
        condition = "attribute_not_exists(revision)"
        if revision is not None:
            condition = "revision = :rev"
            values[":rev"] = {"N": revision}
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._key(),
                UpdateExpression="SET " + ", ".join(f"#a{k} = :a{k}" for k in range(len(sets))) + ", revision = :next",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"rate budget write: {exc.response.get('Error', {}).get('Code')}") from exc
            return False
        except BotoCoreError as exc:
            raise StoreUnavailable(f"rate budget write: {type(exc).__name__}") from exc

    def acquire(self, n: float = 1.0, *, max_wait: float) -> None:
        """Wait for ``n`` tokens for at most ``max_wait`` seconds; ``RateLimited`` beyond that."""
        waited = 0.0
        while True:
            wait = self.try_take(n)
            if wait <= 0:
                self.waited += waited
                return
            if waited + wait > max_wait:
                self.waited += waited
                raise RateLimited(
                    f"rate budget {self.budget.account!r} spent; tokens in {wait:.1f} s", retry_after=wait
                )
            self.sleep(wait)
            waited += wait

    def hold(self, seconds: float) -> None:
        """Hold every invocation on the account for ``seconds`` (a 429's Retry-After)."""
        until = self.clock() + seconds
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._key(),
                UpdateExpression="SET blocked_until = :u",
                ConditionExpression="attribute_not_exists(blocked_until) OR blocked_until < :u",
                ExpressionAttributeValues={":u": {"N": repr(until)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"rate budget hold: {type(exc).__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"rate budget hold: {type(exc).__name__}") from exc


class SlidingWindow(TokenBucket):
    """At most ``limit`` units in any ``window_seconds``: the shape of a limit counted over a
    sliding window, as Allegro counts offer changes ("9,000 a minute"). A token bucket must keep
    its burst small to never exceed such a limit and so runs below it; this counter may spend
    the whole limit at once and then exactly what leaves the window, which is the least time the
    limit allows. Per-second counts of the last window are kept in the budget's one item (at
    most ``window_seconds`` entries), written conditionally on its revision."""

    def __init__(
        self,
        ddb: Any,
        table: str,
        account: str,
        limit: int,
        window_seconds: int = 60,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(ddb, table, RateBudget(account, limit / window_seconds, limit), clock=clock, sleep=sleep)
        self.limit = limit
        self.window = window_seconds

    def try_take(self, n: float = 1.0) -> float:
        if n > self.limit:
            raise ValueError(f"{n} units never fit a window of {self.limit}")
        return super().try_take(n)

    def _plan(self, item: dict[str, Any], now: float, n: float) -> float | dict[str, Any]:
        # A slot holds what was taken during its second; it leaves the window a whole window
        # after that second ends (never early, whatever the fraction it was taken at).
        slots = {
            int(s): float(c)
            for s, c in json.loads(item.get("slots", {}).get("S", "{}")).items()
            if int(s) + 1 + self.window > now
        }
        used = sum(slots.values())
        if used + n > self.limit:
            for s in sorted(slots):  # oldest first: when enough has left the window
                used -= slots[s]
                if used + n <= self.limit:
                    return max(0.05, s + 1 + self.window - now)
            return float(self.window)
        second = int(now)
        slots[second] = slots.get(second, 0.0) + n
        return {"slots": {"S": json.dumps({str(s): c for s, c in slots.items()}, separators=(",", ":"))}}

    def _contended(self) -> float:
        return 0.2  # heavy contention: come back shortly
