"""The cold-start benchmark runs end to end: every function answers as expected and gets figures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from functions.registry import INTEGRATIONS
from shared.declaration import PROCESSOR_HANDLER, Integration, ScheduleTrigger

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_reports_every_function_with_checked_responses() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "coldstart.py"), "--runs", "1", "--warmup", "0", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    from benchmarks import coldstart

    assert report["mode"] == "as deployed"
    assert report["python"].startswith("3.13.")
    assert report["bytecode"] == "as shipped"

    # Every webhook integration's ingress, and the processor of each of its targets.
    webhooks = [i for i in INTEGRATIONS if i.webhook]
    expected = {f"{i.name}/ingress" for i in webhooks}
    expected |= {f"{i.name}/{t.name}-processor" for i in webhooks for t in i.targets}
    functions = {f["function"]: f for f in report["functions"]}
    assert set(functions) == expected
    # A scheduled integration's processors are named as not measured, never silently left out.
    assert report["not_measured"] == [
        f"{i.name}/{t.name}-processor" for i in INTEGRATIONS if not i.webhook for t in i.targets
    ]
    assert report["baseline_python_pass_ms"]["median"] > 0
    for name, figures in functions.items():
        assert figures["runs"] == 1
        assert figures["cold_start_ms"]["median"] > 0, name
        assert figures["import_ms"] > 0, name
        assert figures["peak_rss_mib"] > 0, name
        assert figures["verdict"] == coldstart.FunctionResult.verdict_for(
            figures["cold_start_ms"]["median"], figures["budget_ms"]
        )
        assert "shared" in figures["imports"] and "functions" in figures["imports"]
        integration = next(i for i in INTEGRATIONS if i.name == figures["integration"])
        if figures["kind"] == "ingress":
            assert integration.webhook is not None
            assert figures["outcomes"] == [str(integration.webhook.accepted_status)]
            assert not {"pydantic", "boto3", "botocore", "httpx"} & set(figures["imports"])
            assert figures["budget_ms"] == 150
        else:
            target = integration.target(figures["target"])
            assert figures["handler"] == PROCESSOR_HANDLER
            assert len(figures["outcomes"]) == 1
            # One new effect at the target; a hop whose effect is a read it hands on (re-reading a
            # shipment whose status changed) has targets after it, and proved the hand-on.
            read = figures["outcomes"][0] == f"{target.name} read, handed on"
            handed_on = bool(integration.followers(target)) and read
            assert figures["outcomes"][0].startswith(f"{target.name} effect ") or handed_on, name
            assert figures["budget_ms"] == 600


def _stack() -> Any:
    from benchmarks import coldstart
    from junction_local.provision import QueuePair, Resources, queue_key

    resources = Resources("bench", idempotency_table="idem", state_table="state")
    for integration in INTEGRATIONS:
        for target in integration.targets:
            key = queue_key(integration, target)
            resources.queues[key] = QueuePair(f"q:{key}", f"arn:q:{key}", f"dlq:{key}", f"arn:dlq:{key}")
    absent = {"ingress": "", "processor": ""}
    return coldstart.Stack(resources, runtime=None, sqs=None, python=[sys.executable], env={}, absent=absent)


def _sample(integration: Integration, secret: str | None = None) -> Any:
    """The benchmark's sample for ``integration``, signed with ``secret`` (the source stand-in's
    local secret by default: Przelewy24's sign is in the body, made with it), sent nowhere."""
    from benchmarks import coldstart
    from junction_local.standins import source

    assert integration.webhook is not None
    secret = secret or source(integration.source).signing_secret
    sender = source(integration.source).sender(f"http://127.0.0.1:9{integration.webhook.path}", secret)
    return coldstart.Sample.of(integration, sender, secret)


@pytest.mark.parametrize("integration", [i for i in INTEGRATIONS if i.webhook], ids=lambda i: i.name)
def test_samples_come_from_the_source_declaration_and_verify(integration: Integration) -> None:
    """Distinct business entities per run, signed as the source signs, accepted by the integration's
    verifier; the delivery id the benchmark expects on the queue is the one the verifier gives
    (the source's own: a header, an event id in the body, a body digest)."""
    from shared.webhooks import Headers, verifier_for

    assert integration.webhook is not None
    from junction_local.standins import source

    secret = source(integration.source).signing_secret
    sample = _sample(integration)
    bodies = [sample.body(n) for n in range(3)]
    assert len(set(bodies)) == 3
    verifier = verifier_for(integration.webhook.scheme)
    ids = set()
    for n, body in enumerate(bodies):
        headers = sample.headers(body, f"delivery-{n}")
        verified = verifier.verify(Headers(headers), body, [secret], now=time.time(), tolerance=300)
        assert sample.delivery_id(body, headers) == verified.delivery_id
        ids.add(verified.delivery_id)
    assert len(ids) == 3


