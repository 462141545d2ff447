"""One error hierarchy. Outcomes are decided by the type of an error, never by its text.

- ``TransientError``: retrying later can succeed (timeouts, connection errors, 5xx, 429,
  throttling). Retried with backoff through the message's visibility timeout.
- ``PermanentError``: retrying cannot help (validation failures, other 4xx, conflicting
  duplicates). Sent straight to the DLQ with its reason.

Every error carries data: a short machine-readable ``reason`` (DLQ grouping), the business
``entity_ids`` it concerns, and free ``details``. Messages never contain secrets or personal data.
"""

from __future__ import annotations

from typing import Any


class JunctionError(Exception):
    reason = "error"

    def __init__(
        self,
        message: str,
        *,
        entity_ids: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.entity_ids = dict(entity_ids or {})
        self.details = dict(details or {})


class TransientError(JunctionError):
    reason = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TargetUnavailable(TransientError):
    """Timeout, connection failure or 5xx from a target system."""

    reason = "target_unavailable"


class RateLimited(TransientError):
    """429 or throttling; ``retry_after`` holds the server's wish when it gave one."""

    reason = "rate_limited"


class StoreUnavailable(TransientError):
    """Our own state store (DynamoDB) failed; no side effect happened."""

    reason = "store_unavailable"


class InProgressElsewhere(TransientError):
    """Another invocation holds the idempotency record for this key right now."""

    reason = "in_progress"


class CredentialsRejected(TransientError):
    """The target refused our credentials even after they were read again: a rotation in
    progress, or a secret to fix. Retried (the breaker opens), never dead-lettered at once."""

    reason = "credentials_rejected"


class DeadlineReached(TransientError):
    """Too little of the invocation is left for another call; nothing was sent."""

    reason = "deadline"


class OutcomeUnsettled(TransientError):
    """An earlier attempt may still be committing at a slow target: look again later."""

    reason = "outcome_unsettled"


class AwaitingPrerequisite(TransientError):
    """What this message changes is not at the target yet (a cancellation that overtook its order's
    creation): it waits, with backoff, up to the retry horizon, then goes to the DLQ. Not a
    target failure: the circuit breaker does not count it."""

    reason = "awaiting_prerequisite"

    def __init__(self, message: str, *, reason: str = "awaiting_prerequisite", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class PermanentError(JunctionError):
    reason = "permanent"


class ValidationFailed(PermanentError):
    """The source payload cannot be mapped to a valid canonical model."""

    reason = "validation_failed"


class TargetRejected(PermanentError):
    """The target answered with a 4xx that retrying cannot fix."""

    reason = "target_rejected"


class IdempotencyConflict(PermanentError):
    """The same idempotency key arrived with a different payload."""

    reason = "idempotency_conflict"


class MalformedEnvelope(PermanentError):
    """A queue message that is not a Junction envelope (not written by our ingress)."""

    reason = "malformed_envelope"


class SourceItemRejected(PermanentError):
    """A source item a poller could not read (malformed), dead-lettered with the poller's reason."""

    def __init__(self, message: str, *, reason: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class ConfigurationError(PermanentError):
    """A missing or invalid secret or setting; fixed by an operator, then redriven."""

    reason = "configuration"


# Reasons that say Junction, AWS or a target's availability failed, not the data: fixing the
# platform (a secret, a target, our code) helps. Every other reason of a dead letter is a business
# failure: the data or the target's rules refuse it (or what it waited for never came), and a
# person fixes the data, then redrives.
SYSTEM_REASONS = frozenset(
    {
        "target_unavailable",
        "rate_limited",
        "store_unavailable",
        "in_progress",
        "credentials_rejected",
        "deadline",
        "outcome_unsettled",
        "transient",
        "configuration",
        "malformed_envelope",
        "claim_check_missing",
        "claim_check_corrupt",
        "retries_exhausted",
        "unexpected_error",
        "error",
    }
)


def error_class(reason: str | None) -> str:
    """``system`` or ``business`` for a dead letter's reason: what the DLQ attributes, the
    processors' metrics, the history and the dashboards keep apart."""
    return "system" if (reason or "unexpected_error") in SYSTEM_REASONS else "business"
