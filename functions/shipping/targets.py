"""The targets of the parcel route: the InPost shipment, then the tracking back to the shop and
the ERP.

Both shipping integrations (the warehouse's ``order.packed``, ShipX's status changes) enter at
the ``inpost`` hop, which talks to ShipX (creates the shipment and follows it to its tracking
number; or re-reads a shipment whose status changed). The shop and the ERP are after it: they get
each event from the ``inpost`` processor with the ids and the status ShipX confirmed
(``Envelope.upstream``), never from the webhook body. Each shop target skips the orders of other
shops without a call.
"""

from __future__ import annotations

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS, SHOPIFY_ADMIN
from shared.declaration import (
    AlarmThresholds,
    FunctionSettings,
    QueueSettings,
    RateBudget,
    RetryPolicy,
    SecretRef,
    Target,
)

INPOST_SHIPX = SecretRef("inpost-shipx", 'InPost ShipX API: JSON {"base_url", "token", "organization_id"}')
WOOCOMMERCE_API = SecretRef(
    "woocommerce-api", 'WooCommerce REST API keys: JSON {"base_url", "consumer_key", "consumer_secret"}'
)

_QUEUE = QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14)


def inpost(flow: str, *, horizon_hours: int = 72) -> Target:
    return Target(
        name="inpost",
        flow=flow,
        secrets=(INPOST_SHIPX,),
        queue=_QUEUE,
        retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900, horizon_seconds=horizon_hours * 3600),
        max_concurrency=5,
        processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
        alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=900),
        # ShipX's limit is per organisation token: both shipping integrations spend one budget.
        rate=RateBudget(account="inpost", per_second=10, burst=100),
        cross_reference=True,
    )


SHOPIFY = Target(
    name="shopify",
    flow="functions.shipping.to_shopify",
    secrets=(SHOPIFY_ADMIN,),
    queue=_QUEUE,
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=1800),
    cross_reference=True,
    after="inpost",
)
WOOCOMMERCE = Target(
    name="woocommerce",
    flow="functions.shipping.to_woocommerce",
    secrets=(WOOCOMMERCE_API,),
    queue=_QUEUE,
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=1800),
    cross_reference=True,
    after="inpost",
)
ERP = Target(
    name="erp",
    flow="functions.shipping.to_erp",
    secrets=(ERP_CREDENTIALS,),
    queue=_QUEUE,
    retry=RetryPolicy(base_delay_seconds=10, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=512, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=1800),
    cross_reference=True,
    after="inpost",
)


def shipping_targets(inpost_flow: str, *, horizon_hours: int = 72) -> tuple[Target, ...]:
    return (inpost(inpost_flow, horizon_hours=horizon_hours), SHOPIFY, WOOCOMMERCE, ERP)