@pytest.mark.parametrize("integration", [i for i in INTEGRATIONS if i.webhook], ids=lambda i: i.name)
def test_the_route_carries_the_path_token_as_the_source_calls_it(integration: Integration) -> None:
    assert integration.webhook is not None
    sample = _sample(integration)
    path, resource, parameters = sample.route()
    token = integration.webhook.path_token
    if token is None:
        assert (path, resource, parameters) == (integration.webhook.path, None, None)
    else:
        assert path.rsplit("/", 1)[1] == sample.secret and resource == integration.webhook.path
        assert parameters == {token: sample.secret}


def test_the_benchmark_names_no_provider() -> None:
    """Sources, targets and their samples are looked up in the stand-ins' registry, never named
    (what a system needs prepared is keyed by its name in benchmarks/preparations.py only)."""
    from junction_local.standins import _MODULES

    code = (REPO / "benchmarks" / "coldstart.py").read_text(encoding="utf-8").lower()
    systems = set(_MODULES) | {i.source for i in INTEGRATIONS} | {t.name for i in INTEGRATIONS for t in i.targets}
    named = sorted(system for system in systems if re.search(rf"\b{re.escape(system.lower())}\b", code))
    assert named == []
    assert "tests/events" not in code


def test_preparations_name_systems_only() -> None:
    """Hooks are keyed by source and target system, never by integration; each names a system with a stand-in."""
    from benchmarks import preparations
    from junction_local.standins import _SOURCES, _TARGETS

    assert set(preparations.SOURCES) <= set(_SOURCES)
    assert set(preparations.TARGETS) | set(preparations.EFFECT_COUNTS) | set(preparations.SETTINGS) <= set(_TARGETS)
    assert set(_TARGETS) >= preparations.SHOPS
    code = (REPO / "benchmarks" / "preparations.py").read_text(encoding="utf-8")
    assert not [i.name for i in INTEGRATIONS if i.name in code]


def test_a_target_prepares_nothing_for_an_event_that_brings_its_own_order() -> None:
    from benchmarks import preparations

    def unreachable(system: str) -> str:
        raise AssertionError(f"{system} was called")

    world = preparations.World(unreachable, unreachable, sender=None)
    for system in preparations.TARGETS:
        preparations.prepare_target(system, preparations.Facts(), world)  # no order reference: no call
    assert preparations.source_event("no-such-source", 1, None, world) is None


def test_every_declared_target_counts_its_effects() -> None:
    """The benchmark sees a delivery arrive through the target stand-in's declared count."""
    from junction_local.standins import target

    for integration in INTEGRATIONS:
        for t in integration.targets:
            assert target(t.name).effect_count, t.name


def test_a_target_without_a_new_effect_stops_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import coldstart

    class Sqs:
        def receive_message(self, **params: Any) -> dict[str, Any]:
            if not params.get("WaitTimeSeconds"):  # the drain before the run: an empty queue
                return {}
            return {"Messages": [{"MessageId": "m", "Body": sent[0], "ReceiptHandle": "r"}]}

    class Enqueuer:
        def send(self, body: bytes, headers: dict[str, str], route: Any) -> None:
            sent.append(json.dumps(headers))  # the message carries its delivery id

    sent: list[str] = []
    run = coldstart.Run(cold_start_ms=1.0, startup_ms=1.0, import_ms=1.0, invoke_ms=1.0, rss_kib=1, outcome="")
    monkeypatch.setattr(coldstart, "run_child", lambda *a, **k: (run, {"batchItemFailures": []}))
    monkeypatch.setattr(coldstart, "effects", lambda runtime, system: 5)  # nothing arrived
    monkeypatch.setattr(coldstart, "requests_served", lambda runtime, system: 0)  # nothing read either
    stack = _stack()
    stack.sqs = Sqs()
    integration = next(i for i in INTEGRATIONS if i.webhook)
    with pytest.raises(coldstart.BenchmarkError, match="0 new effects, not 1"):
        coldstart.processor_run(
            integration,
            integration.targets[0],
            _sample(integration),
            stack,
            Enqueuer(),  # type: ignore[arg-type]
            1,
        )


