"""The local runtime's wiring on the multi-target declarations, in one process: a scheduled test
integration with two targets (each its own queue pair, event source, retry and breaker) and a
poller, against the local SQS and DynamoDB stand-in and moto for the rest.

The handlers are the deployed ones (``make_sqs_handler`` with the target's flow); only the
flows and the poller's source are the test's, registered as modules the way a package's
``<target flow>`` and ``<poller>`` modules are found.
"""

from __future__ import annotations

import json
import sys
import threading
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import functions.registry
import junction_local.host as host
from functions.shopify_orders.declaration import INTEGRATION as SHOP_ORDERS
from junction_local import standins
from junction_local.aws.server import LocalAws
from junction_local.events import TIME_SCALE_ENV
from junction_local.provision import Resources, function_roles, provision, queue_attributes
from junction_local.runtime import LocalRuntime, wait_for
from junction_local.standins import SourceStandIn, TargetStandIn
from shared.declaration import (
    CircuitBreakerSettings,
    FunctionSettings,
    Integration,
    QueueSettings,
    RetryPolicy,
    ScheduleTrigger,
    SecretRef,
    Target,
    queue_name,
    visibility_timeout_seconds,
)
from shared.envelope import Envelope, message_attributes
from shared.errors import TargetUnavailable
from shared.processing import Attempt, FlowContext, Prepared
from tests.sample import SHOP_ORDERS_TO_ERP

STAGE = "t"
PACKAGE = "junction_test_stock"  # registered in sys.modules by the ``modules`` fixture
SOURCE_CREDENTIALS = SecretRef("stock-source-login", "the poller's source login")
STOCK = Integration(
    name="stock-to-two",
    description="scheduled, two targets: the local runtime must keep them apart",
    source="erp",
    trigger=ScheduleTrigger("rate(1 minute)", poller="source", function=FunctionSettings(256, 90)),
    package=PACKAGE,
    targets=(
        Target(
            name="fast",
            flow="to_fast",
            max_concurrency=3,
            processor=FunctionSettings(256, 20),
            queue=QueueSettings(batch_size=5, max_receive_count=6),
        ),
        Target(
            name="flaky",
            flow="to_flaky",
            max_concurrency=2,
            processor=FunctionSettings(512, 40),
            retry=RetryPolicy(base_delay_seconds=60, max_delay_seconds=600, settle_seconds=300),
            breaker=CircuitBreakerSettings(failure_threshold=50, open_seconds=60, max_open_seconds=600),
        ),
    ),
    secrets=(SOURCE_CREDENTIALS,),
)
SKUS = ("MUG-1", "MUG-2", "MUG-3")


# -- the test's flows and poller, as modules of the integration's package ------------------------
@dataclass
class Recorder:
    """What each target's flow received, and how many calls the flaky one still refuses."""

    delivered: dict[str, list[str]] = field(default_factory=lambda: {"fast": [], "flaky": []})
    contexts: list[FlowContext] = field(default_factory=list)
    refuse: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RecordingFlow:
    def __init__(self, name: str, recorder: Recorder) -> None:
        self.name = name
        self.recorder = recorder

    def prepare(self, envelope: Envelope) -> Prepared:
        sku = str(envelope.payload()["sku"])
        return Prepared(f"sku:{sku}", f"sku:{sku}", sku, {"sku": sku}, sku)

    def deliver(self, prepared: Prepared, attempt: Attempt) -> dict[str, str]:
        with self.recorder.lock:
            if self.name == "flaky" and self.recorder.refuse > 0:
                self.recorder.refuse -= 1
                raise TargetUnavailable("503 from the flaky target")
            self.recorder.delivered[self.name].append(str(prepared.data))
        return {f"{self.name}_id": str(prepared.data)}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The integration's package (flows and poller) and the registry that declares it."""
    found = Recorder()

    def flow_module(name: str) -> types.ModuleType:
        module = types.ModuleType(f"{PACKAGE}.to_{name}")

        def build(ctx: FlowContext) -> RecordingFlow:
            found.contexts.append(ctx)
            return RecordingFlow(name, found)

        module.build = build  # type: ignore[attr-defined]
        return module

    monkeypatch.setitem(sys.modules, PACKAGE, types.ModuleType(PACKAGE))
    monkeypatch.setitem(sys.modules, f"{PACKAGE}.to_fast", flow_module("fast"))
    monkeypatch.setitem(sys.modules, f"{PACKAGE}.to_flaky", flow_module("flaky"))
    source = types.ModuleType(f"{PACKAGE}.source")
    source.build = lambda ctx: ("source", ctx)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"{PACKAGE}.source", source)
    monkeypatch.setattr(functions.registry, "INTEGRATIONS", (SHOP_ORDERS, STOCK))
    monkeypatch.setattr(host, "INTEGRATIONS", (SHOP_ORDERS, STOCK))
    return found


