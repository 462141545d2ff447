from functions.payments.targets import erp_payments
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

STRIPE_WEBHOOK_SECRET = SecretRef(
    "stripe-webhook", 'Stripe webhook endpoint signing secret(s) (whsec_...): JSON {"secrets": [...]}'
)

INTEGRATION = Integration(
    name="stripe-payments",
    description="Stripe payment_intent.succeeded and charge.refunded -> ERP incoming payments and refunds",
    source="stripe",
    package="functions.stripe_payments",
    trigger=WebhookTrigger(
        path="/webhooks/stripe/events",
        scheme="stripe",
        secret=STRIPE_WEBHOOK_SECRET,
        timestamp_tolerance_seconds=300,  # Stripe's libraries' default, both directions
        throttle_rate_per_second=50,
        throttle_burst=200,
    ),
    targets=(erp_payments(),),
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
