"""The embedded default: the whole of Junction on this machine, booted by this one piece of code.

``make demo``, ``make up``, the end-to-end tests and the benchmarks all start ``LocalRuntime``;
the component harness and the cold-start benchmark, which run the stand-ins in their own
process, provision through ``provision_local`` with the same secrets.

Starts, on 127.0.0.1 only: moto server (Secrets Manager, S3 and the rest), the local SQS +
DynamoDB stand-in (the hot path; see docs/decisions.md), the stand-in process of every declared
target system and polled source, then creates every declared integration's resources from the
declarations (a queue pair per target, with the names and settings the CDK stack deploys), fills
the declared secrets with the values the stand-ins declare, and starts the functions host: the
API Gateway front, one SQS event source per target queue, and the schedules that invoke the
pollers. Its endpoints go to ``.junction/local.json`` for the ops CLI.

The function hosts (``gateway``, ``workers-<k>``) are supervised as Lambda supervises execution
environments: one that dies is replaced (a log line, a restart count in the state file, a
growing delay if it keeps dying); the messages it had in hand come back after their visibility
timeout. Stopping terminates every child; children also exit by themselves if this process dies.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from functions.registry import INTEGRATIONS, get
from junction_local.events import TIME_SCALE_ENV, UNMETERED_ENV
from junction_local.process import free_port, port_is_free, stop_process, wait_until_up
from junction_local.provision import Resources, processor_role, provision, queue_key
from junction_local.standins import Sender, SourceStandIn, secret_values, source, targets
from shared.declaration import Integration

STAGE = "local"
REGION = "eu-central-1"
STATE_DIR = Path(".junction")
RESTART_DELAY = 0.5  # seconds before a dead function host is replaced; doubled while it keeps dying
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 30.0  # a host that lived this long before dying starts again from RESTART_DELAY
_log = logging.getLogger("junction.local")


def aws_env(moto_url: str, hot_path_url: str) -> dict[str, str]:
    """What every local process (and function) sees: endpoints and fixed local credentials."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ENDPOINT_URL_SQS": hot_path_url,
        "AWS_ENDPOINT_URL_DYNAMODB": hot_path_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def provision_local(
    integrations: tuple[Integration, ...],
    *,
    stage: str,
    target_urls: Mapping[str, str],
    endpoints: Mapping[str, str] | None = None,
    visibility_timeout: int | None = None,
    secret_overrides: Mapping[str, Any] | None = None,
) -> Resources:
    """Create the integrations' resources in the AWS stand-ins and fill their secrets with the
    values the stand-ins declare (``target_urls``: target system -> its stand-in's root URL).

    ``endpoints`` are the ``AWS_ENDPOINT_URL*`` variables (``aws_env``); without them the clients
    use the process environment. ``secret_overrides`` replaces chosen secrets (a test rotating a
    signing secret)."""
    import boto3
    from botocore.config import Config

    env = dict(endpoints or {})
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region_name=env.get("AWS_REGION") or os.environ.get("AWS_REGION") or REGION,
    )

    def client(service: str, variable: str, **extra: Any) -> Any:
        url = env.get(variable) or env.get("AWS_ENDPOINT_URL")
        return session.client(service, endpoint_url=url, **extra)  # type: ignore[call-overload]

    values = {**secret_values(integrations, target_urls), **(secret_overrides or {})}
    return provision(
        integrations,
        stage=stage,
        sqs=client("sqs", "AWS_ENDPOINT_URL_SQS"),
        ddb=client("dynamodb", "AWS_ENDPOINT_URL_DYNAMODB"),
        secretsmanager=client("secretsmanager", "AWS_ENDPOINT_URL_SECRETS_MANAGER"),
        s3=client("s3", "AWS_ENDPOINT_URL_S3", config=Config(s3={"addressing_style": "path"})),
        secret_values=values,
        visibility_timeout=visibility_timeout,
    )


@dataclass
class _Spec:
    """How to (re)start one child process."""

    args: list[str]
    health_url: str
    env: dict[str, str]
    started: float = 0.0
    delay: float = RESTART_DELAY
    due: float | None = None  # when a dead one is restarted


