"""The cross-reference of one entity across systems, and the way back from any of its ids.

An order has an id in every system it reaches: the shop's or marketplace's, the ERP's DocEntry,
the CRM's deal and contact, the warehouse's order. Each target writes its ids here as its hop
succeeds (before the delivery is recorded complete, so a crash re-runs the hop and writes them
again: the writes are idempotent). One item per entity (``xref#<entity id>``) holds them all, and
one alias item per id (``alias#<id>``) leads back to the entity, so ``junction trace <any id>``
finds the entity's trace whichever system the id came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.errors import StoreUnavailable

XREF_TTL_DAYS = 400  # an order's ids outlive its year's returns and accounting questions


class CrossReference:
    def __init__(self, ddb: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.ddb = ddb
        self.table = table
        self.clock = clock

    def record(self, entity_id: str, hop: str, ids: Mapping[str, str]) -> None:
        """Add ``ids`` (``{"erp_doc_entry": "57"}``) to the entity's cross-reference, and an
        alias from each back to the entity. ``hop`` (``<integration>/<target>``) is kept with them."""
        ids = {k: str(v) for k, v in ids.items() if v not in (None, "")}
        if not ids:
            return
        now = int(self.clock())
        expires = now + XREF_TTL_DAYS * 86_400
        pk, sk = state_keys.xref(entity_id)
        names = {f"#k{n}": key for n, key in enumerate(sorted(ids))}
        values: dict[str, Any] = {f":v{n}": {"S": ids[key]} for n, key in enumerate(sorted(ids))}
        values.update({":at": {"N": str(now)}, ":exp": {"N": str(expires)}, ":hop": {"S": hop}})
        sets = [f"#k{n} = :v{n}" for n in range(len(ids))]
        sets += ["updated_at = :at", "expires_at = :exp", "last_hop = :hop"]
        aliases = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": a_pk},
                        "sk": {"S": a_sk},
                        "entity_id": {"S": entity_id},
                        "kind": {"S": kind},
                        "expires_at": {"N": str(expires)},
                    }
                }
            }
            for kind, value in sorted(ids.items())
            for a_pk, a_sk in [state_keys.alias(value, kind, entity_id)]
        ]
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression="SET " + ", ".join(sets),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            for start in range(0, len(aliases), 25):
                pending: list[dict[str, Any]] = aliases[start : start + 25]
                for _ in range(5):
                    answer = self.ddb.batch_write_item(RequestItems={self.table: pending})
                    pending = answer.get("UnprocessedItems", {}).get(self.table, [])
                    if not pending:
                        break
                else:
                    raise StoreUnavailable("cross-reference aliases: items left unprocessed")
        except ClientError as exc:
            raise StoreUnavailable(f"cross-reference: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cross-reference: {type(exc).__name__}") from exc

    def ids(self, entity_id: str) -> dict[str, str]:
        """The entity's ids in every system that has recorded one."""
        pk, sk = state_keys.xref(entity_id)
        try:
            item = self.ddb.get_item(
                TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"cross-reference: {type(exc).__name__}") from exc
        skip = {"pk", "sk", "updated_at", "expires_at", "last_hop"}
        return {k: v["S"] for k, v in (item or {}).items() if k not in skip and "S" in v}


def entities_of(ddb: Any, table: str, id_value: str) -> list[tuple[str, str]]:
    """``(kind, entity id)`` of every entity that has ``id_value`` among its ids (an ERP DocEntry
    and a CRM id may be the same number in two systems: both are returned)."""
    answer = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{state_keys.ALIAS}{id_value}"}},
    )
    found: list[tuple[str, str]] = []
    for item in answer.get("Items", []):
        entity = item.get("entity_id", {}).get("S")
        kind = item.get("kind", {}).get("S", "")
        if entity and (kind, entity) not in found:
            found.append((kind, entity))
    return found