# -- AWS stand-ins, in this process --------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    address, port = server.get_host_and_port()
    yield f"http://{address}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    with LocalAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", local.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local.url)
        yield local


@pytest.fixture
def resources(aws: LocalAws, recorder: Recorder) -> Resources:
    return provision(
        (STOCK,),
        stage=STAGE,
        sqs=boto3.client("sqs"),
        ddb=boto3.client("dynamodb"),
        secretsmanager=boto3.client("secretsmanager"),
        secret_values={SOURCE_CREDENTIALS.name: {"user": "poller"}},
    )


def sqs() -> Any:
    return boto3.client("sqs")


def attributes(url: str, *names: str) -> dict[str, str]:
    got: dict[str, str] = sqs().get_queue_attributes(QueueUrl=url, AttributeNames=list(names))["Attributes"]
    return got


def change(sku: str) -> Envelope:
    """One change as a poller enqueues it (the same envelope to every target's queue)."""
    body = json.dumps({"sku": sku, "quantity": 4})
    delivery = f"run-1:{sku}"
    return Envelope(STOCK.name, delivery, f"{STOCK.name}:{delivery}", "erp", None, "2026-01-01T00:00:00Z", body)


# -- provisioning --------------------------------------------------------------------------------
def test_each_target_gets_its_own_queue_pair_with_its_own_settings(resources: Resources) -> None:
    assert list(resources.queues) == ["stock-to-two/fast", "stock-to-two/flaky"]
    for target in STOCK.targets:
        pair = resources.queue(STOCK, target)
        assert pair.url.endswith("/" + queue_name(STAGE, STOCK, target))
        assert pair.dlq_url.endswith("/" + queue_name(STAGE, STOCK, target, dead_letter=True))
        main = attributes(pair.url, "VisibilityTimeout", "RedrivePolicy", "MessageRetentionPeriod")
        assert int(main["VisibilityTimeout"]) == visibility_timeout_seconds(target)
        redrive = json.loads(main["RedrivePolicy"])
        assert redrive["maxReceiveCount"] == target.queue.max_receive_count
        assert redrive["deadLetterTargetArn"] == pair.dlq_arn
        declared = queue_attributes(target, dead_letter=False, dlq_arn=pair.dlq_arn)
        assert main["MessageRetentionPeriod"] == declared["MessageRetentionPeriod"]
    fast, flaky = (resources.queue(STOCK, t) for t in ("fast", "flaky"))
    assert attributes(fast.url, "VisibilityTimeout") != attributes(flaky.url, "VisibilityTimeout")  # 120 s vs 240 s


