from functions.erp_stock_to_channels.declaration import ALLEGRO_API
from functions.orders.targets import ORDER_TARGETS
from shared.declaration import Cursor, FunctionSettings, Integration, ScheduleTrigger

INTEGRATION = Integration(
    name="allegro-orders",
    description="Allegro order events (polled every minute) -> the order route (ERP, HubSpot, ShipBob)",
    source="allegro",
    package="functions.allegro_orders",
    trigger=ScheduleTrigger(
        expression="rate(1 minute)",
        cursor=Cursor("token"),  # the last event id read: exact, nothing re-read
        page_size=1000,  # Allegro's largest page of order events
        items_per_message=1,  # one order per message: orders never wait on each other
        poller="functions.orders.allegro_source",
        function=FunctionSettings(memory_mb=256, timeout_seconds=120),
    ),
    targets=ORDER_TARGETS,
    secrets=(ALLEGRO_API,),
)
