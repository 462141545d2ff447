"""Stock sync at scale on the local runtime: a full resync of 100,000 SKUs over two warehouses to
Shopify and Allegro, then an incremental phase of 1,000 ERP changes a minute.

Everything runs as deployed, locally (``LocalRuntime``): the ERP poller on its schedule, both
target processors with their declared concurrency, rate budgets and version gates, against the
stand-ins at their declared limits (Shopify Standard plan cost bucket; Allegro's 9,000 requests
and 9,000 offer changes a minute). The last line has this exact form:

    bench-sync: skus=100000 converge_ratio=R throttled_pct=T lost=L mismatches=M p95_change_latency_s=S

- R: time from the start of the resync until every channel equals the ERP, divided by the floor
  the stand-ins' declared limits imply (the slowest channel's minimum time for the calls the
  resync must make).
- T: % of channel calls answered 429 or THROTTLED.
- L: ERP changes of the incremental phase not visible on both channels when the run ends.
- M: SKUs whose final quantity differs on any channel from the ERP's sellable quantity.
- S: p95, over the incremental phase's changes, of the time from the ERP change until both
  channels show it.

Usage: ``make bench-sync`` (ARGS="--skus 20000 --minutes 2" for a shorter run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import signal
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.erp_stock_to_channels.declaration import INTEGRATION
from functions.erp_stock_to_channels.rules import RULES, sellable
from junction_local.runtime import LocalRuntime

NAME = INTEGRATION.name
PREFIX = "SKU-"


def call(url: str, body: Any = None, timeout: float = 120.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class World:
    """The three stand-ins, seen over their control APIs."""

    def __init__(self, rt: LocalRuntime) -> None:
        self.erp = rt.target_url("erp") + "/_standin"
        self.shopify = rt.target_url("shopify") + "/_standin"
        self.allegro = rt.target_url("allegro") + "/_standin"

    def erp_stock(self) -> dict[str, dict[str, dict[str, float]]]:
        stock: dict[str, dict[str, dict[str, float]]] = call(self.erp + "/stock")
        return stock

    def expected(self, stock: dict[str, dict[str, dict[str, float]]], channel: str) -> dict[str, int]:
        rule = RULES[channel]
        return {
            sku: sellable(
                {w: {"in_stock": str(v["InStock"]), "committed": str(v["Committed"])} for w, v in levels.items()}, rule
            )
            for sku, levels in stock.items()
            if sku.startswith(PREFIX)
        }

    def held(self, skus: list[str]) -> tuple[dict[str, int | None], dict[str, int]]:
        """What each channel sells now for ``skus`` (an ended Allegro offer sells nothing)."""
        shop: dict[str, int | None] = {}
        market: dict[str, int] = {}
        for start in range(0, len(skus), 20_000):
            chunk = skus[start : start + 20_000]
            shop.update(call(self.shopify + "/lookup", {"skus": chunk})["quantities"])
            answer = call(self.allegro + "/lookup", {"skus": chunk})
            ended = set(answer["ended"])
            market.update({s: 0 if s in ended else q for s, q in answer["quantities"].items()})
        return shop, market

    def mismatched(self, stock: dict[str, dict[str, dict[str, float]]]) -> set[str]:
        want_shop, want_market = self.expected(stock, "shopify"), self.expected(stock, "allegro")
        shop, market = self.held(sorted(want_shop))
        return {s for s in want_shop if shop.get(s) != want_shop[s] or market.get(s) != want_market[s]}

    def counts(self) -> dict[str, Any]:
        return {
            "shopify": call(self.shopify + "/summary"),
            "allegro": call(self.allegro + "/summary"),
            "erp": call(self.erp + "/summary"),
        }


def floor_seconds(skus: int, counts: dict[str, Any], ended: int) -> tuple[float, dict[str, float]]:
    """The least time the declared limits allow for a full resync of ``skus``."""
    shop = counts["shopify"]["limits"]
    sets = math.ceil(skus / 250) * 10.0  # one inventorySetQuantities of 250 costs 10 points
    shopify = max(0.0, sets - float(shop["maximum_available"])) / float(shop["restore_rate"])
    market = counts["allegro"]["limits"]
    per_minute = float(market["offer_changes_per_minute"])
    quantity_changes = skus - ended  # an offer with nothing to sell is ended instead (its own limit)
    allegro = max(0.0, quantity_changes - per_minute) / (per_minute / 60.0)
    return max(shopify, allegro), {"shopify": round(shopify, 1), "allegro": round(allegro, 1), "erp": 0.0}


def calls_and_throttles(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    def d(system: str, key: str) -> int:
        return int(after[system].get(key, 0)) - int(before[system].get(key, 0))

    calls = d("shopify", "requests") + d("allegro", "requests")
    throttled = d("shopify", "throttled") + d("shopify", "errors_429") + d("allegro", "errors_429")
    return calls, throttled


def wait_settled(rt: LocalRuntime, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if rt.settled(NAME) else 0
        if quiet >= 3:
            return True
        time.sleep(1.0)
    return False


def host_peak_mb(rt: LocalRuntime) -> float:
    """VmHWM (peak resident set) of workers-0, the host whose scheduler runs the poller."""
    pid = rt.processes["workers-0"].pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def poller_peak_mb(rt: LocalRuntime, skus: int) -> float:
    """One full pass of the real poller in this process, under tracemalloc, into two throwaway
    queues and a cursor of its own (so the running system is not disturbed)."""
    import os
    import tracemalloc
    from dataclasses import replace

    import boto3

    from functions.erp_stock_to_channels import source
    from shared.parameters import Secrets
    from shared.polling import Poller, PollerContext

    os.environ.update(rt.state["aws_env"])
    sqs = boto3.client("sqs", region_name=rt.state["region"])
    ddb = boto3.client("dynamodb", region_name=rt.state["region"])
    probe = replace(INTEGRATION, name="bench-poller-probe")
    urls = [sqs.create_queue(QueueName=f"bench-poller-probe-{t.name}")["QueueUrl"] for t in probe.targets]
    secrets = Secrets(boto3.client("secretsmanager", region_name=rt.state["region"]))
    stage = rt.state["stage"]
    poller = Poller(
        probe,
        source.build(PollerContext(probe, stage, secrets)),
        sqs=sqs,
        ddb=ddb,
        state_table=f"junction-{stage}-state",
        queue_urls=urls,
    )
    from shared import polling

    polling.logger.setLevel("WARNING")
    tracemalloc.start()
    deadline = time.monotonic() + 600
    with contextlib.redirect_stdout(io.StringIO()):  # its metrics line
        result = poller.run(lambda: deadline - time.monotonic())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for url in urls:
        sqs.delete_queue(QueueUrl=url)
    if result.changes < skus:
        print(f"  (the probe pass read {result.changes} changes, outcome {result.outcome})")
    return peak / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the incremental phase")
    parser.add_argument("--rate", type=int, default=1000, help="ERP changes per minute in the incremental phase")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up converging after this long")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # A stopped benchmark stops its local runtime too (the context manager's exit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rng = random.Random(args.seed)
    schedule = INTEGRATION.schedule
    assert schedule is not None
    print(f"bench-sync: {args.skus} SKUs, 2 warehouses, schedule {schedule.expression}; starting the local runtime")
    with LocalRuntime(throttle=False, worker_processes=2) as rt:
        world = World(rt)
        # The catalogue was last stocked yesterday: today's reads see only today's changes.
        call(world.erp + "/settings", {"clock_offset_seconds": -86_400})
        call(world.erp + "/items/seed", {"count": args.skus, "prefix": PREFIX, "warehouses": ["01", "02"]})
        call(world.erp + "/settings", {"clock_offset_seconds": 0})
        call(world.shopify + "/catalogue/seed", {"count": args.skus, "prefix": PREFIX, "quantity": 0})
        call(world.allegro + "/offers/seed", {"count": args.skus, "prefix": PREFIX, "quantity": 1})
        stock = world.erp_stock()
        ended = sum(1 for q in world.expected(stock, "allegro").values() if q == 0)
        before = world.counts()
        floor, floors = floor_seconds(args.skus, before, ended)

        # -- phase 1: full resync ---------------------------------------------------------------
        print(f"phase 1: full resync; floor by declared limits {floor:.0f} s ({floors})")
        started = time.monotonic()
        poller = threading.Thread(target=lambda: rt.fire_schedule(NAME), daemon=True)
        poller.start()
        converged_at = None
        while time.monotonic() - started < args.timeout:
            time.sleep(5.0)
            depth = rt.queue_depth(NAME)
            done = call(world.allegro + "/summary")["tasks_done"]
            print(
                f"  {time.monotonic() - started:6.0f} s  queued {depth['visible']:4d} in flight {depth['in_flight']:3d}"
                f"  allegro tasks {done}",
                flush=True,
            )
            if poller.is_alive() or not rt.settled(NAME):
                continue
            if not world.mismatched(stock):
                converged_at = time.monotonic() - started
                break
        after_full = world.counts()
        if converged_at is None:
            print("phase 1 did not converge in time")
            converged_at = float("inf")
        print(f"phase 1: converged in {converged_at:.0f} s")

        # -- phase 2: incremental ---------------------------------------------------------------
        print(f"phase 2: {args.rate} ERP changes a minute for {args.minutes} min")
        pending: dict[str, float] = {}  # sku -> time of its oldest change not yet visible on both channels
        latencies: list[float] = []
        changed: set[str] = set()
        erp_reads_before = after_full["erp"]["items_reads"]
        skus = sorted(world.expected(stock, "shopify"))
        end = time.monotonic() + args.minutes * 60
        give_up = end + schedule_interval(schedule.expression) * 3 + 120
        interval = 60.0 / args.rate
        next_change = time.monotonic()
        last_check = 0.0
        while time.monotonic() < give_up and (time.monotonic() < end or pending):
            now = time.monotonic()
            if now < end and now >= next_change:
                batch: list[dict[str, Any]] = []
                while next_change <= now:
                    sku = rng.choice(skus)
                    warehouse = rng.choice(["01", "02"])
                    level = rng.randrange(0, 200)
                    batch.append({"item": sku, "warehouse": warehouse, "in_stock": level})
                    stock[sku][warehouse]["InStock"] = level  # the ERP now holds this (no orders meanwhile)
                    next_change += interval
                call(world.erp + "/stock", {"changes": batch})
                for change in batch:
                    pending.setdefault(str(change["item"]), now)
                    changed.add(str(change["item"]))
            if now - last_check >= 2.0 and pending:
                last_check = now
                names = sorted(pending)
                mine = {s: stock[s] for s in names}
                want_shop, want_market = world.expected(mine, "shopify"), world.expected(mine, "allegro")
                shop, market = world.held(names)
                seen = time.monotonic()
                for sku in names:
                    if shop.get(sku) == want_shop[sku] and market.get(sku) == want_market[sku]:
                        latencies.append(seen - pending.pop(sku))
            time.sleep(0.05)
        lost = len(pending)
        wait_settled(rt, 300)
        final = world.erp_stock()
        mismatches = len(world.mismatched(final))
        after = world.counts()
        erp_reads = after["erp"]["items_reads"] - erp_reads_before
        calls, throttled = calls_and_throttles(before, after)
        ratio = converged_at / floor if floor > 0 else float("inf")
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 20 else max(latencies, default=0.0)
        print(
            f"ERP calls per changed SKU: {erp_reads / max(1, len(changed)):.3f} "
            f"({erp_reads} reads, {len(changed)} SKUs)"
        )
        print(f"channel calls: {calls} ({throttled} throttled or 429)")
        print(f"peak RSS of the function host that runs the poller (it runs processors too): {host_peak_mb(rt):.0f} MB")
        print(f"peak Python heap of one full poller pass over {args.skus} SKUs: {poller_peak_mb(rt, args.skus):.0f} MB")
        print(
            f"bench-sync: skus={args.skus} converge_ratio={ratio:.2f} "
            f"throttled_pct={100 * throttled / max(1, calls):.2f} lost={lost} mismatches={mismatches} "
            f"p95_change_latency_s={p95:.1f}"
        )


def schedule_interval(expression: str) -> float:
    from junction_local.schedule import Schedule

    return float(Schedule(expression).interval or 60)


if __name__ == "__main__":
    main()