def test_a_wrong_ingress_response_stops_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import coldstart

    run = coldstart.Run(cold_start_ms=1.0, startup_ms=1.0, import_ms=1.0, invoke_ms=1.0, rss_kib=1, outcome="")
    monkeypatch.setattr(coldstart, "run_child", lambda *a, **k: (run, {"statusCode": 401, "body": "{}"}))
    stack = _stack()
    integration = next(i for i in INTEGRATIONS if i.webhook)
    with pytest.raises(coldstart.BenchmarkError, match="expected statusCode 202"):
        coldstart.ingress_run(integration, _sample(integration), stack)


def test_a_failed_benchmark_exits_non_zero(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import coldstart

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise coldstart.BenchmarkError("processor: expected no batch item failures")

    monkeypatch.setattr(coldstart, "bench", broken)
    assert coldstart.main(["--runs", "1"]) == 2
    assert "FAILED" in capsys.readouterr().err


def test_check_exits_non_zero_over_budget(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import coldstart

    over = coldstart.FunctionResult("x", "ingress", "functions.x.ingress.handler", budget_ms=150.0)
    over.runs.append(coldstart.Run(151.0, 10.0, 100.0, 10.0, 20_000, "202"))

    def report(*args: object, **kwargs: object) -> dict[str, object]:
        return {
            "runs": 1,
            "warmup": 0,
            "bytecode": "cached",
            "packages": "as bundled",
            "interpreter": "python -S -c",
            "python": "3",
            "cpus": 2,
            "load_average_1m": {"before": 0.0, "after": 0.0},
            "baseline_python_pass_ms": {"median": 30.0, "min": 30.0, "max": 30.0},
            "baseline_python_no_site_pass_ms": {"median": 10.0, "min": 10.0, "max": 10.0},
            "functions": [over.as_dict()],
        }

    monkeypatch.setattr(coldstart, "bench", report)
    assert coldstart.main([]) == 0
    assert coldstart.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "OVER" in out.out and "over budget: x/ingress" in out.err


@pytest.mark.parametrize(
    ("median", "budget", "verdict"),
    [
        (149.9, 150.0, "PASS"),
        (150.0, 150.0, "PASS"),
        (150.1, 150.0, "OVER"),
        (601.0, 600.0, "OVER"),
        (10.0, 600.0, "PASS"),
    ],
)
def test_verdict_compares_the_median_with_the_budget(median: float, budget: float, verdict: str) -> None:
    from benchmarks import coldstart

    assert coldstart.FunctionResult.verdict_for(median, budget) == verdict
    result = coldstart.FunctionResult("x", "ingress", "functions.x.ingress.handler", budget_ms=budget)
    for cold in (median - 50, median, median + 500):  # the median decides, not the worst run
        result.runs.append(coldstart.Run(cold, 10.0, 100.0, 10.0, 20_000, "202"))
    assert result.verdict == verdict
    assert result.as_dict()["verdict"] == verdict


def test_each_target_runs_the_generic_processor_on_its_own_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child imports PROCESSOR_HANDLER and learns its integration and target from the
    environment, as deployed; the batch comes from that target's queue, the effect from its stand-in."""
    from benchmarks import coldstart
    from junction_local.provision import QueuePair, queue_key
    from junction_local.runtime import STAGE

    webhook = next(i for i in INTEGRATIONS if i.webhook)
    first = webhook.targets[0]
    two = replace(webhook, targets=(first, replace(first, name="second", max_concurrency=2)))
    stack = _stack()
    for t in two.targets:
        key = queue_key(two, t)
        stack.resources.queues[key] = QueuePair(f"q:{key}", f"arn:q:{key}", f"dlq:{key}", f"arn:dlq:{key}")
    received: list[str] = []
    children: list[dict[str, Any]] = []
    counts: dict[str, int] = {}

    class Sqs:
        def receive_message(self, **params: Any) -> dict[str, Any]:
            if not params.get("WaitTimeSeconds"):
                return {}
            received.append(params["QueueUrl"])
            return {"Messages": [{"MessageId": "m", "Body": sent[-1], "ReceiptHandle": "r"}]}

        def delete_message(self, **params: Any) -> None:
            pass

    class Enqueuer:
        def send(self, body: bytes, headers: dict[str, str], route: Any) -> None:
            sent.append(json.dumps(headers))

    def child(python: list[str], handler: str, event: dict[str, Any], env: dict[str, str], **kw: Any) -> Any:
        children.append({"handler": handler, "env": env, **kw})
        counts[env["JUNCTION_TARGET"]] = counts.get(env["JUNCTION_TARGET"], 0) + 1
        return coldstart.Run(1.0, 1.0, 1.0, 1.0, 1, ""), {"batchItemFailures": []}

    sent: list[str] = []
    stack.sqs = Sqs()
    monkeypatch.setattr(coldstart, "run_child", child)
    monkeypatch.setattr(coldstart, "effects", lambda runtime, system: counts.get(system, 0))
    for k, target in enumerate(two.targets):
        run = coldstart._processor_round(two, k, _sample(two), stack, Enqueuer(), 0)  # type: ignore[arg-type]
        assert run.outcome == f"{target.name} effect 1"
    assert received == [f"q:{queue_key(two, t)}" for t in two.targets]
    for target, called in zip(two.targets, children, strict=True):
        assert called["handler"] == PROCESSOR_HANDLER
        assert called["env"]["JUNCTION_INTEGRATION"] == two.name
        assert called["env"]["JUNCTION_TARGET"] == target.name
        assert called["env"]["JUNCTION_QUEUE_URL"] == f"q:{queue_key(two, target)}"
        assert called["name"] == f"junction-{STAGE}-{two.name}-{target.name}-processor"
        assert called["timeout"] == target.processor.timeout_seconds
        assert called["memory"] == target.processor.memory_mb


def test_every_processor_run_sends_a_new_entity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets share the ingress's deliveries: a run never re-sends an entity an earlier run of any
    target sent (its effect might already exist), and entity 0 is the ingress's."""
    from benchmarks import coldstart

    seen: list[tuple[str, int]] = []

    def run(integration: Integration, target: Any, sample: Any, stack: Any, enqueuer: Any, n: int) -> Any:
        seen.append((target.name, n))
        return coldstart.Run(1.0, 1.0, 1.0, 1.0, 1, "")

    monkeypatch.setattr(coldstart, "processor_run", run)
    webhook = next(i for i in INTEGRATIONS if i.webhook)
    two = replace(webhook, targets=(webhook.targets[0], replace(webhook.targets[0], name="second")))
    for round_ in range(3):
        for k in range(len(two.targets)):
            coldstart._processor_round(two, k, None, None, None, round_)  # type: ignore[arg-type]
    assert [n for _, n in seen] == list(range(1, 7))
    assert [t for t, _ in seen] == [webhook.targets[0].name, "second"] * 3


def test_scheduled_processors_are_reported_as_not_measured() -> None:
    from benchmarks import coldstart

    webhook = next(i for i in INTEGRATIONS if i.webhook)
    scheduled = replace(
        webhook,
        name="polled",
        trigger=ScheduleTrigger("rate(5 minutes)"),
        targets=(webhook.targets[0], replace(webhook.targets[0], name="second")),
    )
    assert coldstart.not_measured((webhook, scheduled)) == [
        f"polled/{webhook.targets[0].name}-processor",
        "polled/second-processor",
    ]
    report = {
        "runs": 1,
        "warmup": 0,
        "bytecode": "cached",
        "packages": "as bundled",
        "interpreter": "python -S -c",
        "python": "3",
        "cpus": 2,
        "load_average_1m": {"before": 0.0, "after": 0.0},
        "baseline_python_pass_ms": {"median": 30.0, "min": 30.0, "max": 30.0},
        "baseline_python_no_site_pass_ms": {"median": 10.0, "min": 10.0, "max": 10.0},
        "functions": [],
        "not_measured": coldstart.not_measured((scheduled,)),
    }
    assert "Not measured" in coldstart.render(report) and "polled/second-processor" in coldstart.render(report)
    assert "Not measured" not in coldstart.render({**report, "not_measured": []})
