"""The cross-reference of one entity across systems, and the way back from any of its ids.

An order has an id in every system it reaches: the shop's or marketplace's, the ERP's DocEntry,
the CRM's deal and contact, the warehouse's order. Each target writes its ids here as its hop
succeeds (before the delivery is recorded complete, so a crash re-runs the hop and writes them
again: the writes are idempotent). One item per entity and hop (``xref#<entity id>`` /
``<integration>/<target>``) holds that hop's ids, and one alias item per id (``alias#<id>``)
leads back to the entity, so ``junction trace <any id>``
finds the entity's trace whichever system the id came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared import state_keys
from shared.errors import StoreUnavailable

# What a key must end with for its value to be an id worth finding the entity by. Other values a hop
# records (a payment or parcel status, an amount, a URL) are facts: kept on the hop, shown by the
# trace, but given no alias, since thousands of entities share "paid" or "delivered".
ALIASED_SUFFIXES = ("_id", "_entry", "_num", "_number", "_code", "_reference")
XREF_TTL_DAYS = 400  # an order's ids outlive its year's returns and accounting questions


class CrossReference:
    def __init__(self, ddb: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.ddb = ddb
        self.table = table
        self.clock = clock

    def record(self, entity_id: str, hop: str, ids: Mapping[str, str]) -> None:
        """Add ``ids`` (``{"erp_doc_entry": "57"}``) to the entity's cross-reference as ``hop``'s
        (``<integration>/<target>``), and an alias back to the entity from each that is an id
        (``ALIASED_SUFFIXES``): one BatchWriteItem of puts, each item whole, so a repeat writes the
        same items again."""
        ids = {k: str(v) for k, v in ids.items() if v not in (None, "")}
        if not ids:
            return
        now = int(self.clock())
        expires = {"N": str(now + XREF_TTL_DAYS * 86_400)}
        pk, sk = state_keys.xref(entity_id, hop)
        hop_item = {"pk": {"S": pk}, "sk": {"S": sk}, "ids": {"M": {k: {"S": v} for k, v in ids.items()}}}
        items = [{**hop_item, "updated_at": {"N": str(now)}, "expires_at": expires}]
        for kind, value in sorted(ids.items()):
            if not kind.endswith(ALIASED_SUFFIXES):
                continue
            a_pk, a_sk = state_keys.alias(value, kind, entity_id)
            items.append(
                {
                    "pk": {"S": a_pk},
                    "sk": {"S": a_sk},
                    "entity_id": {"S": entity_id},
                    "kind": {"S": kind},
                    "expires_at": expires,
                }
            )
        try:
            for start in range(0, len(items), 25):
                pending: list[dict[str, Any]] = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
                for _ in range(5):
                    answer = self.ddb.batch_write_item(RequestItems={self.table: pending})
                    pending = answer.get("UnprocessedItems", {}).get(self.table, [])
                    if not pending:
                        break
                else:
                    raise StoreUnavailable("cross-reference: items left unprocessed")
        except ClientError as exc:
            raise StoreUnavailable(f"cross-reference: {exc.response.get('Error', {}).get('Code')}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cross-reference: {type(exc).__name__}") from exc

    def ids(self, entity_id: str) -> dict[str, str]:
        """The entity's ids in every system that has recorded one (every hop's, merged)."""
        pk = f"{state_keys.XREF}{entity_id}"
        found: dict[str, str] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        try:
            while True:
                page = self.ddb.query(**kwargs)
                for item in page.get("Items", []):
                    found.update({k: v["S"] for k, v in item.get("ids", {}).get("M", {}).items() if "S" in v})
                if "LastEvaluatedKey" not in page:
                    return found
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"cross-reference: {type(exc).__name__}") from exc


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