def test_every_function_gets_the_environment_the_stack_gives_it(resources: Resources) -> None:
    assert function_roles(STOCK) == ["fast-processor", "flaky-processor", "poller"]
    envs = resources.function_envs(STOCK)
    fast, flaky = resources.queue(STOCK, "fast"), resources.queue(STOCK, "flaky")
    assert envs["fast-processor"] == {
        "JUNCTION_STAGE": STAGE,
        "JUNCTION_INTEGRATION": STOCK.name,
        "JUNCTION_TARGET": "fast",
        "JUNCTION_QUEUE_URL": fast.url,
        "JUNCTION_DLQ_URL": fast.dlq_url,
        "JUNCTION_IDEMPOTENCY_TABLE": f"junction-{STAGE}-idempotency",
        "JUNCTION_STATE_TABLE": f"junction-{STAGE}-state",
        "JUNCTION_PAYLOAD_BUCKET": f"junction-{STAGE}-payloads",
    }
    assert envs["flaky-processor"]["JUNCTION_QUEUE_URL"] == flaky.url
    assert envs["poller"] == {
        "JUNCTION_STAGE": STAGE,
        "JUNCTION_INTEGRATION": STOCK.name,
        "JUNCTION_STATE_TABLE": f"junction-{STAGE}-state",
        "JUNCTION_QUEUE_URLS": f"{fast.url},{flaky.url}",  # declaration order
        "JUNCTION_PAYLOAD_BUCKET": f"junction-{STAGE}-payloads",
    }
    with pytest.raises(ValueError, match="no webhook"):
        resources.function_env(STOCK, "ingress")
    with pytest.raises(KeyError, match="no target 'slow'"):
        resources.function_env(STOCK, "slow-processor")
    with pytest.raises(ValueError, match="unknown function role"):
        resources.function_env(STOCK, "processor")


def test_a_secret_without_a_local_value_stops_provisioning(aws: LocalAws, recorder: Recorder) -> None:
    with pytest.raises(KeyError, match="stock-source-login"):
        provision(
            (STOCK,),
            stage=STAGE,
            sqs=boto3.client("sqs"),
            ddb=boto3.client("dynamodb"),
            secretsmanager=boto3.client("secretsmanager"),
            secret_values={},
        )


