"""A function host that dies mid-batch is replaced, and what it had in hand still takes effect once.

Lambda replaces an execution environment that dies during an invocation; the batch it held comes
back after the queue's visibility timeout. The test runs its own local system whose queues use a
short visibility timeout (a local knob: 6x the processor timeout would make it wait three
minutes). A shorter timeout can only add redeliveries, never remove one, so the exactly-once
outcome proven here holds with the deployed setting too. The ERP stand-in ignores
Idempotency-Key, as SAP Business One does: only Junction can keep an order from landing twice.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from functions.registry import get
from junction_local.runtime import LocalRuntime, wait_for
from junction_local.standins.shop import make_order

INTEGRATION = "shopify-orders"
ORDERS = 40
VISIBILITY_TIMEOUT = 10  # longer than a batch takes here, far shorter than 6x 30 s
# An attempt cut off mid-call has an unknown outcome: the processor may wait the settle time
# before it trusts a lookup that finds nothing.
PATIENCE = VISIBILITY_TIMEOUT + get(INTEGRATION).target("erp").retry.settle_seconds + 60
QUEUE = f"{INTEGRATION}/erp"  # how the hosts name the target's event source


def test_a_worker_killed_mid_batch_is_replaced_and_every_order_lands_exactly_once(tmp_path: Path) -> None:
    with LocalRuntime(state_dir=tmp_path, visibility_timeout_seconds=VISIBILITY_TIMEOUT) as local:
        workers = [name for name in local.state["hosts"] if name.startswith("workers-")]
        # Each ERP call takes a while, so batches are long enough to be caught in hand.
        local.erp_behaviour("slow", delay=0.1)
        sender = local.sender(INTEGRATION, retries=0)
        orders = [make_order(960_000 + n, customer=n) for n in range(ORDERS)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda order: sender.send(order).status, orders))
        assert statuses == [202] * ORDERS

        in_hand: dict[str, int] = {}

        def a_worker_holds_a_batch() -> bool:
            for name in workers:
                count = int(local.host_state(name)["in_hand"][QUEUE])
                if count > 0:
                    in_hand[name] = count
                    return True
            return False

        assert wait_for(a_worker_holds_a_batch, timeout=30, interval=0.02)
        victim = next(iter(in_hand))
        pid = local.kill(victim)  # SIGKILL: no cleanup, no partial response, nothing deleted
        delivered_at_kill = len(local.erp_state()["orders"])
        assert delivered_at_kill < ORDERS  # the kill came under load, not after it
        local.erp_behaviour("ok")

        # The runtime replaces it, says so, and counts it.
        assert wait_for(lambda: local.restarts.get(victim, 0) >= 1, timeout=10)
        assert wait_for(lambda: _answers(local, victim) not in (None, pid), timeout=30)
        assert any(victim in line and "SIGKILL" in line for line in local.events)
        assert local.state["restarts"][victim] >= 1

        # Every order arrives, and nothing is left that could still deliver one again.
        refs = {f"shopify:{o['id']}" for o in orders}
        assert wait_for(lambda: refs <= _refs(local).keys() and local.settled(INTEGRATION), timeout=PATIENCE), (
            refs - _refs(local).keys(),
            local.queue_depth(INTEGRATION),
        )
        counts = _refs(local)
        assert {ref: counts[ref] for ref in refs if counts[ref] != 1} == {}
        assert local.queue_depth(INTEGRATION)["dead_letters"] == 0


def _refs(local: LocalRuntime) -> Counter[str]:
    return Counter(str(o["NumAtCard"]) for o in local.erp_state()["orders"])


def _answers(local: LocalRuntime, host: str) -> int | None:
    """The pid of the process answering as ``host``, or None while none does."""
    try:
        return int(local.host_state(host)["pid"])
    except OSError:
        return None