@dataclass
class LocalRuntime:
    state_dir: Path = STATE_DIR
    gateway_port: int = 0  # 0: any free port
    throttle: bool = True
    worker_processes: int = 2  # SQS event source slots are spread over this many processes
    functions: bool = True  # False: AWS and target stand-ins only, resources provisioned, no function hosts
    # A local knob for tests: the main queues' visibility timeout, instead of 6x the processor
    # timeout. Messages a crashed host had in hand come back after it; it can only add
    # redeliveries (which idempotency absorbs), never remove one. Lambda refuses a visibility
    # timeout below the function timeout: never a setting for anything deployed.
    visibility_timeout_seconds: int | None = None
    # A local knob for the demo: the processors' backoff, settle time and breaker periods times
    # this factor (junction_local.host.redelivery_scaled), to show hours of redelivery in minutes.
    redelivery_time_scale: float | None = None
    # A local knob for benchmarks: the processors spend no declared rate budget (the targets'
    # request limits), so what is measured is Junction's own throughput.
    unmetered: bool = False
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    resources: Resources | None = None
    restarts: dict[str, int] = field(default_factory=dict)  # function host -> times it was replaced
    events: list[str] = field(default_factory=list)  # supervision log lines, oldest first
    _specs: dict[str, _Spec] = field(default_factory=dict, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)
    _sqs: Any = field(default=None, repr=False)
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # supervision's clock

    @property
    def state_file(self) -> Path:
        return self.state_dir / "local.json"

    @property
    def gateway_url(self) -> str:
        return str(self.state["gateway"])

    def webhook_url(self, integration_name: str) -> str:
        webhook = get(integration_name).webhook
        if webhook is None:
            raise KeyError(f"{integration_name} has no webhook")
        return self.gateway_url + webhook.path

    def webhook_secret(self, integration_name: str) -> str:
        """The secret the integration's source signs its webhooks with, locally."""
        return str(self.state["webhook_secrets"][integration_name])

    def source(self, integration_name: str) -> SourceStandIn:
        return source(get(integration_name).source)

    def _function_envs(self, integration: Integration) -> dict[str, dict[str, str]]:
        """Every function of the integration (role -> environment), with the local knobs."""
        assert self.resources is not None
        envs = self.resources.function_envs(integration)
        for target in integration.targets:
            if self.redelivery_time_scale:
                envs[processor_role(target)][TIME_SCALE_ENV] = str(self.redelivery_time_scale)
            if self.unmetered:
                envs[processor_role(target)][UNMETERED_ENV] = "1"
        return envs

    def sender(self, integration_name: str, **options: Any) -> Sender:
        """A client that delivers the integration's webhooks as its source system does (signed,
        retried); ``options`` go to the source's sender (``retries``, ``retry_delay``, ...)."""
        source = self.source(integration_name)
        if source.api and "api_url" not in options:
            options["api_url"] = self.target_url(source.api)
        return source.sender(self.webhook_url(integration_name), self.webhook_secret(integration_name), **options)

    def _standin(self, system: str) -> dict[str, str]:
        found: dict[str, str] | None = self.state["targets"].get(system)
        if found is None:
            raise KeyError(f"no stand-in process for {system!r} (running: {', '.join(self.state['targets'])})")
        return found

    def target_url(self, system: str) -> str:
        """The root URL of a target system's stand-in (or of a polled source's: the same process)."""
        return str(self._standin(system)["root_url"])

    # -- lifecycle ---------------------------------------------------------------------------
    def _spawn(self, name: str, spec: _Spec, *, restart: bool = False) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab" if restart else "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                [sys.executable, *spec.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"},
            )
        with self._lock:
            self._specs[name] = spec
            self.processes[name] = process
            spec.started, spec.due = self._clock(), None
        wait_until_up(spec.health_url, process, log_path, cancel=self._stopping if restart else None)

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
        if self.functions:
            self._supervisor = threading.Thread(target=self._supervise, name="junction-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def _start(self) -> None:
        moto_port, aws_port = free_port(), free_port()
        moto_url, aws_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{aws_port}"
        self._spawn(
            "moto", _Spec(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], f"{moto_url}/moto-api/", {})
        )
        self._spawn("aws", _Spec(["-m", "junction_local.aws.server", "--port", str(aws_port)], aws_url, {}))
        stand_ins: dict[str, dict[str, str]] = {}
        for target in targets(INTEGRATIONS):  # every target system and polled source, each once
            root = f"http://127.0.0.1:{free_port()}"
            port = root.rsplit(":", 1)[1]
            self._spawn(
                target.system, _Spec(["-m", target.module, "--port", port, *target.args], root + target.health_path, {})
            )
            stand_ins[target.system] = {"root_url": root, "control_url": root + target.control_path}
        env = aws_env(moto_url, aws_url)
        target_urls = {system: urls["root_url"] for system, urls in stand_ins.items()}
        self.resources = provision_local(
            INTEGRATIONS,
            stage=STAGE,
            target_urls=target_urls,
            endpoints=env,
            visibility_timeout=self.visibility_timeout_seconds,
        )
        signing = secret_values(INTEGRATIONS, target_urls)
        webhook_secrets = {
            i.name: signing[i.webhook.secret.name]["secrets"][0] for i in INTEGRATIONS if i.webhook is not None
        }
        gateway_port = self.gateway_port or free_port()
        hosts = {"gateway": f"http://127.0.0.1:{gateway_port}"}
        hosts.update({f"workers-{k}": f"http://127.0.0.1:{free_port()}" for k in range(self.worker_processes)})
        self.state = {
            "stage": STAGE,
            "region": REGION,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "endpoints": {"default": moto_url, "sqs": aws_url, "dynamodb": aws_url},
            "aws_env": env,
            "gateway": hosts["gateway"],
            "workers": hosts["workers-0"] if self.worker_processes else "",
            "hosts": hosts if self.functions else {},
            "targets": stand_ins,
            "webhook_secrets": webhook_secrets,
            # "<integration>/<target>" -> the target's queue pair
            "queues": {
                key: {"url": q.url, "arn": q.arn, "dlq_url": q.dlq_url, "dlq_arn": q.dlq_arn}
                for key, q in self.resources.queues.items()
            },
            "payload_bucket": self.resources.payload_bucket,
            # integration -> function role ("<target>-processor", "ingress", "poller") -> environment
            "functions": {i.name: self._function_envs(i) for i in INTEGRATIONS},
            "visibility_timeout_override": self.visibility_timeout_seconds,
            "restarts": self.restarts,
            "pids": {},
        }
        self._write_state()
        self._point_notifiers()
        if not self.functions:
            return
        host = ["-m", "junction_local.host", "--state", str(self.state_file)]
        gateway_args = [*host, "--role", "gateway", "--port", str(gateway_port)]
        if not self.throttle:
            gateway_args.append("--no-throttle")
        self._spawn("gateway", _Spec(gateway_args, f"{hosts['gateway']}/_local/health", {}))
        n = self.worker_processes
        for k in range(n):
            url = hosts[f"workers-{k}"]
            args = [*host, "--role", "workers", "--port", url.rsplit(":", 1)[1], "--share", f"{k}/{n}"]
            self._spawn(f"workers-{k}", _Spec(args, url, {}))
        self._write_state()

    def _point_notifiers(self) -> None:
        """Tell each stand-in that also sends webhooks (ShipX's status changes) where: the route of
        the integration whose source it is, its path token filled in."""
        for standin in targets(INTEGRATIONS):
            if not standin.notifies:
                continue
            for integration in INTEGRATIONS:
                if integration.source != standin.notifies or integration.webhook is None:
                    continue
                url = self.webhook_url(integration.name)
                token = integration.webhook.path_token
                if token:
                    url = url.replace("{" + token + "}", self.webhook_secret(integration.name))
                _json(f"{self._standin(standin.system)['control_url']}/settings", {"webhook_url": url})

    def _write_state(self) -> None:
        with self._lock:
            self.state["pids"] = {name: p.pid for name, p in self.processes.items()}
            self.state["restarts"] = dict(self.restarts)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=2))
            tmp.replace(self.state_file)

    # -- supervision -------------------------------------------------------------------------
    @staticmethod
    def supervised(name: str) -> bool:
        """The function hosts: Lambda-like execution environments, replaced when they die."""
        return name == "gateway" or name.startswith("workers-")

    def _note(self, line: str) -> None:
        stamped = f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {line}"
        with self._lock:
            self.events.append(line)
            with (self.state_dir / "logs" / "supervisor.log").open("a", encoding="utf-8") as log:
                log.write(stamped + "\n")
        _log.warning("%s", line)

    def _supervise(self) -> None:
        while not self._stopping.wait(0.1):
            for name in [n for n in list(self._specs) if self.supervised(n)]:
                try:
                    self._check(name)
                except Exception:  # never let supervision itself die
                    _log.exception("supervising %s failed", name)

    def _check(self, name: str) -> None:
        spec, process = self._specs[name], self.processes[name]
        code = process.poll()
        if code is None:
            return
        now = self._clock()
        if spec.due is None:
            lived = now - spec.started
            quick_again = lived < STABLE_AFTER and name in self.restarts
            spec.delay = min(MAX_RESTART_DELAY, spec.delay * 2) if quick_again else RESTART_DELAY
            spec.due = now + spec.delay
            with self._lock:
                self.restarts[name] = self.restarts.get(name, 0) + 1
            self._note(
                f"{name} (pid {process.pid}) {_exit_text(code)} after {lived:.1f}s; "
                f"replacing it in {spec.delay:.1f}s (restart {self.restarts[name]})"
            )
            self._write_state()
            return
        if now < spec.due or self._stopping.is_set():
            return
        try:
            self._spawn(name, spec, restart=True)
        except RuntimeError as exc:
            if not self._stopping.is_set():
                self._note(f"{name} did not come back: {str(exc).splitlines()[0]}")
            spec.due = None  # counted and delayed again on the next check
            return
        self._note(f"{name} replaced: pid {self.processes[name].pid}")
        self._write_state()

    def failed(self) -> list[str]:
        """Children that died and are not replaced (the AWS and target stand-ins hold state that
        a restart would lose: their death ends the run)."""
        return [name for name, p in list(self.processes.items()) if not self.supervised(name) and p.poll() is not None]

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=35)
        # Front first (no new work), then the workers finish their batches, then the stand-ins.
        workers = [name for name in self.processes if name.startswith("workers")]
        stand_ins = [name for name in self.processes if name not in ("gateway", "aws", "moto", *workers)]
        for name in ("gateway", *workers, *stand_ins, "aws", "moto"):
            process = self.processes.pop(name, None)
            if process is not None:
                stop_process(process, timeout=40 if name.startswith("workers") else 10)
        if self.state_file.exists():
            self.state_file.unlink()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send a signal to one child (a crash, for tests); returns the pid it went to."""
        pid = self.processes[name].pid
        os.kill(pid, sig)
        return pid

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the function hosts and queues hold ------------------------------------------------
    def host_state(self, name: str) -> dict[str, Any]:
        """A function host's own view: invocations, messages in hand, schedules fired."""
        return _json(self.state["hosts"][name])

    def _sqs_client(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.session.Session(
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - the local stand-ins accept any key
                region_name=REGION,
            ).client("sqs", endpoint_url=self.state["endpoints"]["sqs"])
        return self._sqs

    def queue_depth(self, integration_name: str, target: str | None = None) -> dict[str, int]:
        """Messages of one target's queue (``target``), or of all the integration's target queues
        together: visible, in flight (received or waiting out a retry delay), delayed, and in the
        DLQs."""
        integration = get(integration_name)
        chosen = [integration.target(target)] if target is not None else list(integration.targets)
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        total = {"visible": 0, "in_flight": 0, "delayed": 0, "dead_letters": 0}
        sqs = self._sqs_client()
        for t in chosen:
            queue = self.state["queues"][queue_key(integration, t)]
            main = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=names)["Attributes"]
            dead = sqs.get_queue_attributes(QueueUrl=queue["dlq_url"], AttributeNames=names[:1])["Attributes"]
            total["visible"] += int(main[names[0]])
            total["in_flight"] += int(main[names[1]])
            total["delayed"] += int(main[names[2]])
            total["dead_letters"] += int(dead[names[0]])
        return total

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in every DLQ, with its attributes, left where it is (each is received
        with a zero visibility timeout, so it stays visible to the next reader)."""
        sqs = self._sqs_client()
        found: dict[str, dict[str, Any]] = {}
        for queue in self.state["queues"].values():
            for _ in range(100):
                answer = sqs.receive_message(
                    QueueUrl=queue["dlq_url"],
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=0,
                    MessageAttributeNames=["All"],
                    AttributeNames=["All"],
                )
                fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in found]
                if not fresh:
                    break
                found.update((m["MessageId"], m) for m in fresh)
        return list(found.values())

    def secret_values(self) -> dict[str, Any]:
        """The local value of every declared secret (what a scan must never find in a log)."""
        urls = {system: found["root_url"] for system, found in self.state["targets"].items()}
        return secret_values(INTEGRATIONS, urls)

    def aws_calls(self) -> dict[str, int]:
        """Requests the local SQS and DynamoDB stand-in has served, per action."""
        return {k: int(v) for k, v in _json(self.state["endpoints"]["sqs"])["calls"].items()}

    def settled(self, integration_name: str) -> bool:
        """Nothing of the integration is left to happen: no message visible, in hand, waiting
        out a retry delay or delayed in any of its target queues. A late duplicate would need one
        of those."""
        depth = self.queue_depth(integration_name)
        return depth["visible"] == depth["in_flight"] == depth["delayed"] == 0

    def fire_schedule(self, integration_name: str) -> dict[str, Any]:
        """Invoke the integration's poller now, as its schedule rule would; waits for the run and
        returns what the poller answered. Raises RuntimeError with the host's answer if the run
        failed or the integration has no schedule."""
        if get(integration_name).schedule is None:
            raise ValueError(f"{integration_name} has no schedule")
        workers = self.state["hosts"].get("workers-0")
        if not workers:
            raise RuntimeError("no function hosts run (LocalRuntime(functions=False)): nothing can poll")
        url = f"{workers}/_local/schedules/{integration_name}"
        request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - 127.0.0.1 only
        try:
            with urllib.request.urlopen(request, timeout=self._poller_timeout(integration_name)) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"schedule of {integration_name} failed: {exc.code} {exc.read().decode()}") from None
        return answer

    @staticmethod
    def _poller_timeout(integration_name: str) -> float:
        schedule = get(integration_name).schedule
        return (schedule.function.timeout_seconds if schedule else 0) + 10.0

    # -- target stand-ins, over their control API -----------------------------------------------
    def target_state(self, system: str) -> dict[str, Any]:
        """Everything the stand-in holds (what the integrations wrote to it)."""
        return _json(f"{self._standin(system)['control_url']}/state")

    def target_summary(self, system: str) -> dict[str, int]:
        """The stand-in's counts (cheap to poll); anything else its summary carries is left out."""
        summary = _json(f"{self._standin(system)['control_url']}/summary")
        return {k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)}

    def target_behaviour(self, system: str, mode: str, **options: Any) -> None:
        """Make the stand-in misbehave (``down``, ``slow``, ``rate_limited``, ...; its MODES)."""
        _json(f"{self._standin(system)['control_url']}/behaviour", {"mode": mode, **options})

    # The ERP by name, for the demo and the tests of shopify-orders.
    @property
    def erp_url(self) -> str:
        return self.target_url("erp")

    def erp_state(self) -> dict[str, Any]:
        return self.target_state("erp")

    def erp_summary(self) -> dict[str, int]:
        return self.target_summary("erp")

    def erp_behaviour(self, mode: str, **options: Any) -> None:
        self.target_behaviour("erp", mode, **options)

    def erp_add_item(self, code: str) -> None:
        _json(f"{self._standin('erp')['control_url']}/items", {"ItemCode": code})


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")  # noqa: S310 - 127.0.0.1 only
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


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
