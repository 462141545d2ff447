"""Drivers for component tests that need more than ``harness.Pipeline`` offers: a crash of the
execution environment at a chosen DynamoDB call, a second processor (a concurrent Lambda
execution environment), invocations whose messages are received before any is processed,
knowing when the ERP stand-in has finished what it was asked, and an operator's DLQ redrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from botocore.exceptions import ClientError

from junction_local.events import LambdaContext, sqs_event
from junction_local.standins.erp import ErpStandIn
from shared import state_keys
from shared.processing import BatchProcessor
from tests.component.harness import REGION, TARGET, FaultyClient, Pipeline, flow_for, processor_for
from tests.sample import SHOP_ORDERS_TO_ERP as INTEGRATION


class Crash(BaseException):
    """The execution environment dies at this point: the invocation never returns, nothing after
    it runs (not an ``Exception``: no handler of ours may catch it)."""


class CrashingDynamo(FaultyClient):
    """A DynamoDB client that kills the invocation on chosen calls. Installed beneath the
    harness's ``FlakyDynamo`` (``pipeline.ddb.inner``), so both fault kinds combine."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, lambda name: Crash(f"execution environment died during {name}"))

    def crash(self, method: str, count: int = 1, when: Callable[[dict[str, Any]], bool] = lambda _p: True) -> None:
        self.add(method, count, when)

    @classmethod
    def install(cls, pipeline: Pipeline) -> CrashingDynamo:
        crashing = cls(pipeline.ddb.inner)
        pipeline.ddb.inner = crashing
        return crashing


class ErpWork:
    """Tracks the ERP stand-in's requests that have not yet been served: a ``slow`` request
    commits only after its delay, long after the client gave up. ``wait()`` lets that time pass
    for real before the test's clock is moved on, so the test never pretends that more time has
    passed than the ERP has had."""

    def __init__(self, erp: ErpStandIn) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._local = threading.local()
        handle, serve = erp.handle, erp._serve

        def release() -> None:
            token: list[bool] | None = getattr(self._local, "token", None)
            if token is not None and not token[0]:
                token[0] = True
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

        def tracked_handle(
            method: str, path: str, query: str, headers: dict[str, str], body: Any
        ) -> tuple[int, dict[str, str], Any]:
            if path.startswith("/_standin/"):
                return handle(method, path, query, headers, body)
            with self._cond:
                self._pending += 1
            self._local.token = [False]
            try:
                return handle(method, path, query, headers, body)
            finally:
                release()

        def tracked_serve(
            method: str, route: str, query: str, headers: dict[str, str], body: Any
        ) -> tuple[int, dict[str, str], Any]:
            try:
                return serve(method, route, query, headers, body)
            finally:
                release()  # served (committed, if it commits): a held answer changes nothing

        erp.handle = tracked_handle  # type: ignore[method-assign]
        erp._serve = tracked_serve  # type: ignore[method-assign]

    def wait(self, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout):
                raise AssertionError(f"the ERP stand-in still has {self._pending} requests after {timeout} s")


def second_processor(pipeline: Pipeline) -> tuple[BatchProcessor, httpx.Client]:
    """Another execution environment of the same processor: its own flow and ERP session, the
    same queues, tables, clock and fault injection as ``pipeline.processor``."""
    http = httpx.Client(timeout=httpx.Timeout(1.0, connect=1.0))
    flow = flow_for(pipeline.resources, pipeline.ddb, pipeline.clock, http)
    return processor_for(pipeline.resources, flow, pipeline.sqs, pipeline.ddb, pipeline.clock), http


@dataclass
class Invocation:
    received: list[dict[str, Any]]
    failed: set[str]
    crashed: bool


def receive(pipeline: Pipeline, max_messages: int = 10) -> list[dict[str, Any]]:
    """One receive as Lambda's SQS event source makes it."""
    return pipeline.receive(max_messages)


def invoke(pipeline: Pipeline, processor: BatchProcessor, received: list[dict[str, Any]]) -> Invocation:
    arn = pipeline.resources.queue(INTEGRATION, TARGET).arn
    event = sqs_event(received, queue_arn=arn, region=REGION)
    context = LambdaContext("processor", TARGET.processor.timeout_seconds)
    try:
        response = processor.process(event, context)
    except Crash:
        return Invocation(received, {m["MessageId"] for m in received}, crashed=True)
    return Invocation(received, {f["itemIdentifier"] for f in response["batchItemFailures"]}, crashed=False)


def visibility_timeout(pipeline: Pipeline) -> int:
    attrs = pipeline.boto_sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["VisibilityTimeout"])
    return int(attrs["Attributes"]["VisibilityTimeout"])


def run_invocations(
    pipeline: Pipeline,
    batches: list[tuple[BatchProcessor, list[dict[str, Any]]]],
    *,
    erp_work: ErpWork,
    advance: bool,
) -> list[Invocation]:
    """Run invocations at once (one thread each), then apply Lambda's rules: an invocation that
    returned has its unreported messages deleted; reported ones, and every message of a crashed
    invocation, come back (visibility fast-forwarded). With ``advance`` the clock then moves on
    to the earliest moment one of them is due (after the ERP has finished what it was sent);
    without it they come back early, as far as the processor can tell."""
    asked = len(pipeline.sqs.delays)
    results: list[Invocation | None] = [None] * len(batches)
    errors: list[BaseException] = []

    def run(n: int, processor: BatchProcessor, received: list[dict[str, Any]]) -> None:
        try:
            results[n] = invoke(pipeline, processor, received)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, p, r), name=f"invocation-{n}") for n, (p, r) in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    done = [r for r in results if r is not None]
    for inv in done:
        for message in inv.received:
            try:
                if inv.crashed or message["MessageId"] in inv.failed:
                    pipeline.boto_sqs.change_message_visibility(
                        QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    pipeline.boto_sqs.delete_message(
                        QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            except ClientError:
                pass  # already deleted by the processor (sent again, or dead-lettered)
    if advance:
        due = list(pipeline.sqs.delays[asked:])
        if any(inv.crashed for inv in done):
            due.append(visibility_timeout(pipeline))
        if due:
            erp_work.wait()
            pipeline.clock.advance(min(due))
    return done


def redrive(pipeline: Pipeline) -> list[str]:
    """What an operator's redrive does (``Pipeline.redrive``); returns the reasons the messages
    were dead-lettered for ("sqs_redrive" for a message SQS moved there itself)."""
    return [
        str(((m.get("MessageAttributes") or {}).get("junction-reason") or {}).get("StringValue") or "sqs_redrive")
        for m in pipeline.redrive()
    ]


def empty_queue(pipeline: Pipeline, url: str) -> None:
    while True:
        got = pipeline.boto_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        )
        if not got:
            return
        for message in got:
            pipeline.boto_sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def reset_breaker(pipeline: Pipeline) -> None:
    pk, sk = state_keys.breaker(INTEGRATION.name, TARGET.name)
    pipeline.boto_ddb.delete_item(TableName=pipeline.resources.state_table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
