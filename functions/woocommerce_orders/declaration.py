from functions.orders.targets import ORDER_TARGETS
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

WOOCOMMERCE_WEBHOOK_SECRET = SecretRef(
    "woocommerce-webhook",
    'WooCommerce webhook secret(s) (WooCommerce > Settings > Advanced > Webhooks): JSON {"secrets": [...]}',
)

INTEGRATION = Integration(
    name="woocommerce-orders",
    description="WooCommerce order.created and order.updated webhooks -> the order route (ERP, HubSpot, ShipBob)",
    source="woocommerce",
    package="functions.woocommerce_orders",
    trigger=WebhookTrigger(
        path="/webhooks/woocommerce/orders",
        scheme="woocommerce",
        secret=WOOCOMMERCE_WEBHOOK_SECRET,
        topic_header="x-wc-webhook-topic",
        throttle_rate_per_second=50,
        throttle_burst=200,
    ),
    targets=ORDER_TARGETS,
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
