"""Per-entity sync state of a target in the state table: the version gate and the ID map.

**Version gate.** Every level a poller reads carries the version it was read at (the source's
change stamp, then the read time). Per entity per target, the last version let through is kept,
and a newer level passes only by a conditional write ``attribute_not_exists(v) OR v < :v``: an
older level never overwrites a newer one, even when an old DLQ message is redriven a day later, and
no read-then-write window lets two invocations both pass with different versions in the wrong order.
Equal passes (a consistent read finds it recorded), so a retry of the same message (its push
failed) goes through again, and is told the value from before that version first passed (kept as
``p_<field>``), not the value its own failed attempt recorded: a flow deciding from the previous
level (Allegro ends an offer at 0 and activates it when stock returns) decides the same on a retry.

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
PREVIOUS = "p_"  # a gate item's values from before its version passed first


@dataclass(frozen=True)
class GateResult:
    passed: bool
    previous: dict[str, Any] | None  # the values before this version first passed (None: none)


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
        names = {"#v": "v"}
        values: dict[str, Any] = {":v": {"S": version}, ":at": {"N": str(int(self.clock()))}, ":none": {"NULL": True}}
        sets = ["#v = :v", "updated_at = :at"]
        for n, (field, raw) in enumerate(sorted(value.items())):
            names[f"#f{n}"] = field
            names[f"#p{n}"] = PREVIOUS + field
            values[f":f{n}"] = {"N": str(raw)} if isinstance(raw, int | float) else {"S": str(raw)}
            # DynamoDB reads every operand before the update: ``p_<field>`` gets the old value
            # (written first, for stand-ins that apply the actions in order).
            sets += [f"#p{n} = if_not_exists(#f{n}, :none)", f"#f{n} = :f{n}"]
        try:
            answer = self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(#v) OR #v < :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return self._again(key, version, list(value))
            raise StoreUnavailable(f"version gate: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"version gate: {type(exc).__name__}") from exc
        old = answer.get("Attributes")
        return GateResult(True, _plain(old) if old else None)

    def _again(self, key: str, version: str, fields: list[str]) -> GateResult:
        """Not newer: the same version again passes (a retry), with the values from before that
        version first passed; an older one is stale."""
        item = self.current(key)
        if item is None or item.get("v") != version:
            return GateResult(False, None)
        return GateResult(True, {f: item.get(PREVIOUS + f) for f in fields})

    def enter_many(self, entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[GateResult]:
        """``enter`` for many keys, concurrently (one conditional write each: DynamoDB has no
        conditional batch write short of a transaction, which fails whole)."""
        if len(entries) <= 1:
            return [self.enter(*e) for e in entries]
        with ThreadPoolExecutor(max_workers=min(GATE_THREADS, len(entries))) as pool:
            return list(pool.map(lambda e: self.enter(*e), entries))

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
