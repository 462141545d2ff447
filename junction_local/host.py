"""Runs the integrations' functions locally, the way AWS invokes them.

- ``gateway``: an HTTP front on the deployed webhook paths. Each request becomes an API Gateway
  REST proxy event for the integration's ingress handler; route throttling (rate and burst from
  the declaration) answers 429 like API Gateway; unknown routes get API Gateway's 403.
- ``workers``: per target of every integration, the SQS event source mapping of its processor:
  up to the target's ``max_concurrency`` concurrent invocations, batches of ``batch_size``
  gathered within the batching window, partial batch responses (reported items stay on the
  queue; the rest is deleted), a failed invocation leaves the whole batch to the visibility
  timeout; redrive after maxReceiveCount is the queue's. Schedules invoke their integration's
  poller (which has no event source) on their rate or cron, or on demand
  (``POST /_local/schedules/<integration>``).

The handlers are the deployed ones (``shared.ingress.make_ingress_handler``,
``shared.processing.make_sqs_handler`` with the target's flow, ``shared.polling.make_poller_handler``
with the integration's source); only endpoints differ. Like Lambda, each function is built on its
first invocation: a function whose code cannot load fails its own invocations, not the others'.
Started by junction_local.runtime: ``python -m junction_local.host --role gateway --state FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from functions.registry import INTEGRATIONS
from junction_local.events import TIME_SCALE_ENV, UNMETERED_ENV, LambdaContext, apigw_event, http_api_event, sqs_event
from junction_local.process import LocalHandler, exit_with_parent
from junction_local.provision import INGRESS, POLLER, processor_role, queue_key
from junction_local.schedule import Schedule, scheduled_event
from shared.aws import AwsError, AwsJsonClient, sqs_client
from shared.declaration import Integration, Target
from shared.ingress import make_ingress_handler
from shared.processing import make_sqs_handler

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
_log = logging.getLogger("junction.local")


def processor_handler(integration: Integration, target: Target, env: dict[str, str]) -> Handler:
    """The target's processor, as ``functions.handlers.processor`` builds it from the declaration."""
    flow = importlib.import_module(integration.flow_module(target))
    scale = env.get(TIME_SCALE_ENV)
    if scale:
        target = redelivery_scaled(target, float(scale))
    if env.get(UNMETERED_ENV) == "1":  # a benchmark of Junction's own throughput, not the targets' limits
        target = replace(target, rate=None)
    return make_sqs_handler(integration, target, flow.build, environ=env)


def poller_handler(integration: Integration, env: dict[str, str]) -> Handler:
    """The integration's poller, as ``functions.handlers.poller`` builds it from the declaration."""
    from shared.polling import make_poller_handler

    if integration.poller_module is None:
        raise ValueError(f"{integration.name} has no schedule, so no poller")
    source = importlib.import_module(integration.poller_module)
    return make_poller_handler(integration, source.build, environ=env)


def redelivery_scaled(target: Target, factor: float) -> Target:
    """The target with its backoff, settle time and breaker periods times ``factor`` (at least
    1 s each), so a demo can show an hour of redelivery in minutes. The retry horizon is kept:
    nothing is dead-lettered sooner than deployed."""
    r, b = target.retry, target.breaker

    def scaled(seconds: int) -> int:
        return max(1, round(seconds * factor))

    return replace(
        target,
        retry=replace(
            r,
            base_delay_seconds=scaled(r.base_delay_seconds),
            max_delay_seconds=scaled(r.max_delay_seconds),
            settle_seconds=scaled(r.settle_seconds),
        ),
        breaker=replace(b, open_seconds=scaled(b.open_seconds), max_open_seconds=scaled(b.max_open_seconds)),
    )


class Lazy:
    """A function built on its first invocation, once, however many slots invoke it at once."""

    def __init__(self, build: Callable[[], Handler]) -> None:
        self._build = build
        self._handler: Handler | None = None
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._handler is None:
            with self._lock:
                if self._handler is None:
                    self._handler = self._build()
        return self._handler(event, context)


