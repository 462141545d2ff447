"""The declaration rules every integration must satisfy, and the registry that lists them."""

from dataclasses import replace

import pytest

from functions import registry
from shared.declaration import (
    FunctionSettings,
    QueueSettings,
    ScheduleTrigger,
    queue_name,
    secret_id,
    visibility_timeout_seconds,
)


def test_every_registered_integration_is_valid_and_unique() -> None:
    names = [i.name for i in registry.INTEGRATIONS]
    assert names, "the registry lists at least one integration"
    assert len(names) == len(set(names))
    paths = [i.webhook.path for i in registry.INTEGRATIONS if i.webhook]
    assert len(paths) == len(set(paths)), "two integrations share a webhook route"


def test_get_finds_by_name_and_names_the_known_ones_when_it_cannot() -> None:
    assert registry.get("shop-orders-to-erp").source == "shopify"
    with pytest.raises(KeyError, match="shop-orders-to-erp"):
        registry.get("no-such-integration")


def test_handlers_follow_the_package_convention() -> None:
    integration = registry.get("shop-orders-to-erp")
    assert integration.ingress_handler == "functions.shop_orders_to_erp.ingress.handler"
    assert integration.processor_handler == "functions.shop_orders_to_erp.processor.handler"


def test_webhook_secret_comes_first_and_is_not_listed_twice() -> None:
    integration = registry.get("shop-orders-to-erp")
    assert integration.webhook is not None
    names = [s.name for s in integration.all_secrets]
    assert names[0] == integration.webhook.secret.name
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Shop_Orders"}, "kebab-case"),
        ({"queue": QueueSettings(max_receive_count=3)}, "max_receive_count"),
        ({"queue": QueueSettings(retention_days=14, dlq_retention_days=14)}, "dlq_retention_days"),
        ({"queue": QueueSettings(fifo=True, batch_size=20, batching_window_seconds=1)}, "FIFO"),
        ({"queue": QueueSettings(batch_size=50)}, "batching_window_seconds"),
        ({"max_concurrency": 1}, "max_concurrency"),
        ({"processor": FunctionSettings(timeout_seconds=900 * 9)}, "6x"),
        ({"idempotency_ttl_days": 3}, "idempotency_ttl_days"),
    ],
)
def test_invalid_declarations_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    base = registry.get("shop-orders-to-erp")
    with pytest.raises(ValueError, match=message):
        replace(base, **change)  # type: ignore[arg-type]


def test_the_timestamp_window_cannot_be_switched_off() -> None:
    base = registry.get("shop-orders-to-erp")
    assert base.webhook is not None
    for tolerance in (0, -1, 86_400):
        with pytest.raises(ValueError, match="timestamp_tolerance_seconds"):
            replace(base, trigger=replace(base.webhook, timestamp_tolerance_seconds=tolerance))


def test_schedule_integrations_have_no_ingress() -> None:
    base = registry.get("shop-orders-to-erp")
    polled = replace(base, name="erp-stock-poll", trigger=ScheduleTrigger("rate(5 minutes)"))
    assert polled.ingress_handler is None
    assert polled.schedule is not None
    assert polled.webhook is None


def test_derived_names_and_settings() -> None:
    base = registry.get("shop-orders-to-erp")
    assert queue_name("dev", base) == "junction-dev-shop-orders-to-erp"
    assert queue_name("dev", base, dead_letter=True) == "junction-dev-shop-orders-to-erp-dlq"
    fifo = replace(base, queue=QueueSettings(fifo=True))
    assert queue_name("prod", fifo, dead_letter=True) == "junction-prod-shop-orders-to-erp-dlq.fifo"
    assert visibility_timeout_seconds(base) == 6 * base.processor.timeout_seconds
    assert base.webhook is not None
    assert secret_id("prod", base.webhook.secret) == "junction/prod/shopify-webhook"
