from functions.orders.targets import ORDER_TARGETS
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

SHOPIFY_WEBHOOK_SECRET = SecretRef(
    "shopify-webhook", 'Shopify app client secret(s) that sign webhooks: JSON {"secrets": [...]}'
)

INTEGRATION = Integration(
    name="shopify-orders",
    description="Shopify orders/create and orders/cancelled webhooks -> the order route (ERP, HubSpot, ShipBob)",
    source="shopify",
    package="functions.shopify_orders",
    trigger=WebhookTrigger(
        # One URL for both subscriptions (orders/create, orders/cancelled): the topic header tells them apart.
        path="/webhooks/shopify/orders",
        scheme="shopify",
        secret=SHOPIFY_WEBHOOK_SECRET,
        topic_header="x-shopify-topic",
        throttle_rate_per_second=50,
        throttle_burst=200,
    ),
    targets=ORDER_TARGETS,
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
