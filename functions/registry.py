"""Every integration Junction runs. Add one line here when you add a folder under functions/."""

from functions.erp_stock_to_channels.declaration import INTEGRATION as ERP_STOCK_TO_CHANNELS
from functions.shop_orders_to_erp.declaration import INTEGRATION as SHOP_ORDERS_TO_ERP
from shared.declaration import Integration

INTEGRATIONS: tuple[Integration, ...] = (SHOP_ORDERS_TO_ERP, ERP_STOCK_TO_CHANNELS)


def get(name: str) -> Integration:
    for integration in INTEGRATIONS:
        if integration.name == name:
            return integration
    known = ", ".join(i.name for i in INTEGRATIONS)
    raise KeyError(f"unknown integration {name!r} (known: {known})")
