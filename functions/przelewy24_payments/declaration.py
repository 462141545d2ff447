from functions.payments.targets import P24_VERIFY, erp_payments
from shared.declaration import FunctionSettings, Integration, SecretRef, WebhookTrigger

P24_CRC = SecretRef(
    "przelewy24-crc", 'Przelewy24 CRC key(s) that sign transaction notifications: JSON {"secrets": [...]}'
)

INTEGRATION = Integration(
    name="przelewy24-payments",
    description="Przelewy24 transaction notifications -> verified with Przelewy24 -> ERP incoming payments",
    source="przelewy24",
    package="functions.przelewy24_payments",
    trigger=WebhookTrigger(
        path="/webhooks/przelewy24/notifications",
        scheme="przelewy24",
        secret=P24_CRC,
        accepted_status=200,  # Przelewy24 re-sends a notification until it gets a 200
        throttle_rate_per_second=50,
        throttle_burst=200,
    ),
    targets=(P24_VERIFY, erp_payments(after="przelewy24")),
    ingress=FunctionSettings(memory_mb=256, timeout_seconds=10),
)
