"""The order route as deployed: every order source (Shopify and WooCommerce webhooks, the Allegro
poller) feeds exactly its own three target queues (ERP, HubSpot, ShipBob), and each target's
processor reaches the order's cross-reference, its own state and its account's rate budget, and
nothing of any other integration.

Table access is checked by matching concrete partition keys against the statements'
``dynamodb:LeadingKeys`` patterns the way IAM's ``StringLike`` does (``*`` any run, ``?`` one
character), so a pattern that is too wide fails here even when it is the one the code asked for."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest
from aws_cdk.assertions import Template

from functions.orders.targets import ORDER_TARGETS
from functions.registry import INTEGRATIONS
from functions.woocommerce_orders.declaration import INTEGRATION as WOOCOMMERCE_ORDERS
from infra.stack import JunctionStack, construct_id, target_key
from shared import state_keys
from shared.declaration import Integration, Target, function_name
from tests.infra.conftest import names
from tests.infra.test_data_and_alarms import allowing, keys_of, table_statements
from tests.infra.test_stack import arn, http_routes, logical_id, ref, resources, routes

pytestmark = pytest.mark.slow

ORDER_SOURCES: list[Integration] = [i for i in INTEGRATIONS if i.targets == ORDER_TARGETS]
ORDER_PROCESSORS: list[tuple[Integration, Target]] = [(i, t) for i in ORDER_SOURCES for t in i.targets]
ORDER_PROCESSOR_IDS = [target_key(i, t) for i, t in ORDER_PROCESSORS]
STATE_WRITES = ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem")
ORDER_ID = "order:shopify:820982911946154508"


def sender(stack: JunctionStack, integration: Integration) -> Any:
    """The function that enqueues an order source's events: its ingress, or its poller."""
    return stack.ingress_functions[integration.name] if integration.webhook else stack.pollers[integration.name]


def may(patterns: list[str], key: str) -> bool:
    """Whether IAM's ``ForAllValues:StringLike`` on ``dynamodb:LeadingKeys`` lets ``key`` through."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def state_patterns(stack: JunctionStack, template: Template, fn: Any, action: str) -> list[str]:
    """Partition-key patterns under which ``fn`` may call ``action`` on the state table."""
    state = arn(stack, stack.state_table)
    return [k for s in allowing(stack, template, fn, action, state) for k in keys_of(s)]


def foreign_keys(integration: Integration, target: Target) -> list[str]:
    """Concrete keys of state that is not this processor's: every other integration's and every
    other target's status, breaker, version gate, id map, sync items and rate budget."""
    out: list[str] = []
    for i in INTEGRATIONS:
        out += [state_keys.sync_pk(i.name)]
        if i.name != integration.name:
            out += [state_keys.last_success(i.name, "erp")[0]]
        for t in i.targets:
            if (i.name, t.name) == (integration.name, target.name):
                continue
            out += [
                state_keys.breaker(i.name, t.name)[0],
                state_keys.version(i.name, t.name, "SKU-1")[0],
                state_keys.id_map(i.name, t.name, "SKU-1")[0],
            ]
            if t.rate and (target.rate is None or t.rate.account != target.rate.account):
                out += [
                    state_keys.budget(t.rate.account)[0],
                    f"{state_keys.budget(t.rate.account)[0]}#quantity-changes",
                ]
    return out


def test_the_registry_has_three_order_sources() -> None:
    assert sorted(names(ORDER_SOURCES)) == ["allegro-orders", "shopify-orders", "woocommerce-orders"]
    assert [t.name for t in ORDER_TARGETS] == ["erp", "hubspot", "shipbob"]


# ------------------------------------------------------------------------------------ fan-out
@pytest.mark.parametrize("integration", ORDER_SOURCES, ids=names(ORDER_SOURCES))
def test_each_order_source_sends_to_the_erp_and_hubspot_and_the_erp_on_to_shipbob(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration
) -> None:
    fn = sender(dev_stack, integration)
    sendable = {
        key
        for key, queue in dev_stack.queues.items()
        if allowing(dev_stack, dev_template, fn, "sqs:SendMessage", arn(dev_stack, queue))
    }
    assert sendable == {f"{integration.name}/{t}" for t in ("erp", "hubspot")}
    # ShipBob comes after the ERP: the ERP's processor sends each delivery on, nothing else does.
    erp = dev_stack.processors[f"{integration.name}/erp"]
    shipbob = arn(dev_stack, dev_stack.queues[f"{integration.name}/shipbob"])
    assert allowing(dev_stack, dev_template, erp, "sqs:SendMessage", shipbob)
    hubspot = dev_stack.processors[f"{integration.name}/hubspot"]
    assert not allowing(dev_stack, dev_template, hubspot, "sqs:SendMessage", shipbob)
    for key, dlq in dev_stack.dead_letter_queues.items():  # dead letters are the processors' to write
        assert not allowing(dev_stack, dev_template, fn, "sqs:SendMessage", arn(dev_stack, dlq)), key
    role = "ingress" if integration.webhook else "poller"
    [props] = [
        r["Properties"]
        for r in resources(dev_template, "AWS::Lambda::Function").values()
        if r["Properties"]["FunctionName"] == function_name("dev", integration, role)
    ]
    parts = props["Environment"]["Variables"]["JUNCTION_QUEUE_URLS"]["Fn::Join"][1]
    assert parts == [ref(dev_stack, dev_stack.queues[target_key(integration, t)]) for t in ORDER_TARGETS if not t.after]


