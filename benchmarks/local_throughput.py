"""End-to-end throughput and latency of the local runtime, bounded in count and time.

Starts the embedded default (``junction_local.runtime.LocalRuntime``), sends ``--events`` signed
webhooks of the integration's source (events made by its stand-in from the sample payloads) at
``--rate`` per second from ``--senders`` threads over keep-alive HTTP, and waits until every
target stand-in of the integration holds every one and the target queues have nothing left to
deliver. With the order route's targets (ERP, HubSpot, ShipBob), their request limits are lifted
and their idempotency switched off (``unmetered``): duplicates are counted at the stand-ins. Prints:
- sustained events/s end to end (first webhook sent -> last event received by the slowest target);
- webhook acknowledgement latency p50 / p99 / max (the sender's view, HTTP round trip);
- loss (events accepted but never received) and duplicates (received more than once).
The target stand-ins count unique references next to their effects, and the ERP's ignores
Idempotency-Key (as SAP Business One does), so a duplicate would show.
API Gateway throttling is switched off: the declared 50 req/s route throttle would otherwise
be what is measured. Exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from functions.registry import get
from junction_local.runtime import LocalRuntime, wait_for
from junction_local.standins import target as target_standin

UNIQUE = "unique_references"  # the count a target stand-in's summary keeps of distinct events


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0, help="offered load, webhooks per second")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument("--integration", default="shopify-orders")
    args = parser.parse_args()
    integration = get(args.integration)
    if integration.webhook is None:
        parser.error(f"{integration.name} has no webhook: this benchmark sends webhooks")
    systems = [t.name for t in integration.targets]
    counts = {system: target_standin(system).effect_count for system in systems}

    state_dir = Path(".junction") / "bench"
    print(f"starting the local runtime ({state_dir}) ...", flush=True)
    with LocalRuntime(state_dir=state_dir, throttle=False, unmetered=True) as runtime:
        unmetered(runtime, systems)
        client = runtime.sender(integration.name, retries=0)
        event = runtime.source(integration.name).event
        # Bodies and signatures are made before the clock starts: a real sender signs on its own machine.
        requests = []
        for n in range(args.events):
            body = json.dumps(event(7_000_000 + n), separators=(",", ":")).encode()
            requests.append((body, client.headers(body, f"bench-{n}")))
        acks: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        cpu_before = time.process_time()
        started = time.monotonic()
        interval = 1.0 / args.rate
        cursor = iter(range(args.events))

        def sender() -> None:
            while True:
                with lock:
                    n = next(cursor, None)
                if n is None:
                    return
                due = started + n * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                status, latency_ms = client.post(*requests[n])
                with lock:
                    acks.append(latency_ms)
                    statuses[status] = statuses.get(status, 0) + 1

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(args.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.timeout)
        sent_in = time.monotonic() - started
        accepted = statuses.get(202, 0)
        print(f"sent {args.events} webhooks in {sent_in:.1f}s; answers: {dict(sorted(statuses.items()))}", flush=True)

        deadline = started + args.timeout
        for system in systems:
            if UNIQUE not in runtime.target_summary(system):
                print(f"the {system} stand-in's summary has no {UNIQUE!r}: duplicates could not be told")
                return 1
        while (
            min(runtime.target_summary(system)[UNIQUE] for system in systems) < accepted and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        finished = time.monotonic() - started
        # A duplicate could still come from a message in hand or waiting out a retry: count only
        # once the queues have nothing left to deliver.
        wait_for(lambda: runtime.settled(integration.name), timeout=max(1.0, deadline - time.monotonic()))
        summaries = {system: runtime.target_summary(system) for system in systems}
        cpu = {name: _cpu_seconds(p.pid) for name, p in runtime.processes.items()}
        calls = runtime.aws_calls()
        batches = sum(
            int(count)
            for host in runtime.state["hosts"]
            if host.startswith("workers-")
            for count in runtime.host_state(host)["invocations"].values()
        )
        cpu["load generator"] = time.process_time() - cpu_before

    if not acks:
        print(f"no webhook was answered: see {state_dir}/logs/")
        return 1
    delivered = sum(summaries[system][counts[system]] for system in systems)
    unique = min(summaries[system][UNIQUE] for system in systems)
    lost = sum(accepted - summaries[system][UNIQUE] for system in systems)
    duplicates = sum(summaries[system][counts[system]] - summaries[system][UNIQUE] for system in systems)
    throughput = unique / finished if finished else 0.0
    names = ", ".join(systems)
    print()
    print(f"Junction local runtime, end to end (webhook -> ingress -> SQS -> processor -> {names})")
    print(f"  events offered      {args.events} at {args.rate:.0f}/s from {args.senders} senders")
    print(f"  accepted (202)      {accepted}")
    for system in systems:
        print(f"  delivered           {summaries[system][UNIQUE]} unique events to the {system} in {finished:.2f}s")
    print(f"  sustained           {throughput:.0f} events/s end to end")
    print(
        f"  ack latency         p50 {percentile(acks, 50):.1f} ms   p99 {percentile(acks, 99):.1f} ms   "
        f"max {max(acks):.1f} ms"
    )
    print(f"  lost                {lost}")
    print(f"  duplicates          {duplicates}")
    print(f"  processor batches   {batches} ({delivered / max(1, batches):.1f} messages per batch on average)")
    per_event = {k: v / max(1, unique) for k, v in sorted(calls.items()) if v / max(1, unique) >= 0.01}
    print("  AWS calls per event " + "   ".join(f"{k} {v:.2f}" for k, v in per_event.items()))
    print("  CPU ms per event    " + "   ".join(f"{k} {v * 1000 / max(1, unique):.2f}" for k, v in cpu.items()))
    print(
        f"bench-local: orders_per_s={throughput:.0f} targets={len(systems)} lost={lost} "
        f"duplicates={duplicates} p99_ack_ms={percentile(acks, 99):.0f}"
    )
    return 0 if lost == 0 and duplicates == 0 and accepted == args.events else 1


def unmetered(runtime: LocalRuntime, systems: list[str]) -> None:
    """What is measured is Junction: the stand-ins' request limits are lifted (the processors
    spend no declared budget either: ``LocalRuntime(unmetered=True)``), and their idempotency is
    switched off, so a duplicate Junction sent is counted as one (the ERP's ignores
    Idempotency-Key already, as SAP Business One does)."""
    from junction_local.runtime import _json

    for system in systems:
        control = f"{runtime.target_url(system)}/_standin"
        if system == "hubspot":
            _json(f"{control}/limits", {"requests_per_window": 1_000_000, "daily_limit": 100_000_000})
            _json(f"{control}/idempotency", {"idempotency": False})
        elif system == "shipbob":
            _json(f"{control}/settings", {"requests_per_minute": 1_000_000, "idempotency": False})


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
