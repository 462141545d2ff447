"""SQS batch -> idempotency -> Shopify order mapped -> ERP sales order. See shared/processing.py."""

from functions.shop_orders_to_erp.declaration import INTEGRATION
from functions.shop_orders_to_erp.flow import build
from shared.processing import make_sqs_handler

handler = make_sqs_handler(INTEGRATION, build)