def test_the_allegro_poller_is_the_dotted_module_and_writes_back_the_rotated_token(
    dev_stack: JunctionStack, dev_template: Template
) -> None:
    """Its poller module lives outside its package (``functions.orders.allegro_source``), and the
    Allegro client stores each refreshed token pair in ``allegro-api``: without PutSecretValue the
    first refresh spends the single-use refresh token and loses the authorisation."""
    allegro = next(i for i in ORDER_SOURCES if i.schedule)
    assert allegro.poller_module == "functions.orders.allegro_source"
    secret = dev_stack.secrets["allegro-api"]
    poller = dev_stack.pollers[allegro.name]
    writers = {
        key
        for key, fn in {**dev_stack.processors, **dev_stack.pollers, **dev_stack.ingress_functions}.items()
        if allowing(dev_stack, dev_template, fn, "secretsmanager:PutSecretValue", ref(dev_stack, secret))
    }
    assert writers == {allegro.name, "erp-stock-to-channels/allegro"}
    assert allowing(dev_stack, dev_template, poller, "secretsmanager:GetSecretValue", ref(dev_stack, secret))
    for other in ("shopify-admin", "erp-service-layer", "hubspot-private-app", "shipbob-api"):
        assert not allowing(
            dev_stack, dev_template, poller, "secretsmanager:GetSecretValue", ref(dev_stack, dev_stack.secrets[other])
        ), other


# ------------------------------------------------------------------------------- state table
@pytest.mark.parametrize(("integration", "target"), ORDER_PROCESSORS, ids=ORDER_PROCESSOR_IDS)
def test_order_processor_reads_and_writes_the_cross_reference(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration, target: Target
) -> None:
    fn = dev_stack.processors[target_key(integration, target)]
    for action in STATE_WRITES:
        patterns = state_patterns(dev_stack, dev_template, fn, action)
        assert may(patterns, state_keys.xref(ORDER_ID, "shopify-orders/erp")[0]), action
        assert may(patterns, state_keys.alias("4711", "erp", ORDER_ID)[0]), action  # an ERP DocEntry
        assert may(patterns, state_keys.alias("deal-88001", "hubspot", ORDER_ID)[0]), action
    # Its own status, breaker and trace items still; trace items add-only.
    assert may(
        state_patterns(dev_stack, dev_template, fn, "dynamodb:UpdateItem"), f"breaker#{integration.name}#{target.name}"
    )
    assert may(state_patterns(dev_stack, dev_template, fn, "dynamodb:PutItem"), state_keys.trace_pk(ORDER_ID))
    assert not may(state_patterns(dev_stack, dev_template, fn, "dynamodb:GetItem"), state_keys.trace_pk(ORDER_ID))


@pytest.mark.parametrize(("integration", "target"), ORDER_PROCESSORS, ids=ORDER_PROCESSOR_IDS)
def test_order_processor_touches_nothing_of_other_integrations(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration, target: Target
) -> None:
    fn = dev_stack.processors[target_key(integration, target)]
    every = [k for s in table_statements(dev_stack, dev_template, fn) for k in keys_of(s)]
    for key in foreign_keys(integration, target):
        assert not may(every, key), key
    idempotency = arn(dev_stack, dev_stack.idempotency_table)
    records = [k for s in allowing(dev_stack, dev_template, fn, "dynamodb:GetItem", idempotency) for k in keys_of(s)]
    assert may(records, f"{integration.name}#{target.name}#{ORDER_ID}#create")
    for other, t in [(i, t) for i in INTEGRATIONS for t in i.targets]:
        if (other.name, t.name) != (integration.name, target.name):
            assert not may(records, f"{other.name}#{t.name}#{ORDER_ID}#create"), target_key(other, t)


def test_without_cross_reference_a_processor_gets_no_xref_or_alias_keys(
    dev_stack: JunctionStack, dev_template: Template
) -> None:
    """The stock targets keep no cross-reference, so they may not touch the orders'."""
    stock = [(i, t) for i in INTEGRATIONS for t in i.targets if not t.cross_reference]
    assert stock
    for i, t in stock:
        fn = dev_stack.processors[target_key(i, t)]
        every = [k for s in table_statements(dev_stack, dev_template, fn) for k in keys_of(s)]
        assert not may(every, state_keys.xref(ORDER_ID, "shopify-orders/erp")[0]), target_key(i, t)
        assert not may(every, state_keys.alias("4711", "erp", ORDER_ID)[0]), target_key(i, t)


