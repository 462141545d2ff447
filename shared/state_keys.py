"""The state table's key layout, written once for every writer and reader (processors, ops CLI).

Items are ``(pk, sk)`` pairs. Partition keys start with a kind, so a processor's access can be
limited by key prefix and an operator can tell items apart at a glance:

- ``trace#<entity id>`` / ``<iso time>#<integration>#<outcome>#<random>``: message history of a
  business entity across integrations (every hop, retry and outcome).
- ``status#<integration>`` / ``last_success``: when the integration last delivered.
- ``breaker#<integration>#<target>`` / ``state``: the shared circuit breaker of one target.
"""

from __future__ import annotations

TRACE = "trace#"
STATUS = "status#"
BREAKER = "breaker#"


def trace_pk(entity_id: str) -> str:
    return f"{TRACE}{entity_id}"


def trace_sk(iso_time: str, integration: str, outcome: str, suffix: str) -> str:
    return f"{iso_time}#{integration}#{outcome}#{suffix}"


def last_success(integration: str) -> tuple[str, str]:
    return f"{STATUS}{integration}", "last_success"


def breaker(integration: str, target: str) -> tuple[str, str]:
    return f"{BREAKER}{integration}#{target}", "state"
