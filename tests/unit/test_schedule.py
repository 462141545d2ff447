"""Schedule expressions as EventBridge reads them (UTC; day-of-week 1 = Sunday)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from junction_local.schedule import Schedule, scheduled_event

T0 = datetime(2026, 11, 23, 10, 7, 30, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("rate(5 minutes)", datetime(2026, 11, 23, 10, 12, 30, tzinfo=UTC)),
        ("rate(1 hour)", datetime(2026, 11, 23, 11, 7, 30, tzinfo=UTC)),
        ("cron(0/15 * * * ? *)", datetime(2026, 11, 23, 10, 15, tzinfo=UTC)),
        ("cron(0 3 * * ? *)", datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),
        ("cron(30 9 ? * MON-FRI *)", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),
        ("cron(0 12 ? * 1 *)", datetime(2026, 11, 29, 12, 0, tzinfo=UTC)),  # Sunday
        ("cron(0 0 1 JAN ? *)", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("cron(10,40 8 * * ? 2026)", datetime(2026, 11, 24, 8, 10, tzinfo=UTC)),
    ],
)
def test_next_fire_time(expression: str, after: datetime) -> None:
    assert Schedule(expression).next_after(T0) == after


@pytest.mark.parametrize(
    "expression",
    [
        "rate(0 minutes)",
        "rate(5 fortnights)",
        "cron(0 3 * * *)",
        "cron(0 3 * * MON *)",
        "cron(61 * * * ? *)",
        "cron(0 3 L * ? *)",
        "every day",
        "cron(0 3 * * ? 1800)",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        Schedule(expression)


def test_scheduled_event_shape() -> None:
    event = scheduled_event("junction-local-x", T0, "eu-central-1")
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-11-23T10:07:30Z"
