"""The hourly export of message history to S3, as JSON Lines (``shared.history.export_hour``).

``s3://$JUNCTION_HISTORY_BUCKET/history/integration=<name>/dt=YYYY-MM-DD/hour=HH/part-<n>.jsonl``,
one line per delivery to a target or poller run, for every declared integration.

The event chooses the hours:

- a scheduled event (EventBridge, ``{"time": "2026-03-01T10:10:00Z", ...}``): the last full hour
  before its time; schedule it some minutes past the hour, as a batch's history is written when
  the batch ends;
- ``{"hour": "2026-03-01T09"}`` (or a full ISO time): that hour;
- ``{"hours": N}``: the N full hours before now (a catch-up after a failed run).

Re-running an hour writes the same objects again (idempotent). Environment: ``JUNCTION_STAGE``,
``JUNCTION_STATE_TABLE``, ``JUNCTION_HISTORY_BUCKET``; ``JUNCTION_HISTORY_INDEX`` names the state
table's index by integration and time when the stage has one (else a Scan reads the table).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import registry
from shared import history

MAX_HOURS = 72


def hours_of(event: Mapping[str, Any], now: datetime) -> list[datetime]:
    """The full hours the event asks for, oldest first."""
    if event.get("hour"):
        text = str(event["hour"])
        at = datetime.fromisoformat(text + ":00" if len(text) == 13 else text)
        return [history.full_hour(at)]
    if event.get("hours") is not None:
        count = int(event["hours"])
        if not 1 <= count <= MAX_HOURS:
            raise ValueError(f"hours must be 1..{MAX_HOURS}, not {count}")
        last = history.full_hour(now) - timedelta(hours=1)
        return [last - timedelta(hours=n) for n in range(count - 1, -1, -1)]
    at = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")) if event.get("time") else now
    return [history.full_hour(at) - timedelta(hours=1)]


def handler(
    event: dict[str, Any],
    context: Any,
    *,
    ddb: Any = None,
    s3: Any = None,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    if ddb is None or s3 is None:
        from shared.processing import aws_client

        ddb = ddb or aws_client("dynamodb")
        s3 = s3 or aws_client("s3")
    names = [i.name for i in registry.INTEGRATIONS]
    exported = [
        export.as_json()
        for hour in hours_of(event, now or datetime.now(UTC))
        for export in history.export_hour(
            ddb,
            s3,
            env["JUNCTION_STATE_TABLE"],
            env["JUNCTION_HISTORY_BUCKET"],
            names,
            hour,
            index=env.get("JUNCTION_HISTORY_INDEX") or None,
        )
    ]
    return {"stage": env.get("JUNCTION_STAGE"), "exported": exported}
