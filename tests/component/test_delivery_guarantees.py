"""Delivery guarantees against the ERP stand-in, which ignores Idempotency-Key like SAP Business
One: ambiguous outcomes, outages longer than any receive count, credential rotation, deadlines.

Each case is one way a naive consumer duplicates, loses or dead-letters an order.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import boto3
import httpx

from functions.erp_stock_to_channels.declaration import ERP_CREDENTIALS
from shared import processing, state_keys
from shared.declaration import secret_id
from shared.processing import MIN_START_SECONDS, RESERVE_SECONDS
from tests.component.harness import REGION, STAGE, TARGET, Pipeline, completing
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION
from tests.sample import shopify_order

ORDER_ID = 820982911946154508
ENTITY = f"shopify-order:{ORDER_ID}"
DAY = 86_400


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def outcomes(pipeline: Pipeline, entity: str = ENTITY) -> list[str]:
    return [h["outcome"] for h in pipeline.trace(entity)]


def orders_for(pipeline: Pipeline, order_id: int = ORDER_ID) -> int:
    return sum(1 for o in pipeline.erp.orders() if o["NumAtCard"] == f"shopify:{order_id}")


def customer_known(pipeline: Pipeline) -> None:
    """An earlier order of the same customer: the session is open and the customer known, so the
    next order's only ERP request is the one that creates it."""
    pipeline.send_order(shopify_order(id=1, name="#1"))
    pipeline.drain()
    assert orders_for(pipeline, 1) == 1


# -- 1. ambiguous outcomes --------------------------------------------------------------------
def test_erp_commits_then_hangs_and_a_second_delivery_id_arrives_one_order(pipeline: Pipeline) -> None:
    """The reported case: the ERP commits, the answer is lost past the read timeout, and the shop
    sends the same order again under a new webhook id (its first receive)."""
    customer_known(pipeline)
    pipeline.erp.set_behaviour("accept_then_hang", delay=1.5, count=1)
    pipeline.send_order(shopify_order(), delivery_id="webhook-1")
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1
    assert orders_for(pipeline) == 1  # the ERP holds the order; we do not know it
    time.sleep(1)
    pipeline.send_order(shopify_order(), delivery_id="webhook-2")
    pipeline.drain()
    assert orders_for(pipeline) == 1
    assert pipeline.dlq() == []
    assert sorted(outcomes(pipeline)).count("delivered") == 1


def test_a_second_message_on_its_first_receive_looks_before_creating(pipeline: Pipeline) -> None:
    customer_known(pipeline)
    pipeline.erp.set_behaviour("accept_then_hang", delay=1.5, count=1)
    pipeline.send_order(shopify_order(), delivery_id="webhook-1")
    pipeline.run_batch()
    assert orders_for(pipeline) == 1
    # Only the second delivery is received: its ApproximateReceiveCount is 1.
    pipeline.send_order(shopify_order(), delivery_id="webhook-2")
    messages = [m for m in pipeline.receive() if "webhook-2" in m["Body"]]
    while not messages:
        messages = [m for m in pipeline.receive() if "webhook-2" in m["Body"]]
    assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    pipeline.clock.advance(TARGET.retry.settle_seconds)
    response = pipeline.invoke(pipeline.processor, messages, 30)
    assert response["batchItemFailures"] == []
    assert orders_for(pipeline) == 1


def test_a_retry_before_a_slow_erp_commits_waits_for_the_settle_time(pipeline: Pipeline) -> None:
    """The ERP takes 2.5 s to commit; the client gives up after 1 s and the retry comes at once.
    A lookup then finds nothing, yet the order is on its way: the retry must not create it."""
    customer_known(pipeline)
    pipeline.erp.set_behaviour("slow", delay=2.5, count=1)  # the order's creation
    pipeline.send_order(shopify_order())
    pipeline.auto_advance = False
    first = pipeline.run_batch()
    assert first is not None and len(first.failures) == 1 and orders_for(pipeline) == 0
    for _ in range(3):  # retries at once, while the ERP is still busy with the first attempt
        run = pipeline.run_batch()
        assert run is not None and len(run.failures) == 1
    wait_for(lambda: orders_for(pipeline) == 1)  # the first attempt commits late
    pipeline.clock.advance(TARGET.retry.settle_seconds)
    pipeline.auto_advance = True
    pipeline.drain()
    assert orders_for(pipeline) == 1
    assert pipeline.dlq() == []


