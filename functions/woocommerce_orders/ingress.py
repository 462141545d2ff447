"""API Gateway -> verify the WooCommerce signature (or answer its ping) -> SQS. See shared/ingress.py."""

from functions.woocommerce_orders.declaration import INTEGRATION
from shared.ingress import make_ingress_handler

handler = make_ingress_handler(INTEGRATION)
