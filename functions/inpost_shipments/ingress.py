"""API Gateway -> verify -> SQS. See shared/ingress.py."""

from functions.inpost_shipments.declaration import INTEGRATION
from shared.ingress import make_ingress_handler

handler = make_ingress_handler(INTEGRATION)
