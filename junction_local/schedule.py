"""EventBridge schedule expressions: ``rate(5 minutes)`` and six-field ``cron(...)``, in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}  # noqa: SIM905
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}  # EventBridge: 1 = Sunday


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """The values a cron field allows, or None for any (``*`` / ``?``)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for item in text.split(","):
        step = 1
        part = item
        if "/" in item:
            part, step_text = item.split("/", 1)
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(f"cron field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"unsupported cron value {text!r} (L, W and # are not supported locally)")
    return int(text)


class Schedule:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.interval: int | None = None
        rate = _RATE.match(expression)
        cron = _CRON.match(expression)
        if rate:
            amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
            if amount < 1:
                raise ValueError("rate must be at least 1")
            self.interval = amount * _UNITS[unit]
        elif cron:
            fields = cron.group(1).split()
            if len(fields) != 6:
                raise ValueError("cron takes six fields: minutes hours day-of-month month day-of-week year")
            self.minutes = _field(fields[0], 0, 59)
            self.hours = _field(fields[1], 0, 23)
            self.days = _field(fields[2], 1, 31)
            self.months = _field(fields[3], 1, 12, _MONTHS)
            self.weekdays = _field(fields[4], 1, 7, _DAYS)
            self.years = _field(fields[5], 1970, 2199)
            if fields[2] != "?" and fields[4] != "?":
                raise ValueError("cron needs '?' in day-of-month or day-of-week")
        else:
            raise ValueError(f"not a schedule expression: {expression!r}")

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + timedelta(seconds=self.interval)
        t = (moment.astimezone(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        for _ in range(60 * 24 * 366 * 2):
            weekday = (t.isoweekday() % 7) + 1  # Monday=2 ... Sunday=1
            if (
                (self.years is None or t.year in self.years)
                and (self.months is None or t.month in self.months)
                and (self.days is None or t.day in self.days)
                and (self.weekdays is None or weekday in self.weekdays)
                and (self.hours is None or t.hour in self.hours)
                and (self.minutes is None or t.minute in self.minutes)
            ):
                return t
            t += timedelta(minutes=1)
        raise ValueError(f"{self.expression} never fires within two years")


def scheduled_event(rule_name: str, when: datetime, region: str) -> dict[str, object]:
    """The event EventBridge delivers to a target on a schedule."""
    import uuid

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:000000000000:rule/{rule_name}"],
        "detail": {},
    }
