"""webhook -> ingress -> SQS -> processor -> ERP, against moto and the ERP stand-in.

The ERP stand-in ignores Idempotency-Key here (as SAP Business One does), so every "exactly
once" below is Junction's own doing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import state_keys
from tests.component.harness import TARGET, Pipeline, attempted, claiming, completing, shopify_headers
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

ORDER_ID = 820982911946154508


def reasons(messages: list[dict[str, Any]]) -> list[str]:
    return [m["MessageAttributes"]["junction-reason"]["StringValue"] for m in messages]


def test_a_signed_order_becomes_one_erp_sales_order(pipeline: Pipeline) -> None:
    status, body = pipeline.send_order(shopify_order())
    assert (status, body["status"]) == (202, "accepted")
    assert pipeline.drain() == 1
    orders = pipeline.erp.orders()
    assert len(orders) == 1
    order = orders[0]
    assert order["NumAtCard"] == f"shopify:{ORDER_ID}"
    assert [line["ItemCode"] for line in order["DocumentLines"]] == ["MUG-BLUE", "TEAPOT-L"]
    partners = pipeline.erp.business_partners()
    assert len(partners) == 1 and partners[0]["FederalTaxID"] == "PL5260250995"
    assert order["CardCode"] == partners[0]["CardCode"]
    assert pipeline.queue_depth() == 0 and pipeline.dlq() == []
    hops = pipeline.trace(f"shopify-order:{ORDER_ID}")
    assert [h["outcome"] for h in hops] == ["delivered"]
    assert hops[0]["target_ids"]["erp_doc_entry"] == str(order["DocEntry"])
    # The hop names its integration and target; the record is the target's own idempotency scope.
    assert hops[0]["target"] == TARGET.name
    assert f"#{INTEGRATION.name}/{TARGET.name}#delivered#" in hops[0]["sk"]
    assert hops[0]["record_key"] == f"{INTEGRATION.name}#{TARGET.name}#shopify-order:{ORDER_ID}#create"
    assert pipeline.processor.store.get(hops[0]["record_key"]) is not None
    assert pipeline.state_item(*state_keys.last_success(INTEGRATION.name, TARGET.name)) is not None


def test_redelivered_webhook_in_the_same_batch_is_delivered_once(pipeline: Pipeline) -> None:
    for _ in range(3):  # Shopify retries with the same X-Shopify-Webhook-Id
        assert pipeline.send_order(shopify_order(), delivery_id="same-delivery")[0] == 202
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    outcomes = sorted(h["outcome"] for h in pipeline.trace(f"shopify-order:{ORDER_ID}"))
    assert outcomes == ["delivered", "duplicate", "duplicate"]


def test_the_same_order_under_new_delivery_ids_and_later_batches_is_delivered_once(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(), delivery_id="first")
    pipeline.drain()
    pipeline.send_order(shopify_order(), delivery_id="second")  # a new delivery of the same order
    pipeline.send_order(shopify_order(updated_at="2026-11-21T12:00:00+01:00"), delivery_id="third")
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert pipeline.dlq() == []


def test_same_order_with_different_content_makes_no_second_order_and_changes_nothing(pipeline: Pipeline) -> None:
    """The key is the order's effect (create), not its content: an order edited after it reached
    the ERP is a duplicate there, and the ERP's order stands (edits are made in the ERP by hand;
    decision 26). Nothing is dead-lettered for it."""
    pipeline.send_order(shopify_order(), delivery_id="first")
    pipeline.drain()
    changed = shopify_order()
    changed["line_items"][0]["quantity"] = 5
    pipeline.send_order(changed, delivery_id="second")
    pipeline.drain()
    [order] = pipeline.erp.orders()
    assert order["DocumentLines"][0]["Quantity"] != 5
    assert pipeline.dlq() == []
    outcomes = sorted(h["outcome"] for h in pipeline.trace(f"shopify-order:{ORDER_ID}"))
    assert outcomes == ["delivered", "duplicate"]


def test_poison_messages_do_not_hold_back_a_batch_of_ten(pipeline: Pipeline) -> None:
    good = [shopify_order(id=1000 + n, name=f"#{1000 + n}") for n in range(8)]
    bad_item = shopify_order(id=2000, name="#2000")
    bad_item["line_items"][0]["sku"] = "NO-SUCH-ITEM"  # the ERP refuses it: permanent
    for payload in good[:4]:
        pipeline.send_order(payload)
    pipeline.enqueue_raw("{not json")  # never came through the ingress
    pipeline.send_order(bad_item)
    for payload in good[4:]:
        pipeline.send_order(payload)
    first = pipeline.run_batch(10)
    assert first is not None and first.size == 10
    assert first.failures == []  # permanent failures are dead-lettered, not retried
    assert pipeline.drain() == 0
    assert sorted(o["NumAtCard"] for o in pipeline.erp.orders()) == sorted(f"shopify:{p['id']}" for p in good)
    dlq = pipeline.dlq()
    assert sorted(reasons(dlq)) == ["malformed_envelope", "target_rejected"]
    rejected = next(m for m in dlq if reasons([m]) == ["target_rejected"])
    ids = json.loads(rejected["MessageAttributes"]["junction-entity-ids"]["StringValue"])
    assert ids["shopify_order_id"] == "2000"
    assert rejected["MessageAttributes"]["junction-attempts"]["StringValue"] == "1"
    assert json.loads(rejected["Body"])["delivery_id"] == "delivery-2000"  # the event itself is kept


def test_invalid_order_goes_to_the_dlq_without_reaching_the_erp(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(currency="zloty"))
    pipeline.drain()
    assert pipeline.erp.orders() == [] and pipeline.erp.requests_seen() == 0
    assert reasons(pipeline.dlq()) == ["validation_failed"]


def test_rate_limited_target_is_retried_no_sooner_than_retry_after(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("rate_limited", retry_after=120, count=2)
    pipeline.send_order(shopify_order())
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    assert pipeline.sqs.delays[-1] >= 120
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert all(d >= 120 for d in pipeline.sqs.delays)
    assert pipeline.dlq() == []


def test_target_down_then_back_delivers_once_with_growing_backoff(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down", count=4)
    pipeline.send_order(shopify_order())
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert len(pipeline.sqs.delays) >= 1
    assert all(1 <= d <= 900 for d in pipeline.sqs.delays)
    outcomes = [h["outcome"] for h in pipeline.trace(f"shopify-order:{ORDER_ID}")]
    assert outcomes.count("delivered") == 1 and "retry_scheduled" in outcomes


def test_target_that_hangs_is_a_transient_timeout(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("timeout", delay=2.0, count=1)
    pipeline.send_order(shopify_order())
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1


def test_target_down_for_good_ends_in_the_dlq_once_the_retry_horizon_has_passed(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down")
    pipeline.send_order(shopify_order())
    started = pipeline.clock()
    pipeline.drain(max_batches=200, hours_between=1)
    dlq = pipeline.dlq()
    assert reasons(dlq) == ["retries_exhausted"]
    attrs = dlq[0]["MessageAttributes"]
    assert attrs["junction-last-reason"]["StringValue"] == "target_unavailable"
    assert attrs["junction-error-class"]["StringValue"] == "system"  # a system to fix, not the order
    # Not after a number of receives: only once the declared horizon has passed.
    assert pipeline.clock() - started >= TARGET.retry.horizon_seconds
    assert int(attrs["junction-attempts"]["StringValue"]) > TARGET.queue.max_receive_count
    assert pipeline.erp.orders() == []


def test_crash_after_the_erp_accepted_does_not_duplicate(pipeline: Pipeline) -> None:
    # The order is created, then recording completion fails (as if the function died there).
    pipeline.ddb.fail("batch_write_item", when=completing)
    pipeline.send_order(shopify_order())
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    assert len(pipeline.erp.orders()) == 1
    # The attempt is remembered as one that reached the ERP: the next one looks before creating.
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert pipeline.dlq() == []
    outcomes = [h["outcome"] for h in pipeline.trace(f"shopify-order:{ORDER_ID}")]
    assert outcomes == ["retry_scheduled", "delivered"]


def test_crash_that_leaves_the_claim_held_waits_for_it_then_looks_before_creating(pipeline: Pipeline) -> None:
    # Completion and the "attempted" record both fail: the claim stays IN_PROGRESS, as after a
    # crash of the whole execution environment.
    pipeline.ddb.fail("batch_write_item", when=completing)
    pipeline.ddb.fail("update_item", when=attempted)
    pipeline.auto_advance = False
    pipeline.send_order(shopify_order())
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    assert len(pipeline.erp.orders()) == 1
    second = pipeline.run_batch()  # the claim is still held: this one waits
    assert second is not None and len(second.failures) == 1
    assert pipeline.erp.requests_seen() == 4  # login, customer lookup, customer, order: nothing more
    pipeline.clock.advance(2 * TARGET.processor.timeout_seconds)  # the held claim lapses
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert pipeline.dlq() == []


def test_idempotency_store_down_retries_without_calling_the_erp(pipeline: Pipeline) -> None:
    pipeline.ddb.fail("update_item", when=claiming)
    pipeline.send_order(shopify_order())
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    assert pipeline.erp.requests_seen() == 0
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1


def test_dead_letter_send_failure_keeps_the_message(pipeline: Pipeline) -> None:
    pipeline.sqs.fail_actions.add("send_message")
    pipeline.enqueue_raw("{not json")
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1  # not dropped: it stays on the queue
    pipeline.sqs.fail_actions.clear()
    pipeline.drain()
    assert reasons(pipeline.dlq()) == ["malformed_envelope"]


def test_the_same_customer_is_created_once_across_orders(pipeline: Pipeline) -> None:
    for n in range(3):
        pipeline.send_order(shopify_order(id=5000 + n, name=f"#{5000 + n}"))
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 3
    assert len(pipeline.erp.business_partners()) == 1


@pytest.mark.parametrize("mode", ["down", "rate_limited"])
def test_transient_failures_never_reach_the_dlq_when_the_target_recovers(pipeline: Pipeline, mode: str) -> None:
    pipeline.erp.set_behaviour(mode, retry_after=1, count=5)
    for n in range(5):
        pipeline.send_order(shopify_order(id=7000 + n, name=f"#{7000 + n}"))
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 5
    assert pipeline.dlq() == []


def test_a_remembered_customer_removed_from_the_erp_is_created_again(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=8100, name="#8100"))
    pipeline.drain()
    pipeline.erp.reset()  # the ERP loses the business partner the processor remembers
    pipeline.send_order(shopify_order(id=8101, name="#8101"))
    pipeline.drain()
    assert [o["NumAtCard"] for o in pipeline.erp.orders()] == ["shopify:8101"]
    assert len(pipeline.erp.business_partners()) == 1
    assert pipeline.dlq() == []


def test_what_waits_for_something_that_never_comes_is_a_business_dead_letter_after_the_horizon(
    pipeline: Pipeline,
) -> None:
    # A cancellation of an order the ERP never gets: it waits (awaiting_order) up to the horizon,
    # then goes to the DLQ under the reason it waited with, as a business error.
    body = json.dumps({**shopify_order(), "cancelled_at": "2026-11-21T11:00:00+01:00"}, separators=(",", ":")).encode()
    headers = {**shopify_headers(body, "cancel-1"), "X-Shopify-Topic": "orders/cancelled"}
    assert pipeline.post(body, headers)[0] == 202
    started = pipeline.clock()
    pipeline.drain(max_batches=200, hours_between=1)
    dlq = pipeline.dlq()
    assert reasons(dlq) == ["awaiting_order"]
    attrs = dlq[0]["MessageAttributes"]
    assert attrs["junction-error-class"]["StringValue"] == "business"
    assert "still waiting" in attrs["junction-error"]["StringValue"]
    assert pipeline.clock() - started >= TARGET.retry.horizon_seconds
    assert pipeline.erp.orders() == []
