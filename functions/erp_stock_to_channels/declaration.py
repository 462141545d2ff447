from dataclasses import replace

from shared.declaration import (
    AlarmThresholds,
    CircuitBreakerSettings,
    Cursor,
    FunctionSettings,
    Integration,
    QueueSettings,
    RateBudget,
    RetryPolicy,
    ScheduleTrigger,
    SecretRef,
    Target,
)

ERP_CREDENTIALS = SecretRef(
    "erp-service-layer",
    'ERP Service Layer connection: JSON {"base_url", "company_db", "username", "password"}',
)
SHOPIFY_ADMIN = SecretRef(
    "shopify-admin",
    'Shopify Admin API: JSON {"base_url", "access_token", "api_version", "location_id"}',
)
ALLEGRO_API = SecretRef(
    "allegro-api",
    'Allegro REST API: JSON {"api_url", "auth_url", "client_id", "client_secret", "refresh_token"}; '
    "Junction stores the rotated refresh token and the current access token back into it",
)

# Stock messages: a page's changes in chunks of 1,000 SKUs: four Shopify calls of 250, and on
# Allegro one command per distinct quantity among them (a command sets one value), so the larger
# the chunk, the fewer commands per SKU.
STOCK_QUEUE = QueueSettings(batch_size=10, max_receive_count=8, retention_days=4, dlq_retention_days=14)
# A push is an absolute level, so a late one is harmless (the version gate refuses it if stale);
# retrying for a day covers a marketplace's maintenance night.
STOCK_RETRY = RetryPolicy(base_delay_seconds=5, max_delay_seconds=600, horizon_seconds=24 * 3600, settle_seconds=60)

INTEGRATION = Integration(
    name="erp-stock-to-channels",
    description="ERP stock levels -> sellable quantity per channel on Shopify and Allegro, within minutes",
    source="erp",
    package="functions.erp_stock_to_channels",
    trigger=ScheduleTrigger(
        expression="rate(1 minute)",
        # The Service Layer filters UpdateDate by date only and a document may commit after its
        # stamp: re-read two minutes back, deduplicated by content.
        cursor=Cursor("timestamp", lookback_seconds=120),
        page_size=1000,
        items_per_message=1000,
        poller="source",
        function=FunctionSettings(memory_mb=512, timeout_seconds=120),
    ),
    secrets=(ERP_CREDENTIALS,),
    targets=(
        Target(
            name="shopify",
            flow="to_shopify",
            secrets=(SHOPIFY_ADMIN,),
            queue=STOCK_QUEUE,
            retry=STOCK_RETRY,
            breaker=CircuitBreakerSettings(failure_threshold=5, open_seconds=30, max_open_seconds=600),
            max_concurrency=4,
            processor=FunctionSettings(memory_mb=512, timeout_seconds=120),
            alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=600),
            # Requests, not query cost: the cost bucket is Shopify's and is read from every answer.
            rate=RateBudget(account="shopify", per_second=20, burst=40),
        ),
        Target(
            name="allegro",
            flow="to_allegro",
            secrets=(ALLEGRO_API,),
            writes_secrets=(ALLEGRO_API,),
            # One message per invocation: its 1,000 offers take ~7 s of Allegro's offer-change
            # limit, so a batch of ten would outlast the invocation while waiting for the budget.
            queue=replace(STOCK_QUEUE, batch_size=1),
            retry=STOCK_RETRY,
            breaker=CircuitBreakerSettings(failure_threshold=5, open_seconds=30, max_open_seconds=600),
            max_concurrency=4,
            processor=FunctionSettings(memory_mb=512, timeout_seconds=120),
            alarms=AlarmThresholds(dlq_depth=1, oldest_message_age_seconds=600),
            # Allegro allows 9,000 requests in any minute per client id and blocks a client that
            # goes over for a minute: 1,000 at once, refilled at 8,000 a minute, never exceeds it.
            rate=RateBudget(account="allegro", per_second=8000 / 60, burst=1000),
        ),
    ),
)
