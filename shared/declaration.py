"""The one declaration each integration makes of itself.

Plain data (stdlib dataclasses only): the CDK stack, the local runtime, the tests and the ops
CLI all read these objects; nothing here may import aws_cdk, boto3 or pydantic, because the
ingress Lambda imports its declaration on the cold-start path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SignatureScheme = Literal["shopify", "standard-webhooks", "woocommerce", "stripe", "przelewy24", "shipx"]


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

    path: str  # e.g. "/webhooks/shopify/orders"
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
    # The status of an accepted delivery. 202 says "queued, not yet done"; a provider that stops
    # re-sending only on a 200 (Przelewy24) gets 200.
    accepted_status: int = 202
    # Source addresses (CIDR) the route accepts, for a provider that documents them (InPost ShipX:
    # 91.216.25.0/24); the API's resource policy refuses any other. Empty: callable from anywhere.
    source_ips: tuple[str, ...] = ()

    @property
    def path_token(self) -> str | None:
        """The path parameter that carries a secret token (``/webhooks/inpost/{token}``), for a
        provider that cannot sign (ShipX): ingress compares it with the secret's values."""
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        return last[1:-1] if last.startswith("{") and last.endswith("}") else None


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


CursorKind = Literal["token", "timestamp"]


@dataclass(frozen=True)
class Cursor:
    """Where a poller is in its source.

    - ``token``: an opaque token or event id the source hands back (exact; nothing is re-read).
    - ``timestamp``: the highest change stamp seen. A coarse source (one that filters by date only,
      or whose stamps may commit late) is re-read from ``lookback_seconds`` before it, and what the
      lookback re-reads unchanged is not sent again. Changes sharing the boundary stamp are kept,
      because the comparison is on content per key, never ``stamp > cursor``.
    """

    kind: CursorKind
    lookback_seconds: int = 0


@dataclass(frozen=True)
class ScheduleTrigger:
    """An EventBridge schedule that starts the integration's poller (which has no queue of its own)."""

    expression: str  # "rate(5 minutes)" or "cron(0 3 * * ? *)"
    cursor: Cursor = field(default_factory=lambda: Cursor("token"))
    page_size: int = 100  # items asked of the source per request
    items_per_message: int = 250  # changes per queue message (one target call's worth)
    # The poller's module in the integration's package: ``build(secrets, stage)`` -> a Source.
    poller: str = "source"
    function: FunctionSettings = field(default_factory=lambda: FunctionSettings(512, 120))


@dataclass(frozen=True)
class AlarmThresholds:
    dlq_depth: int = 1  # alarm when at least this many messages wait in the DLQ
    oldest_message_age_seconds: int = 900  # alarm when the main queue lags this much


@dataclass(frozen=True)
class RateBudget:
    """Requests per second that every invocation of every target sharing ``account`` may spend
    together: a token bucket in the state table (shared/rate_budget.py). A 429's ``Retry-After``
    holds the whole account, not just the invocation that got it."""

    account: str  # the budget's key, e.g. "allegro" (one client id), "shopify" (one shop)
    per_second: float
    burst: int


