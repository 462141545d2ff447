"""Every integration Junction runs. Add one line here when you add a folder under functions/."""

from functions.allegro_orders.declaration import INTEGRATION as ALLEGRO_ORDERS
from functions.erp_stock_to_channels.declaration import INTEGRATION as ERP_STOCK_TO_CHANNELS
from functions.inpost_shipments.declaration import INTEGRATION as INPOST_SHIPMENTS
from functions.inpost_tracking.declaration import INTEGRATION as INPOST_TRACKING
from functions.przelewy24_payments.declaration import INTEGRATION as PRZELEWY24_PAYMENTS
from functions.shopify_orders.declaration import INTEGRATION as SHOPIFY_ORDERS
from functions.stripe_payments.declaration import INTEGRATION as STRIPE_PAYMENTS
from functions.woocommerce_orders.declaration import INTEGRATION as WOOCOMMERCE_ORDERS
from shared.declaration import Integration

INTEGRATIONS: tuple[Integration, ...] = (
    SHOPIFY_ORDERS,
    WOOCOMMERCE_ORDERS,
    ALLEGRO_ORDERS,
    ERP_STOCK_TO_CHANNELS,
    STRIPE_PAYMENTS,
    PRZELEWY24_PAYMENTS,
    INPOST_SHIPMENTS,
    INPOST_TRACKING,
)


def get(name: str) -> Integration:
    for integration in INTEGRATIONS:
        if integration.name == name:
            return integration
    known = ", ".join(i.name for i in INTEGRATIONS)
    raise KeyError(f"unknown integration {name!r} (known: {known})")
