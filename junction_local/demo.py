"""``make demo``: a day at a small shop, run on the embedded default, checked at the end.

Orders arrive as signed Shopify webhooks: some delivered twice (as Shopify retries), one order
re-sent under a new webhook id, a malformed request and a forged signature among them. The ERP
goes down for a while and comes back. The ERP commits an order and loses its answer while the
shop sends that order again. The ERP stays down longer than a receive-count retry policy would
have waited. One order names a product the ERP does not know: it ends in the dead-letter queue.
The summary shows what arrived, what was delivered (each exactly once), what was rejected and
why, and what waits in the DLQ and why. Then the product is created in the ERP, the DLQ is
redriven with the ops CLI, and that order is delivered once. Exit status 0 only if every
expectation held.

The redelivery policy runs TIME_SCALE times its deployed speed (backoff, settle time, breaker
periods; junction_local.host.redelivery_scaled), so that an hour of outage fits in minutes. The
retry horizon is not scaled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from functions.erp_stock_to_channels.rules import RULES, sellable
from functions.registry import get
from junction_local.runtime import LocalRuntime, _json, wait_for
from junction_local.standins.erp import DEFAULT_ITEMS
from junction_local.standins.shop import ShopStandIn, make_order
from shared.webhooks import shopify

INTEGRATION = "shopify-orders"
STOCK = "erp-stock-to-channels"
WOOCOMMERCE = "woocommerce-orders"
ALLEGRO = "allegro-orders"
ORDER_SOURCES = (INTEGRATION, WOOCOMMERCE, ALLEGRO)
ORDER_SYSTEMS = ("erp", "hubspot", "shipbob")
ERP = get(INTEGRATION).target("erp")  # the integration's one target: its queue and retry policy
POISON_SKU = "GHOST-MUG"
TIME_SCALE = 1 / 30
# What the receive-count policy this replaced did: dead-letter at the queue's maxReceiveCount.
OLD_MAX_RECEIVES = ERP.queue.max_receive_count
console = Console()


class Demo:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.shop = ShopStandIn(runtime.webhook_url(INTEGRATION), runtime.webhook_secret(INTEGRATION), retry_delay=0.5)
        self.valid: list[int] = []  # order ids that must reach the ERP exactly once
        self.rejected: list[tuple[str, int, str]] = []  # (what, status, expected status)
        self.checks: list[tuple[str, bool]] = []
        self.env = {
            **os.environ,
            "JUNCTION_LOCAL_STATE": str(runtime.state_file),
            "JUNCTION_OPS_ON": "local",
            "COLUMNS": str(max(console.width, 150)),
        }

    # -- helpers -----------------------------------------------------------------------------
    def erp_orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self.runtime.erp_state()["orders"]
        return orders

    def delivered(self) -> Counter[str]:
        return Counter(str(o["NumAtCard"]) for o in self.erp_orders())

    def check(self, label: str, ok: bool) -> None:
        self.checks.append((label, ok))

    def cli(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "ops.cli", *args],
            check=False,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"junction {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def wait_delivered(self, expected: int, label: str, timeout: float) -> bool:
        with Progress(
            SpinnerColumn(),
            TextColumn(label),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} in the ERP"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task(label, total=expected)

            def done() -> bool:
                count = len(set(self.delivered()) & {f"shopify:{i}" for i in self.valid})
                progress.update(task, completed=count)
                return count >= expected

            return wait_for(done, timeout, interval=0.3)

    # -- the story ---------------------------------------------------------------------------
    def morning(self) -> None:
        console.rule("[bold]1. Orders arrive")
        orders = [make_order(1001 + n, customer=n % 4, skus=_skus(n)) for n in range(10)]
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), console=console) as progress:
            task = progress.add_task("sending signed webhooks", total=len(orders) + 6)
            for order in orders:
                delivery = self.shop.send(order)
                self.valid.append(order["id"])
                progress.advance(task)
                if order["id"] in (1002, 1005, 1008):  # Shopify retries a delivery whose answer it missed
                    self.shop.send(order, delivery_id=delivery.delivery_id)
                    progress.advance(task)
            # The same order again under a new webhook id (a shop app re-sends it).
            self.shop.send(orders[0])
            progress.advance(task)
            # A malformed request, correctly signed.
            body = b'{"id": 1099, "line_items": [ this is not json'
            status = self.shop.send_raw(body, self.shop.headers(body, "malformed-1")).status
            self.rejected.append(("malformed JSON body", status, "400"))
            progress.advance(task)
            # A forged request: signed with a secret that is not the shop's.
            forged = json.dumps(make_order(1098)).encode()
            headers = self.shop.headers(forged, "forged-1")
            headers["X-Shopify-Hmac-Sha256"] = shopify.sign(forged, "not-the-shops-secret")
            status = self.shop.send_raw(forged, headers).status
            self.rejected.append(("forged signature", status, "401"))
            progress.advance(task)
            # An order for a product the ERP does not know: the poison message.
            poison = make_order(1013, customer=1, skus=("MUG-RED", POISON_SKU))
            self.shop.send(poison)
            self.poison_id = poison["id"]
            progress.advance(task)
        self.wait_delivered(len(self.valid), "delivering", timeout=60)

    def outage(self) -> None:
        console.rule("[bold]2. The ERP goes down")
        self.runtime.erp_behaviour("down")
        console.print("ERP answers [red]503[/red] to everything; the shop keeps selling.")
        for n in range(5):
            order = make_order(1020 + n, customer=n, skus=_skus(n + 3))
            delivery = self.shop.send(order)
            self.valid.append(order["id"])
            self.check(f"order #{order['id']} accepted while the ERP is down", delivery.status == 202)
        waiting = [f"shopify-order:{1020 + n}" for n in range(5)]
        wait_for(lambda: all("retry_scheduled" in self.cli("trace", e) for e in waiting), 60, 1.0)
        retrying = [o for o in self.valid if f"shopify:{o}" not in self.delivered()]
        console.print(f"{len(retrying)} orders wait in the queue, retried with backoff: {retrying}")
        self.check("orders wait in the queue during the outage", len(retrying) == 5)
        self.runtime.erp_behaviour("ok")
        console.print("ERP is [green]back[/green].")
        self.wait_delivered(len(self.valid), "catching up", timeout=120)

    def lost_answer(self) -> None:
        console.rule("[bold]3. The ERP commits an order, then its answer is lost")
        order = make_order(1030, customer=2, skus=("TEAPOT-S",))
        self.runtime.erp_behaviour("accept_then_hang", delay=13, count=1)
        console.print(
            "The ERP saves the next sales order, then holds its answer for 13 s: past the processor's "
            "10 s read timeout. Like SAP Business One, it ignores Idempotency-Key."
        )
        self.shop.send(order)
        self.valid.append(order["id"])
        time.sleep(1)
        console.print("One second later the shop sends the same order again, under a new webhook id.")
        self.shop.send(order)
        ref = f"shopify:{order['id']}"
        entity = f"shopify-order:{order['id']}"

        def settled() -> bool:  # both deliveries have an outcome at the ERP: nothing left to retry
            rows = _rows(self.cli("trace", entity))
            return sum(row.get("outcome") in ("delivered", "duplicate") for row in rows) >= 2

        wait_for(settled, 90, interval=1.0)
        console.print(f"[dim]junction trace {entity}[/dim]")
        console.print(self.cli("trace", entity))
        self.check(
            f"a lost answer and a second delivery id make one sales order for #{order['id']} "
            f"(found {self.delivered().get(ref, 0)})",
            self.delivered().get(ref, 0) == 1,
        )

    def long_outage(self) -> None:
        console.rule("[bold]4. The ERP is down longer than a receive-count policy would wait")
        self.runtime.erp_behaviour("down")
        console.print(
            f"The old policy gave up on a message at its {OLD_MAX_RECEIVES}th receive (about 5.5 minutes at deployed "
            f"speed; here, with the policy {1 / TIME_SCALE:.0f}x faster, about a minute). Now the declared horizon "
            f"counts: {ERP.retry.horizon_seconds // 3600} h from the first attempt."
        )
        ids = [1040 + n for n in range(4)]
        for order_id in ids:
            self.check(
                f"order #{order_id} accepted during the long outage", self.shop.send(make_order(order_id)).status == 202
            )
            self.valid.append(order_id)
        started = time.monotonic()
        breaker_seen = False
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("ERP down; orders wait behind the circuit breaker", total=None)
            while time.monotonic() - started < 150:
                time.sleep(5)
                status = self.cli("status", INTEGRATION)
                breaker_seen = breaker_seen or "open (" in status
                bar.update(
                    task,
                    description=f"ERP down for {time.monotonic() - started:.0f} s; breaker "
                    + ("open" if "open (" in status else "probing" if "half-open" in status else "closed"),
                )
        console.print(self.cli("status", INTEGRATION))
        self.check("the circuit breaker opened during the outage", breaker_seen)
        self.check(
            "nothing was dead-lettered during the outage",
            "retries_exhausted" not in self.cli("dlq", "list", INTEGRATION, "--target", "erp"),
        )
        self.runtime.erp_behaviour("ok")
        console.print("ERP is [green]back[/green]: the next probe closes the breaker.")
        self.wait_delivered(len(self.valid), "after the long outage", timeout=120)
        receives = [_attempts(self.cli("trace", f"shopify-order:{i}")) for i in ids]
        console.print(f"receives per order before it was delivered: {receives}")
        self.check(
            f"each order was delivered although received more than {OLD_MAX_RECEIVES} times (the old give-up point)",
            all(r > OLD_MAX_RECEIVES for r in receives),
        )

    def summary(self) -> None:
        console.rule("[bold]5. What happened")
        attempts = Counter(status for d in self.shop.deliveries for status in d.attempts)
        table = Table(title="Webhook answers, as the shop saw them")
        table.add_column("HTTP status")
        table.add_column("requests", justify="right")
        for status, count in sorted(attempts.items()):
            table.add_row(str(status), str(count))
        console.print(table)

        delivered = self.delivered()
        table = Table(title="Delivered to the ERP")
        for column in ("shop order", "ERP DocEntry", "customer (CardCode)", "times in ERP"):
            table.add_column(column)
        by_ref = {str(o["NumAtCard"]): o for o in self.erp_orders()}
        for order_id in self.valid:
            ref = f"shopify:{order_id}"
            order = by_ref.get(ref, {})
            times = delivered.get(ref, 0)
            table.add_row(
                f"#{order_id}",
                str(order.get("DocEntry", "-")),
                str(order.get("CardCode", "-")),
                f"[green]{times}[/green]" if times == 1 else f"[red]{times}[/red]",
            )
        console.print(table)
        exactly_once = all(delivered.get(f"shopify:{i}", 0) == 1 for i in self.valid)
        self.check(f"all {len(self.valid)} valid orders delivered exactly once", exactly_once)
        partners = len(self.runtime.erp_state()["business_partners"])
        self.check(f"4 customers created once each in the ERP (found {partners})", partners == 4)

        table = Table(title="Rejected at the door")
        for column in ("request", "answer", "expected"):
            table.add_column(column)
        for what, status, expected in self.rejected:
            table.add_row(what, str(status), expected)
            self.check(f"{what} answered {expected}", str(status) == expected)
        console.print(table)
        self.check(
            "nothing from rejected requests reached the ERP", not ({"shopify:1098", "shopify:1099"} & set(delivered))
        )

        console.print("[bold]Dead-letter queue[/bold] ([dim]junction dlq list shopify-orders --target erp[/dim]):")
        listing = self.cli("dlq", "list", INTEGRATION, "--target", "erp")
        console.print(listing)
        self.check(
            "the poison order waits in the DLQ as target_rejected",
            "target_rejected" in listing and str(self.poison_id) in listing,
        )
        self.check("the poison order did not reach the ERP", f"shopify:{self.poison_id}" not in delivered)

    def fix_and_redrive(self) -> None:
        console.rule("[bold]6. Fix and redrive")
        console.print(f"The ERP lacked the product [bold]{POISON_SKU}[/bold]: it is created in the ERP now.")
        self.runtime.erp_add_item(POISON_SKU)
        console.print("[dim]junction dlq redrive shopify-orders --target erp --reason target_rejected --yes[/dim]")
        console.print(
            self.cli("dlq", "redrive", INTEGRATION, "--target", "erp", "--reason", "target_rejected", "--yes")
        )
        self.valid.append(self.poison_id)
        self.wait_delivered(len(self.valid), "redriven order", timeout=60)
        delivered = self.delivered()
        self.check(
            "after the fix, the redriven order is delivered exactly once",
            delivered.get(f"shopify:{self.poison_id}", 0) == 1,
        )
        wait_for(lambda: self.runtime.settled(INTEGRATION), 60)
        listing = self.cli("dlq", "list", INTEGRATION, "--target", "erp")
        self.check("the DLQ is empty", str(self.poison_id) not in listing)
        console.print(f"[dim]junction trace shopify-order:{self.poison_id}[/dim]")
        console.print(self.cli("trace", f"shopify-order:{self.poison_id}"))

    # -- stock --------------------------------------------------------------------------------
    def channels(self) -> dict[str, dict[str, int | None]]:
        """What the ERP says each channel may sell, and what each channel sells, per ERP item."""
        stock = _json(f"{self.runtime.target_url('erp')}/_standin/stock")
        want = {
            channel: {
                sku: sellable(
                    {
                        w: {"in_stock": str(v["InStock"]), "committed": str(v["Committed"])}
                        for w, v in stock[sku].items()
                    },
                    rule,
                )
                for sku in DEFAULT_ITEMS
            }
            for channel, rule in RULES.items()
        }
        skus = {"skus": list(DEFAULT_ITEMS)}
        shop = _json(f"{self.runtime.target_url('shopify')}/_standin/lookup", skus)["quantities"]
        market = _json(f"{self.runtime.target_url('allegro')}/_standin/lookup", skus)
        ended = set(market["ended"])
        held = {
            "shopify": {s: shop.get(s) for s in DEFAULT_ITEMS},
            "allegro": {s: 0 if s in ended else market["quantities"].get(s) for s in DEFAULT_ITEMS},
        }
        return {f"{c}:want": want[c] for c in want} | {f"{c}:held": held[c] for c in held}

    def equal(self, channel: str) -> bool:
        view = self.channels()
        return view[f"{channel}:want"] == view[f"{channel}:held"]

    def poll(self) -> dict[str, Any]:
        """Run the stock poller now (as its schedule does every minute); a run refused because the
        scheduled one holds the lease is tried again."""
        for _ in range(60):
            answer = self.runtime.fire_schedule(STOCK)["response"]
            if answer.get("outcome") != "overlap":
                return dict(answer)
            time.sleep(1)
        raise RuntimeError("the stock poller's lease stayed taken")

    def stock_table(self, title: str) -> None:
        view = self.channels()
        table = Table(title=title)
        for column in ("SKU", "ERP: Shopify may sell", "Shopify sells", "ERP: Allegro may sell", "Allegro sells"):
            table.add_column(column)
        for sku in DEFAULT_ITEMS:
            cells = []
            for channel in ("shopify", "allegro"):
                want, held = view[f"{channel}:want"][sku], view[f"{channel}:held"][sku]
                cells += [str(want), f"[green]{held}[/green]" if want == held else f"[red]{held}[/red]"]
            table.add_row(sku, *cells)
        console.print(table)

    def stock(self) -> None:
        console.rule("[bold]7. Stock: the ERP's levels on every channel")
        console.print(
            "The ERP stock poller runs every minute; Shopify sells warehouses 01+02, Allegro 01 less 2 kept back."
        )
        self.poll()
        converged = wait_for(
            lambda: self.runtime.settled(STOCK) and self.equal("shopify") and self.equal("allegro"), 90
        )
        self.check("after the orders, both channels sell what the ERP says", converged)
        self.stock_table("Before")

        console.print("A shop order for a MUG-BLUE: the ERP commits one more, and the next poll pushes the new level.")
        order = make_order(2001, customer=0, skus=("MUG-BLUE",))
        self.shop.send(order)
        self.valid.append(order["id"])
        self.wait_delivered(len(self.valid), "the order into the ERP", timeout=60)
        run = self.poll()
        console.print(f"poll: {run.get('changes')} change(s) sent, outcome {run.get('outcome')}")
        converged = wait_for(
            lambda: self.runtime.settled(STOCK) and self.equal("shopify") and self.equal("allegro"), 90
        )
        self.check("the order's lower level reached both channels at the next poll", converged)

        erp = f"{self.runtime.target_url('erp')}/_standin/stock"
        on_hand = _json(erp)["TEAPOT-L"]["01"]["InStock"]
        console.print("[bold]Allegro goes down[/bold]; a delivery of 40 x TEAPOT-L arrives in warehouse 01.")
        self.runtime.target_behaviour("allegro", "down")
        _json(erp, {"changes": [{"item": "TEAPOT-L", "warehouse": "01", "in_stock": on_hand + 40}]})
        self.poll()
        shop_first = wait_for(lambda: self.equal("shopify"), 60)
        self.check("with Allegro down, Shopify still gets the new level", shop_first)
        self.check("Allegro does not have it yet", not self.equal("allegro"))
        self.stock_table("Allegro down")
        console.print("[bold]Allegro is back[/bold]: its messages waited on its own queue.")
        self.runtime.target_behaviour("allegro", "ok")
        caught_up = wait_for(lambda: self.runtime.settled(STOCK) and self.equal("allegro"), 120)
        self.check("Allegro catches up after its outage", caught_up)
        console.print(
            f"{POISON_SKU}, created in the ERP in scene 6, is in neither channel's catalogue: a business error, "
            "never retried ([dim]junction dlq list erp-stock-to-channels --target allegro[/dim]):"
        )
        listing = self.cli("dlq", "list", STOCK, "--target", "allegro")
        console.print(listing)
        self.check(
            f"Allegro's DLQ holds only {POISON_SKU}, as unmapped_sku: the outage dead-lettered nothing",
            self.stock_dlq() == 2 and "unmapped_sku" in listing and POISON_SKU in listing,
        )

        console.print("An operator replays the first stock message of the day (levels from before all of this):")
        first = self.first_stock_batch()
        console.print(f"[dim]junction replay {first} --target allegro --bypass-idempotency --yes[/dim]")
        console.print(
            self.cli("replay", first, "--integration", STOCK, "--target", "allegro", "--bypass-idempotency", "--yes")
        )
        wait_for(lambda: self.runtime.settled(STOCK), 60)
        self.check("the stale replay overwrote nothing: Allegro still equals the ERP", self.equal("allegro"))
        self.check("the stale replay was refused by the version gate", self.replay_was_stale(first))
        self.stock_table("After the stale replay")

    def stock_dlq(self) -> int:
        return self.runtime.queue_depth(STOCK)["dead_letters"]

    def first_stock_batch(self) -> str:
        """The entity id of the earliest stock message Allegro took (the day's first full sync)."""
        items = self.scan_traces("delivered")
        return str(min(items, key=lambda i: i["sk"])["pk"]).removeprefix("trace#")

    def replay_was_stale(self, entity: str) -> bool:
        items = [i for i in self.scan_traces("delivered") if i["pk"] == f"trace#{entity}" and i.get("replay_id")]
        return any(int(i.get("target_ids", {}).get("stale", "0")) > 0 for i in items)

    def scan_traces(self, outcome: str) -> list[dict[str, Any]]:
        import boto3
        from boto3.dynamodb.conditions import Attr

        os.environ.update(self.runtime.state["aws_env"])
        table = boto3.resource("dynamodb", region_name=self.runtime.state["region"]).Table(
            f"junction-{self.runtime.state['stage']}-state"
        )
        condition = (
            Attr("pk").begins_with("trace#stock-batch:") & Attr("target").eq("allegro") & Attr("outcome").eq(outcome)
        )
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"FilterExpression": condition}
        while True:
            page = table.scan(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- scene 8: one order, every system -------------------------------------------------
    def order_counts(self) -> dict[str, int]:
        erp, crm, wms = (self.runtime.target_summary(s) for s in ORDER_SYSTEMS)
        return {
            "erp": erp["orders"],
            "erp_cancelled": erp["orders_cancelled"],
            "hubspot": crm["deals"],
            "hubspot_lost": crm["deals_closed_lost"],
            "shipbob": wms["orders"],
            "shipbob_cancelled": wms["orders_cancelled"],
        }

    def poll_allegro(self) -> dict[str, Any]:
        for _ in range(60):
            answer = self.runtime.fire_schedule(ALLEGRO)["response"]
            if answer.get("outcome") != "overlap":
                return dict(answer)
            time.sleep(1)
        raise RuntimeError("the Allegro order poller's lease stayed taken")

    def orders_settled(self) -> bool:
        return all(self.runtime.settled(name) for name in ORDER_SOURCES)

    def grew(self, before: dict[str, int], keys: tuple[str, ...], by: int, timeout: float = 90) -> bool:
        def done() -> bool:
            now = self.order_counts()
            return all(now[k] - before[k] >= by for k in keys)

        return wait_for(done, timeout) and self.order_counts() == {
            k: v + (by if k in keys else 0) for k, v in before.items()
        }

    def orders(self) -> None:
        console.rule(
            "[bold]Scene 8: one order, every system (Allegro polled, WooCommerce, Shopify -> ERP, HubSpot, ShipBob)"
        )
        from junction_local.standins.shop import make_order as shop_order
        from junction_local.standins.woocommerce import make_order as woo_order

        allegro = f"{self.runtime.target_url('allegro')}/_standin/orders"
        self.poll_allegro()  # the feed's cursor starts at Allegro's latest event
        wait_for(self.orders_settled, 120)
        before = self.order_counts()
        shop_id, woo_id = 880001, 7701
        woo = self.runtime.sender(WOOCOMMERCE)
        self.runtime.sender(INTEGRATION).send(shop_order(shop_id, skus=("MUG-BLUE", "TEAPOT-L")))
        woo.send(woo_order(woo_id, skus=("CUP-SET-4",)))
        form = _json(allegro, {"lines": [{"sku": "MUG-RED", "quantity": 2}]})["id"]
        console.print(f"A Shopify order, a WooCommerce order and an Allegro order ({form[:8]}…, polled).")
        self.poll_allegro()
        landed = self.grew(before, ("erp", "hubspot", "shipbob"), 3)
        self.check(
            "orders from Shopify, WooCommerce and Allegro each land once in the ERP, HubSpot and ShipBob", landed
        )

        console.print("Allegro sends READY_FOR_PROCESSING again, and journals a new order's events out of order.")
        before = self.order_counts()
        _json(f"{allegro}/{form}/ready", {})
        _json(allegro, {"lines": [{"sku": "KETTLE-STEEL", "quantity": 1}], "out_of_order": True})
        self.poll_allegro()
        once = self.grew(before, ("erp", "hubspot", "shipbob"), 1)
        self.check("a repeated READY_FOR_PROCESSING and out-of-order events make one order, not two", once)

        console.print("The three orders are cancelled, each at its source.")
        before = self.order_counts()
        cancelled = shop_order(shop_id, skus=("MUG-BLUE", "TEAPOT-L"))
        cancelled.update({"cancelled_at": "2026-12-06T12:00:00+01:00", "cancel_reason": "customer"})
        self.runtime.sender(INTEGRATION).send(cancelled, topic="orders/cancelled")
        woo.send(woo_order(woo_id, skus=("CUP-SET-4",), status="cancelled"), topic="order.updated")
        _json(f"{allegro}/{form}/cancel", {})
        self.poll_allegro()
        reached = self.grew(before, ("erp_cancelled", "hubspot_lost", "shipbob_cancelled"), 3)
        self.check("each cancellation reaches the ERP, HubSpot and ShipBob", reached)

        console.print("[bold]HubSpot goes down[/bold]; two more orders arrive.")
        self.runtime.target_behaviour("hubspot", "down")
        before = self.order_counts()
        for n in range(2):
            self.runtime.sender(INTEGRATION).send(shop_order(shop_id + 1 + n, skus=("TEAPOT-S",)))
        unaffected = wait_for(lambda: all(self.order_counts()[k] - before[k] == 2 for k in ("erp", "shipbob")), 90)
        self.check("with HubSpot down, the ERP and ShipBob still get every order", unaffected)
        self.check("HubSpot does not have them yet", self.order_counts()["hubspot"] == before["hubspot"])
        console.print("[bold]HubSpot is back[/bold]: its messages waited on its own queue.")
        self.runtime.target_behaviour("hubspot", "ok")
        caught_up = self.grew(before, ("erp", "hubspot", "shipbob"), 2, timeout=180)
        self.check("HubSpot catches up after its outage, once per order", caught_up)

        # Any id of the order, in any system: here the ERP's DocEntry of the Shopify order.
        doc_entry = next(
            str(o["DocEntry"]) for o in self.runtime.erp_state()["orders"] if o.get("NumAtCard") == f"shopify:{shop_id}"
        )
        console.print(f"[dim]junction trace {doc_entry}[/dim]  (the ERP's DocEntry of Shopify order {shop_id})")
        trace = self.cli("trace", doc_entry)
        console.print(trace)
        self.check(
            "junction trace <ERP DocEntry> finds the order and shows its hops at the ERP, HubSpot and ShipBob",
            f"shopify-order:{shop_id}" in trace and all(system in trace for system in ORDER_SYSTEMS),
        )

    # -- scene 9: money and parcels ----------------------------------------------------------
    def money_and_parcels(self) -> None:
        console.rule("[bold]Scene 9: paid, packed, shipped, delivered (Przelewy24, Stripe, InPost -> shop and ERP)")
        from junction_local.standins.inpost_webhooks import InPostWebhookSender, make_status
        from junction_local.standins.przelewy24 import Przelewy24NotificationStandIn, notification
        from junction_local.standins.stripe import StripeStandIn, charge_refunded, payment_succeeded
        from junction_local.standins.wms import make_packed
        from junction_local.standins.woocommerce import make_order as woo_order

        rt = self.runtime
        woo_api, shipx = rt.target_url("woocommerce"), rt.target_url("inpost")

        def erp() -> dict[str, int]:
            return rt.target_summary("erp")

        def settled(*names: str) -> bool:
            return all(rt.settled(name) for name in names)

        def woo(order_id: int) -> dict[str, Any]:
            found: dict[str, Any] = next(o for o in _json(f"{woo_api}/_standin/state")["orders"] if o["id"] == order_id)
            return found

        paid_id, refunded_id = 9901, 9902
        before = erp()
        for order_id in (paid_id, refunded_id):
            _json(f"{woo_api}/_standin/orders", {"id": order_id, "status": "processing"})
            rt.sender(WOOCOMMERCE).send(woo_order(order_id, skus=("MUG-BLUE",)))
        arrived = wait_for(lambda: erp()["orders"] == before["orders"] + 2, 90)
        console.print(f"Two WooCommerce orders ({paid_id}, {refunded_id}) are in the shop and the ERP.")
        self.check("two WooCommerce orders reach the ERP before their money", arrived)

        # Przelewy24: verified before it is booked; re-sent notifications book nothing more.
        p24 = cast(Przelewy24NotificationStandIn, rt.sender("przelewy24-payments"))
        paid = p24.settle(notification(paid_id))
        body = json.dumps(paid, ensure_ascii=False, separators=(",", ":")).encode()
        answers = [p24.send_raw(body, p24.headers(body, "")).attempts[-1] for _ in range(3)]
        forged = {**paid, "amount": paid["amount"] * 10, "originAmount": paid["amount"] * 10}
        forged_body = json.dumps(forged, ensure_ascii=False, separators=(",", ":")).encode()
        forged_answer = p24.send_raw(forged_body, p24.headers(forged_body, "")).attempts[-1]
        console.print(
            f"Przelewy24 notifies order {paid_id}'s payment three times (answers {answers}); "
            f"a notification with a tampered amount gets {forged_answer}."
        )
        booked = wait_for(lambda: erp()["incoming_payments"] == before["incoming_payments"] + 1, 90)
        self.check(
            "a Przelewy24 payment notified three times is verified and booked once", booked and answers == [200] * 3
        )
        self.check("a Przelewy24 notification with a wrong sign is refused (401)", forged_answer == 401)

        # Stripe: a forged signature is refused; a refund that overtakes its payment waits for it.
        stripe = cast(StripeStandIn, rt.sender("stripe-payments"))
        forgery = "whsec_forged"
        forged_stripe = stripe.forge(payment_succeeded(refunded_id), secret=forgery).attempts[-1]
        console.print(f"A Stripe event signed with the wrong secret gets {forged_stripe}.")
        self.check("a forged Stripe signature is refused (401)", forged_stripe == 401)
        stripe.send(charge_refunded(refunded_id, refunded=2_000))
        console.print(f"Stripe's refund of order {refunded_id} arrives [bold]before[/bold] its payment: it waits.")
        waited = wait_for(lambda: rt.queue_depth("stripe-payments")["in_flight"] >= 1, 30)
        no_refund_yet = erp()["refunds"] == before["refunds"]
        stripe.send(payment_succeeded(refunded_id))
        both = wait_for(
            lambda: (
                erp()["refunds"] == before["refunds"] + 1
                and erp()["incoming_payments"] == before["incoming_payments"] + 2
                and settled("stripe-payments", "przelewy24-payments")
            ),
            120,
        )
        self.check(
            "a refund that overtakes its payment waits for it; each is booked once",
            waited and no_refund_yet and both and erp()["refunds"] == before["refunds"] + 1,
        )

        # Packed -> one InPost shipment -> tracking to the shop and a delivery note in the ERP.
        reference = f"woocommerce:{paid_id}"
        wms = rt.sender("inpost-shipments")
        wms.send(make_packed(reference))
        wms.send(make_packed(reference))
        console.print(f"The warehouse reports order {paid_id} packed (twice).")
        shipped = wait_for(
            lambda: (
                erp()["delivery_notes"] == before["delivery_notes"] + 1
                and settled("inpost-shipments")
                and woo(paid_id)["status"] == "completed"
            ),
            120,
        )
        parcels = [s for s in _json(f"{shipx}/_standin/shipments")["shipments"] if s.get("reference") == reference]
        tracking = parcels[0]["tracking_number"] if parcels else ""
        in_shop = bool(tracking) and any(tracking in json.dumps(m) for m in woo(paid_id)["meta_data"])
        console.print(f"ShipX shipment {parcels[0]['id'] if parcels else '?'}, tracking {tracking or '?'}.")
        self.check(
            "packed twice, shipped once: one InPost parcel, its tracking in WooCommerce, one ERP delivery note",
            shipped and len(parcels) == 1 and in_shop,
        )

        # ShipX's status webhooks: a wrong token, a status ShipX does not confirm, then the real one.
        inpost = cast(InPostWebhookSender, rt.sender("inpost-tracking"))
        shipment_id = int(parcels[0]["id"]) if parcels else 0
        notes = len(woo(paid_id)["notes"])
        guess = "guessed-token"
        wrong = inpost.send(make_status(shipment_id, "delivered", tracking), token=guess).attempts[-1]
        claim = inpost.send(make_status(shipment_id, "delivered", tracking)).attempts[-1]
        time.sleep(3)
        unchanged = (
            erp()["deliveries_delivered"] == before["deliveries_delivered"] and len(woo(paid_id)["notes"]) == notes
        )
        console.print(
            f"A webhook with a wrong token gets {wrong}; one claiming 'delivered' while ShipX says "
            f"'{parcels[0]['status'] if parcels else '?'}' gets {claim} and waits for ShipX, changing nothing."
        )
        self.check("an InPost webhook with a wrong token is refused (401)", wrong == 401)
        self.check("a status ShipX does not confirm changes nothing in the shop or the ERP", claim == 202 and unchanged)
        _json(f"{shipx}/_standin/shipments/status", {"shipment_id": shipment_id, "status": "delivered", "notify": True})
        console.print("ShipX delivers the parcel and sends its own webhook.")
        delivered = wait_for(
            lambda: (
                erp()["deliveries_delivered"] == before["deliveries_delivered"] + 1
                and settled("inpost-tracking")
                and len(woo(paid_id)["notes"]) == notes + 1
            ),
            120,
        )
        self.check("delivered reaches WooCommerce and the ERP once", delivered)

        trace = self.cli("trace", f"woocommerce-order:{paid_id}")
        console.print(f"[dim]junction trace woocommerce-order:{paid_id}[/dim]")
        console.print(trace)
        self.check(
            "junction trace shows the order's payment and parcel hops (status paid, tracking number)",
            "payment_status" in trace and tracking in trace and "przelewy24" in trace and "inpost" in trace,
        )

    # -- last: what operators read holds no secret and no personal data -----------------------
    def privacy(self) -> None:
        console.rule("[bold]Last: no secret and no personal data in what operators read")
        from junction_local.pii import scan_attributes, scan_logs, secret_strings

        secrets = secret_strings(self.runtime.secret_values())
        folder = self.runtime.state_dir / "logs"
        lines = sum(len(p.read_bytes().splitlines()) for p in folder.rglob("*.log"))
        dead = self.runtime.dead_letters()
        found = scan_logs(folder, secrets) + scan_attributes(dead, secrets)
        console.print(
            f"{lines} log lines and the attributes of {len(dead)} dead letters scanned for "
            f"{len(secrets)} secret values, e-mails, phone numbers, street addresses and tax ids: "
            f"{len(found)} found."
        )
        for finding in found[:10]:
            console.print(f"  [red]{finding.where}: {finding.kind} ({finding.excerpt})[/red]")
        self.check(
            "no secret, e-mail, phone number, street address or tax id in any log line or dead-letter attribute",
            lines > 0 and not found,
        )

    def verdict(self) -> bool:
        console.rule("[bold]Expectations")
        for label, ok in self.checks:
            console.print(("[green]✓[/green] " if ok else "[red]✗[/red] ") + label)
        return all(ok for _, ok in self.checks)


def _rows(trace: str, target: str = "erp") -> list[dict[str, str]]:
    """The rows of a ``junction trace`` table at one target, as column -> cell."""
    columns: list[str] = []
    rows: list[dict[str, str]] = []
    for line in trace.splitlines():
        if line.startswith("┃") and "outcome" in line:  # the hops' header (the ids table has its own)
            columns = [c.strip() for c in line.strip("┃").split("┃")]
        elif line.startswith("│") and columns:
            rows.append(dict(zip(columns, (c.strip() for c in line.strip("│").split("│")), strict=False)))
    return [row for row in rows if row.get("target") == target]


def _attempts(trace: str) -> int:
    """The attempts of the ERP's last delivered row (receives, including waits)."""
    delivered = [row for row in _rows(trace) if row.get("outcome") == "delivered"]
    attempts = delivered[-1].get("attempts", "") if delivered else ""
    return int(attempts) if attempts.isdigit() else 0


def _skus(n: int) -> tuple[str, ...]:
    catalogue = ("MUG-BLUE", "MUG-RED", "TEAPOT-L", "TEAPOT-S", "CUP-SET-4", "KETTLE-STEEL")
    return tuple(catalogue[(n + k) % len(catalogue)] for k in range(1 + n % 3))


def main() -> int:
    console.rule("[bold]Junction demo: Shopify orders into the ERP, on this machine")
    started = time.monotonic()
    with console.status("starting the AWS stand-ins, the ERP stand-in and the functions ..."):
        runtime = LocalRuntime(state_dir=Path(".junction") / "demo", redelivery_time_scale=TIME_SCALE).start()
    try:
        console.print(f"webhook URL: {runtime.webhook_url(INTEGRATION)}")
        demo = Demo(runtime)
        demo.morning()
        demo.outage()
        demo.lost_answer()
        demo.long_outage()
        demo.summary()
        demo.fix_and_redrive()
        demo.stock()
        demo.orders()
        demo.money_and_parcels()
        demo.privacy()
        ok = demo.verdict()
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {type(exc).__name__}: {exc}")
        ok = False
    finally:
        with console.status("stopping ..."):
            runtime.stop()
    console.print(
        f"{'[green]all expectations held' if ok else '[red]some expectations failed'}[/] "
        f"in {time.monotonic() - started:.0f}s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
