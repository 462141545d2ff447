"""The targets of the payment route (Stripe and Przelewy24 payments into the ERP).

A Stripe event is signed by Stripe and final as it comes: it goes straight to the ERP. A
Przelewy24 notification is final only once Przelewy24 confirms it (``transaction/verify``): the
ERP gets it from the verify hop's processor, with the verified ids (``Target.after``), never from
the webhook alone.
"""

from __future__ import annotations

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared.declaration import (
    AlarmThresholds,
    FunctionSettings,
    QueueSettings,
    RetryPolicy,
    SecretRef,
    Target,
)

P24_API = SecretRef(
    "przelewy24-api", 'Przelewy24 REST API: JSON {"base_url", "merchant_id", "pos_id", "api_key", "crc"}'
)


def erp_payments(*, after: str | None = None) -> Target:
    """Payments and refunds into the ERP: one incoming payment per payment, one refund document
    per refund. A payment whose order is not in the ERP yet waits for it (the order may still be
    in flight from a marketplace poll), up to the retry horizon."""
    return Target(
        name="erp",
        flow="functions.payments.to_erp",
        secrets=(ERP_CREDENTIALS,),
        queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
        retry=RetryPolicy(base_delay_seconds=10, max_delay_seconds=900, horizon_seconds=72 * 3600),
        max_concurrency=5,
        processor=FunctionSettings(memory_mb=512, timeout_seconds=30),
        alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=1800),
        cross_reference=True,
        after=after,
    )


P24_VERIFY = Target(
    name="przelewy24",
    flow="functions.payments.p24_verify",
    secrets=(P24_API,),
    queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
    retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
    max_concurrency=5,
    processor=FunctionSettings(memory_mb=256, timeout_seconds=30),
    alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=900),
    cross_reference=True,
)
