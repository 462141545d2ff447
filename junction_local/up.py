"""``make up``: the embedded default, kept running for your own webhooks (Ctrl-C stops it).

The API listens on http://127.0.0.1:8080 (``JUNCTION_PORT`` to change it), on the paths the
deployed API has. The ops CLI finds this stack through ``.junction/local.json``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from rich.console import Console

from functions.registry import INTEGRATIONS
from junction_local.runtime import LocalRuntime
from junction_local.standins.shop import make_order
from shared.webhooks import shopify

console = Console()


def main() -> int:
    port = int(os.environ.get("JUNCTION_PORT", "8080"))
    with console.status("starting the AWS stand-ins, the ERP stand-in and the functions ..."):
        try:
            runtime = LocalRuntime(gateway_port=port).start()
        except RuntimeError as exc:
            console.print(f"[red]cannot start:[/red] {exc}")
            return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        secret = runtime.state["shop_secret"]
        console.print("[bold green]Junction is running locally.[/bold green]")
        for integration in INTEGRATIONS:
            if integration.webhook:
                console.print(f"  {integration.name}: POST {runtime.webhook_url(integration.name)}")
        console.print(f"  ERP stand-in: {runtime.erp_url}/_standin/state (what the ERP received)")
        console.print(f"  shop webhook secret: {secret}")
        body = json.dumps(make_order(4242), separators=(",", ":"))
        path = runtime.state_dir / "example-order.json"
        path.write_text(body, encoding="utf-8")
        signature = shopify.sign(body.encode(), secret)
        console.print(f"\nSend an order (the body is in {path}):")
        console.print(
            f"  curl -i {runtime.webhook_url('shop-orders-to-erp')} -H 'Content-Type: application/json' "
            f"-H 'X-Shopify-Topic: orders/create' -H 'X-Shopify-Webhook-Id: demo-1' "
            f"-H 'X-Shopify-Hmac-Sha256: {signature}' --data-binary @{path}",
            soft_wrap=True,
        )
        console.print(
            "\nThen: [bold]junction status[/bold], [bold]junction trace shopify-order:4242[/bold]. Ctrl-C stops."
        )
        while not stop.wait(1):
            dead = [name for name, p in runtime.processes.items() if p.poll() is not None]
            if dead:
                console.print(f"[red]{', '.join(dead)} stopped unexpectedly; see .junction/logs/[/red]")
                return 1
    finally:
        with console.status("stopping ..."):
            runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
