from shared.declaration import (
    AlarmThresholds,
    FunctionSettings,
    Integration,
    QueueSettings,
    RetryPolicy,
    SecretRef,
    Target,
    WebhookTrigger,
)

SHOPIFY_WEBHOOK_SECRET = SecretRef(
    "shopify-webhook", 'Shopify app client secret(s) that sign webhooks: JSON {"secrets": [...]}'
)
ERP_CREDENTIALS = SecretRef(
    "erp-service-layer",
    'ERP Service Layer connection: JSON {"base_url", "company_db", "username", "password"}',
)

INTEGRATION = Integration(
    name="shop-orders-to-erp",
    description="Shopify orders/create webhook -> one ERP sales order (customer found or created)",
    source="shopify",
    package="functions.shop_orders_to_erp",
    trigger=WebhookTrigger(
        path="/webhooks/shopify/orders-create",
        scheme="shopify",
        secret=SHOPIFY_WEBHOOK_SECRET,
        topic_header="x-shopify-topic",
        throttle_rate_per_second=50,
        throttle_burst=200,
    ),
    targets=(
        Target(
            name="erp",
            flow="flow",
            secrets=(ERP_CREDENTIALS,),
            queue=QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14),
            retry=RetryPolicy(base_delay_seconds=5, max_delay_seconds=900),
            max_concurrency=10,
            processor=FunctionSettings(memory_mb=512, timeout_seconds=30),
            alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=900),
        ),
    ),
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
