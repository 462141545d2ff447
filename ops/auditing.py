"""Every operator action leaves an audit record in the state table before the command returns
(``shared.audit``): who (the caller's AWS identity, or the local user), when, what, on which
integration and target, how many messages, with which filters, and whether it finished.

``acting`` wraps an action: the record is written when it ends, as ``done`` or, when it raised,
as ``failed`` with the error, so a half-done redrive is on record too.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared import audit
from shared.declaration import state_table_name

from .context import OpsError
from .context import Target as Stack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def caller(stack: Stack) -> str:
    """Who acts: the AWS caller identity (its ARN), or the local user."""
    if stack.is_local:
        try:
            return f"{getpass.getuser()} (local)"
        except (OSError, KeyError):
            return "unknown (local)"
    sts = boto3.session.Session().client("sts", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    return str(sts.get_caller_identity()["Arn"])


def write(
    ddb: DynamoDBClient,
    stack: Stack,
    action: str,
    *,
    who: str | None = None,
    integration: str | None = None,
    target: str | None = None,
    count: int | None = None,
    filters: dict[str, Any] | None = None,
    outcome: str = "done",
    details: dict[str, Any] | None = None,
) -> audit.AuditRecord:
    entry = audit.AuditRecord(
        action=action,
        who=who or caller(stack),
        stage=stack.stage,
        where=stack.kind,
        integration=integration,
        target=target,
        count=count,
        filters={k: v for k, v in (filters or {}).items() if v is not None},
        outcome=outcome,
        details=details or {},
    )
    try:
        return audit.record(ddb, state_table_name(stack.stage), entry)
    except (ClientError, BotoCoreError) as exc:
        raise OpsError(
            f"{action} was carried out, but its audit record could not be written to the state table: {exc}"
        ) from None


@dataclass
class Acting:
    """What the action reports back for its record while it runs."""

    count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    records: list[audit.AuditRecord] = field(default_factory=list)


@contextmanager
def acting(
    ddb: DynamoDBClient,
    stack: Stack,
    action: str,
    *,
    integration: str | None = None,
    target: str | None = None,
    filters: dict[str, Any] | None = None,
    who: str | None = None,
) -> Iterator[Acting]:
    """Run an action and record it as it ends (``done``, or ``failed`` with the error)."""
    who = who or caller(stack)
    state = Acting()
    try:
        yield state
    except (Exception, KeyboardInterrupt) as exc:
        details = {**state.details, "error": f"{type(exc).__name__}: {exc}"[:500]}
        state.records.append(
            write(
                ddb,
                stack,
                action,
                who=who,
                integration=integration,
                target=target,
                count=state.count,
                filters=filters,
                outcome="failed",
                details=details,
            )
        )
        raise
    state.records.append(
        write(
            ddb,
            stack,
            action,
            who=who,
            integration=integration,
            target=target,
            count=state.count,
            filters=filters,
            details=state.details,
        )
    )
