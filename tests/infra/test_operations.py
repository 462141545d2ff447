"""The operations layer on the template: runbook links and notifications of every alarm, the
dashboards, the alarm subscribers, the history export and the source-address allow-list of a
webhook route."""

from __future__ import annotations

import ipaddress
import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import cdk_nag
import pytest
from aws_cdk.assertions import Annotations, Match, Template

from functions.registry import INTEGRATIONS
from infra import alarms, dashboards, history
from infra.alarms import AlarmSubscriber
from infra.stack import (
    JunctionStack,
    StageSettings,
    execute_api_resource,
    http_route_key,
    poll_lag_threshold_seconds,
    serves_over_rest,
    target_key,
)
from shared.declaration import Integration, Target, WebhookTrigger, function_name, queue_name
from tests.infra.conftest import REPO_ROOT, SCHEDULES, TARGET_IDS, TARGETS, WEBHOOKS, WIDE, alarm_topic_ref, names
from tests.infra.samples import CARRIER_SOURCE_IPS, TOKEN_WEBHOOK, TWO_TARGET_WEBHOOK
from tests.infra.test_stack import NAG, arn, logical_id, ref, resources, routes

pytestmark = pytest.mark.slow

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def runbook_anchors(path: Path = RUNBOOK) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (outside code blocks)."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(alarms.anchor(m[1]))
    return found


def alarm_props(template: Template) -> list[dict[str, Any]]:
    return [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]


# ------------------------------------------------------------------------------------- runbook
@pytest.mark.parametrize("stack_name", ["dev", "wide"])
def test_every_alarm_links_to_its_runbook_section_and_notifies_the_topic_both_ways(
    stack_name: str, request: pytest.FixtureRequest
) -> None:
    stack: JunctionStack = request.getfixturevalue(f"{stack_name}_stack")
    template: Template = request.getfixturevalue(f"{stack_name}_observability")
    anchors = runbook_anchors()
    topic = [alarm_topic_ref(stack)]
    found = alarm_props(template)
    assert found
    for props in found:
        description = props["AlarmDescription"]
        assert len(description) <= alarms.MAX_DESCRIPTION
        link = re.fullmatch(r".+ Runbook: docs/runbook\.md#([a-z0-9-]+)", description, re.DOTALL)
        assert link, description
        assert link[1] in anchors, f"{props['AlarmName']}: no section #{link[1]} in docs/runbook.md"
        assert link[1] == stack.alarm_kinds[props["AlarmName"]].anchor
        assert props["AlarmActions"] == topic, props["AlarmName"]
        assert props["OKActions"] == topic, props["AlarmName"]
    assert len(found) == len(stack.alarms) == len(stack.alarm_kinds)


def test_every_alarm_kind_has_a_section_saying_what_to_check_do_and_when_it_is_over() -> None:
    text = RUNBOOK.read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    by_heading = {s.splitlines()[0].strip(): s for s in sections}
    for kind in alarms.KINDS:
        assert kind.heading in by_heading, kind.heading
        body = by_heading[kind.heading]
        for part in ("**What it means.**", "**Confirm.**", "**What to do.**", "**When it is over.**"):
            assert part in body, (kind.heading, part)
        assert "junction " in body or "`junction" in body, kind.heading
    # Links between sections resolve too.
    for target in re.findall(r"\]\(#([a-z0-9-]+)\)", text):
        assert target in runbook_anchors(), target


def test_every_kind_is_used_by_some_alarm_of_the_wide_stack(wide_stack: JunctionStack) -> None:
    assert set(wide_stack.alarm_kinds.values()) == set(alarms.KINDS)


def test_anchor_follows_github_headings() -> None:
    assert alarms.anchor("DLQ depth") == "dlq-depth"
    assert alarms.anchor("Ingress 5xx") == "ingress-5xx"
    assert alarms.anchor("What's new: v2.0") == "whats-new-v20"


def test_runbook_url() -> None:
    assert alarms.runbook_url(None, alarms.QUEUE_AGE) == "docs/runbook.md#queue-age"
    base = "https://github.com/acme/junction/blob/main/"
    assert alarms.runbook_url(base, alarms.QUEUE_AGE) == f"{base}docs/runbook.md#queue-age"


