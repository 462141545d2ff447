"""The declaration rules every integration must satisfy, and the registry that lists them.

The stack, the local runtime and the processors rely on these rules; a declaration that breaks
one is refused when it is made, with the rule and the target it concerns in the message."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from functions import registry
from shared.declaration import (
    POLLER_HANDLER,
    PROCESSOR_HANDLER,
    CircuitBreakerSettings,
    Cursor,
    FunctionSettings,
    Integration,
    QueueSettings,
    RateBudget,
    RetryPolicy,
    ScheduleTrigger,
    SecretRef,
    Target,
    WebhookTrigger,
    function_name,
    lease_seconds,
    queue_name,
    secret_id,
    validate,
    visibility_timeout_seconds,
)

ERP_SOURCE = SecretRef("erp-service-layer", "ERP connection")
SHOPIFY_ADMIN = SecretRef("shopify-admin", "Shopify Admin API token")
ALLEGRO = SecretRef("allegro-api", "Allegro OAuth client and refresh token")
DAY = 86_400


def webhook_integration() -> Integration:
    return registry.get("shopify-orders")


def scheduled(**changes: Any) -> Integration:
    """A scheduled integration with two targets, as the stock sync declares itself."""
    fields: dict[str, Any] = {
        "name": "stock-to-channels",
        "description": "ERP stock levels -> sales channels",
        "source": "erp",
        "trigger": ScheduleTrigger("rate(5 minutes)", cursor=Cursor("timestamp", lookback_seconds=300)),
        "package": "tests.unit",
        "secrets": (ERP_SOURCE,),
        "targets": (
            Target("shopify", flow="to_shopify", secrets=(SHOPIFY_ADMIN,), rate=RateBudget("shopify", 2.0, 40)),
            Target(
                "allegro",
                flow="to_allegro",
                secrets=(ALLEGRO,),
                writes_secrets=(ALLEGRO,),
                rate=RateBudget("allegro", 5.0, 10),
            ),
        ),
    }
    fields.update(changes)
    return Integration(**fields)


def with_target(integration: Integration, **changes: Any) -> Integration:
    """The integration with its first target changed (the change validated as a whole)."""
    first, *rest = integration.targets
    if "name" in changes:  # the targets after it follow it under its new name
        rest = [replace(t, after=changes["name"]) if t.after == first.name else t for t in rest]
    return replace(integration, targets=(replace(first, **changes), *rest))


def with_schedule(**changes: Any) -> Integration:
    base = scheduled()
    assert base.schedule is not None
    return replace(base, trigger=replace(base.schedule, **changes))


# -- the registry ----------------------------------------------------------------------------
def test_every_registered_integration_is_valid_and_unique() -> None:
    names = [i.name for i in registry.INTEGRATIONS]
    assert names, "the registry lists at least one integration"
    assert len(names) == len(set(names))
    paths = [i.webhook.path for i in registry.INTEGRATIONS if i.webhook]
    assert len(paths) == len(set(paths)), "two integrations share a webhook route"
    for integration in registry.INTEGRATIONS:
        assert validate(integration) == []
        assert integration.targets


def test_get_finds_by_name_and_names_the_known_ones_when_it_cannot() -> None:
    assert registry.get("shopify-orders").source == "shopify"
    with pytest.raises(KeyError, match="shopify-orders"):
        registry.get("no-such-integration")


def test_a_target_is_found_by_name_and_an_unknown_one_names_the_known_ones() -> None:
    integration = scheduled()
    assert integration.target("allegro").flow == "to_allegro"
    with pytest.raises(KeyError, match="shopify, allegro"):
        integration.target("erp")


def test_handlers_and_modules_follow_the_package_convention() -> None:
    integration = webhook_integration()
    assert integration.ingress_handler == "functions.shopify_orders.ingress.handler"
    assert integration.flow_module(integration.target("erp")) == "functions.orders.to_erp"  # shared: dotted
    assert integration.poller_module is None
    polled = scheduled()
    assert polled.ingress_handler is None
    assert polled.poller_module == "tests.unit.source"
    assert [polled.flow_module(t) for t in polled.targets] == ["tests.unit.to_shopify", "tests.unit.to_allegro"]
    # One generic handler each for every processor and poller: they read the env.
    assert PROCESSOR_HANDLER == "functions.handlers.processor"
    assert POLLER_HANDLER == "functions.handlers.poller"


# -- secrets ---------------------------------------------------------------------------------
def test_webhook_secret_comes_first_and_is_not_listed_twice() -> None:
    integration = webhook_integration()
    assert integration.webhook is not None
    names = [s.name for s in integration.all_secrets]
    assert names[0] == integration.webhook.secret.name
    assert len(names) == len(set(names))


def test_all_secrets_collects_webhook_poller_and_target_secrets_once_each() -> None:
    base = webhook_integration()
    assert base.webhook is not None
    hook = base.webhook.secret
    shared = SecretRef("shared-store", "read by the poller and a target")
    integration = replace(
        base,
        secrets=(shared,),
        targets=(
            Target("erp", secrets=(ERP_SOURCE, shared), writes_secrets=(ALLEGRO,)),
            Target("allegro", secrets=(ALLEGRO, hook), writes_secrets=(ALLEGRO,)),
        ),
    )
    assert integration.all_secrets == (hook, shared, ERP_SOURCE, ALLEGRO)


def test_all_secrets_of_a_scheduled_integration_are_the_pollers_then_the_targets() -> None:
    assert scheduled().all_secrets == (ERP_SOURCE, SHOPIFY_ADMIN, ALLEGRO)


# -- integration rules -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Shop_Orders"}, "kebab-case"),
        ({"targets": ()}, "at least one target"),
        ({"targets": (Target("erp"), Target("erp"))}, "target names must be unique"),
        ({"targets": (Target("ERP"),)}, "target 'ERP': name must be kebab-case"),
    ],
)
def test_invalid_integrations_are_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(webhook_integration(), **change)


def test_the_timestamp_window_cannot_be_switched_off() -> None:
    base = webhook_integration()
    assert base.webhook is not None
    for tolerance in (0, -1, 86_400):
        with pytest.raises(ValueError, match="timestamp_tolerance_seconds"):
            replace(base, trigger=replace(base.webhook, timestamp_tolerance_seconds=tolerance))


@pytest.mark.parametrize(
    ("change", "message"),
    [({"deadline_seconds": 0.1}, "deadline_seconds"), ({"path": "webhooks/x"}, "must start with '/'")],
)
def test_invalid_webhooks_are_refused(change: dict[str, Any], message: str) -> None:
    base = webhook_integration()
    assert isinstance(base.trigger, WebhookTrigger)
    with pytest.raises(ValueError, match=message):
        replace(base, trigger=replace(base.trigger, **change))


# -- per-target rules ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"queue": QueueSettings(batch_size=0)}, "batch_size must be 1..10000"),
        ({"queue": QueueSettings(batch_size=10_001, batching_window_seconds=1)}, "batch_size must be 1..10000"),
        ({"queue": QueueSettings(fifo=True, batch_size=20, batching_window_seconds=1)}, "FIFO"),
        ({"queue": QueueSettings(batch_size=50)}, "batching_window_seconds"),
        ({"queue": QueueSettings(max_receive_count=3)}, "max_receive_count"),
        ({"queue": QueueSettings(retention_days=14, dlq_retention_days=14)}, "dlq_retention_days"),
        ({"queue": QueueSettings(retention_days=4, dlq_retention_days=15)}, "dlq_retention_days"),
        ({"max_concurrency": 1}, "max_concurrency"),
        ({"max_concurrency": 1001}, "max_concurrency"),
        ({"processor": FunctionSettings(timeout_seconds=900 * 9)}, "6x"),
        ({"retry": RetryPolicy(base_delay_seconds=0)}, "retry delays"),
        ({"retry": RetryPolicy(max_delay_seconds=43_201)}, "retry delays"),
        ({"retry": RetryPolicy(horizon_seconds=3599)}, "horizon_seconds must be at least an hour"),
        # 20 days of retries plus 14 of DLQ retention outlive a 30-day record: a redrive duplicates.
        ({"retry": RetryPolicy(horizon_seconds=20 * DAY)}, "outlast the retry horizon plus the DLQ retention"),
        ({"idempotency_ttl_days": 16}, "outlast the retry horizon plus the DLQ retention"),
        ({"idempotency_ttl_days": 3}, "idempotency_ttl_days"),
        (
            {"retry": RetryPolicy(horizon_seconds=3600), "idempotency_ttl_days": 17},
            "outlast sender retries plus the DLQ retention",
        ),
        ({"breaker": CircuitBreakerSettings(failure_threshold=0)}, "breaker"),
        ({"breaker": CircuitBreakerSettings(open_seconds=0)}, "breaker"),
        ({"breaker": CircuitBreakerSettings(open_seconds=60, max_open_seconds=30)}, "breaker"),
        ({"breaker": CircuitBreakerSettings(max_open_seconds=43_201)}, "breaker"),
        ({"rate": RateBudget("erp", 0, 10)}, "rate"),
        ({"rate": RateBudget("erp", 5, 0)}, "rate"),
        ({"rate": RateBudget("ERP_1", 5, 10)}, "rate"),
        ({"name": "x" * 30}, "too long for a Lambda function name"),
    ],
)
def test_invalid_targets_are_refused_with_the_target_and_the_reason(change: dict[str, Any], message: str) -> None:
    base = webhook_integration()
    with pytest.raises(ValueError, match=message) as refused:
        with_target(base, **change)
    name = change.get("name", "erp")
    assert f"integration '{base.name}': " in str(refused.value)
    assert f"target '{name}': " in str(refused.value)


def test_the_limits_themselves_are_allowed() -> None:
    base = webhook_integration()
    with_target(base, max_concurrency=2)
    with_target(base, max_concurrency=1000)
    with_target(base, queue=QueueSettings(batch_size=10_000, batching_window_seconds=1))
    with_target(base, retry=RetryPolicy(horizon_seconds=3 * DAY), idempotency_ttl_days=18)
    with_target(base, breaker=CircuitBreakerSettings(open_seconds=43_200, max_open_seconds=43_200))
    with_target(base, rate=RateBudget("erp-main", 0.5, 1))
    with_target(base, name="x" * 21)  # junction-prod-shopify-orders-<21>-processor: 64 characters


def test_each_target_is_checked_on_its_own_and_every_problem_is_named() -> None:
    integration = scheduled()
    shopify, allegro = integration.targets
    with pytest.raises(ValueError) as refused:
        replace(integration, targets=(replace(shopify, max_concurrency=1), replace(allegro, idempotency_ttl_days=3)))
    text = str(refused.value)
    assert "target 'shopify': max_concurrency" in text
    assert "target 'allegro': idempotency_ttl_days" in text
    assert "target 'shopify': idempotency_ttl_days" not in text


def test_the_function_name_limit_counts_the_integration_too() -> None:
    with pytest.raises(ValueError) as refused:
        scheduled(name="stock-levels-from-the-erp-to-channels")  # 37 + 7-letter targets: 69 characters
    for target in ("shopify", "allegro"):
        assert f"target '{target}': integration and target names too long" in str(refused.value)
    scheduled(name="stock-levels-from-erp-to-channel")  # junction-prod-<32>-shopify-processor: 64


# -- schedule rules --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"page_size": 0}, "page_size must be 1..10000"),
        ({"page_size": 10_001}, "page_size must be 1..10000"),
        ({"items_per_message": 0}, "items_per_message must be 1..1000"),
        ({"items_per_message": 1001}, "items_per_message must be 1..1000"),
        ({"cursor": Cursor("token", lookback_seconds=60)}, "a token cursor has no lookback"),
        ({"cursor": Cursor("timestamp", lookback_seconds=-1)}, "lookback_seconds must be >= 0"),
        ({"function": FunctionSettings(512, 29)}, "timeout_seconds must be 30..900"),
        ({"function": FunctionSettings(512, 901)}, "timeout_seconds must be 30..900"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with_schedule(**change)


def test_schedule_limits_and_defaults_are_allowed() -> None:
    with_schedule(page_size=1, items_per_message=1, function=FunctionSettings(512, 30))
    with_schedule(page_size=10_000, items_per_message=1000, function=FunctionSettings(512, 900))
    with_schedule(cursor=Cursor("token"))
    with_schedule(cursor=Cursor("timestamp", lookback_seconds=0))
    default = ScheduleTrigger("rate(1 hour)")
    assert default.cursor == Cursor("token", 0) and default.poller == "source"


def test_schedule_integrations_have_no_ingress() -> None:
    polled = scheduled()
    assert polled.ingress_handler is None
    assert polled.schedule is not None
    assert polled.webhook is None


# -- derived names and settings --------------------------------------------------------------
def test_queue_names_are_per_target() -> None:
    base = webhook_integration()
    erp = base.target("erp")
    assert queue_name("dev", base, erp) == "junction-dev-shopify-orders-erp"
    assert queue_name("dev", base, erp, dead_letter=True) == "junction-dev-shopify-orders-erp-dlq"
    fifo = replace(erp, queue=QueueSettings(fifo=True))
    assert queue_name("prod", base, fifo) == "junction-prod-shopify-orders-erp.fifo"
    assert queue_name("prod", base, fifo, dead_letter=True) == "junction-prod-shopify-orders-erp-dlq.fifo"
    polled = scheduled()
    names = [queue_name("prod", polled, t, dead_letter=dl) for t in polled.targets for dl in (False, True)]
    assert names == [
        "junction-prod-stock-to-channels-shopify",
        "junction-prod-stock-to-channels-shopify-dlq",
        "junction-prod-stock-to-channels-allegro",
        "junction-prod-stock-to-channels-allegro-dlq",
    ]
    assert all(len(n) <= 80 for n in names)  # SQS's limit on a queue name


def test_function_names_and_derived_settings() -> None:
    base = webhook_integration()
    erp = base.target("erp")
    assert function_name("dev", base, "ingress") == "junction-dev-shopify-orders-ingress"
    assert function_name("dev", base, "erp-processor") == "junction-dev-shopify-orders-erp-processor"
    assert function_name("dev", scheduled(), "poller") == "junction-dev-stock-to-channels-poller"
    assert visibility_timeout_seconds(erp) == 6 * erp.processor.timeout_seconds
    slow = replace(erp, processor=FunctionSettings(timeout_seconds=120))
    assert visibility_timeout_seconds(slow) == 720
    assert base.webhook is not None
    assert secret_id("prod", base.webhook.secret) == "junction/prod/shopify-webhook"


def test_a_pollers_lease_outlives_its_invocation() -> None:
    polled = with_schedule(function=FunctionSettings(512, 300))
    assert lease_seconds(polled) > 300
    assert lease_seconds(webhook_integration()) == 30  # no poller: nothing to overlap


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ("nowhere", "after must name another target"),
        ("erp", "after must name another target"),  # itself
    ],
)
def test_a_target_after_another_must_name_another_of_its_integration(after: str, message: str) -> None:
    base = webhook_integration()
    with pytest.raises(ValueError, match=message):
        with_target(base, after=after)


def test_a_target_after_another_gets_its_messages_from_it_not_from_the_source() -> None:
    orders = webhook_integration()
    assert [t.name for t in orders.entry_targets] == ["erp", "hubspot"]
    assert [t.name for t in orders.followers(orders.target("erp"))] == ["shipbob"]
    assert orders.followers(orders.target("hubspot")) == ()
