"""Alarm kinds, their runbook sections and who hears them.

Every alarm of the stack is of one kind; each kind has one section in ``docs/runbook.md`` (what it
means, how to confirm it with the ``junction`` CLI, what to do, how to know it is over), and the
alarm's description ends with the link to that section. The heading text is defined here once: the
anchor is derived from it the way GitHub renders Markdown headings, and the infra tests check that
the runbook has a heading for every kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RUNBOOK_PATH = "docs/runbook.md"
# CloudWatch's limit for an alarm description.
MAX_DESCRIPTION = 1024


def anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to ``-``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@dataclass(frozen=True)
class AlarmKind:
    heading: str  # the runbook section's heading, exactly

    @property
    def anchor(self) -> str:
        return anchor(self.heading)


DLQ_DEPTH = AlarmKind("DLQ depth")
DLQ_NEAR_EXPIRY = AlarmKind("DLQ near expiry")
QUEUE_AGE = AlarmKind("Queue age")
PROCESSOR_ERRORS = AlarmKind("Processor errors")
BREAKER_OPEN = AlarmKind("Breaker open")
INGRESS_ERRORS = AlarmKind("Ingress errors")
INGRESS_5XX = AlarmKind("Ingress 5xx")
WEBHOOK_UNAUTHORIZED = AlarmKind("Webhook unauthorized")
WEBHOOK_UNAVAILABLE = AlarmKind("Webhook unavailable")
POLLER_ERRORS = AlarmKind("Poller errors")
POLL_FAILED = AlarmKind("Poll failed")
POLLER_LAG = AlarmKind("Poller lag")
HISTORY_EXPORT_FAILED = AlarmKind("History export failed")

KINDS: tuple[AlarmKind, ...] = (
    DLQ_DEPTH,
    DLQ_NEAR_EXPIRY,
    QUEUE_AGE,
    PROCESSOR_ERRORS,
    BREAKER_OPEN,
    INGRESS_ERRORS,
    INGRESS_5XX,
    WEBHOOK_UNAUTHORIZED,
    WEBHOOK_UNAVAILABLE,
    POLLER_ERRORS,
    POLL_FAILED,
    POLLER_LAG,
    HISTORY_EXPORT_FAILED,
)


def runbook_url(base: str | None, kind: AlarmKind) -> str:
    """``<base>/docs/runbook.md#<anchor>``; without a base (cdk.json ``runbook_base_url`` unset) the
    repository-relative ``docs/runbook.md#<anchor>``."""
    page = f"{base.rstrip('/')}/{RUNBOOK_PATH}" if base else RUNBOOK_PATH
    return f"{page}#{kind.anchor}"


def described(description: str, url: str) -> str:
    """The alarm description with its runbook link last; the text is shortened, never the link."""
    suffix = f" Runbook: {url}"
    room = MAX_DESCRIPTION - len(suffix)
    if room < 40:
        raise ValueError(f"runbook URL too long for an alarm description: {url}")
    text = description if len(description) <= room else description[: room - 3] + "..."
    return text + suffix


# ------------------------------------------------------------------------------- subscribers
# What the alarm topic may deliver to from cdk.json. Plain HTTP is refused (alarms name queues,
# functions and integrations); SQS and Lambda endpoints need grants of their own: subscribe those
# in the stack that owns them.
SUBSCRIBER_PROTOCOLS = ("email", "email-json", "https", "sms")


@dataclass(frozen=True)
class AlarmSubscriber:
    protocol: str
    endpoint: str

    @classmethod
    def from_context(cls, raw: Any) -> AlarmSubscriber:
        if not isinstance(raw, dict) or set(raw) != {"protocol", "endpoint"}:
            raise ValueError(f"alarm_subscribers entries are {{protocol, endpoint}}, not {raw!r}")
        protocol, endpoint = str(raw["protocol"]).lower(), str(raw["endpoint"]).strip()
        if protocol not in SUBSCRIBER_PROTOCOLS:
            raise ValueError(
                f"alarm subscriber protocol must be one of {', '.join(SUBSCRIBER_PROTOCOLS)}, not {protocol!r}"
            )
        valid = {
            "email": "@" in endpoint,
            "email-json": "@" in endpoint,
            "https": endpoint.startswith("https://"),
            "sms": bool(re.fullmatch(r"\+[1-9][0-9]{6,14}", endpoint)),
        }[protocol]
        if not valid:
            raise ValueError(f"alarm subscriber endpoint {endpoint!r} is not a valid {protocol} endpoint")
        return cls(protocol, endpoint)
