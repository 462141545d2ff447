"""The state table's key layout, written once for every writer and reader (processors, pollers,
ops CLI, the stack's IAM conditions).

Items are ``(pk, sk)`` pairs. Partition keys start with a kind, so a function's access can be
limited by key prefix (``dynamodb:LeadingKeys``) and an operator can tell items apart at a glance:

- ``trace#<entity id>`` / ``<iso time>#<integration>/<target>#<outcome>#<random>``: message
  history of a business entity across integrations (every hop, retry and outcome).
- ``status#<integration>`` / ``last_success#<target>``: when the integration last delivered.
- ``breaker#<integration>#<target>`` / ``state``: the shared circuit breaker of one target.
- ``sync#<integration>`` / ``lease``, ``cursor``, ``run#<iso start>#<run id>``: a poller's lease,
  its versioned cursor and its sync history.
- ``version#<integration>#<target>#<key>`` / ``v``: the last version pushed per entity (a SKU)
  per target: the staleness gate. One partition per entity: a full resync spreads its writes.
- ``idmap#<integration>#<target>#<key>`` / ``id``: an entity's id at a target (SKU -> offer id).
- ``budget#<account>`` / ``bucket``: a rate budget shared by every invocation using the account.
- ``xref#<entity id>`` / ``<integration>/<target>``: one entity's ids at one hop (an order's shop
  id and ERP DocEntry, its CRM deal, its WMS order), written as the hop succeeds; the partition
  holds them all.
- ``alias#<id>`` / ``<kind>#<entity id>``: from any of those ids back to the entity (its trace).
"""

from __future__ import annotations

TRACE = "trace#"
STATUS = "status#"
BREAKER = "breaker#"
SYNC = "sync#"
VERSION = "version#"
IDMAP = "idmap#"
BUDGET = "budget#"
XREF = "xref#"
ALIAS = "alias#"


def trace_pk(entity_id: str) -> str:
    return f"{TRACE}{entity_id}"


def trace_sk(iso_time: str, hop: str, outcome: str, suffix: str) -> str:
    return f"{iso_time}#{hop}#{outcome}#{suffix}"


def last_success(integration: str, target: str) -> tuple[str, str]:
    return f"{STATUS}{integration}", f"last_success#{target}"


def breaker(integration: str, target: str) -> tuple[str, str]:
    return f"{BREAKER}{integration}#{target}", "state"


def sync_pk(integration: str) -> str:
    return f"{SYNC}{integration}"


LEASE_SK = "lease"
CURSOR_SK = "cursor"
RUN_SK_PREFIX = "run#"


def run_sk(iso_start: str, run_id: str) -> str:
    return f"{RUN_SK_PREFIX}{iso_start}#{run_id}"


def version(integration: str, target: str, key: str) -> tuple[str, str]:
    return f"{VERSION}{integration}#{target}#{key}", "v"


def id_map(integration: str, target: str, key: str) -> tuple[str, str]:
    return f"{IDMAP}{integration}#{target}#{key}", "id"


def budget(account: str) -> tuple[str, str]:
    return f"{BUDGET}{account}", "bucket"


def xref(entity_id: str, hop: str) -> tuple[str, str]:
    return f"{XREF}{entity_id}", hop


def alias(id_value: str, kind: str, entity_id: str) -> tuple[str, str]:
    return f"{ALIAS}{id_value}", f"{kind}#{entity_id}"


# Partition key patterns each function may read and write (the stack turns them into
# ``dynamodb:LeadingKeys`` conditions). Trace items are add-only and granted apart.
def processor_keys(
    integration: str, target: str, rate_account: str | None, *, cross_reference: bool = False
) -> list[str]:
    keys = [
        f"{STATUS}{integration}",
        f"{BREAKER}{integration}#{target}",
        f"{VERSION}{integration}#{target}#*",
        f"{IDMAP}{integration}#{target}#*",
    ]
    if cross_reference:  # entities cross integrations (one order, several sources' targets)
        keys += [f"{XREF}*", f"{ALIAS}*"]
    # The account's budget, and its sub-budgets (``budget#allegro#quantity-changes``).
    return keys + ([f"{BUDGET}{rate_account}", f"{BUDGET}{rate_account}#*"] if rate_account else [])


def poller_keys(integration: str) -> list[str]:
    return [f"{SYNC}{integration}"]