# -- event sources: one per target queue, each with its own retry and breaker --------------------
def test_a_failing_target_never_holds_back_the_other(resources: Resources, recorder: Recorder) -> None:
    recorder.refuse = 4  # the flaky target answers 503 to its first four calls
    client = sqs()
    for sku in SKUS:
        envelope = change(sku)
        carried = message_attributes(envelope)
        for url in resources.queue_urls(STOCK):
            client.send_message(QueueUrl=url, MessageBody=envelope.to_json(), MessageAttributes=carried)
    sources = []
    for target in STOCK.targets:
        env = {**resources.function_env(STOCK, f"{target.name}-processor"), TIME_SCALE_ENV: "0.01"}
        arn = resources.queue(STOCK, target).arn
        sources.append(host.EventSource(STOCK, target, env, arn, "eu-central-1", slots=1))
    assert [s.key for s in sources] == ["stock-to-two/fast", "stock-to-two/flaky"]
    for source in sources:
        source.start()
    try:
        assert wait_for(lambda: sorted(recorder.delivered["fast"]) == list(SKUS), timeout=20)
        assert wait_for(lambda: sorted(recorder.delivered["flaky"]) == list(SKUS), timeout=30)

        def drained() -> bool:
            counts = [
                attributes(url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
                for pair in resources.queues.values()
                for url in (pair.url, pair.dlq_url)
            ]
            return all(int(v) == 0 for c in counts for v in c.values())

        assert wait_for(drained, timeout=20)
    finally:
        for source in sources:
            source.stop.set()
        for source in sources:
            source.join(10)
    assert recorder.refuse == 0 and sorted(recorder.delivered["flaky"]) == list(SKUS)  # each once
    assert {(c.target.name, c.stage) for c in recorder.contexts} == {("fast", STAGE), ("flaky", STAGE)}
    assert sources[0].invocations >= 1 and sources[1].invocations >= 2  # the flaky one retried on its own


def test_redelivery_is_scaled_per_target_and_the_horizon_kept() -> None:
    flaky = STOCK.target("flaky")
    scaled = host.redelivery_scaled(flaky, 1 / 30)
    assert (scaled.retry.base_delay_seconds, scaled.retry.max_delay_seconds, scaled.retry.settle_seconds) == (2, 20, 10)
    assert (scaled.breaker.open_seconds, scaled.breaker.max_open_seconds) == (2, 20)
    assert scaled.retry.horizon_seconds == flaky.retry.horizon_seconds
    assert scaled.breaker.failure_threshold == flaky.breaker.failure_threshold
    assert host.redelivery_scaled(flaky, 0.0001).retry.base_delay_seconds == 1  # never below a second


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_worker_processes_share_each_targets_concurrency(processes: int) -> None:
    for target in STOCK.targets:
        slots = [host.share(target, k, processes) for k in range(processes)]
        assert sum(slots) == target.max_concurrency and max(slots) - min(slots) <= 1


# -- the schedule invokes the poller, never an event source -------------------------------------
@dataclass
class PollerCalls:
    built: list[tuple[Integration, Any, dict[str, str]]] = field(default_factory=list)
    invoked: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    fail: bool = False


@pytest.fixture
def poller(monkeypatch: pytest.MonkeyPatch) -> PollerCalls:
    """``shared.polling`` as the host imports it: records how the poller is built and invoked."""
    calls = PollerCalls()
    fake = types.ModuleType("shared.polling")

    def make_poller_handler(integration: Integration, source_factory: Any, environ: Any = None) -> Any:
        calls.built.append((integration, source_factory, dict(environ)))

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            if calls.fail:
                raise RuntimeError("the source refused the login")
            calls.invoked.append((event, context))
            return {"changes": 3, "pages": 1}

        return handler

    fake.make_poller_handler = make_poller_handler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shared.polling", fake)
    return calls


def test_the_schedule_fires_the_poller_with_its_own_timeout(
    resources: Resources, recorder: Recorder, poller: PollerCalls
) -> None:
    state = {"functions": {STOCK.name: resources.function_envs(STOCK)}}
    scheduler = host.Scheduler(state, "eu-central-1")
    assert list(scheduler.jobs) == [STOCK.name]  # the webhook integration has no schedule
    assert poller.built == []  # built on its first invocation, as Lambda loads a function

    answer = scheduler.fire(STOCK.name)
    assert answer == {"changes": 3, "pages": 1}
    [(integration, factory, env)] = poller.built
    assert integration is STOCK and factory is sys.modules[f"{PACKAGE}.source"].build
    assert env == resources.function_env(STOCK, "poller")
    [(event, context)] = poller.invoked
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [f"arn:aws:events:eu-central-1:000000000000:rule/junction-local-{STOCK.name}"]
    assert context.function_name == f"{STOCK.name}-poller"
    assert 85_000 < context.get_remaining_time_in_millis() <= 90_000  # schedule.function, not a processor's
    assert context.memory_limit_in_mb == 256

    scheduler.fire(STOCK.name)
    assert len(poller.built) == 1 and len(poller.invoked) == 2 and scheduler.fired == {STOCK.name: 2}

    disabled = host.Scheduler(state, "eu-central-1", enabled=False)  # worker processes other than the first
    assert disabled.jobs == {}


def test_fired_on_demand_over_http(resources: Resources, recorder: Recorder, poller: PollerCalls) -> None:
    state = {"functions": {STOCK.name: resources.function_envs(STOCK)}}
    scheduler = host.Scheduler(state, "eu-central-1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), host._control_handler([], scheduler))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    runtime = LocalRuntime(state_dir=Path("unused"))
    runtime.state = {"hosts": {"workers-0": url}}
    try:
        assert runtime.fire_schedule(STOCK.name) == {"fired": STOCK.name, "response": {"changes": 3, "pages": 1}}
        assert runtime.host_state("workers-0")["schedules"] == {STOCK.name: 1}

        with pytest.raises(ValueError, match="has no schedule"):
            runtime.fire_schedule(SHOP_ORDERS.name)
        unknown = urllib.request.Request(f"{url}/_local/schedules/{SHOP_ORDERS.name}", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unknown, timeout=5)
        assert refused.value.code == 404

        poller.fail = True
        with pytest.raises(RuntimeError, match=r"500 .*the source refused the login"):
            runtime.fire_schedule(STOCK.name)
    finally:
        server.shutdown()
        server.server_close()


def test_an_event_source_per_target_queue_and_none_for_the_poller(
    resources: Resources, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host, "INTEGRATIONS", (STOCK,))
    state = {
        "region": "eu-central-1",
        "functions": {STOCK.name: resources.function_envs(STOCK)},
        "queues": {key: {"arn": q.arn} for key, q in resources.queues.items()},
    }
    first, second = host.event_sources(state, 0, 2), host.event_sources(state, 1, 2)
    assert [(s.key, s.queue_url, s.queue_arn) for s in first] == [
        (f"{STOCK.name}/{t.name}", resources.queue(STOCK, t).url, resources.queue(STOCK, t).arn) for t in STOCK.targets
    ]
    assert [a.slots + b.slots for a, b in zip(first, second, strict=True)] == [3, 2]  # each target's max_concurrency
    assert all(s.env == resources.function_env(STOCK, f"{s.target.name}-processor") for s in first)
    assert recorder.contexts == []  # nothing built before the first invocation


# -- the runtime's view of a target's queue -------------------------------------------------------
def test_queue_depth_per_target_and_settled_over_all(aws: LocalAws, resources: Resources, recorder: Recorder) -> None:
    runtime = LocalRuntime(state_dir=Path("unused"))
    runtime.state = {
        "endpoints": {"sqs": aws.url},
        "queues": {key: {"url": q.url, "dlq_url": q.dlq_url} for key, q in resources.queues.items()},
    }
    client = sqs()
    client.send_message(QueueUrl=resources.queue(STOCK, "flaky").url, MessageBody="{}")
    client.send_message(QueueUrl=resources.queue(STOCK, "fast").dlq_url, MessageBody="{}")
    assert runtime.queue_depth(STOCK.name, "fast") == {"visible": 0, "in_flight": 0, "delayed": 0, "dead_letters": 1}
    assert runtime.queue_depth(STOCK.name, "flaky")["visible"] == 1
    assert runtime.queue_depth(STOCK.name) == {"visible": 1, "in_flight": 0, "delayed": 0, "dead_letters": 1}
    assert not runtime.settled(STOCK.name)
    [message] = client.receive_message(QueueUrl=resources.queue(STOCK, "flaky").url)["Messages"]
    assert runtime.queue_depth(STOCK.name)["in_flight"] == 1 and not runtime.settled(STOCK.name)
    client.delete_message(QueueUrl=resources.queue(STOCK, "flaky").url, ReceiptHandle=message["ReceiptHandle"])
    assert runtime.settled(STOCK.name)  # a dead letter waits for an operator, not for the runtime
    with pytest.raises(KeyError, match="no target 'slow'"):
        runtime.queue_depth(STOCK.name, "slow")


# -- the stand-in registry: sources and targets apart ----------------------------------------------
def test_a_system_is_looked_up_as_a_source_or_as_a_target() -> None:
    shop, erp_as_source, erp_as_target = (
        standins.source("shopify"),
        standins.source_standin("erp"),
        standins.target("erp"),
    )
    assert isinstance(shop, SourceStandIn) and shop.fills == "shopify-webhook"
    assert isinstance(erp_as_source, TargetStandIn) and erp_as_source is erp_as_target  # one process, both roles
    with pytest.raises(TypeError, match="server process, not a webhook sender"):
        standins.source("erp")
    with pytest.raises(KeyError, match="no local target stand-in for 'ebay'"):
        standins.target("ebay")
    with pytest.raises(KeyError, match="no local source stand-in for 'ebay'"):
        standins.source_standin("ebay")
    assert standins._TARGETS["shopify"] == "junction_local.standins.shopify_admin"
    assert standins._TARGETS["allegro"] == "junction_local.standins.allegro"


def fake_target(system: str, fills: str, module: str | None = None) -> TargetStandIn:
    return TargetStandIn(system, module or f"fake.{system}", fills, lambda url: {"base_url": url, "system": system})


@pytest.fixture
def fake_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for the test integration's systems: ``erp`` serves as its polled source."""
    declared = {
        "fake.fast": fake_target("fast", "fast-api"),
        "fake.flaky": fake_target("flaky", "flaky-api"),
        "fake.erp": fake_target("erp", SOURCE_CREDENTIALS.name),
    }
    for name, standin in declared.items():
        module = types.ModuleType(name)
        module.LOCAL = standin  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(standins, "_TARGETS", {"fast": "fake.fast", "flaky": "fake.flaky", "erp": "fake.erp"})
    monkeypatch.setattr(standins, "_SOURCES", {**standins._SOURCES, "erp": "fake.erp"})


def test_a_polled_source_runs_as_a_process_once(fake_systems: None) -> None:
    both = Integration(
        name="erp-both-ways",
        description="the ERP as a target and as the polled source",
        source="erp",
        trigger=ScheduleTrigger("rate(1 minute)"),
        package=PACKAGE,
        targets=(Target(name="erp"), Target(name="fast")),
    )
    assert [s.system for s in standins.targets((STOCK,))] == ["fast", "flaky", "erp"]
    assert [s.system for s in standins.targets((STOCK, both))] == ["fast", "flaky", "erp"]
    webhook_only = [s.system for s in standins.targets((SHOP_ORDERS_TO_ERP,))]
    assert webhook_only == ["erp"]  # a webhook source is a sender, not a process


def test_every_secret_is_filled_by_the_stand_in_that_declares_it(fake_systems: None) -> None:
    writes = Integration(
        name="stock-rotating",
        description="a target that writes its rotated token back",
        source="erp",
        trigger=ScheduleTrigger("rate(1 minute)"),
        package=PACKAGE,
        targets=(
            Target(name="fast", secrets=(SecretRef("fast-api", "login"),)),
            Target(name="flaky", writes_secrets=(SecretRef("flaky-api", "rotated token"),)),
        ),
        secrets=(SOURCE_CREDENTIALS,),
    )
    urls = {"fast": "http://127.0.0.1:1", "flaky": "http://127.0.0.1:2", "erp": "http://127.0.0.1:3"}
    values = standins.secret_values((writes,), urls)
    assert values == {
        SOURCE_CREDENTIALS.name: {"base_url": urls["erp"], "system": "erp"},
        "fast-api": {"base_url": urls["fast"], "system": "fast"},
        "flaky-api": {"base_url": urls["flaky"], "system": "flaky"},
    }
    unfilled = Integration(
        name="stock-unfilled",
        description="a secret no stand-in declares",
        source="erp",
        trigger=ScheduleTrigger("rate(1 minute)"),
        package=PACKAGE,
        targets=(Target(name="fast", secrets=(SecretRef("nobody-fills-this", "?"),)),),
    )
    with pytest.raises(KeyError, match=r"'nobody-fills-this' of stock-unfilled.*one of erp, fast"):
        standins.secret_values((unfilled,), urls)
    with pytest.raises(KeyError, match="no URL for the 'erp' stand-in"):
        standins.secret_values((writes,), {"fast": urls["fast"], "flaky": urls["flaky"]})


def test_two_processes_for_one_system_are_refused(fake_systems: None, monkeypatch: pytest.MonkeyPatch) -> None:
    other = types.ModuleType("fake.erp_reader")
    other.LOCAL = fake_target("erp", SOURCE_CREDENTIALS.name, module="fake.erp_reader")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake.erp_reader", other)
    monkeypatch.setitem(standins._SOURCES, "erp", "fake.erp_reader")
    both = Integration(
        name="erp-two-processes",
        description="?",
        source="erp",
        trigger=ScheduleTrigger("rate(1 minute)"),
        package=PACKAGE,
        targets=(Target(name="erp"),),
    )
    with pytest.raises(ValueError, match="played by two processes"):
        standins.targets((both,))