def test_a_long_description_is_shortened_never_its_link() -> None:
    url = "https://example.com/docs/runbook.md#dlq-depth"
    text = alarms.described("x" * 2000, url)
    assert len(text) == alarms.MAX_DESCRIPTION
    assert text.endswith(f"... Runbook: {url}")
    assert alarms.described("short.", url) == f"short. Runbook: {url}"


# ------------------------------------------------------------------ runbook base and subscribers
@pytest.fixture(scope="module")
def code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in code asset: these stacks are only looked at, so they need not bundle (and the
    session's bundles move whenever a source file changes)."""
    path = tmp_path_factory.mktemp("asset")
    (path / "handler.py").write_text("")
    return path


@pytest.fixture(scope="module")
def subscribed(code_dir: Path) -> tuple[JunctionStack, Template]:
    """A production stage with a runbook base, an e-mail address and two more subscribers."""
    settings = StageSettings.from_context(
        {
            "removal_policy": "retain",
            "alarm_email": "ops@example.com",
            "alarm_subscribers": [
                {"protocol": "https", "endpoint": "https://events.pagerduty.example/integration/abc/enqueue"},
                {"protocol": "sms", "endpoint": "+48600100200"},
            ],
        }
    )
    app = cdk.App()
    cdk.Aspects.of(app).add(cdk_nag.AwsSolutionsChecks())
    stack = JunctionStack(
        app,
        "subscribed",
        stage="prod",
        settings=settings,
        runbook_base_url="https://github.com/acme/junction/blob/main",
        ingress_code_dir=code_dir,
        processor_code_dir=code_dir,
    )
    return stack, Template.from_stack(stack)


def test_alarm_links_use_the_runbook_base(subscribed: tuple[JunctionStack, Template]) -> None:
    stack, _ = subscribed
    found = alarm_props(Template.from_stack(stack.observability))
    assert len(found) == len(stack.alarms)
    for props in found:
        assert " Runbook: https://github.com/acme/junction/blob/main/docs/runbook.md#" in props["AlarmDescription"]


def test_every_subscriber_of_the_stage_is_subscribed(subscribed: tuple[JunctionStack, Template]) -> None:
    stack, template = subscribed
    topic = ref(stack, stack.alarm_topic)
    found = {
        (s["Protocol"], s["Endpoint"])
        for s in (r["Properties"] for r in resources(template, "AWS::SNS::Subscription").values())
        if s["TopicArn"] == topic
    }
    assert found == {
        ("email", "ops@example.com"),
        ("https", "https://events.pagerduty.example/integration/abc/enqueue"),
        ("sms", "+48600100200"),
    }
    assert not Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(".*has no subscriber.*"))