def test_a_redrive_of_an_order_dead_lettered_after_a_timeout_makes_no_second_order(pipeline: Pipeline) -> None:
    customer_known(pipeline)
    pipeline.erp.set_behaviour("accept_then_hang", delay=1.5, count=1)
    pipeline.send_order(shopify_order())
    pipeline.run_batch()
    assert orders_for(pipeline) == 1
    pipeline.erp.set_behaviour("down")  # then the ERP stays down past the retry horizon
    pipeline.drain(max_batches=200, hours_between=1)
    pipeline.erp.set_behaviour("ok")
    moved = pipeline.redrive()
    assert [m["MessageAttributes"]["junction-reason"]["StringValue"] for m in moved] == ["retries_exhausted"]
    pipeline.drain()
    assert orders_for(pipeline) == 1
    assert pipeline.dlq() == []
    assert outcomes(pipeline)[-1] == "delivered"


def test_an_attempt_that_failed_before_creating_needs_no_settle_time(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("rate_limited", retry_after=2, count=1)  # the login is refused: nothing sent
    pipeline.send_order(shopify_order())
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert all(d < TARGET.retry.settle_seconds for d in pipeline.sqs.delays)


# -- 4. outages longer than the old receive-count horizon ------------------------------------
def test_a_24_hour_erp_outage_loses_nothing_and_delivers_each_order_once(pipeline: Pipeline) -> None:
    ids = [9100 + n for n in range(5)]
    pipeline.erp.set_behaviour("down")
    for n in ids:
        pipeline.send_order(shopify_order(id=n, name=f"#{n}"))
    started = pipeline.clock()
    batches = 0
    while pipeline.clock() - started < DAY:
        assert pipeline.run_batch() is not None, "a message left the queue during the outage"
        pipeline.clock.advance(TARGET.breaker.max_open_seconds)  # at least the longest wait
        batches += 1
    calls_during_outage = pipeline.erp.state()["rejected_by_behaviour"]
    # The breaker keeps the ERP quiet: far fewer calls than a day of per-message retries.
    assert calls_during_outage < 2 * DAY / TARGET.breaker.max_open_seconds + 10
    breaker = pipeline.state_item(*state_keys.breaker(INTEGRATION.name, TARGET.name))
    assert breaker is not None and breaker["state"] in ("open", "half_open")
    assert pipeline.dlq() == []
    pipeline.erp.set_behaviour("ok")
    pipeline.drain(max_batches=200)
    assert sorted(o["NumAtCard"] for o in pipeline.erp.orders()) == [f"shopify:{n}" for n in ids]
    assert pipeline.dlq() == []
    breaker = pipeline.state_item(*state_keys.breaker(INTEGRATION.name, TARGET.name))
    assert breaker is not None and breaker["state"] == "closed"
    assert pipeline.sqs.sent_again > 0  # messages near maxReceiveCount were sent again, not redriven by SQS


def test_the_breaker_is_shared_by_concurrent_invocations(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down")
    for n in range(TARGET.breaker.failure_threshold):
        pipeline.send_order(shopify_order(id=9300 + n, name=f"#{9300 + n}"))
    pipeline.auto_advance = False
    pipeline.run_batch()  # one execution environment sees the failures and opens the breaker
    assert pipeline.state_item(*state_keys.breaker(INTEGRATION.name, TARGET.name))["state"] == "open"  # type: ignore[index]
    seen = pipeline.erp.requests_seen()
    other = pipeline.another_processor()
    pipeline.send_order(shopify_order(id=9400, name="#9400"))
    messages = pipeline.receive()
    response = pipeline.invoke(other, messages, 30)
    assert len(response["batchItemFailures"]) == len(messages)  # they wait ...
    assert pipeline.erp.requests_seen() == seen  # ... without calling the ERP


def test_the_open_breaker_lets_one_probe_through_then_closes(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down", count=TARGET.breaker.failure_threshold)
    for n in range(TARGET.breaker.failure_threshold + 3):
        pipeline.send_order(shopify_order(id=9500 + n, name=f"#{9500 + n}"))
    pipeline.drain()
    assert len(pipeline.erp.orders()) == TARGET.breaker.failure_threshold + 3
    breaker = pipeline.state_item(*state_keys.breaker(INTEGRATION.name, TARGET.name))
    assert breaker is not None and breaker["state"] == "closed" and breaker["failures"] == 0


def test_waiting_behind_an_open_breaker_does_not_count_towards_the_backoff(pipeline: Pipeline) -> None:
    pipeline.erp.set_behaviour("down")
    for n in range(TARGET.breaker.failure_threshold):
        pipeline.send_order(shopify_order(id=9600 + n, name=f"#{9600 + n}"))
    pipeline.run_batch()
    before = pipeline.erp.state()["rejected_by_behaviour"]
    pipeline.auto_advance = False
    for _ in range(20):  # twenty receives while the breaker is open
        pipeline.run_batch()
    assert pipeline.erp.state()["rejected_by_behaviour"] == before
    assert pipeline.dlq() == []


# -- 3. credentials rotated ------------------------------------------------------------------
def _rotate_secret(password: str) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    name = secret_id(STAGE, ERP_CREDENTIALS)
    doc = dict(json.loads(client.get_secret_value(SecretId=name)["SecretString"]))
    doc["password"] = password
    client.put_secret_value(SecretId=name, SecretString=json.dumps(doc))


def test_erp_credentials_rotated_while_running_lose_no_order(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=9700, name="#9700"))
    pipeline.drain()  # a session is open and the old password is cached
    pipeline.erp.set_password("rotated-password-2")  # the rotation sets the ERP first ...
    pipeline.send_order(shopify_order(id=9701, name="#9701"))
    first = pipeline.run_batch()  # ... so the login fails even after reading the secret again
    assert first is not None and len(first.failures) == 1
    assert pipeline.dlq() == []
    _rotate_secret("rotated-password-2")  # ... then the secret
    pipeline.send_order(shopify_order(id=9702, name="#9702"))
    pipeline.drain()
    assert sorted(o["NumAtCard"] for o in pipeline.erp.orders()) == [f"shopify:{n}" for n in (9700, 9701, 9702)]
    assert pipeline.dlq() == []


def test_a_rotated_secret_is_picked_up_at_the_first_refused_login(pipeline: Pipeline) -> None:
    pipeline.send_order(shopify_order(id=9800, name="#9800"))
    pipeline.drain()
    pipeline.erp.set_password("rotated-password-3")
    _rotate_secret("rotated-password-3")  # within the secret's cache time
    pipeline.send_order(shopify_order(id=9801, name="#9801"))
    run = pipeline.run_batch()
    assert run is not None and run.failures == []  # no failed attempt, no wait for the cache to expire
    assert len(pipeline.erp.orders()) == 2


# -- 5. deadlines ----------------------------------------------------------------------------
def test_records_put_off_near_the_deadline_stay_on_the_queue(pipeline: Pipeline) -> None:
    for n in range(3):
        pipeline.send_order(shopify_order(id=9900 + n, name=f"#{9900 + n}"))
    messages = pipeline.receive()
    assert len(messages) == 3
    response = pipeline.invoke(pipeline.processor, messages, MIN_START_SECONDS - 1)
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(
        m["MessageId"] for m in messages
    )
    assert pipeline.erp.requests_seen() == 0
    pipeline.release(messages)
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 3


def test_a_hanging_erp_cannot_outlast_the_invocation(pipeline: Pipeline) -> None:
    slow_client = httpx.Client(timeout=httpx.Timeout(30.0, connect=1.0))  # the production read timeout, long
    try:
        processor = pipeline.another_processor(http=slow_client)
        pipeline.erp.set_behaviour("timeout", delay=20.0, count=1)
        pipeline.send_order(shopify_order())
        messages = pipeline.receive()
        left = MIN_START_SECONDS + 2
        started = time.monotonic()
        response = pipeline.invoke(processor, messages, left)
        took = time.monotonic() - started
    finally:
        slow_client.close()
    assert took < left, f"the invocation would have timed out ({took:.1f} s of {left} s)"
    assert took < left - RESERVE_SECONDS + 1
    assert len(response["batchItemFailures"]) == 1  # retried later, not lost
    pipeline.erp.set_behaviour("ok")
    pipeline.release(messages)
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1


# -- 13. rules that rested on a single test --------------------------------------------------
class UpperBound(random.Random):
    """Full jitter that always draws its ceiling, so the backoff's growth shows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_the_backoff_grows_with_each_attempt(pipeline: Pipeline) -> None:
    pipeline.processor.rng = UpperBound()
    pipeline.erp.set_behaviour("down", count=4)
    pipeline.send_order(shopify_order())
    pipeline.drain()
    base = TARGET.retry.base_delay_seconds
    assert pipeline.sqs.delays[:4] == [base, 2 * base, 4 * base, 8 * base]
    assert len(pipeline.erp.orders()) == 1


def test_retry_after_as_an_http_date_on_a_503_is_honoured(pipeline: Pipeline) -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    original = pipeline.erp._misbehave

    def down_with_date(method: str, route: str) -> Any:
        forced = original(method, route)
        if isinstance(forced, tuple):
            return 503, {"Retry-After": when}, forced[2]
        return forced

    pipeline.erp._misbehave = down_with_date  # type: ignore[method-assign]
    pipeline.erp.set_behaviour("down", count=1)
    pipeline.send_order(shopify_order())
    pipeline.run_batch()
    assert pipeline.sqs.delays[0] >= 290
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1


def test_a_failed_history_write_does_not_fail_the_batch(pipeline: Pipeline) -> None:
    pipeline.ddb.fail("batch_write_item", count=10, when=lambda p: not completing(p))
    pipeline.send_order(shopify_order())
    run = pipeline.run_batch()
    assert run is not None and run.failures == []
    assert len(pipeline.erp.orders()) == 1
    assert pipeline.queue_depth() == 0


def test_a_dead_lettered_message_is_deleted_at_once(pipeline: Pipeline) -> None:
    """If the invocation then times out and the batch re-runs, it is not dead-lettered twice."""
    pipeline.enqueue_raw("{not json")
    messages = pipeline.receive()
    response = pipeline.invoke(pipeline.processor, messages, 30)
    assert response["batchItemFailures"] == []
    # Lambda has not deleted anything yet (imagine it timed out): the message is gone already.
    assert pipeline.queue_depth() == 0
    assert len(pipeline.dlq()) == 1


# -- 2. large orders ---------------------------------------------------------------------------
def test_a_signed_b2b_order_near_one_megabyte_is_accepted_and_delivered_once(pipeline: Pipeline) -> None:
    order = shopify_order()
    line = order["line_items"][0]
    order["line_items"] = [dict(line, id=n, quantity=1 + n % 3) for n in range(400)]
    order["note"] = "Zamówienie hurtowe \ufffe ąęłńóśźż \U0001f4e6 " + "x" * 700_000
    body = json.dumps(order).encode()
    assert 800_000 < len(body) <= INTEGRATION.webhook.max_body_bytes  # type: ignore[union-attr]
    status, _ = pipeline.send_order(order)
    assert status == 202
    pipeline.drain()
    orders = pipeline.erp.orders()
    assert len(orders) == 1 and len(orders[0]["DocumentLines"]) == 400
    pipeline.send_order(order, delivery_id="again")  # and a duplicate of it is recognised
    pipeline.drain()
    assert len(pipeline.erp.orders()) == 1
    assert pipeline.dlq() == []


# -- 8. observability --------------------------------------------------------------------------
def _emf(out: str) -> list[dict[str, Any]]:
    docs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def test_metrics_are_emf_per_integration_and_for_processors_per_target(pipeline: Pipeline, capfd: Any) -> None:
    pipeline.erp.set_behaviour("down")
    for n in range(TARGET.breaker.failure_threshold):
        pipeline.send_order(shopify_order(id=9950 + n, name=f"#{9950 + n}"))
    ingress_docs = _emf(capfd.readouterr().out)
    pipeline.auto_advance = False
    pipeline.run_batch()
    docs = _emf(capfd.readouterr().out)
    assert ingress_docs and docs, "no EMF record"
    # What the alarms watch: the ingress's series per integration, the processor's per integration
    # and target (each target its own queue, breaker and DLQ).
    for doc in ingress_docs:
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Junction"
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Integration"]]
        assert doc["Integration"] == INTEGRATION.name and "Target" not in doc
    for doc in docs:
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Junction"
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Integration", "Target"]]
        assert doc["Integration"] == INTEGRATION.name and doc["Target"] == TARGET.name
    merged = {k: v for d in docs for k, v in d.items()}
    assert merged.get("Breaker_opened") in (1, [1], 1.0)
    assert merged.get("Message_retry_scheduled") is not None
    # The dashboards' series: the breaker as the batch left it (open), one latency per target call.
    assert merged.get("Breaker_open") in (1, [1], 1.0)
    latencies = merged.get("Target_latency_ms")
    assert latencies is not None
    calls: list[float] = latencies if isinstance(latencies, list) else [latencies]
    assert len(calls) == TARGET.breaker.failure_threshold and all(ms >= 0 for ms in calls)


def test_a_429_is_counted_as_rate_limited_and_a_closed_breaker_as_zero(pipeline: Pipeline, capfd: Any) -> None:
    pipeline.erp.set_behaviour("rate_limited", count=1)
    pipeline.send_order(shopify_order())
    capfd.readouterr()
    pipeline.auto_advance = False
    pipeline.run_batch()
    merged = {k: v for d in _emf(capfd.readouterr().out) for k, v in d.items()}
    assert merged.get("Message_rate_limited") in (1, [1], 1.0)
    assert merged.get("Breaker_open") in (0, [0], 0.0)  # a 429 is no outage: the breaker stays closed


class LogLines(logging.Handler):
    """The processor's log lines, formatted as Powertools writes them to CloudWatch."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(processing.logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_an_unexpected_error_is_logged_with_its_traceback_but_no_payload_data(pipeline: Pipeline) -> None:
    flow = pipeline.processor.flow

    class Broken:
        def prepare(self, envelope: Any) -> Any:
            return flow.prepare(envelope)

        def deliver(self, prepared: Any, attempt: Any) -> dict[str, str]:
            raise KeyError(f"customer {prepared.data.order.customer.email} unknown")  # a bug quoting the order

    pipeline.processor.flow = Broken()
    lines = LogLines()
    logging.getLogger(processing.logger.name).addHandler(lines)
    try:
        pipeline.send_order(shopify_order())
        run = pipeline.run_batch()
    finally:
        logging.getLogger(processing.logger.name).removeHandler(lines)
    assert run is not None and len(run.failures) == 1  # retried, not lost
    errors = [json.loads(line) for line in lines.lines if '"unexpected error"' in line]
    assert len(errors) == 1
    assert errors[0]["error"] == "KeyError" and "in deliver" in errors[0]["traceback"]
    assert not any("kowalska" in line.lower() for line in lines.lines)  # the customer's e-mail address


def test_erp_settings_never_show_the_password() -> None:
    from shared.connectors.erp import ErpSettings

    settings = ErpSettings("https://erp.example.com/b1s/v1", "DB", "manager", "hunter2-secret")
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings)
