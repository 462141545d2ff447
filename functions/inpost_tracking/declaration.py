from functions.shipping.targets import shipping_targets
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

INPOST_WEBHOOK_TOKEN = SecretRef(
    "inpost-webhook-token",
    "The unguessable token in the ShipX webhook URL (/webhooks/inpost/<token>; at least 32 random "
    'characters): JSON {"secrets": [...]}',
)

INTEGRATION = Integration(
    name="inpost-tracking",
    description="ShipX shipment_status_changed -> re-read from ShipX -> delivered/returned to the shop and the ERP",
    source="inpost",
    package="functions.inpost_tracking",
    trigger=WebhookTrigger(
        # ShipX does not sign its webhooks: a secret path token, InPost's source addresses (the API's
        # resource policy) and a re-read of the shipment protect the route.
        path="/webhooks/inpost/{token}",
        scheme="shipx",
        secret=INPOST_WEBHOOK_TOKEN,
        # InPost documents one source network for ShipX webhooks, production and sandbox alike.
        source_ips=("91.216.25.0/24",),
        throttle_rate_per_second=20,
        throttle_burst=100,
    ),
    # A status ShipX does not confirm waits for it (its API may lag its webhook) for a day, then
    # goes to the DLQ: a forgery, or a disagreement for a person to look at.
    targets=shipping_targets("functions.shipping.status", horizon_hours=24),
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
