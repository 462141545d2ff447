"""API Gateway -> verify the Shopify signature -> SQS. See shared/ingress.py."""

from functions.shop_orders_to_erp.declaration import INTEGRATION
from shared.ingress import make_ingress_handler

handler = make_ingress_handler(INTEGRATION)
