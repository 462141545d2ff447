"""The one declaration each integration makes of itself.

Plain data (stdlib dataclasses only): the CDK stack, the local runtime, the tests and the ops
CLI all read these objects; nothing here may import aws_cdk, boto3 or pydantic, because the
ingress Lambda imports its declaration on the cold-start path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SignatureScheme = Literal["shopify", "standard-webhooks"]


@dataclass(frozen=True)
class SecretRef:
    """A secret the integration reads from Secrets Manager at run time.

    The deployed secret is named ``junction/<stage>/<name>``; several integrations may share one.
    """

    name: str
    description: str


@dataclass(frozen=True)
class WebhookTrigger:
    """An HTTPS route on the API that a source system calls."""

    path: str  # e.g. "/webhooks/shopify/orders-create"
    scheme: SignatureScheme
    secret: SecretRef  # JSON {"secrets": ["current", "previous", ...]}: every listed one verifies
    method: str = "POST"
    # Above it: 413. Bodies that do not fit one SQS message travel by claim check (S3).
    max_body_bytes: int = 1024 * 1024
    # Total time ingress may spend on one request (secret read, enqueue, retries included); well
    # inside the sender's own timeout (Shopify waits 5 s).
    deadline_seconds: float = 3.0
    throttle_rate_per_second: int = 50
    throttle_burst: int = 100
    timestamp_tolerance_seconds: int = 300  # standard-webhooks only; both directions
    # The HTTP header that carries the provider's topic/event type, kept in the envelope.
    topic_header: str | None = None


@dataclass(frozen=True)
class ScheduleTrigger:
    """An EventBridge schedule that starts a poller."""

    expression: str  # "rate(5 minutes)" or "cron(0 3 * * ? *)"


@dataclass(frozen=True)
class QueueSettings:
    batch_size: int = 10
    batching_window_seconds: int = 0
    max_receive_count: int = 8  # SQS redrive safety net; the processor dead-letters itself first
    fifo: bool = False
    retention_days: int = 4
    dlq_retention_days: int = 14  # longer than retention_days and any sender's retry horizon


@dataclass(frozen=True)
class RetryPolicy:
    """Redelivery policy: exponential backoff with full jitter, applied through the message's
    visibility timeout, for as long as the horizon allows (independent of SQS receive counts)."""

    base_delay_seconds: int = 5
    max_delay_seconds: int = 900
    # Transient failures are retried for this long after the first attempt, then dead-lettered.
    # The default covers a night's maintenance window with a weekend's margin (Stripe: 3 days).
    horizon_seconds: int = 72 * 3600
    # After an attempt whose outcome is unknown (a timeout), a lookup that finds nothing is
    # trusted only once this long has passed: a slow target may still commit the first attempt.
    settle_seconds: int = 120


@dataclass(frozen=True)
class CircuitBreakerSettings:
    """One breaker per integration and target, shared by every concurrent invocation."""

    failure_threshold: int = 5  # consecutive transient target failures that open it
    open_seconds: int = 30  # first open period; doubled after each failed probe
    max_open_seconds: int = 900


@dataclass(frozen=True)
class FunctionSettings:
    memory_mb: int = 512
    timeout_seconds: int = 30


@dataclass(frozen=True)
class AlarmThresholds:
    dlq_depth: int = 1  # alarm when at least this many messages wait in the DLQ
    oldest_message_age_seconds: int = 900  # alarm when the main queue lags this much


@dataclass(frozen=True)
class Integration:
    name: str  # kebab-case, unique: "shop-orders-to-erp"
    description: str
    source: str  # system the data comes from: "shopify"
    target: str  # system the data goes to: "erp"
    trigger: WebhookTrigger | ScheduleTrigger
    package: str  # python package of the integration: "functions.shop_orders_to_erp"
    secrets: tuple[SecretRef, ...] = ()  # secrets the processor needs (target credentials)
    queue: QueueSettings = field(default_factory=QueueSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreakerSettings = field(default_factory=CircuitBreakerSettings)
    max_concurrency: int = 5  # SQS event source MaximumConcurrency (2..1000)
    processor: FunctionSettings = field(default_factory=FunctionSettings)
    ingress: FunctionSettings = field(default_factory=lambda: FunctionSettings(256, 10))
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    idempotency_ttl_days: int = 30  # > longest sender retry horizon + DLQ retention (redrive window)

    @property
    def webhook(self) -> WebhookTrigger | None:
        return self.trigger if isinstance(self.trigger, WebhookTrigger) else None

    @property
    def schedule(self) -> ScheduleTrigger | None:
        return self.trigger if isinstance(self.trigger, ScheduleTrigger) else None

    @property
    def ingress_handler(self) -> str | None:
        return f"{self.package}.ingress.handler" if self.webhook else None

    @property
    def processor_handler(self) -> str:
        return f"{self.package}.processor.handler"

    @property
    def flow_module(self) -> str:
        """The module whose ``build(secrets, stage)`` makes the integration's flow; the processor
        handler is ``make_sqs_handler(integration, build)`` over it, in AWS and locally."""
        return f"{self.package}.flow"

    @property
    def all_secrets(self) -> tuple[SecretRef, ...]:
        own = (self.webhook.secret,) if self.webhook else ()
        return own + tuple(s for s in self.secrets if s not in own)

    def __post_init__(self) -> None:
        problems = validate(self)
        if problems:
            raise ValueError(f"integration {self.name!r}: " + "; ".join(problems))


def validate(integration: Integration) -> list[str]:
    """Rules every declaration must satisfy; the stack relies on them."""
    i = integration
    out: list[str] = []
    if not i.name or not all(c.islower() or c.isdigit() or c == "-" for c in i.name):
        out.append("name must be kebab-case")
    if not 1 <= i.queue.batch_size <= 10_000:
        out.append("queue.batch_size must be 1..10000")
    if i.queue.fifo and i.queue.batch_size > 10:
        out.append("FIFO queues take batch_size <= 10")
    if i.queue.batch_size > 10 and i.queue.batching_window_seconds < 1:
        out.append("batch_size above 10 needs batching_window_seconds >= 1")
    if i.queue.max_receive_count < 5:
        out.append("queue.max_receive_count must be >= 5")
    if i.queue.dlq_retention_days <= i.queue.retention_days or i.queue.dlq_retention_days > 14:
        out.append("queue.dlq_retention_days must exceed retention_days and be <= 14")
    if not 2 <= i.max_concurrency <= 1000:
        out.append("max_concurrency must be 2..1000 (SQS event source MaximumConcurrency)")
    if i.processor.timeout_seconds * 6 > 43_200:
        out.append("processor timeout too long for a 6x visibility timeout")
    if i.retry.max_delay_seconds > 43_200 or i.retry.base_delay_seconds < 1:
        out.append("retry delays must be 1s..12h (SQS visibility timeout range)")
    if i.retry.horizon_seconds < 3600:
        out.append("retry.horizon_seconds must be at least an hour")
    if i.retry.horizon_seconds + i.queue.dlq_retention_days * 86_400 > i.idempotency_ttl_days * 86_400:
        out.append("idempotency_ttl_days must outlast the retry horizon plus the DLQ retention")
    if i.breaker.failure_threshold < 1 or not 1 <= i.breaker.open_seconds <= i.breaker.max_open_seconds <= 43_200:
        out.append("breaker: failure_threshold >= 1 and 1 <= open_seconds <= max_open_seconds <= 12h")
    if i.webhook and not 0.5 <= i.webhook.deadline_seconds <= 25:
        out.append("webhook deadline_seconds must be 0.5..25")
    if i.webhook and not i.webhook.path.startswith("/"):
        out.append("webhook path must start with '/'")
    if i.webhook and not 0 < i.webhook.timestamp_tolerance_seconds <= 3600:
        out.append("timestamp_tolerance_seconds must be 1..3600; the window cannot be switched off")
    if i.idempotency_ttl_days < i.queue.dlq_retention_days + 4:
        out.append("idempotency_ttl_days must outlast sender retries plus the DLQ retention")
    return out


def secret_id(stage: str, secret: SecretRef) -> str:
    """The Secrets Manager name of a declared secret in a stage."""
    return f"junction/{stage}/{secret.name}"


def queue_name(stage: str, integration: Integration, *, dead_letter: bool = False) -> str:
    base = f"junction-{stage}-{integration.name}" + ("-dlq" if dead_letter else "")
    return base + ".fifo" if integration.queue.fifo else base


# Derived settings. The CDK stack and the local runtime both call these, so a deployed stack and
# the local one cannot drift apart.
def visibility_timeout_seconds(integration: Integration) -> int:
    """Six times the processor timeout (AWS's advice for SQS event sources)."""
    return 6 * integration.processor.timeout_seconds


def idempotency_table_name(stage: str) -> str:
    return f"junction-{stage}-idempotency"


def state_table_name(stage: str) -> str:
    return f"junction-{stage}-state"


# Item layout shared by every writer and reader of the tables (processors, ops CLI, local runtime).
TABLE_KEYS = {
    "idempotency": ("id", None),  # partition key only
    "state": ("pk", "sk"),
}
TTL_ATTRIBUTE = "expires_at"  # epoch seconds, on both tables
