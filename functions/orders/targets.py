"""The order route's targets, shared by every order source (Shopify, WooCommerce, Allegro).

Each source integration declares ``targets=ORDER_TARGETS``: one event reaches every target, each on
its own queue with its own DLQ, idempotency scope, retry horizon, breaker, concurrency and rate
budget. Adding a target to the route is one entry here (and its flow module); every source then
delivers to it, the stack deploys its queues and processors, and ``junction replay --target``
backfills it from history.
"""

from __future__ import annotations

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared.declaration import (
    AlarmThresholds,
    FunctionSettings,
    QueueSettings,
    RateBudget,
    RetryPolicy,
    SecretRef,
    Target,
)

HUBSPOT_TOKEN = SecretRef("hubspot-private-app", 'HubSpot private app: JSON {"base_url", "access_token"}')
SHIPBOB_TOKEN = SecretRef("shipbob-api", 'ShipBob personal access token: JSON {"base_url", "token", "channel_id"}')

ERP = Target(
    name="erp",
    flow="functions.orders.to_erp",
    secrets=(ERP_CREDENTIALS,),
    queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=10,
    processor=FunctionSettings(memory_mb=512, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=900),
    cross_reference=True,
)
HUBSPOT = Target(
    name="hubspot",
    flow="functions.orders.to_hubspot",
    secrets=(HUBSPOT_TOKEN,),
    queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=1800),
    # Private apps: 190 requests per 10 s per account (docs/hubspot-contract.md), shared by
    # every source's HubSpot processor.
    rate=RateBudget(account="hubspot", per_second=19, burst=190),
    cross_reference=True,
)
SHIPBOB = Target(
    name="shipbob",
    flow="functions.orders.to_shipbob",
    secrets=(SHIPBOB_TOKEN,),
    queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=900),
    # 150 requests a minute (docs/wms-contract.md); an order spends up to three.
    rate=RateBudget(account="shipbob", per_second=2.5, burst=150),
    cross_reference=True,
    # The pick request carries the ERP's document: ShipBob gets each order event from the ERP's
    # processor, after the ERP made its effect, never straight from the source.
    after="erp",
)

ORDER_TARGETS: tuple[Target, ...] = (ERP, HUBSPOT, SHIPBOB)
