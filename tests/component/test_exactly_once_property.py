"""Exactly once, as a property: whatever the order of webhook deliveries, duplicate deliveries,
batches (one at a time or two at once), ERP failures (down, rate limited, hanging, committing and
then hanging, committing late), crashes between the ERP call and its record, time passing and
operator redrives, the ERP never holds two sales orders for one shop order; and once the ERP is
healthy and every queue is drained (dead letters redriven), it holds exactly one for every shop
order the ingress accepted.

The ERP stand-in ignores Idempotency-Key (as SAP Business One does) and the ERP client's read
timeout is 1 s, so "the ERP committed but we timed out" is real, not simulated. Time: the
pipeline's clock moves on when a step says so; before it does, the ERP is given the (real) time
to finish what it was sent, so a slow commit always lands within the time the processor believes
has passed (the settle time's premise: the ERP commits within ``retry.settle_seconds``).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tests.component.fakes import (
    CrashingDynamo,
    ErpWork,
    Invocation,
    empty_queue,
    receive,
    redrive,
    reset_breaker,
    run_invocations,
    second_processor,
)
from tests.component.harness import Pipeline, attempted, completing
from tests.sample import shopify_order

POOL = 4  # shop orders per example
HANG = 1.5  # seconds the ERP holds an answer or a commit: longer than the client's 1 s read timeout
SETTLE_ROUNDS = 25
REDRIVE_AFTER = 600  # seconds between an operator's redrives at the end
MAX_BATCHES = 400
_FIRST_IDS = itertools.count(9_310_000_000, 10)  # fresh shop order ids per example (the ERP is shared)

# The calls that may record a completion (one record at a time, or a batch's in one write):
# ``completing`` picks out the one that does.
COMPLETION_WRITES = ("update_item", "batch_write_item")
FAULTS = st.sampled_from(
    [
        "none",
        "none",
        "erp_commits_then_hangs",
        "erp_commits_late",
        "erp_commits_late_twice",
        "erp_hangs_without_committing",
        "completion_write_fails",
        "attempted_write_fails",
        "both_writes_fail",
        "crash_at_completion",
        "crash_at_attempted",
    ]
)
SEEN: Counter[str] = Counter()  # what the examples went through, printed at the end (pytest -s)


def seen(label: str) -> None:
    SEEN[label] += 1


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def machine_for(pipeline: Pipeline) -> tuple[type[RuleBasedStateMachine], httpx.Client]:
    erp = pipeline.erp
    erp_work = ErpWork(erp)
    crashing = CrashingDynamo.install(pipeline)
    other, other_http = second_processor(pipeline)
    processors = [pipeline.processor, other]
    pipeline.auto_advance = False  # batches below say whether time moves on

    class ExactlyOnce(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            seen("example")
            # A fresh world for each example, on the fixture's AWS and ERP.
            erp.set_behaviour("ok")
            erp_work.wait()
            pipeline.ddb.clear()
            crashing.clear()
            pipeline.sqs.fail_actions.clear()
            empty_queue(pipeline, pipeline.queue_url)
            empty_queue(pipeline, pipeline.dlq_url)
            reset_breaker(pipeline)
            pipeline.clock.offset = 0.0
            for n, processor in enumerate(processors):  # the same backoff jitter when a sequence is replayed
                processor.rng = random.Random(n)
            first = next(_FIRST_IDS)
            self.payloads = [shopify_order(id=first + n, name=f"#{first + n}") for n in range(POOL)]
            self.deliveries: list[list[str]] = [[] for _ in range(POOL)]
            # Preconditions read only this model state, never the queues: what a receive returns
            # depends on timing, and hypothesis must draw the same way when it replays a sequence.
            self.accepted: set[int] = set()

        # -- the shop ------------------------------------------------------------------
        def _send(self, order: int, delivery_id: str) -> None:
            status, _ = pipeline.send_order(self.payloads[order], delivery_id=delivery_id)
            assert status == 202
            self.accepted.add(order)
            if delivery_id not in self.deliveries[order]:
                self.deliveries[order].append(delivery_id)

        @rule(order=st.integers(0, POOL - 1))
        def webhook(self, order: int) -> None:
            """A delivery of the order under a new delivery id (its first, or a second one)."""
            self._send(order, f"delivery-{self.payloads[order]['id']}-{len(self.deliveries[order])}")

        @precondition(lambda self: any(self.deliveries))
        @rule(data=st.data())
        def webhook_retried(self, data: st.DataObject) -> None:
            """The shop retries an earlier delivery: the same delivery id."""
            order = data.draw(st.sampled_from([n for n in range(POOL) if self.deliveries[n]]), label="order")
            delivery_id = data.draw(st.sampled_from(self.deliveries[order]), label="delivery_id")
            self._send(order, delivery_id)

        # -- the processor, and what goes wrong while it runs ------------------------------
        def _arm(self, fault: str) -> None:
            seen(f"fault: {fault}")
            if fault == "erp_commits_then_hangs":  # the create commits, its answer comes too late
                erp.set_behaviour("accept_then_hang", delay=HANG, count=1)
            elif fault == "erp_commits_late":  # served (and committed) after the client gave up
                erp.set_behaviour("slow", delay=HANG, count=1)
            elif fault == "erp_commits_late_twice":
                erp.set_behaviour("slow", delay=HANG, count=2)
            elif fault == "erp_hangs_without_committing":
                erp.set_behaviour("timeout", delay=1.2, count=1)
            elif fault in ("completion_write_fails", "both_writes_fail"):  # an error, not a crash
                for method in COMPLETION_WRITES:
                    pipeline.ddb.fail(method, when=completing)
            if fault in ("attempted_write_fails", "both_writes_fail"):
                pipeline.ddb.fail("update_item", when=attempted)
            elif fault == "crash_at_completion":  # the environment dies after the ERP call, before its record
                for method in COMPLETION_WRITES:
                    crashing.crash(method, when=completing)
            elif fault == "crash_at_attempted":
                crashing.crash("update_item", when=attempted)

        @precondition(lambda self: bool(self.accepted))
        @rule(size=st.sampled_from([1, 2, 10]), fault=FAULTS, advance=st.booleans())
        def batch(self, size: int, fault: str, advance: bool) -> None:
            """One invocation. ``advance``: the clock moves on to when the first message it put
            off is due; otherwise the next batch comes at once, as far as the processor can tell."""
            received = receive(pipeline, size)
            if received:
                self._arm(fault)
                self._ran(
                    run_invocations(pipeline, [(pipeline.processor, received)], erp_work=erp_work, advance=advance)
                )

        @precondition(lambda self: bool(self.accepted))
        @rule(first=st.integers(1, 3), fault=FAULTS, advance=st.booleans())
        def two_batches_at_once(self, first: int, fault: str, advance: bool) -> None:
            """Two execution environments, each with its own receive, processing at the same time."""
            batches = [
                (p, m) for p, m in zip(processors, (receive(pipeline, first), receive(pipeline, 10)), strict=True) if m
            ]
            if len(batches) == 2:
                seen("two invocations at once")
            if batches:
                self._arm(fault)
                self._ran(run_invocations(pipeline, batches, erp_work=erp_work, advance=advance))

        def _ran(self, invocations: list[Invocation]) -> None:
            if any(inv.crashed for inv in invocations):
                seen("an invocation crashed")

        @rule(
            mode=st.sampled_from(["down", "rate_limited"]),
            count=st.integers(1, 8),
            retry_after=st.sampled_from([1, 30, 300]),
        )
        def erp_unavailable_for_a_while(self, mode: str, count: int, retry_after: int) -> None:
            """The ERP refuses its next ``count`` requests (503, or 429 with Retry-After)."""
            erp.set_behaviour(mode, retry_after=retry_after, count=count)

        # -- time and operators --------------------------------------------------------
        @rule(seconds=st.sampled_from([10, 60, 150, 600, 3600, 4 * 3600, 73 * 3600]))
        def time_passes(self, seconds: int) -> None:
            erp_work.wait()
            pipeline.clock.advance(seconds)

        @rule()
        def operator_redrives_the_dlq(self) -> None:
            if redrive(pipeline):
                seen("redrive during the run")

        # -- the property --------------------------------------------------------------
        def _erp_orders(self) -> Counter[int]:
            refs = {f"shopify:{p['id']}": n for n, p in enumerate(self.payloads)}
            return Counter(refs[o["NumAtCard"]] for o in erp.orders() if o.get("NumAtCard") in refs)

        @invariant()
        def never_two_erp_orders_for_one_shop_order(self) -> None:
            # Keyed on the order's place in the pool (its id changes from example to example), so
            # that every failure of this kind reads the same to the shrinker.
            twice = {n: c for n, c in self._erp_orders().items() if c > 1}
            assert not twice, f"ERP sales orders per shop order (by pool index): {twice}"

        def teardown(self) -> None:
            # The ERP is healthy again and nothing fails any more; run until nothing is left.
            erp.set_behaviour("ok")
            pipeline.ddb.clear()
            crashing.clear()
            batches = 0
            reasons: list[str] = []
            for _ in range(SETTLE_ROUNDS):
                erp_work.wait()
                while received := receive(pipeline):
                    run_invocations(pipeline, [(pipeline.processor, received)], erp_work=erp_work, advance=True)
                    batches += 1
                    assert batches < MAX_BATCHES, "the queue does not drain"
                reasons = redrive(pipeline)
                if not reasons:
                    break
                seen(f"redrive at the end: {', '.join(sorted(set(reasons)))}")
                erp_work.wait()
                pipeline.clock.advance(REDRIVE_AFTER)  # the operator redrives a while later
            else:
                raise AssertionError(f"still dead-lettering after {SETTLE_ROUNDS} redrives: {sorted(reasons)}")
            erp_work.wait()
            for payload in self.payloads:
                for hop in pipeline.trace(f"shopify-order:{payload['id']}"):
                    seen(f"trace: {hop['outcome']} {hop.get('reason') or ''}".strip())
            self.never_two_erp_orders_for_one_shop_order()
            counts = self._erp_orders()
            got = {n: counts.get(n, 0) for n in range(POOL)}
            wanted = {n: int(n in self.accepted) for n in range(POOL)}
            assert got == wanted, "ERP sales orders per shop order (wanted: one per accepted order)"

    return ExactlyOnce, other_http


@pytest.mark.timeout(900)  # passing takes well under a minute; a failure needs time to shrink
def test_one_erp_sales_order_per_shop_order_whatever_fails_and_whenever(pipeline: Pipeline) -> None:
    machine, other_http = machine_for(pipeline)
    SEEN.clear()
    try:
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        other_http.close()
        print("\n".join(f"{n:5} {label}" for label, n in sorted(SEEN.items())))