def test_subscribers_alone_silence_the_no_subscriber_warning(code_dir: Path) -> None:
    settings = StageSettings.from_context(
        {"removal_policy": "retain", "alarm_subscribers": [{"protocol": "email", "endpoint": "oncall@example.com"}]}
    )
    stack = JunctionStack(
        cdk.App(),
        "subscribers-only",
        stage="prod",
        settings=settings,
        integrations=(TWO_TARGET_WEBHOOK,),
        ingress_code_dir=code_dir,
        processor_code_dir=code_dir,
    )
    assert not Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(".*has no subscriber.*"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"protocol": "http", "endpoint": "http://example.com/hook"}, "protocol"),
        ({"protocol": "https", "endpoint": "http://example.com/hook"}, "not a valid https"),
        ({"protocol": "email", "endpoint": "nobody"}, "not a valid email"),
        ({"protocol": "sms", "endpoint": "600100200"}, "not a valid sms"),
        ({"protocol": "email", "endpoint": "a@example.com", "extra": 1}, "protocol, endpoint"),
        ("ops@example.com", "protocol, endpoint"),
    ],
)
def test_malformed_subscribers_are_refused(entry: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StageSettings.from_context({"alarm_subscribers": [entry]})
    assert AlarmSubscriber.from_context({"protocol": "EMAIL-JSON", "endpoint": "a@example.com"}) == AlarmSubscriber(
        "email-json", "a@example.com"
    )


# ---------------------------------------------------------------------------------- dashboards
def dashboard(template: Template, name: str) -> dict[str, Any]:
    """A dashboard's body as JSON, every CloudFormation token in it replaced by ``"<token>"``."""
    [found] = [
        r["Properties"]["DashboardBody"]
        for r in resources(template, "AWS::CloudWatch::Dashboard").values()
        if r["Properties"]["DashboardName"] == name
    ]
    parts = found["Fn::Join"][1] if isinstance(found, dict) else [found]
    body: dict[str, Any] = json.loads("".join(p if isinstance(p, str) else "<token>" for p in parts))
    return body


def graphs(body: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Metric widgets by title: their metric arrays, ``[namespace, name, dim, value, ..., {options}]``."""
    return {w["properties"]["title"]: w["properties"]["metrics"] for w in body["widgets"] if w["type"] == "metric"}


def junction(metrics: list[list[Any]], name: str, **dims: str) -> list[dict[str, Any]]:
    """The options of every ``Junction`` metric ``name`` with exactly the dimensions ``dims``."""
    out = []
    for m in metrics:
        options = m[-1] if isinstance(m[-1], dict) else {}
        core = m[:-1] if options else m
        if core[:2] == ["Junction", name] and dict(zip(core[2::2], core[3::2], strict=True)) == dims:
            out.append(options)
    return out


def test_one_dashboard_per_integration_and_an_overview(wide_observability: Template) -> None:
    found = {
        r["Properties"]["DashboardName"] for r in resources(wide_observability, "AWS::CloudWatch::Dashboard").values()
    }
    assert found == {"junction-dev"} | {f"junction-dev-{i.name}" for i in WIDE}


@pytest.mark.parametrize(("integration", "target"), TARGETS, ids=TARGET_IDS)
def test_integration_dashboard_has_each_targets_panels(
    wide_observability: Template, integration: Integration, target: Target
) -> None:
    key = target_key(integration, target)
    found = graphs(dashboard(wide_observability, f"junction-dev-{integration.name}"))
    dims = {"Integration": integration.name, "Target": target.name}

    queue = found[f"{key}: queue depth and age"]
    queue_dims = ["QueueName", queue_name("dev", integration, target)]
    assert [m[:4] for m in queue] == [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", *queue_dims],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", *queue_dims],
    ]
    assert found[f"{key}: DLQ depth"][0][:4] == [
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        queue_name("dev", integration, target, dead_letter=True),
    ]

    outcomes = found[f"{key}: delivered, duplicate, retried, dead-lettered"]
    for name in ("Message_delivered", "Message_duplicate", "Message_retry_scheduled", "Message_dead_lettered"):
        assert junction(outcomes, name, **dims), name
    # Business apart from system errors (names proposed to the processor, dashboards.PROPOSED).
    assert junction(outcomes, "Message_dead_lettered_business", **dims)
    assert junction(outcomes, "Message_dead_lettered_system", **dims)

    latency = found[f"{key}: target latency"]
    assert {o["stat"] for o in junction(latency, "Target_latency_ms", **dims)} == {"p50", "p99"}
    processor = ["FunctionName", function_name("dev", integration, f"{target.name}-processor")]
    assert [m[:4] for m in latency if m[0] == "AWS/Lambda"] == [["AWS/Lambda", "Duration", *processor]] * 2

    throttles = found[f"{key}: throttles"]
    assert ["AWS/Lambda", "Throttles"] in [m[:2] for m in throttles]
    assert junction(throttles, "Message_rate_limited", **dims)
    breaker = found[f"{key}: circuit breaker"]
    assert junction(breaker, "Breaker_opened", **dims)
    assert junction(breaker, "Breaker_open", **dims)[0]["stat"] == "Maximum"


@pytest.mark.parametrize("integration", WEBHOOKS, ids=names(WEBHOOKS))
def test_webhook_dashboard_has_the_routes_status_codes(wide_observability: Template, integration: Integration) -> None:
    """A signed route's metrics are the HTTP API's (``4xx``/``5xx`` by ``ApiId``, ``Stage``,
    ``Route``), a route open to its sender's addresses only the REST API's (``4XXError``/``5XXError``
    by ``ApiName``, ``Method``, ``Resource``, ``Stage``)."""
    webhook = integration.webhook
    assert webhook is not None
    route = f"{webhook.method} {webhook.path}"
    found = graphs(dashboard(wide_observability, f"junction-dev-{integration.name}"))
    gateway = found[f"{route}: requests, 4xx, 5xx (API Gateway)"]
    if serves_over_rest(webhook):
        dims = ["ApiName", "junction-dev", "Method", webhook.method, "Resource", webhook.path, "Stage", "dev"]
        names_ = ("Count", "4XXError", "5XXError")
    else:
        dims = ["ApiId", "<token>", "Route", http_route_key(webhook), "Stage", "dev"]  # the API's id: a parameter
        names_ = ("Count", "4xx", "5xx")
    assert [m[:-1] for m in gateway] == [["AWS/ApiGateway", name, *dims] for name in names_]
    outcomes = found[f"{route}: 2xx and refusals by reason (ingress)"]
    for name in dashboards.INGRESS_OUTCOMES:
        assert junction(outcomes, name, Integration=integration.name), name


@pytest.mark.parametrize("integration", SCHEDULES, ids=names(SCHEDULES))
def test_poller_dashboard_has_the_cursor_lag_and_its_alarm_line(
    wide_observability: Template, integration: Integration
) -> None:
    body = dashboard(wide_observability, f"junction-dev-{integration.name}")
    [lag] = [w["properties"] for w in body["widgets"] if w["properties"].get("title", "").endswith("cursor lag")]
    assert junction(lag["metrics"], "Poll_lag_seconds", Integration=integration.name)[0]["stat"] == "Maximum"
    assert lag["annotations"]["horizontal"][0]["value"] == poll_lag_threshold_seconds(integration)


def test_overview_shows_every_alarm_and_every_target(wide_stack: JunctionStack, wide_observability: Template) -> None:
    body = dashboard(wide_observability, "junction-dev")
    shown = sum(len(w["properties"]["alarms"]) for w in body["widgets"] if w["type"] == "alarm")
    assert shown == len(wide_stack.alarms)
    found = graphs(body)
    assert len(found["DLQ depth, every target"]) == len(TARGETS)
    for i, t in TARGETS:
        assert junction(found["Delivered, every target"], "Message_delivered", Integration=i.name, Target=t.name)
    assert len(found["Poller cursor lag, every poller"]) == len(SCHEDULES)
    assert len(found["Ingress 2xx | 4xx | 5xx, every route"]) == 3 * len(WEBHOOKS)


# ------------------------------------------------------------------------------- history export
def test_history_export_function_and_schedule(dev_stack: JunctionStack, dev_template: Template) -> None:
    fn_id = logical_id(dev_stack, dev_stack.history.function)
    fn = dev_template.to_json()["Resources"][fn_id]["Properties"]
    assert fn["FunctionName"] == "junction-dev-history-export"
    assert fn["Handler"] == "functions.history_export.handler"
    assert fn["Environment"]["Variables"] == {
        "JUNCTION_STAGE": "dev",
        "JUNCTION_STATE_TABLE": ref(dev_stack, dev_stack.state_table),
        "JUNCTION_HISTORY_BUCKET": ref(dev_stack, dev_stack.history.bucket),
    }
    rule = dev_template.to_json()["Resources"][logical_id(dev_stack, dev_stack.history.rule)]["Properties"]
    assert re.fullmatch(r"cron\(\d+ \* \* \* \? \*\)", rule["ScheduleExpression"])  # hourly
    assert rule["Targets"][0]["Arn"] == arn(dev_stack, dev_stack.history.function)


def test_history_export_reads_the_state_table_and_writes_history_only(
    dev_stack: JunctionStack, dev_template: Template
) -> None:
    role = ref(dev_stack, dev_stack.history.function.role)
    statements = [
        s
        for p in resources(dev_template, "AWS::IAM::Policy").values()
        if role in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    dynamodb = {a for a in actions if a.startswith("dynamodb:")}
    assert dynamodb <= set(history.READ_ACTIONS)
    assert not dynamodb & {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    [table] = [s for s in statements if "dynamodb:Scan" in s["Action"]]
    assert table["Resource"] == arn(dev_stack, dev_stack.state_table)
    assert {a for a in actions if a.startswith("s3:")} == {"s3:PutObject"}
    [put] = [s for s in statements if s["Action"] == "s3:PutObject"]
    assert put["Resource"] == {"Fn::Join": ["", [arn(dev_stack, dev_stack.history.bucket), "/history/*"]]}
    assert not {a for a in actions if a.startswith(("sqs:", "secretsmanager:"))}
    assert not [s for s in statements if s["Resource"] == arn(dev_stack, dev_stack.idempotency_table)]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_history_bucket(stage: str, request: pytest.FixtureRequest) -> None:
    stack: JunctionStack = request.getfixturevalue(f"{stage}_stack")
    template: Template = request.getfixturevalue(f"{stage}_template")
    bucket = template.to_json()["Resources"][logical_id(stack, stack.history.bucket)]
    props = bucket["Properties"]
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": arn(stack, stack.data_key),
    }
    assert all(props["PublicAccessBlockConfiguration"].values())
    [expiry] = props["LifecycleConfiguration"]["Rules"]
    assert expiry["ExpirationInDays"] == stack.settings.history_retention_days
    assert expiry["Prefix"] == "history/"
    assert bucket["DeletionPolicy"] == ("Retain" if stage == "prod" else "Delete")
    policy = [
        p["Properties"]["PolicyDocument"]
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == ref(stack, stack.history.bucket)
    ]
    statements = json.dumps(policy)
    assert '"aws:SecureTransport": "false"' in statements
    assert '"s3:TlsVersion": 1.2' in statements


def test_history_glue_table_projects_every_integration(wide_stack: JunctionStack, wide_template: Template) -> None:
    [table] = [t["Properties"] for t in resources(wide_template, "AWS::Glue::Table").values()]
    assert table["DatabaseName"] == "junction_dev"
    params = table["TableInput"]["Parameters"]
    assert params["projection.integration.values"].split(",") == names(WIDE)
    template_location = params["storage.location.template"]["Fn::Join"][1]
    assert template_location[-1].endswith("/history/integration=${integration}/dt=${dt}/hour=${hour}/")
    assert history.partition_prefix("shopify-orders", "2026-03-01", 9) == (
        "history/integration=shopify-orders/dt=2026-03-01/hour=09/"
    )


# ------------------------------------------------------------------------- source-address policy
def _conditions_hold(conditions: dict[str, Any], source_ip: str) -> bool:
    address = ipaddress.ip_address(source_ip)
    for operator, values in conditions.items():
        networks = [ipaddress.ip_network(n) for n in values["aws:SourceIp"]]
        inside = any(address in n for n in networks)
        if (operator == "IpAddress" and not inside) or (operator == "NotIpAddress" and inside):
            return False
    return True


def allowed(policy: dict[str, Any], method: str, path: str, source_ip: str) -> bool:
    """IAM's evaluation of a resource policy for ``execute-api:Invoke``: an explicit Deny wins, then
    an Allow is needed."""
    resource = f"execute-api:/dev/{method}/{path.strip('/')}"
    matching = [
        s
        for s in policy["Statement"]
        if s["Action"] == "execute-api:Invoke"
        and any(
            fnmatchcase(resource, r) for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        )
        and _conditions_hold(s.get("Condition", {}), source_ip)
    ]
    return not any(s["Effect"] == "Deny" for s in matching) and any(s["Effect"] == "Allow" for s in matching)


def api_policy(template: Template) -> dict[str, Any]:
    [api] = resources(template, "AWS::ApiGateway::RestApi").values()
    policy: dict[str, Any] = api["Properties"]["Policy"]
    return policy


INSIDE = ["198.51.100.7", "198.51.100.250", "2001:db8:10::1"]
OUTSIDE = ["203.0.113.9", "198.51.101.1", "2001:db8:11::1"]


def test_a_token_route_is_nested_under_its_path_parameter(wide_stack: JunctionStack, wide_template: Template) -> None:
    webhook = TOKEN_WEBHOOK.webhook
    assert webhook is not None and webhook.path_token == "token"
    found = routes(wide_template)
    assert ("POST", "/webhooks/sample-carrier/{token}") in found
    parts = {r["Properties"]["PathPart"] for r in resources(wide_template, "AWS::ApiGateway::Resource").values()}
    assert {"sample-carrier", "{token}"} <= parts
    ingress = logical_id(wide_stack, wide_stack.ingress_functions[TOKEN_WEBHOOK.name])
    assert ingress in json.dumps(found[("POST", "/webhooks/sample-carrier/{token}")]["Integration"]["Uri"])


@pytest.mark.parametrize("source_ip", INSIDE + OUTSIDE)
def test_the_token_route_is_open_only_to_its_documented_sources(wide_template: Template, source_ip: str) -> None:
    policy = api_policy(wide_template)
    expected = source_ip in INSIDE
    assert allowed(policy, "POST", "/webhooks/sample-carrier/s3cr3t-token", source_ip) is expected
    assert allowed(policy, "POST", "/webhooks/sample-carrier/another", source_ip) is expected


@pytest.mark.parametrize("integration", [i for i in WEBHOOKS if not i.webhook or not i.webhook.source_ips])
@pytest.mark.parametrize("source_ip", INSIDE + OUTSIDE)
def test_every_other_route_stays_open_to_anyone(
    wide_template: Template, integration: Integration, source_ip: str
) -> None:
    assert integration.webhook is not None
    assert allowed(api_policy(wide_template), integration.webhook.method, integration.webhook.path, source_ip)


def test_the_allow_list_is_the_declarations_and_in_one_statement(wide_template: Template) -> None:
    denies = [s for s in api_policy(wide_template)["Statement"] if s["Effect"] == "Deny"]
    restricted = [i.webhook for i in WIDE if i.webhook and i.webhook.source_ips]
    assert [d["Sid"] for d in denies] == [f"OnlyDocumentedSourceAddresses{n}" for n in range(1, len(restricted) + 1)]
    assert [(d["Resource"], d["Condition"]) for d in denies] == [
        (execute_api_resource(w.path, w.method), {"NotIpAddress": {"aws:SourceIp": list(w.source_ips)}})
        for w in restricted
    ]
    assert all(d["Principal"] == {"AWS": "*"} and d["Action"] == "execute-api:Invoke" for d in denies)
    # The sample carrier's, as declared (the registry's InPost route adds its own).
    assert (
        "execute-api:/*/POST/webhooks/sample-carrier/*",
        {"NotIpAddress": {"aws:SourceIp": list(CARRIER_SOURCE_IPS)}},
    ) in [(d["Resource"], d["Condition"]) for d in denies]


def test_without_source_addresses_the_api_has_no_policy(dev_template: Template) -> None:
    if any(i.webhook and i.webhook.source_ips for i in INTEGRATIONS):
        pytest.skip("a registered webhook declares source addresses")
    assert "Policy" not in next(iter(resources(dev_template, "AWS::ApiGateway::RestApi").values()))["Properties"]


def test_execute_api_resource() -> None:
    assert execute_api_resource("/webhooks/inpost/{token}", "post") == "execute-api:/*/POST/webhooks/inpost/*"
    assert execute_api_resource("/webhooks/shop/orders/", "POST") == "execute-api:/*/POST/webhooks/shop/orders"


@pytest.mark.parametrize("bad", ["91.216.25.0/33", "91.216.25.1/24", "inpost.pl", ""])
def test_malformed_source_addresses_are_refused(code_dir: Path, bad: str) -> None:
    webhook = TOKEN_WEBHOOK.webhook
    assert webhook is not None
    broken = Integration(
        name="sample-broken",
        description="x",
        source="carrier",
        package="tests.infra.sample_broken",
        trigger=WebhookTrigger(path=webhook.path, scheme="shipx", secret=webhook.secret, source_ips=(bad,)),
        targets=TOKEN_WEBHOOK.targets,
    )
    with pytest.raises(ValueError, match="source_ips"):
        JunctionStack(
            cdk.App(),
            "broken",
            stage="dev",
            settings=StageSettings(),
            integrations=(broken,),
            ingress_code_dir=code_dir,
            processor_code_dir=code_dir,
        )


def test_cdk_nag_reports_nothing_on_the_operations_layer(subscribed: tuple[JunctionStack, Template]) -> None:
    stack, _ = subscribed
    annotations = Annotations.from_stack(stack)
    assert annotations.find_error("*", NAG) == []
    assert annotations.find_warning("*", NAG) == []


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("part", ["template", "observability"])
def test_the_stage_stacks_fit_cloudformations_limits(stage: str, part: str, request: pytest.FixtureRequest) -> None:
    """500 resources (the synth refuses more) and a 1 MB template, for the main stack and its nested
    stack of alarms and dashboards alike: how close the registry is."""
    template: Template = request.getfixturevalue(f"{stage}_{part}")
    count = len(template.to_json()["Resources"])
    assert 0 < count <= 500
    assert len(json.dumps(template.to_json(), separators=(",", ":"))) < 1_000_000
    # CloudFormation's 200 parameters: the nested stack takes the topic's ARN and the HTTP API's id
    # only, the alarms and dashboards name queues and functions by their physical names.
    assert len(template.to_json().get("Parameters", {})) <= 2
