"""``make up``: the embedded default, kept running for your own webhooks (Ctrl-C stops it).

The API listens on http://127.0.0.1:8080 (``JUNCTION_PORT`` to change it), on the paths the
deployed API has. The ops CLI finds this stack through ``.junction/local.json``. A function host
that dies is replaced (printed here); a stand-in that dies ends the run.
``JUNCTION_LOCAL_VISIBILITY_TIMEOUT`` (seconds) shortens the queues' visibility timeout, to watch
a crashed worker's messages come back without waiting 6x the processor timeout.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from rich.console import Console

from functions.registry import INTEGRATIONS, get
from junction_local.runtime import LocalRuntime

console = Console()


def main() -> int:
    port = int(os.environ.get("JUNCTION_PORT", "8080"))
    visibility = os.environ.get("JUNCTION_LOCAL_VISIBILITY_TIMEOUT")
    with console.status("starting the AWS stand-ins, the target stand-ins and the functions ..."):
        try:
            runtime = LocalRuntime(
                gateway_port=port, visibility_timeout_seconds=int(visibility) if visibility else None
            ).start()
        except RuntimeError as exc:
            console.print(f"[red]cannot start:[/red] {exc}")
            return 1
    logging.getLogger("junction.local").addHandler(logging.NullHandler())  # its lines are printed below
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        console.print("[bold green]Junction is running locally.[/bold green]")
        for integration in INTEGRATIONS:
            targets = ", ".join(t.name for t in integration.targets)
            if integration.webhook:
                url, secret = runtime.webhook_url(integration.name), runtime.webhook_secret(integration.name)
                token = integration.webhook.path_token
                if token:  # the secret is the path's last segment (a provider that cannot sign)
                    console.print(f"  {integration.name} (to {targets}): POST {url.replace('{' + token + '}', secret)}")
                    console.print(f"    {integration.source} path token (the secret): {secret}")
                else:
                    console.print(f"  {integration.name} (to {targets}): POST {url}")
                    console.print(f"    {integration.source} webhook secret: {secret}")
            if integration.schedule:
                console.print(
                    f"  {integration.name} ({integration.source} to {targets}): polled on "
                    f"{integration.schedule.expression}; poll now: "
                    f"curl -X POST {runtime.state['workers']}/_local/schedules/{integration.name}",
                    soft_wrap=True,
                )
        for system, urls in runtime.state["targets"].items():
            console.print(f"  {system} stand-in: {urls['control_url']}/state (what it holds)")
        for integration in INTEGRATIONS:
            if integration.webhook:
                _example(runtime, integration.name)
        console.print("\nThen: [bold]junction status[/bold], [bold]junction trace <entity>[/bold]. Ctrl-C stops.")
        seen = 0
        while not stop.wait(1):
            for line in runtime.events[seen:]:
                console.print(f"[yellow]{line}[/yellow]")
            seen = len(runtime.events)
            dead = runtime.failed()
            if dead:
                console.print(f"[red]{', '.join(dead)} stopped unexpectedly; see {runtime.state_dir}/logs/[/red]")
                return 1
    finally:
        with console.status("stopping ..."):
            runtime.stop()
    return 0


def _example(runtime: LocalRuntime, name: str) -> None:
    """A ready-to-paste signed request with a sample event of the integration's source."""
    sender = runtime.sender(name)
    payload = runtime.source(name).event(4242)
    settle = getattr(sender, "settle", None)  # a provider whose API must know the event first (P24)
    if settle is not None:
        payload = settle(payload)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    path = runtime.state_dir / f"example-{name}.json"
    path.write_text(body, encoding="utf-8")
    headers = " ".join(f"-H '{k}: {v}'" for k, v in sender.headers(body.encode(), "example-1").items())
    url = runtime.webhook_url(name)
    webhook = get(name).webhook
    token = webhook.path_token if webhook else None
    if token:
        url = url.replace("{" + token + "}", runtime.webhook_secret(name))
    console.print(f"\nSend one to {name} (the body is in {path}):")
    console.print(f"  curl -i {url} {headers} --data-binary @{path}", soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