class TokenBucket:
    """API Gateway's throttle: a steady rate with a burst allowance."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Gateway:
    def __init__(self, state: dict[str, Any], port: int, throttle: bool = True) -> None:
        self.routes: dict[tuple[str, str], tuple[Integration, Handler, TokenBucket | None]] = {}
        # (method, path before the parameter) -> (the route's template, the parameter's name)
        self.token_routes: dict[tuple[str, str], tuple[str, str]] = {}
        for integration in INTEGRATIONS:
            trigger = integration.webhook
            if trigger is None:
                continue
            env = state["functions"][integration.name][INGRESS]
            bucket = TokenBucket(trigger.throttle_rate_per_second, trigger.throttle_burst) if throttle else None
            handler = make_ingress_handler(integration, environ=env)
            self.routes[(trigger.method, trigger.path)] = (integration, handler, bucket)
            if trigger.path_token:  # /webhooks/inpost/{token}: matched on the path before the token
                prefix = trigger.path.rsplit("/", 1)[0] + "/"
                self.token_routes[(trigger.method, prefix)] = (trigger.path, trigger.path_token)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _gateway_handler(self))
        self.server.daemon_threads = True
        self.server.request_queue_size = 512

    def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        resource, parameters = path, None
        prefix, _, last = path.rpartition("/")
        templated = self.token_routes.get((method, prefix + "/"))
        if templated is not None and last:
            resource, parameters = templated[0], {templated[1]: unquote(last)}
        route = self.routes.get((method, resource))
        if route is None:  # what an API Gateway REST API answers for a route it does not have
            return 403, {}, b'{"message":"Missing Authentication Token"}'
        integration, handler, bucket = route
        if bucket is not None and not bucket.take():
            return 429, {}, b'{"message":"Too Many Requests"}'
        trigger = integration.webhook
        if trigger is not None and not trigger.source_ips:  # deployed on the HTTP API (payload 2.0)
            event = http_api_event(method, path, headers, body, route=resource, path_parameters=parameters)
        else:  # deployed on the REST API, for its resource policy
            event = apigw_event(method, path, headers, body, resource=resource, path_parameters=parameters)
        context = LambdaContext(f"{integration.name}-ingress", integration.ingress.timeout_seconds)
        try:
            response = handler(event, context)
        except Exception:  # a crashed function: API Gateway answers 502
            _log.exception("ingress handler crashed")
            return 502, {}, b'{"message": "Internal server error"}'
        out_headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        return int(response.get("statusCode", 502)), out_headers, str(response.get("body") or "").encode()


def _gateway_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/_local/health":
                self.reply(200, {}, b'{"status":"ok"}')
                return
            if int(self.headers.get("Content-Length") or 0) > API_GATEWAY_MAX_BODY:
                self.close_connection = True
                self.reply(413, {}, b'{"message":"Request Too Long"}')
                return
            body = self.body()
            headers = {k: v for k, v in self.headers.items()}
            self.reply(*gateway.invoke(self.command, path, headers, body))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


class EventSource:
    """Lambda's SQS event source mapping for one target's processor."""

    def __init__(
        self,
        integration: Integration,
        target: Target,
        env: dict[str, str],
        queue_arn: str,
        region: str,
        slots: int | None = None,
    ) -> None:
        self.integration = integration
        self.target = target
        self.key = queue_key(integration, target)
        self.slots = target.max_concurrency if slots is None else slots
        self.env = env
        self.queue_url = env["JUNCTION_QUEUE_URL"]
        self.queue_arn = queue_arn
        self.region = region
        self.handler = Lazy(partial(processor_handler, integration, target, env))
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.invocations = 0
        self.in_hand = 0  # messages of the batches being processed right now
        self.lock = threading.Lock()

    def start(self) -> None:
        for slot in range(self.slots):
            thread = threading.Thread(target=self._slot, name=f"{self.key}-{slot}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _slot(self) -> None:
        sqs = sqs_client()
        while not self.stop.is_set():
            try:
                batch = self._collect(sqs)
            except AwsError as exc:
                _log.warning("poll failed: %s", exc)
                self.stop.wait(1)
                continue
            if batch:
                self._invoke(sqs, batch)

    def _collect(self, sqs: AwsJsonClient) -> list[dict[str, Any]]:
        q = self.target.queue
        batch: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(batch) < q.batch_size and not self.stop.is_set():
            wait = 1 if not batch else max(0, min(1, int((window_ends or 0) - time.monotonic())))
            got = sqs.call(
                "ReceiveMessage",
                {
                    "QueueUrl": self.queue_url,
                    "MaxNumberOfMessages": min(10, q.batch_size - len(batch)),
                    "WaitTimeSeconds": wait,
                    "MessageSystemAttributeNames": ["All"],
                    "MessageAttributeNames": ["All"],
                },
            ).get("Messages", [])
            batch.extend(got)
            if not batch:
                continue
            if window_ends is None:
                window_ends = time.monotonic() + q.batching_window_seconds
            if time.monotonic() >= window_ends or (not got and q.batching_window_seconds == 0):
                break
            if q.batching_window_seconds == 0 and len(got) < 10:
                break
        return batch

    def _invoke(self, sqs: AwsJsonClient, batch: list[dict[str, Any]]) -> None:
        event = sqs_event(batch, queue_arn=self.queue_arn, region=self.region)
        context = LambdaContext(
            f"{self.integration.name}-{processor_role(self.target)}",
            self.target.processor.timeout_seconds,
            self.target.processor.memory_mb,
        )
        ids = {m["MessageId"] for m in batch}
        with self.lock:
            self.in_hand += len(batch)
        try:
            response = self.handler(event, context)
            failures = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures") or []}
            if not failures <= ids:  # an invalid partial response fails the whole batch, as in Lambda
                failures = ids
        except Exception:
            _log.exception("processor invocation failed; the batch returns after its visibility timeout")
            failures = ids
        with self.lock:
            self.invocations += 1
            self.in_hand -= len(batch)
        done = [m for m in batch if m["MessageId"] not in failures]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            try:
                sqs.call("DeleteMessageBatch", {"QueueUrl": self.queue_url, "Entries": entries})
            except AwsError as exc:  # not deleted: delivered again later, and idempotency absorbs it
                _log.warning("delete failed: %s", exc)


class Scheduler:
    """EventBridge schedule rules: each invokes its integration's poller (never an event source)."""

    def __init__(self, state: dict[str, Any], region: str, *, enabled: bool = True) -> None:
        self.region = region
        self.jobs: dict[str, tuple[Integration, Schedule, Handler]] = {}
        for integration in INTEGRATIONS if enabled else ():
            if integration.schedule is not None:
                env = state["functions"][integration.name][POLLER]
                handler = Lazy(partial(poller_handler, integration, env))
                self.jobs[integration.name] = (integration, Schedule(integration.schedule.expression), handler)
        self.stop = threading.Event()
        self.fired: dict[str, int] = {name: 0 for name in self.jobs}
        self._lock = threading.Lock()

    def fire(self, name: str) -> dict[str, Any]:
        integration, _, handler = self.jobs[name]
        assert integration.schedule is not None
        event = scheduled_event(f"junction-local-{name}", datetime.now(UTC), self.region)
        function = integration.schedule.function
        context = LambdaContext(f"{name}-{POLLER}", function.timeout_seconds, function.memory_mb)
        with self._lock:
            self.fired[name] += 1
        return handler(event, context)

    def _fire_logged(self, name: str) -> None:
        try:
            self.fire(name)
        except Exception:
            _log.exception("scheduled invocation of %s failed", name)

    def run(self) -> None:
        """EventBridge invokes asynchronously: a long poll never holds back another schedule, and
        a run still going when its next one is due meets its own lease (the poller refuses it)."""
        upcoming = {name: job[1].next_after(datetime.now(UTC)) for name, job in self.jobs.items()}
        while not self.stop.wait(0.5):
            now = datetime.now(UTC)
            for name, when in upcoming.items():
                if when <= now:
                    threading.Thread(target=self._fire_logged, args=(name,), name=f"{name}-poller", daemon=True).start()
                    upcoming[name] = self.jobs[name][1].next_after(now)


