"""API Gateway -> verify the Shopify signature -> SQS. See shared/ingress.py."""

from functions.shopify_orders.declaration import INTEGRATION
from shared.ingress import make_ingress_handler

handler = make_ingress_handler(INTEGRATION)