@pytest.mark.parametrize("account", ["hubspot", "shipbob"])
def test_rate_limited_order_processors_use_their_accounts_budget(
    dev_stack: JunctionStack, dev_template: Template, account: str
) -> None:
    """Every source's processor of the target spends one budget: the account's, shared."""
    users = [(i, t) for i, t in ORDER_PROCESSORS if t.rate and t.rate.account == account]
    assert sorted(i.name for i, _ in users) == sorted(names(ORDER_SOURCES))
    for i, t in users:
        fn = dev_stack.processors[target_key(i, t)]
        for action in ("dynamodb:GetItem", "dynamodb:UpdateItem"):
            assert may(state_patterns(dev_stack, dev_template, fn, action), state_keys.budget(account)[0]), action


def test_the_erp_order_processors_have_no_budget(dev_stack: JunctionStack, dev_template: Template) -> None:
    for i, t in ORDER_PROCESSORS:
        if t.rate is None:
            fn = dev_stack.processors[target_key(i, t)]
            every = [k for s in table_statements(dev_stack, dev_template, fn) for k in keys_of(s)]
            assert not [k for k in every if k.startswith(state_keys.BUDGET)], target_key(i, t)


# ----------------------------------------------------------------------------------- secrets
@pytest.mark.parametrize(("integration", "target"), ORDER_PROCESSORS, ids=ORDER_PROCESSOR_IDS)
def test_order_processor_reads_its_targets_credentials_only(
    dev_stack: JunctionStack, dev_template: Template, integration: Integration, target: Target
) -> None:
    fn = dev_stack.processors[target_key(integration, target)]
    readable = {
        name
        for name, secret in dev_stack.secrets.items()
        if allowing(dev_stack, dev_template, fn, "secretsmanager:GetSecretValue", ref(dev_stack, secret))
    }
    expected = {"erp": {"erp-service-layer"}, "hubspot": {"hubspot-private-app"}, "shipbob": {"shipbob-api"}}
    assert readable == expected[target.name]


# ------------------------------------------------------------------------------------- routes
def test_woocommerce_route(dev_stack: JunctionStack, dev_template: Template) -> None:
    """WooCommerce signs its deliveries: the route is the HTTP API's (payload format 2.0)."""
    found = http_routes(dev_template)
    integration = found["POST /webhooks/woocommerce/orders"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    ingress = logical_id(dev_stack, dev_stack.ingress_functions[WOOCOMMERCE_ORDERS.name])
    assert integration["IntegrationUri"] == {"Fn::GetAtt": [ingress, "Arn"]}
    # The WooCommerce deliveries' throttle, and the URL to paste into WooCommerce's webhook form.
    [stage] = [s["Properties"] for s in resources(dev_template, "AWS::ApiGatewayV2::Stage").values()]
    setting = stage["RouteSettings"]["POST /webhooks/woocommerce/orders"]
    assert setting["ThrottlingRateLimit"] == WOOCOMMERCE_ORDERS.webhook.throttle_rate_per_second  # type: ignore[union-attr]
    assert setting["ThrottlingBurstLimit"] == WOOCOMMERCE_ORDERS.webhook.throttle_burst  # type: ignore[union-attr]
    assert f"{construct_id(WOOCOMMERCE_ORDERS.name)}WebhookUrl" in dev_template.find_outputs("*")


def test_every_webhook_has_its_route_and_no_other_route_exists(
    dev_stack: JunctionStack, dev_template: Template
) -> None:
    found = routes(dev_template)
    expected = {
        (i.webhook.method.upper(), i.webhook.path): i for i in INTEGRATIONS if i.webhook and i.webhook.source_ips
    }
    assert set(found) == set(expected)
    for key, integration in expected.items():
        ingress = logical_id(dev_stack, dev_stack.ingress_functions[integration.name])
        assert {"Fn::GetAtt": [ingress, "Arn"]} in found[key]["Integration"]["Uri"]["Fn::Join"][1], key
    signed = http_routes(dev_template)
    expected_http = {
        f"{i.webhook.method.upper()} {i.webhook.path}": i
        for i in INTEGRATIONS
        if i.webhook and not i.webhook.source_ips
    }
    assert set(signed) == set(expected_http)
    for route_key, integration in expected_http.items():
        ingress = logical_id(dev_stack, dev_stack.ingress_functions[integration.name])
        assert signed[route_key]["IntegrationUri"] == {"Fn::GetAtt": [ingress, "Arn"]}, route_key
