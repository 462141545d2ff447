"""Per-entity sync state of a target in the state table: the version gate and the ID map.

**Version gate.** Every level a poller reads carries the version it was read at (the source's
change stamp, then the read time). Per entity per target, the last version let through is kept,
and a level passes only by a conditional write ``attribute_not_exists(v) OR v <= :v``: an older
level never overwrites a newer one, even when an old DLQ message is redriven a day later, and no
read-then-write window lets two invocations both pass with different versions in the wrong order.
Equal passes, so a retry of the same message (its push failed) goes through again.

What passing tells the flow is the value the target last *took* (``confirm``, after a push
succeeded; kept as ``c_v`` and ``c_<field>``), not the value last let through: a push that failed
was never applied, so a retry of it, or a newer level that overtakes it during an outage, must
decide from what the target holds (Allegro ends an offer at 0 and activates it when stock
returns; Shopify compares with the level it expects).

**ID map.** An entity's id at a target (SKU -> Shopify inventory item, SKU -> Allegro offer), filled
from the target's catalogue; a missing entry is a business error (``unmapped_sku``).

Both are one item per entity (its own partition): a full resync of 100,000 SKUs spreads its writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.errors import StoreUnavailable

BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem
BATCH_WRITE_LIMIT = 25  # DynamoDB BatchWriteItem
GATE_THREADS = 16
CONFIRMED = "c_"  # a gate item's values as the target last took them (``confirm``)
NOT_CONFIRMED = ""  # ``c_v`` of an entity the target has taken nothing of yet


@dataclass(frozen=True)
class GateResult:
    passed: bool
    previous: dict[str, Any] | None  # the values the target last took (``confirm``); None: none known
    # The values last let through, taken or not (what a target that never confirms compares with).
    let_through: dict[str, Any] | None = None


class VersionGate:
    def __init__(
        self, ddb: Any, table: str, integration: str, target: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.integration = integration
        self.target = target
        self.clock = clock

    def enter(self, key: str, version: str, value: Mapping[str, Any]) -> GateResult:
        """Record ``version`` (and ``value``) for ``key`` if no newer version was recorded."""
        pk, sk = state_keys.version(self.integration, self.target, key)
        names = {"#v": "v", "#cv": CONFIRMED + "v"}
        values: dict[str, Any] = {
            ":v": {"S": version},
            ":at": {"N": str(int(self.clock()))},
            ":none": {"S": NOT_CONFIRMED},
        }
        sets = ["#v = :v", "updated_at = :at", "#cv = if_not_exists(#cv, :none)"]
        for n, (field, raw) in enumerate(sorted(value.items())):
            names[f"#f{n}"] = field
            values[f":f{n}"] = _attr(raw)
            sets.append(f"#f{n} = :f{n}")
        try:
            answer = self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(#v) OR #v <= :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return GateResult(False, None)
            raise StoreUnavailable(f"version gate: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"version gate: {type(exc).__name__}") from exc
        old = answer.get("Attributes")
        if not old:
            return GateResult(True, None, None)
        plain = _plain(old)
        return GateResult(True, _taken(plain, list(value)), {f: plain.get(f) for f in value})

    def enter_many(self, entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[GateResult]:
        """``enter`` for many keys, concurrently (one conditional write each: DynamoDB has no
        conditional batch write short of a transaction, which fails whole)."""
        if len(entries) <= 1:
            return [self.enter(*e) for e in entries]
        with ThreadPoolExecutor(max_workers=min(GATE_THREADS, len(entries))) as pool:
            return list(pool.map(lambda e: self.enter(*e), entries))

    def confirm(self, key: str, version: str, value: Mapping[str, Any]) -> None:
        """The target took ``value`` (of ``version``): what the next ``enter`` reports as previous.
        An older version than one confirmed already changes nothing."""
        pk, sk = state_keys.version(self.integration, self.target, key)
        names = {"#cv": CONFIRMED + "v"}
        values: dict[str, Any] = {":v": {"S": version}}
        sets = ["#cv = :v"]
        for n, (field, raw) in enumerate(sorted(value.items())):
            names[f"#c{n}"] = CONFIRMED + field
            values[f":f{n}"] = _attr(raw)
            sets.append(f"#c{n} = :f{n}")
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(#cv) OR #cv <= :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return
            raise StoreUnavailable(f"version gate confirm: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"version gate confirm: {type(exc).__name__}") from exc

    def confirm_many(self, entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        if len(entries) <= 1:
            for e in entries:
                self.confirm(*e)
            return
        with ThreadPoolExecutor(max_workers=min(GATE_THREADS, len(entries))) as pool:
            list(pool.map(lambda e: self.confirm(*e), entries))

    def current(self, key: str) -> dict[str, Any] | None:
        pk, sk = state_keys.version(self.integration, self.target, key)
        try:
            item = self.ddb.get_item(
                TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"version gate read: {type(exc).__name__}") from exc
        return _plain(item) if item else None


class IdMap:
    """Entity key -> the target's id (and any detail the target needs, e.g. a location)."""

    def __init__(self, ddb: Any, table: str, integration: str, target: str) -> None:
        self.ddb = ddb
        self.table = table
        self.integration = integration
        self.target = target

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            request = {
                self.table: {
                    "Keys": [
                        {"pk": {"S": pk}, "sk": {"S": sk}}
                        for pk, sk in (
                            state_keys.id_map(self.integration, self.target, k) for k in wanted[start : start + 100]
                        )
                    ],
                    "ProjectionExpression": "pk, target_id",
                }
            }
            for _ in range(8):
                try:
                    answer = self.ddb.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StoreUnavailable(f"id map read: {type(exc).__name__}") from exc
                prefix = len(state_keys.id_map(self.integration, self.target, "")[0])
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[item["pk"]["S"][prefix:]] = item["target_id"]["S"]
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05)
            else:
                raise StoreUnavailable("id map read: keys left unprocessed")
        return found

    def put_many(self, pairs: Mapping[str, str]) -> int:
        """Write every pair, 25 to a BatchWriteItem, several batches at once (a 100,000-SKU
        catalogue is 4,000 batches)."""
        items = list(pairs.items())
        batches = [items[i : i + BATCH_WRITE_LIMIT] for i in range(0, len(items), BATCH_WRITE_LIMIT)]
        if len(batches) <= 1:
            for batch in batches:
                self._write(batch)
        else:
            with ThreadPoolExecutor(max_workers=min(GATE_THREADS, len(batches))) as pool:
                list(pool.map(self._write, batches))
        return len(items)

    def _write(self, batch: list[tuple[str, str]]) -> None:
        requests = []
        for key, target_id in batch:
            pk, sk = state_keys.id_map(self.integration, self.target, key)
            requests.append({"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"S": sk}, "target_id": {"S": target_id}}}})
        pending: dict[str, Any] = {self.table: requests}
        for attempt in range(8):
            try:
                answer = self.ddb.batch_write_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(f"id map write: {type(exc).__name__}") from exc
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(0.05 * 2**attempt)
        raise StoreUnavailable("id map write: items left unprocessed")


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    from shared.aws import item_from_ddb

    return item_from_ddb(dict(item))


def _attr(raw: Any) -> dict[str, str]:
    return {"N": str(raw)} if isinstance(raw, int | float) else {"S": str(raw)}


def _taken(item: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any] | None:
    """What the target last took, by the gate item; None when it took nothing yet. An item
    written before confirmations existed has no ``c_v``: its last value stands in."""
    confirmed = item.get(CONFIRMED + "v")
    if confirmed is None:
        return {f: item.get(f) for f in fields}
    if confirmed == NOT_CONFIRMED:
        return None
    return {f: item.get(CONFIRMED + f) for f in fields}
