"""End to end over real HTTP on localhost: shop -> API front -> ingress -> SQS -> processor -> ERP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from functions.registry import INTEGRATIONS, get
from junction_local.runtime import LocalRuntime, _json, wait_for
from junction_local.standins import Sender
from junction_local.standins.shop import make_order
from shared.webhooks import shopify

INTEGRATION = "shopify-orders"
# After an attempt whose outcome is unknown, the processor trusts a lookup that finds nothing
# only once the settle time has passed: recovery after an outage (or a redrive) may take that long.
AFTER_SETTLE = get(INTEGRATION).target("erp").retry.settle_seconds + 60


def erp_refs(runtime: LocalRuntime) -> Counter[str]:
    return Counter(str(o["NumAtCard"]) for o in runtime.erp_state()["orders"])


def shop(runtime: LocalRuntime) -> Sender:
    return runtime.sender(INTEGRATION, retries=0)


def settled(runtime: LocalRuntime, refs: set[str], timeout: float = 60) -> Counter[str]:
    """Wait until every reference is in the ERP and nothing is left that could still deliver
    (no message visible, in hand or waiting out a retry delay); then what the ERP holds.
    A late duplicate would need a message still in the queue: counting after this reveals it."""
    assert wait_for(lambda: refs <= set(erp_refs(runtime)) and runtime.settled(INTEGRATION), timeout=timeout), (
        refs - set(erp_refs(runtime)),
        runtime.queue_depth(INTEGRATION),
    )
    return erp_refs(runtime)


def traced(runtime: LocalRuntime, entity: str, outcome: str) -> bool:
    """The entity's trace records a hop with this outcome (every processed attempt leaves one)."""
    return outcome in junction(runtime, "trace", entity).stdout