def _control_handler(sources: list[EventSource], scheduler: Scheduler) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def _reply(self, status: int, payload: Any) -> None:
            self.reply(status, {}, json.dumps(payload, default=str).encode())

        def do_GET(self) -> None:
            self._reply(
                200,
                {
                    "status": "ok",
                    "pid": os.getpid(),
                    "invocations": {s.key: s.invocations for s in sources},
                    "in_hand": {s.key: s.in_hand for s in sources},
                    "schedules": scheduler.fired,
                },
            )

        def do_POST(self) -> None:
            prefix = "/_local/schedules/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            if name not in scheduler.jobs:
                self._reply(404, {"error": f"no schedule {name!r}", "known": sorted(scheduler.jobs)})
                return
            try:
                self._reply(200, {"fired": name, "response": scheduler.fire(name)})
            except Exception as exc:
                self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    return Handler


def share(target: Target, k: int, n: int) -> int:
    """Concurrency slots of worker process ``k`` of ``n`` for one target: together exactly its
    ``max_concurrency``.

    Like Lambda, where every concurrent invocation runs in its own execution environment, the
    slots are spread over processes so that invocations do not share one interpreter lock."""
    base, extra = divmod(target.max_concurrency, n)
    return base + (1 if k < extra else 0)


def event_sources(state: dict[str, Any], k: int, n: int) -> list[EventSource]:
    """Worker process ``k`` of ``n``'s share of every event source mapping: one per target queue
    of every integration, invoking that target's processor. A poller has none (its schedule
    invokes it)."""
    return [
        EventSource(
            i,
            t,
            state["functions"][i.name][processor_role(t)],
            state["queues"][queue_key(i, t)]["arn"],
            state["region"],
            share(t, k, n),
        )
        for i in INTEGRATIONS
        for t in i.targets
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Host the integrations' functions locally")
    parser.add_argument("--role", choices=["gateway", "workers"], required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-throttle", action="store_true", help="switch API Gateway throttling off (benchmarks)")
    parser.add_argument(
        "--share", default="0/1", help="K/N: this is worker process K of N; it takes its share of each max_concurrency"
    )
    args = parser.parse_args()
    # Many threads mostly waiting on sockets: a short GIL switch interval keeps a thread whose
    # answer has arrived from waiting up to 5 ms behind a busy one.
    sys.setswitchinterval(0.0005)
    # The root handler prints warnings and errors only: the functions' JSON loggers write their
    # INFO lines themselves (a propagated copy would print each twice); the host's own at INFO.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    own = logging.StreamHandler()
    own.setFormatter(logging.Formatter("%(message)s"))
    _log.addHandler(own)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    state = json.loads(args.state.read_text())
    os.environ.update(state["aws_env"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exit_with_parent(stop)
    if args.role == "gateway":
        gateway = Gateway(state, args.port, throttle=not args.no_throttle)
        threading.Thread(target=gateway.server.serve_forever, daemon=True).start()
        stop.wait()
        gateway.server.shutdown()
        return
    k, n = (int(x) for x in args.share.split("/"))
    sources = event_sources(state, k, n)
    scheduler = Scheduler(state, state["region"], enabled=k == 0)  # each schedule fires in one process only
    for source in sources:
        source.start()
    threading.Thread(target=scheduler.run, daemon=True).start()
    control = ThreadingHTTPServer(("127.0.0.1", args.port), _control_handler(sources, scheduler))
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    stop.wait()
    # Finish the batches in hand (as Lambda lets an invocation run to its end), then leave.
    for source in sources:
        source.stop.set()
    scheduler.stop.set()
    for source in sources:
        source.join(timeout=source.target.processor.timeout_seconds)
    control.shutdown()


if __name__ == "__main__":
    main()
