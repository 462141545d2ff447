from functions.shipping.targets import shipping_targets
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

WMS_WEBHOOK_SECRET = SecretRef(
    "wms-webhook", 'Warehouse (WMS) webhook signing secret(s), Standard Webhooks: JSON {"secrets": ["whsec_..."]}'
)

INTEGRATION = Integration(
    name="inpost-shipments",
    description="The warehouse's order.packed -> an InPost shipment (ShipX) -> tracking to the shop and the ERP",
    source="wms",
    package="functions.inpost_shipments",
    trigger=WebhookTrigger(
        path="/webhooks/wms/packed",
        scheme="standard-webhooks",
        secret=WMS_WEBHOOK_SECRET,
        throttle_rate_per_second=20,
        throttle_burst=100,
    ),
    targets=shipping_targets("functions.shipping.to_inpost"),
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
