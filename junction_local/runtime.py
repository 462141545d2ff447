"""The embedded default: the whole of Junction on this machine.

Starts, on 127.0.0.1 only: moto server (Secrets Manager, EventBridge, CloudWatch, S3 and the
rest), the local SQS + DynamoDB stand-in (the hot path; see docs/decisions.md), the ERP
stand-in, then creates every declared integration's resources from the declarations (the same
names and settings the CDK stack deploys) and starts the functions host: the API Gateway front
and the SQS event sources. Its endpoints go to ``.junction/local.json`` for the ops CLI.
Stopping terminates every child; children also exit by themselves if this process dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from functions.registry import INTEGRATIONS, get
from junction_local.process import free_port, port_is_free, stop_process, wait_until_up
from junction_local.provision import Resources, provision

STAGE = "local"
REGION = "eu-central-1"
# The local shop's webhook signing secret: documented in the README so anyone can sign a curl request.
SHOP_SECRET = "shpss_local_demo_secret"  # noqa: S105 - a fixed local value, never deployed
STATE_DIR = Path(".junction")


@dataclass
class LocalRuntime:
    state_dir: Path = STATE_DIR
    gateway_port: int = 0  # 0: any free port
    throttle: bool = True
    worker_processes: int = 2  # SQS event source slots are spread over this many processes
    erp_idempotency_keys: bool = False  # like SAP Business One: Junction alone must prevent duplicates
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    resources: Resources | None = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "local.json"

    @property
    def gateway_url(self) -> str:
        return str(self.state["gateway"])

    @property
    def erp_url(self) -> str:
        return str(self.state["erp"]["root_url"])

    def webhook_url(self, integration_name: str) -> str:
        webhook = get(integration_name).webhook
        if webhook is None:
            raise KeyError(f"{integration_name} has no webhook")
        return self.gateway_url + webhook.path

    # -- lifecycle ---------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], health_url: str, env: dict[str, str] | None = None) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                [sys.executable, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
        self.processes[name] = process
        wait_until_up(health_url, process, log_path)

    def start(self) -> LocalRuntime:
        if self.state_file.exists():
            previous = json.loads(self.state_file.read_text())
            alive = [pid for pid in previous.get("pids", {}).values() if _alive(int(pid))]
            if alive:
                raise RuntimeError(
                    f"a local runtime is already running (pids {alive}); stop it first or remove {self.state_file}"
                )
        if self.gateway_port and not port_is_free(self.gateway_port):
            raise RuntimeError(f"port {self.gateway_port} is in use; set JUNCTION_PORT to another port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        moto_port, aws_port, erp_port = free_port(), free_port(), free_port()
        gateway_port = self.gateway_port or free_port()
        workers_ports = [free_port() for _ in range(self.worker_processes)]
        moto_url, aws_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{aws_port}"
        self._spawn("moto", ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], f"{moto_url}/moto-api/")
        self._spawn("aws", ["-m", "junction_local.aws.server", "--port", str(aws_port)], aws_url)
        erp_args = ["-m", "junction_local.standins.erp", "--port", str(erp_port)]
        if not self.erp_idempotency_keys:
            erp_args.append("--no-idempotency-keys")
        erp_root = f"http://127.0.0.1:{erp_port}"
        self._spawn("erp", erp_args, f"{erp_root}/_standin/state")
        aws_env = {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ENDPOINT_URL_SQS": aws_url,
            "AWS_ENDPOINT_URL_DYNAMODB": aws_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
        erp = {"base_url": f"{erp_root}/b1s/v1", "company_db": "JUNCTION_DEMO", "username": "manager"}
        self.resources = self._provision(aws_env, {**erp, "password": "local-password"})
        self.state = {
            "stage": STAGE,
            "region": REGION,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "endpoints": {"default": moto_url, "sqs": aws_url, "dynamodb": aws_url},
            "aws_env": aws_env,
            "gateway": f"http://127.0.0.1:{gateway_port}",
            "workers": f"http://127.0.0.1:{workers_ports[0]}",
            "erp": {**erp, "root_url": erp_root},
            "shop_secret": SHOP_SECRET,
            "queues": {
                name: {"url": q.url, "arn": q.arn, "dlq_url": q.dlq_url, "dlq_arn": q.dlq_arn}
                for name, q in self.resources.queues.items()
            },
            "functions": {i.name: self.resources.function_env(i) for i in INTEGRATIONS},
            "pids": {},
        }
        self._write_state()
        host = ["-m", "junction_local.host", "--state", str(self.state_file)]
        gateway_args = [*host, "--role", "gateway", "--port", str(gateway_port)]
        if not self.throttle:
            gateway_args.append("--no-throttle")
        self._spawn("gateway", gateway_args, f"{self.state['gateway']}/_local/health")
        n = self.worker_processes
        for k, port in enumerate(workers_ports):
            args = [*host, "--role", "workers", "--port", str(port), "--share", f"{k}/{n}"]
            self._spawn(f"workers-{k}", args, f"http://127.0.0.1:{port}")
        self._write_state()

    def _provision(self, aws_env: dict[str, str], erp_secret: dict[str, str]) -> Resources:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the local stand-ins accept any key
            region_name=REGION,
        )
        return provision(
            INTEGRATIONS,
            stage=STAGE,
            sqs=session.client("sqs", endpoint_url=aws_env["AWS_ENDPOINT_URL_SQS"]),
            ddb=session.client("dynamodb", endpoint_url=aws_env["AWS_ENDPOINT_URL_DYNAMODB"]),
            secretsmanager=session.client("secretsmanager", endpoint_url=aws_env["AWS_ENDPOINT_URL"]),
            secret_values={"shopify-webhook": {"secrets": [SHOP_SECRET]}, "erp-service-layer": erp_secret},
        )

    def _write_state(self) -> None:
        self.state["pids"] = {name: p.pid for name, p in self.processes.items()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_file)

    def stop(self) -> None:
        # Front first (no new work), then the workers finish their batches, then the stand-ins.
        workers = [name for name in self.processes if name.startswith("workers")]
        for name in ("gateway", *workers, "erp", "aws", "moto"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop_process(process, timeout=40 if name.startswith("workers") else 10)
        if self.state_file.exists():
            self.state_file.unlink()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ERP stand-in, over its control API ---------------------------------------------
    def erp_state(self) -> dict[str, Any]:
        return _json(f"{self.erp_url}/_standin/state")

    def erp_summary(self) -> dict[str, int]:
        """Counts only (orders, unique references, partners, requests): cheap to poll."""
        return {k: int(v) for k, v in _json(f"{self.erp_url}/_standin/summary").items()}

    def erp_behaviour(self, mode: str, **options: Any) -> None:
        _json(f"{self.erp_url}/_standin/behaviour", {"mode": mode, **options})

    def erp_add_item(self, code: str) -> None:
        _json(f"{self.erp_url}/_standin/items", {"ItemCode": code})

    def workers_state(self) -> dict[str, Any]:
        return _json(self.state["workers"])


def _json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310  # noqa: S310 - 127.0.0.1 only
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
        result: dict[str, Any] = json.loads(response.read())
        return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
