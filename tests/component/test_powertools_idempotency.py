"""Why Junction keeps its own idempotency store (shared/idempotency.py) rather than Powertools'
idempotency utility: Powertools deletes its record when the decorated function raises. When the
function raised because the answer was lost after the target had committed (a timeout), the
attempt is forgotten, and the retry makes the effect a second time. Our store records such an
attempt as ATTEMPTED and never deletes it, so the retry looks before it creates.

Both run here in the same situation: the ERP stand-in (which, like SAP Business One, ignores
Idempotency-Key) commits the sales order and then holds its answer past the client's 1 s read
timeout, and the same order is then delivered again.
"""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from junction_local.events import LambdaContext
from shared.connectors import shopify
from shared.connectors.erp import ErpClient, ErpSettings
from shared.errors import TransientError
from shared.idempotency import ATTEMPTED, COMPLETED
from tests.component.harness import REGION, TARGET, Pipeline
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

TABLE = "powertools-idempotency"
HANG = 1.5  # seconds the ERP holds its answer after committing: past the 1 s read timeout


def erp_orders(pipeline: Pipeline, shop_order_id: int) -> int:
    return sum(o.get("NumAtCard") == f"shopify:{shop_order_id}" for o in pipeline.erp.orders())


def powertools_records(ddb: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return items


def test_powertools_forgets_an_attempt_that_reached_the_erp_so_its_retry_makes_a_second_order_and_ours_does_not(
    pipeline: Pipeline,
) -> None:
    erp = pipeline.erp
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    persistence = DynamoDBPersistenceLayer(table_name=TABLE, key_attr="id", boto3_client=ddb)
    config = IdempotencyConfig(expires_after_seconds=3600)
    context: Any = LambdaContext("processor", TARGET.processor.timeout_seconds)  # Lambda's context, duck-typed
    config.register_lambda_context(context)
    http = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))
    client = ErpClient(ErpSettings(erp.url, erp.company_db, erp.username, erp.password), http)

    # The processor's delivery, made idempotent the Powertools way (keyed on the whole payload).
    @idempotent_function(data_keyword_argument="payload", persistence_store=persistence, config=config)
    def create_sales_order(payload: dict[str, Any]) -> dict[str, str]:
        order = shopify.order_from_webhook(payload)
        card_code = client.ensure_customer(order.customer, order.billing_address, {})
        created = client.create_order(order, card_code, "same-key-every-time", {})
        return {"erp_doc_entry": str(created["DocEntry"])}

    try:
        powertools_order = shopify_order(id=6100, name="#6100")
        first = shopify.order_from_webhook(powertools_order)
        client.ensure_customer(first.customer, first.billing_address, {})  # the order's create is the next POST
        erp.set_behaviour("accept_then_hang", delay=HANG, count=1)
        with pytest.raises(TransientError):  # the ERP committed; we timed out waiting for its answer
            create_sales_order(payload=powertools_order)
        assert erp_orders(pipeline, 6100) == 1
        assert powertools_records(ddb) == []  # Powertools deleted its record: the attempt is forgotten
        create_sales_order(payload=powertools_order)  # the retry (SQS redelivers the message)
        assert erp_orders(pipeline, 6100) == 2  # a second sales order for one shop order
        assert len(powertools_records(ddb)) == 1  # now COMPLETED: later retries are duplicates
        create_sales_order(payload=powertools_order)
        assert erp_orders(pipeline, 6100) == 2
    finally:
        http.close()

    # The same situation through Junction's processor and store: one sales order.
    ours = shopify_order(id=6200, name="#6200")
    pipeline.send_order(ours)
    erp.set_behaviour("accept_then_hang", delay=HANG, count=1)
    first_run = pipeline.run_batch()
    assert first_run is not None and len(first_run.failures) == 1  # timed out: retried later
    assert erp_orders(pipeline, 6200) == 1
    key = f"{INTEGRATION.name}#{TARGET.name}#{shopify.order_from_webhook(ours).entity_id}#create"
    record = pipeline.processor.store.get(key)
    assert record is not None and record["status"] == ATTEMPTED  # kept: this attempt may have reached the ERP
    pipeline.drain()  # the retry looks the order up by its reference before creating
    assert erp_orders(pipeline, 6200) == 1
    record = pipeline.processor.store.get(key)
    assert record is not None and record["status"] == COMPLETED
    assert pipeline.dlq() == []