def junction(runtime: LocalRuntime, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUNCTION_LOCAL_STATE": str(runtime.state_file), "JUNCTION_OPS_ON": "local", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_orders_are_delivered_once_whatever_the_duplicates(runtime: LocalRuntime) -> None:
    sender = shop(runtime)
    orders = [make_order(900_000 + n, customer=n) for n in range(5)]
    for order in orders:
        first = sender.send(order)
        assert first.status == 202
        assert sender.send(order, delivery_id=first.delivery_id).status == 202  # Shopify's retry
        assert sender.send(order).status == 202  # the same order under a new webhook id
    refs = {f"shopify:{o['id']}" for o in orders}
    counts = settled(runtime, refs)
    assert all(counts[r] == 1 for r in refs), counts


@pytest.mark.parametrize(
    ("case", "status"),
    [("forged", 401), ("unsigned", 401), ("malformed", 400), ("unknown route", 403)],
)
def test_bad_requests_get_their_answer_and_reach_nothing(runtime: LocalRuntime, case: str, status: int) -> None:
    sender = shop(runtime)
    before = _erp_effects(runtime)
    dead_before = runtime.queue_depth(INTEGRATION)["dead_letters"]
    body = json.dumps(make_order(910_001)).encode()
    headers = sender.headers(body, f"bad-{case}")
    if case == "forged":
        headers["X-Shopify-Hmac-Sha256"] = shopify.sign(body, "not-the-shops-secret")
    elif case == "unsigned":
        del headers["X-Shopify-Hmac-Sha256"]
    elif case == "malformed":
        body = b'{"id": 910002, "line_items": [ nope'
        headers = sender.headers(body, "bad-malformed")
    if case == "unknown route":
        request = urllib.request.Request(runtime.gateway_url + "/webhooks/nowhere", data=body, method="POST")
        try:
            urllib.request.urlopen(request, timeout=5)
            answered = 200
        except urllib.error.HTTPError as exc:
            answered = exc.code
    else:
        answered = sender.send_raw(body, headers).status
    assert answered == status
    # Anything the request had put on the queue would be there now (the answer comes after the
    # enqueue); once the queue has nothing in hand, any effect it could have had has happened.
    assert wait_for(lambda: runtime.settled(INTEGRATION), timeout=60)
    assert runtime.queue_depth(INTEGRATION)["dead_letters"] == dead_before
    # Nothing written to the ERP (its request count also moves with the stock poller's reads),
    # and no processor ever saw the request: it has no trace.
    assert _erp_effects(runtime) == before
    assert "shopify:910001" not in erp_refs(runtime)
    for entity in ("shopify-order:910001", "shopify-order:910002"):
        assert "no trace" in junction(runtime, "trace", entity).stderr


def _erp_effects(runtime: LocalRuntime) -> tuple[int, int]:
    """What the shop's orders make in the ERP: sales orders and business partners."""
    state = runtime.erp_state()
    return len(state["orders"]), len(state["business_partners"])


def test_erp_outage_then_recovery(runtime: LocalRuntime) -> None:
    sender = shop(runtime)
    runtime.erp_behaviour("down")
    try:
        orders = [make_order(920_000 + n, customer=n) for n in range(3)]
        assert all(sender.send(o).status == 202 for o in orders)  # accepted while the ERP is down
        # Every order has been tried and put back to wait (a trace record per attempt) ...
        for order in orders:
            assert wait_for(partial(traced, runtime, f"shopify-order:{order['id']}", "retry_scheduled"), timeout=60)
        # ... and none of them got through.
        assert not {f"shopify:{o['id']}" for o in orders} & set(erp_refs(runtime))
    finally:
        runtime.erp_behaviour("ok")
    refs = {f"shopify:{o['id']}" for o in orders}
    counts = settled(runtime, refs, timeout=AFTER_SETTLE)
    assert all(counts[r] == 1 for r in refs), counts


def test_rate_limited_erp_is_waited_out(runtime: LocalRuntime) -> None:
    runtime.erp_behaviour("rate_limited", retry_after=2, count=3)
    order = make_order(925_000)
    assert shop(runtime).send(order).status == 202
    assert settled(runtime, {"shopify:925000"}, timeout=AFTER_SETTLE)["shopify:925000"] == 1


def test_poison_order_to_dlq_then_fixed_and_redriven_once(runtime: LocalRuntime) -> None:
    order = make_order(930_000, skus=("MUG-BLUE", "PHANTOM-1"))
    assert shop(runtime).send(order).status == 202
    assert wait_for(
        lambda: "930000" in junction(runtime, "dlq", "list", INTEGRATION, "--target", "erp").stdout, timeout=30
    )
    listing = junction(runtime, "dlq", "list", INTEGRATION, "--target", "erp")
    assert listing.returncode == 0 and "target_rejected" in listing.stdout
    assert "shopify:930000" not in erp_refs(runtime)

    runtime.erp_add_item("PHANTOM-1")
    dry = junction(
        runtime, "dlq", "redrive", INTEGRATION, "--target", "erp", "--reason", "target_rejected", "--dry-run"
    )
    assert dry.returncode == 0
    assert (
        "930000" in junction(runtime, "dlq", "list", INTEGRATION, "--target", "erp").stdout
    )  # a dry run moves nothing
    moved = junction(runtime, "dlq", "redrive", INTEGRATION, "--target", "erp", "--reason", "target_rejected", "--yes")
    assert moved.returncode == 0, moved.stderr
    assert settled(runtime, {"shopify:930000"}, timeout=AFTER_SETTLE)["shopify:930000"] == 1
    assert "930000" not in junction(runtime, "dlq", "list", INTEGRATION, "--target", "erp").stdout

    trace = junction(runtime, "trace", "shopify-order:930000")
    assert trace.returncode == 0
    assert "dead_lettered" in trace.stdout and "delivered" in trace.stdout


def test_replay_without_bypass_has_no_effect_and_with_bypass_one(runtime: LocalRuntime) -> None:
    order = make_order(940_000)
    assert shop(runtime).send(order).status == 202
    assert settled(runtime, {"shopify:940000"})["shopify:940000"] == 1
    assert junction(runtime, "replay", "shopify-order:940000", "--target", "erp", "--yes").returncode == 0
    # The replayed event was processed (its hop is traced as a duplicate) and nothing is left to run.
    assert wait_for(lambda: traced(runtime, "shopify-order:940000", "duplicate"), timeout=30)
    assert settled(runtime, {"shopify:940000"})["shopify:940000"] == 1
    assert (
        junction(
            runtime, "replay", "shopify-order:940000", "--target", "erp", "--bypass-idempotency", "--yes"
        ).returncode
        == 0
    )
    assert wait_for(lambda: erp_refs(runtime)["shopify:940000"] == 2, timeout=30)
    assert settled(runtime, {"shopify:940000"})["shopify:940000"] == 2


def test_status_shows_every_integration(runtime: LocalRuntime) -> None:
    result = junction(runtime, "status")
    assert result.returncode == 0, result.stderr
    assert INTEGRATION in result.stdout


@pytest.mark.parametrize("name", [i.name for i in INTEGRATIONS if i.schedule], ids=str)
def test_a_schedule_runs_the_poller_and_each_target_processes_its_own_copy(runtime: LocalRuntime, name: str) -> None:
    """On demand as on its schedule: the poller runs (with no event source of its own), and what
    it enqueues reaches every target's processor through that target's own queue."""
    integration = get(name)
    if integration.source == "allegro":  # its first run starts at the journal's latest event: add one after it
        runtime.fire_schedule(name)
        _json(f"{runtime.target_url('allegro')}/_standin/orders", {"lines": [{"sku": "MUG-BLUE", "quantity": 1}]})
    answer = runtime.fire_schedule(name)
    assert answer["fired"] == name and isinstance(answer["response"], dict)
    workers = [host for host in runtime.state["hosts"] if host.startswith("workers-")]
    assert runtime.host_state(workers[0])["schedules"][name] >= 1

    def invocations() -> dict[str, int]:
        seen: dict[str, int] = {}
        for host in workers:
            for key, count in runtime.host_state(host)["invocations"].items():
                seen[key] = seen.get(key, 0) + int(count)
        return seen

    # The first run (this one, or the schedule's own before it) reads the whole source (Allegro's
    # order journal: what came after its latest event); a target after another gets its copy from it.
    keys = [f"{name}/{t.name}" for t in integration.targets]
    assert wait_for(lambda: all(invocations().get(key, 0) >= 1 for key in keys), timeout=60), invocations()
    assert f"{name}/poller" not in invocations()
    assert wait_for(lambda: runtime.settled(name), timeout=60), runtime.queue_depth(name)
    rows = [line for line in junction(runtime, "status", name).stdout.splitlines() if name in line]
    assert [row.split("│")[2].strip() for row in rows] == [t.name for t in integration.targets]


def test_cli_errors_are_one_line(runtime: LocalRuntime) -> None:
    result = junction(runtime, "status", "no-such-integration")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "no-such-integration" in result.stderr


def test_a_stopped_runtime_leaves_no_process_behind(tmp_path: Path) -> None:
    local = LocalRuntime(state_dir=tmp_path).start()
    pids = local.pids()
    assert len(pids) >= 5
    local.stop()
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except OSError:
            pass
    assert alive == []
    assert not local.state_file.exists()


def test_the_claim_check_bucket_exists_and_every_function_knows_it(runtime: LocalRuntime) -> None:
    import boto3

    bucket = runtime.state["payload_bucket"]
    assert bucket == "junction-local-payloads"
    envs = [env for roles in runtime.state["functions"].values() for env in roles.values()]
    assert {env["JUNCTION_PAYLOAD_BUCKET"] for env in envs} == {bucket}
    s3 = boto3.client(
        "s3",
        endpoint_url=runtime.state["endpoints"]["default"],
        region_name=runtime.state["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    s3.head_bucket(Bucket=bucket)  # raises if it is missing


def test_an_order_too_large_for_one_message_travels_by_claim_check_and_lands_once(runtime: LocalRuntime) -> None:
    order = make_order(970_000)
    order["note"] = "gift wrap, " * 30_000  # about 330 KB: over the 256 KiB SQS message limit
    assert shop(runtime).send(order).status == 202
    assert settled(runtime, {"shopify:970000"})["shopify:970000"] == 1


# -- stock sync ---------------------------------------------------------------------------------
STOCK = "erp-stock-to-channels"


def _call(url: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def channel_mismatches(runtime: LocalRuntime) -> dict[str, tuple[int, object, object]]:
    """ERP items whose sellable quantity differs on a channel: sku@channel -> (want, held)."""
    from functions.erp_stock_to_channels.rules import RULES, sellable
    from junction_local.standins.erp import DEFAULT_ITEMS

    stock = _call(f"{runtime.target_url('erp')}/_standin/stock")
    skus = {"skus": list(DEFAULT_ITEMS)}
    shop_held = _call(f"{runtime.target_url('shopify')}/_standin/lookup", skus)["quantities"]
    market = _call(f"{runtime.target_url('allegro')}/_standin/lookup", skus)
    ended = set(market["ended"])
    held = {
        "shopify": dict(shop_held),
        "allegro": {s: 0 if s in ended else q for s, q in market["quantities"].items()},
    }
    out: dict[str, tuple[int, object, object]] = {}
    for channel, rule in RULES.items():
        for sku in DEFAULT_ITEMS:
            levels = stock[sku]
            want = sellable(
                {w: {"in_stock": str(v["InStock"]), "committed": str(v["Committed"])} for w, v in levels.items()}, rule
            )
            if held[channel].get(sku) != want:
                out[f"{sku}@{channel}"] = (want, held[channel].get(sku), None)
    return out


def poll(runtime: LocalRuntime) -> dict[str, object]:
    for _ in range(30):  # the schedule's own run may hold the lease
        response: dict[str, object] = runtime.fire_schedule(STOCK)["response"]
        if response.get("outcome") != "overlap":
            return response
        time.sleep(1)
    raise AssertionError("the stock poller's lease stayed taken")


def test_stock_reaches_both_channels_and_a_change_follows_at_the_next_poll(runtime: LocalRuntime) -> None:
    poll(runtime)
    assert wait_for(lambda: runtime.settled(STOCK) and not channel_mismatches(runtime), timeout=90), channel_mismatches(
        runtime
    )
    # Items other tests created in the ERP that no channel lists wait in the DLQs (unmapped_sku).
    dead_before = runtime.queue_depth(STOCK)["dead_letters"]
    on_hand = _call(f"{runtime.target_url('erp')}/_standin/stock")["KETTLE-STEEL"]["02"]["InStock"]
    _call(
        f"{runtime.target_url('erp')}/_standin/stock",
        {"changes": [{"item": "KETTLE-STEEL", "warehouse": "02", "in_stock": on_hand + 7}]},
    )
    assert channel_mismatches(runtime)  # Shopify sells warehouse 02: it is behind until the next poll
    run = poll(runtime)
    assert run["outcome"] == "caught_up" and run["changes"] == 1, run
    assert wait_for(lambda: runtime.settled(STOCK) and not channel_mismatches(runtime), timeout=90), channel_mismatches(
        runtime
    )
    assert runtime.queue_depth(STOCK)["dead_letters"] == dead_before  # the change dead-lettered nothing