@dataclass(frozen=True)
class Target:
    """One system an integration delivers to, with everything that keeps it apart from the others:
    its own queue and DLQ, idempotency scope, retry horizon, circuit breaker, concurrency, rate
    budget and alarms. A failing target never blocks or re-runs another."""

    name: str  # the system: "erp", "shopify", "allegro" (also its stand-in's name)
    # The module whose ``build(ctx, http)`` makes its Flow: a name in the integration's package,
    # or a dotted path (``functions.orders.to_erp``) when several integrations share the flow.
    flow: str = "flow"
    secrets: tuple[SecretRef, ...] = ()  # what its processor reads (the target's credentials)
    # Secrets its processor may also write back (rotated OAuth refresh tokens).
    writes_secrets: tuple[SecretRef, ...] = ()
    queue: QueueSettings = field(default_factory=QueueSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreakerSettings = field(default_factory=CircuitBreakerSettings)
    max_concurrency: int = 5  # SQS event source MaximumConcurrency (2..1000)
    processor: FunctionSettings = field(default_factory=FunctionSettings)
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    rate: RateBudget | None = None
    idempotency_ttl_days: int = 30  # > longest sender retry horizon + DLQ retention (redrive window)
    # Records the ids it made in the entity's cross-reference (``shared.xref``), so that any of
    # them finds the entity's trace.
    cross_reference: bool = False
    # The target whose ids this one needs (a warehouse that wants the ERP's document number). Its
    # messages are then not sent by the source but by that target's processor, once its effect is
    # made, carrying its ids (``Envelope.upstream``): the dependency waits on the queue, no
    # message polls for the other's id.
    after: str | None = None


@dataclass(frozen=True)
class Integration:
    name: str  # kebab-case, unique: "shop-orders-to-erp"
    description: str
    source: str  # system the data comes from: "shopify"
    trigger: WebhookTrigger | ScheduleTrigger
    package: str  # python package of the integration: "functions.shop_orders_to_erp"
    targets: tuple[Target, ...]
    secrets: tuple[SecretRef, ...] = ()  # what the poller reads (source credentials)
    ingress: FunctionSettings = field(default_factory=lambda: FunctionSettings(256, 10))

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
    def entry_targets(self) -> tuple[Target, ...]:
        """The targets the source's events are sent to (ingress, poller): those after no other."""
        return tuple(t for t in self.targets if t.after is None)

    def followers(self, target: Target) -> tuple[Target, ...]:
        """The targets whose messages ``target``'s processor sends on, after its effect."""
        return tuple(t for t in self.targets if t.after == target.name)

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(f"{self.name} has no target {name!r} (its targets: {', '.join(t.name for t in self.targets)})")

    def flow_module(self, target: Target) -> str:
        """The module whose ``build(ctx, http)`` makes the target's flow."""
        return self._module(target.flow)

    @property
    def poller_module(self) -> str | None:
        return self._module(self.schedule.poller) if self.schedule else None

    def _module(self, name: str) -> str:
        return name if "." in name else f"{self.package}.{name}"

    @property
    def all_secrets(self) -> tuple[SecretRef, ...]:
        found: list[SecretRef] = [self.webhook.secret] if self.webhook else []
        for ref in (*self.secrets, *(s for t in self.targets for s in (*t.secrets, *t.writes_secrets))):
            if ref not in found:
                found.append(ref)
        return tuple(found)

    def __post_init__(self) -> None:
        problems = validate(self)
        if problems:
            raise ValueError(f"integration {self.name!r}: " + "; ".join(problems))


# The functions of every integration. Processors and pollers share one handler each: it reads
# the integration (and target) from its environment and builds what the declaration names.
PROCESSOR_HANDLER = "functions.handlers.processor"
# A processor's environment: the queues of the targets after it (``Target.after``), comma-separated.
FOLLOWER_QUEUES_ENV = "JUNCTION_FOLLOWER_QUEUE_URLS"
POLLER_HANDLER = "functions.handlers.poller"


def _kebab(name: str) -> bool:
    return bool(name) and all(c.islower() or c.isdigit() or c == "-" for c in name)


def validate_target(integration: Integration, t: Target) -> list[str]:
    out: list[str] = []
    where = f"target {t.name!r}: "
    if not _kebab(t.name):
        out.append(where + "name must be kebab-case")
    if not 1 <= t.queue.batch_size <= 10_000:
        out.append(where + "queue.batch_size must be 1..10000")
    if t.queue.fifo and t.queue.batch_size > 10:
        out.append(where + "FIFO queues take batch_size <= 10")
    if t.queue.batch_size > 10 and t.queue.batching_window_seconds < 1:
        out.append(where + "batch_size above 10 needs batching_window_seconds >= 1")
    if t.queue.max_receive_count < 5:
        out.append(where + "queue.max_receive_count must be >= 5")
    if t.queue.dlq_retention_days <= t.queue.retention_days or t.queue.dlq_retention_days > 14:
        out.append(where + "queue.dlq_retention_days must exceed retention_days and be <= 14")
    if not 2 <= t.max_concurrency <= 1000:
        out.append(where + "max_concurrency must be 2..1000 (SQS event source MaximumConcurrency)")
    if t.processor.timeout_seconds * 6 > 43_200:
        out.append(where + "processor timeout too long for a 6x visibility timeout")
    if t.retry.max_delay_seconds > 43_200 or t.retry.base_delay_seconds < 1:
        out.append(where + "retry delays must be 1s..12h (SQS visibility timeout range)")
    if t.retry.horizon_seconds < 3600:
        out.append(where + "retry.horizon_seconds must be at least an hour")
    if t.retry.horizon_seconds + t.queue.dlq_retention_days * 86_400 > t.idempotency_ttl_days * 86_400:
        out.append(where + "idempotency_ttl_days must outlast the retry horizon plus the DLQ retention")
    if t.idempotency_ttl_days < t.queue.dlq_retention_days + 4:
        out.append(where + "idempotency_ttl_days must outlast sender retries plus the DLQ retention")
    b = t.breaker
    if b.failure_threshold < 1 or not 1 <= b.open_seconds <= b.max_open_seconds <= 43_200:
        out.append(where + "breaker: failure_threshold >= 1 and 1 <= open_seconds <= max_open_seconds <= 12h")
    if t.rate is not None and (t.rate.per_second <= 0 or t.rate.burst < 1 or not _kebab(t.rate.account)):
        out.append(where + "rate: per_second > 0, burst >= 1 and a kebab-case account")
    if len(function_name("prod", integration, f"{t.name}-processor")) > 64:
        out.append(where + "integration and target names too long for a Lambda function name")
    return out


def validate(integration: Integration) -> list[str]:
    """Rules every declaration must satisfy; the stack relies on them."""
    i = integration
    out: list[str] = []
    if not _kebab(i.name):
        out.append("name must be kebab-case")
    if not i.targets:
        out.append("at least one target")
    names = [t.name for t in i.targets]
    if len(set(names)) != len(names):
        out.append(f"target names must be unique: {names}")
    for t in i.targets:
        out.extend(validate_target(i, t))
        if t.after is not None:
            upstream = next((u for u in i.targets if u.name == t.after), None)
            if upstream is None or upstream is t:
                out.append(f"target {t.name!r}: after must name another target of the integration")
            elif upstream.after is not None:
                out.append(f"target {t.name!r}: after names {t.after!r}, which is itself after another")
    if i.webhook and not 0.5 <= i.webhook.deadline_seconds <= 25:
        out.append("webhook deadline_seconds must be 0.5..25")
    if i.webhook and not i.webhook.path.startswith("/"):
        out.append("webhook path must start with '/'")
    if i.webhook and i.webhook.accepted_status not in (200, 202):
        out.append("webhook accepted_status must be 200 or 202")
    if i.webhook and "{" in i.webhook.path.replace("{" + (i.webhook.path_token or "") + "}", ""):
        out.append("a webhook path may hold one path parameter, its last segment (the path token)")
    if i.webhook and not 0 < i.webhook.timestamp_tolerance_seconds <= 3600:
        out.append("timestamp_tolerance_seconds must be 1..3600; the window cannot be switched off")
    s = i.schedule
    if s is not None:
        if not 1 <= s.page_size <= 10_000:
            out.append("schedule.page_size must be 1..10000")
        if not 1 <= s.items_per_message <= 1000:
            out.append("schedule.items_per_message must be 1..1000")
        if s.cursor.kind == "token" and s.cursor.lookback_seconds:
            out.append("a token cursor has no lookback (it is exact)")
        if s.cursor.lookback_seconds < 0:
            out.append("cursor.lookback_seconds must be >= 0")
        if not 30 <= s.function.timeout_seconds <= 900:
            out.append("schedule.function.timeout_seconds must be 30..900")
    return out


def secret_id(stage: str, secret: SecretRef) -> str:
    """The Secrets Manager name of a declared secret in a stage."""
    return f"junction/{stage}/{secret.name}"


def queue_name(stage: str, integration: Integration, target: Target, *, dead_letter: bool = False) -> str:
    base = f"junction-{stage}-{integration.name}-{target.name}" + ("-dlq" if dead_letter else "")
    return base + ".fifo" if target.queue.fifo else base


def function_name(stage: str, integration: Integration, role: str) -> str:
    """``role``: "ingress", "poller", or "<target>-processor"."""
    return f"junction-{stage}-{integration.name}-{role}"


def lease_seconds(integration: Integration) -> int:
    """A poller's lease outlives its invocation, so a run still going is never overlapped; a
    crashed run's lease lapses that long after it was taken."""
    schedule = integration.schedule
    return (schedule.function.timeout_seconds if schedule else 0) + 30


# Derived settings. The CDK stack and the local runtime both call these, so a deployed stack and
# the local one cannot drift apart.
def visibility_timeout_seconds(target: Target) -> int:
    """Six times the processor timeout (AWS's advice for SQS event sources)."""
    return 6 * target.processor.timeout_seconds


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
