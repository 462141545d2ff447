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
Writes are conditional on the refill time read, so two invocations never spend the same tokens.
"""

from __future__ import annotations

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
        """Take ``n`` tokens now and return 0, or return how many seconds until they are there."""
        for _ in range(CONTENTION_ATTEMPTS):
            try:
                item = self.ddb.get_item(TableName=self.table, Key=self._key(), ConsistentRead=True).get("Item") or {}
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(f"rate budget read: {type(exc).__name__}") from exc
            now = self.clock()
            blocked = float(item.get("blocked_until", {}).get("N", 0))
            if blocked > now:
                return blocked - now
            at = item.get("refilled_at", {}).get("N")
            tokens = float(item.get("tokens", {}).get("N", self.budget.burst))
            if at is not None:
                tokens = min(float(self.budget.burst), tokens + max(0.0, now - float(at)) * self.budget.per_second)
            if tokens < n:
                return (n - tokens) / self.budget.per_second
            condition = "attribute_not_exists(refilled_at)" if at is None else "refilled_at = :at"
            values = {":t": {"N": repr(tokens - n)}, ":now": {"N": repr(now)}}
            if at is not None:
                values[":at"] = {"N": at}
            try:
                self.ddb.update_item(
                    TableName=self.table,
                    Key=self._key(),
                    UpdateExpression="SET tokens = :t, refilled_at = :now",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                )
                return 0.0
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise StoreUnavailable(f"rate budget write: {exc.response.get('Error', {}).get('Code')}") from exc
            except BotoCoreError as exc:
                raise StoreUnavailable(f"rate budget write: {type(exc).__name__}") from exc
        return 1.0 / self.budget.per_second  # heavy contention: come back after one token's time

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
