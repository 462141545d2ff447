"""Declarations the infra tests add to the registered ones, so every shape the stack must handle is
synthesized whatever the registry holds: a webhook fanned out to two targets, and a scheduled
integration whose targets differ in every per-target setting (FIFO, batching, concurrency, rate
budget, a credential written back), and a webhook of a sender that cannot sign: a secret token in its
path and a source-address allow-list. The stack reads only their strings; the packages need not exist."""

from __future__ import annotations

from shared.declaration import (
    AlarmThresholds,
    Cursor,
    FunctionSettings,
    Integration,
    QueueSettings,
    RateBudget,
    ScheduleTrigger,
    SecretRef,
    Target,
    WebhookTrigger,
)

SOURCE_SECRET = SecretRef("sample-erp", "the sample source's connection")
SHOP_SECRET = SecretRef("sample-shop-admin", "the sample shop's admin token")
MARKET_SECRET = SecretRef("sample-market-api", "the sample marketplace's client and rotated refresh token")
WEBHOOK_SECRET = SecretRef("sample-webhook", "the sample shop's webhook signing secret")
CARRIER_TOKEN = SecretRef("sample-carrier-webhook", "the sample carrier's webhook path token")
# Addresses the sample carrier sends from, one IPv4 and one IPv6 network.
CARRIER_SOURCE_IPS = ("198.51.100.0/24", "2001:db8:10::/48")

TWO_TARGET_WEBHOOK = Integration(
    name="sample-orders-fanout",
    description="a shop's orders to the ERP and to a warehouse",
    source="shopify",
    package="tests.infra.sample_orders_fanout",
    trigger=WebhookTrigger(path="/webhooks/sample/orders-fanout", scheme="shopify", secret=WEBHOOK_SECRET),
    targets=(
        Target(name="erp", flow="to_erp", secrets=(SOURCE_SECRET,), max_concurrency=4),
        Target(
            name="warehouse",
            flow="to_warehouse",
            queue=QueueSettings(batch_size=5),
            max_concurrency=2,
            processor=FunctionSettings(memory_mb=256, timeout_seconds=20),
            alarms=AlarmThresholds(dlq_depth=3, oldest_message_age_seconds=1800),
        ),
    ),
)

SCHEDULED = Integration(
    name="sample-stock-sync",
    description="the ERP's stock levels to a shop and a marketplace",
    source="erp",
    package="tests.infra.sample_stock_sync",
    trigger=ScheduleTrigger(
        "rate(10 minutes)",
        cursor=Cursor("timestamp", lookback_seconds=86_400),
        page_size=200,
        function=FunctionSettings(memory_mb=384, timeout_seconds=180),
    ),
    secrets=(SOURCE_SECRET,),
    targets=(
        Target(
            name="shopify",
            flow="to_shopify",
            secrets=(SHOP_SECRET,),
            queue=QueueSettings(fifo=True),
            max_concurrency=3,
            rate=RateBudget(account="sample-shop", per_second=2, burst=40),
        ),
        Target(
            name="allegro",
            flow="to_allegro",
            secrets=(MARKET_SECRET,),
            writes_secrets=(MARKET_SECRET,),
            queue=QueueSettings(batch_size=50, batching_window_seconds=5, max_receive_count=10),
            max_concurrency=8,
            processor=FunctionSettings(memory_mb=768, timeout_seconds=60),
            rate=RateBudget(account="sample-market", per_second=9, burst=9),
        ),
    ),
)

CRON = Integration(
    name="sample-nightly",
    description="a nightly full resync",
    source="erp",
    package="tests.infra.sample_nightly",
    trigger=ScheduleTrigger("cron(0 3 * * ? *)", cursor=Cursor("token")),
    secrets=(SOURCE_SECRET,),
    targets=(Target(name="shopify", flow="to_shopify", secrets=(SHOP_SECRET,)),),
)

TOKEN_WEBHOOK = Integration(
    name="sample-shipments",
    description="a carrier's shipment statuses to the ERP",
    source="carrier",
    package="tests.infra.sample_shipments",
    trigger=WebhookTrigger(
        path="/webhooks/sample-carrier/{token}",
        scheme="shipx",
        secret=CARRIER_TOKEN,
        source_ips=CARRIER_SOURCE_IPS,
        accepted_status=200,
    ),
    targets=(Target(name="erp", flow="to_erp", secrets=(SOURCE_SECRET,)),),
)

SAMPLES: tuple[Integration, ...] = (TWO_TARGET_WEBHOOK, SCHEDULED, CRON, TOKEN_WEBHOOK)
