"""What every stock target does with a message of stock changes, before its own API call.

1. Read the message (a chunk of one poller page: SKU, version, stock per warehouse).
2. The channel's sellable quantity per SKU (rules.py).
3. The SKU's id at the channel from the ID map; a SKU the channel's catalogue does not have, even
   after a refresh, is a business error: dead-lettered on its own as ``unmapped_sku``, never retried.
4. The version gate: a level older than the last one let through for the SKU is dropped (stale).
5. ``push`` (the channel's part) sends what passed, knowing the level the channel last took.
6. What the channel took is confirmed to the gate (not what it refused).

The catalogue (ID map) is refreshed when a SKU is missing (at most once a minute per target, by
one invocation at a time) and at least every ``CATALOGUE_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.envelope import Envelope
from shared.errors import InProgressElsewhere, StoreUnavailable, ValidationFailed
from shared.polling import CHANGES_TOPIC
from shared.processing import Attempt, FlowContext, Prepared
from shared.rate_budget import TokenBucket
from shared.sync_state import IdMap, VersionGate

from .rules import RULES, sellable

CATALOGUE_MAX_AGE_SECONDS = 6 * 3600
CATALOGUE_RETRY_SECONDS = 60  # a missing SKU refreshes the catalogue at most this often
CATALOGUE_POLL_SECONDS = 1.0
CATALOGUE_MARKER = "#catalogue"  # the ID map's own bookkeeping item (no SKU starts with '#')


@dataclass(frozen=True)
class Level:
    sku: str
    version: str
    quantity: int  # sellable on this channel
    item: dict[str, Any]  # the change as it came, for a dead letter of just this SKU


@dataclass(frozen=True)
class Mapped:
    level: Level
    target_id: str
    previous: int | None  # the quantity last let through the gate, if any


class StockTarget:
    """Base of the stock flows; subclasses implement ``catalogue`` and ``push``."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.channel = ctx.target.name
        self.rule = RULES[self.channel]
        self.clock = ctx.clock
        self.gate = VersionGate(ctx.ddb, ctx.state_table, ctx.integration.name, self.channel, clock=ctx.clock)
        self.id_map = IdMap(ctx.ddb, ctx.state_table, ctx.integration.name, self.channel)
        self.budget = (
            TokenBucket(ctx.ddb, ctx.state_table, ctx.target.rate, clock=ctx.clock) if ctx.target.rate else None
        )

    # -- the channel's part ---------------------------------------------------------------------
    def catalogue(self) -> Iterable[tuple[str, str]]:
        """Every (SKU, id at the channel) the channel has."""
        raise NotImplementedError

    def push(self, mapped: list[Mapped], attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError

    # What ``Mapped.previous`` is: the level the channel last took ("taken", kept by confirming
    # after each push), or the level last let through the gate ("let_through", no second write;
    # for a channel whose compare-and-set finds out when that level was never applied).
    COMPARES_WITH = "taken"

    def confirms(self, mapped: Mapped) -> bool:
        """Whether the channel's taking this level must be recorded (one more write per SKU)."""
        return True

    # -- Flow ---------------------------------------------------------------------------------
    def prepare(self, envelope: Envelope) -> Prepared:
        ids = {"delivery_id": envelope.delivery_id}
        if envelope.topic != CHANGES_TOPIC:
            raise ValidationFailed(f"unexpected topic {envelope.topic!r}", entity_ids=ids)
        try:
            doc = envelope.payload()
            changes = doc["changes"]
            if not isinstance(changes, list) or not changes:
                raise TypeError("no changes")
            levels = [self._level(c) for c in changes]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationFailed(
                f"malformed stock message: {type(exc).__name__}: {exc}"[:300], entity_ids=ids
            ) from None
        # The content decides the key: a page re-read after a poller crash makes the same messages
        # (the versions' read times differ, the stamps and levels do not).
        content = hashlib.sha256(
            repr([(lv.sku, lv.item.get("stamp"), lv.item.get("data")) for lv in levels]).encode()
        ).hexdigest()[:32]
        return Prepared(
            business_key=f"stock:{content}",
            entity_id=f"stock-batch:{content}",
            fingerprint=content,
            entity_ids={"batch": content, "skus": str(len(levels)), "first_sku": levels[0].sku},
            data=levels,
        )

    def _level(self, change: dict[str, Any]) -> Level:
        sku, version = change["key"], change["version"]
        if not isinstance(sku, str) or not sku or not isinstance(version, str) or not version:
            raise ValueError("a change needs a key and a version")
        warehouses = change["data"]["warehouses"]
        if not isinstance(warehouses, dict):
            raise TypeError("warehouses is not an object")
        return Level(sku, version, sellable(warehouses, self.rule), change)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        levels: list[Level] = prepared.data
        ids = dict(prepared.entity_ids)
        # The newest level per SKU in this message (a chunk never repeats one, but be sure).
        newest: dict[str, Level] = {}
        for level in levels:
            if level.sku not in newest or level.version > newest[level.sku].version:
                newest[level.sku] = level
        found = self._ids(list(newest), attempt)
        unmapped = [s for s in newest if s not in found]
        for sku in unmapped:
            level = newest.pop(sku)
            attempt.reject(
                sku,
                level.item,
                "unmapped_sku",
                f"SKU {sku} is not in the {self.channel} catalogue (ID map): add it there, then redrive",
            )
        entries = [(lv.sku, lv.version, {"q": lv.quantity}) for lv in newest.values()]
        passed: list[Mapped] = []
        stale = 0
        for level, gate in zip(newest.values(), self.gate.enter_many(entries), strict=True):
            if not gate.passed:
                stale += 1
                continue
            known = gate.let_through if self.COMPARES_WITH == "let_through" else gate.previous
            previous = (known or {}).get("q")
            passed.append(Mapped(level, found[level.sku], int(previous) if previous is not None else None))
        result = self.push(passed, attempt, ids) if passed else {}
        # What the channel took is what the next level is compared with (not what was let
        # through: a push that fails is never applied, and a retry or a newer level decides anew).
        refused = {r.key for r in attempt.rejected}
        self.gate.confirm_many(
            [
                (m.level.sku, m.level.version, {"q": m.level.quantity})
                for m in passed
                if m.level.sku not in refused and self.confirms(m)
            ]
        )
        return {**result, "pushed": str(len(passed)), "stale": str(stale), "unmapped": str(len(unmapped))}

    # -- ID map ---------------------------------------------------------------------------------
    def _ids(self, skus: list[str], attempt: Attempt) -> dict[str, str]:
        found = self.id_map.get_many(skus)
        missing = [s for s in skus if s not in found]
        stale_catalogue = missing or self._catalogue_age() > CATALOGUE_MAX_AGE_SECONDS
        if stale_catalogue and self._refresh_catalogue(attempt, urgent=bool(missing)):
            found = self.id_map.get_many(skus)
        return found

    def _marker_key(self) -> dict[str, Any]:
        pk, sk = state_keys.id_map(self.ctx.integration.name, self.channel, CATALOGUE_MARKER)
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _marker(self) -> dict[str, Any]:
        try:
            item: dict[str, Any] = (
                self.ctx.ddb.get_item(TableName=self.ctx.state_table, Key=self._marker_key()).get("Item") or {}
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"catalogue marker: {type(exc).__name__}") from exc
        return item

    def _catalogue_age(self) -> float:
        at = self._marker().get("refreshed_at", {}).get("N")
        return self.clock() - float(at) if at else float("inf")

    def _release_marker(self, started: float) -> None:
        """A failed catalogue read gives the marker back: the next delivery reads the catalogue at
        once (and the target's failure reaches the breaker), instead of waiting for a reader that
        is gone until the marker lapses."""
        try:
            self.ctx.ddb.update_item(
                TableName=self.ctx.state_table,
                Key=self._marker_key(),
                UpdateExpression="REMOVE started_at",
                ConditionExpression="started_at = :mine",
                ExpressionAttributeValues={":mine": {"N": repr(started)}},
            )
        except (ClientError, BotoCoreError):
            pass  # taken over meanwhile, or unreachable: it lapses after CATALOGUE_RETRY_SECONDS

    def _refresh_catalogue(self, attempt: Attempt, *, urgent: bool) -> bool:
        """Refresh the ID map from the channel's catalogue, if no other invocation did (or is
        doing) so within the last minute. True if this call refreshed it."""
        now = self.clock()
        window = CATALOGUE_RETRY_SECONDS if urgent else CATALOGUE_MAX_AGE_SECONDS
        try:
            self.ctx.ddb.update_item(
                TableName=self.ctx.state_table,
                Key=self._marker_key(),
                UpdateExpression="SET started_at = :now",
                ConditionExpression="attribute_not_exists(started_at) OR started_at < :since",
                ExpressionAttributeValues={":now": {"N": repr(now)}, ":since": {"N": repr(now - window)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"catalogue marker: {type(exc).__name__}") from exc
            # The first refresh is running elsewhere: nothing can be mapped before it ends. Wait
            # for it here (a queue retry's growing backoff would leave the message waiting long
            # after the catalogue is in), as long as the invocation has time.
            while self._catalogue_age() == float("inf"):
                if "started_at" not in self._marker():  # its reader failed: read it on the retry
                    raise InProgressElsewhere("the channel catalogue read failed elsewhere", retry_after=1) from None
                if not wait_within(attempt, CATALOGUE_POLL_SECONDS):
                    raise InProgressElsewhere("the channel catalogue is being read", retry_after=15) from None
            return True
        try:
            pairs = dict(self.catalogue())
            self.id_map.put_many(pairs)
        except BaseException:
            self._release_marker(now)
            raise
        self.ctx.ddb.update_item(
            TableName=self.ctx.state_table,
            Key=self._marker_key(),
            UpdateExpression="SET refreshed_at = :now, entries = :n",
            ExpressionAttributeValues={":now": {"N": repr(self.clock())}, ":n": {"N": str(len(pairs))}},
        )
        return True


def wait_within(attempt: Attempt, seconds: float, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Sleep ``seconds`` if the invocation has time for it and one more call; False if not."""
    try:
        attempt.timeout(seconds + 5.0)
    except Exception:
        return False
    left = attempt.deadline - time.monotonic()
    if left < seconds + 5.0:
        return False
    sleep(seconds)
    return True
