"""Synthesized stacks, built once per test session (synth and cdk-nag take several seconds).

``dev_stack`` / ``prod_stack``: exactly what ``cdk synth`` builds from the registry. ``wide_stack``:
the registry's integrations plus the samples (tests/infra/samples.py), so the per-target, webhook
fan-out and schedule tests run whatever the registry holds today."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from functions.registry import INTEGRATIONS
from infra.app import build_app
from infra.stack import JunctionStack
from shared.declaration import Integration, Target
from tests.infra.samples import SAMPLES

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every integration of the wide stack, and the ways to parametrize over it.
WIDE: tuple[Integration, ...] = (*INTEGRATIONS, *SAMPLES)
TARGETS: list[tuple[Integration, Target]] = [(i, t) for i in WIDE for t in i.targets]
TARGET_IDS = [f"{i.name}/{t.name}" for i, t in TARGETS]
WEBHOOKS = [i for i in WIDE if i.webhook]
SCHEDULES = [i for i in WIDE if i.schedule]


def names(integrations: Sequence[Integration]) -> list[str]:
    return [i.name for i in integrations]


def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


# CloudFormation's limit of resources per stack, which the synth enforces. The wide stack is never
# deployed: it holds the registry and the samples together, so it may go over it.
RESOURCE_LIMIT = 500


def synth_stack(
    stage: str, integrations: Sequence[Integration] = INTEGRATIONS, *, resource_limit: int = RESOURCE_LIMIT
) -> JunctionStack:
    """The stack exactly as ``cdk synth -c stage=<stage>`` builds it (cdk.json context, cdk-nag on)."""
    context = {**cdk_context(), "stage": stage, "@aws-cdk/core:stackResourceLimit": resource_limit}
    if resource_limit > RESOURCE_LIMIT:  # CDK's own CloudFormation validation holds the limit too
        context["@aws-cdk/core:validateAgainstDefaultRules"] = False
    app = cdk.App(context=context)
    _, stack = build_app(app, integrations)
    return stack


@pytest.fixture(scope="session")
def dev_stack() -> JunctionStack:
    return synth_stack("dev")


@pytest.fixture(scope="session")
def dev_template(dev_stack: JunctionStack) -> Template:
    return Template.from_stack(dev_stack)


@pytest.fixture(scope="session")
def prod_stack() -> JunctionStack:
    return synth_stack("prod")


@pytest.fixture(scope="session")
def prod_template(prod_stack: JunctionStack) -> Template:
    return Template.from_stack(prod_stack)


@pytest.fixture(scope="session")
def wide_stack() -> JunctionStack:
    return synth_stack("dev", WIDE, resource_limit=2 * RESOURCE_LIMIT)


@pytest.fixture(scope="session")
def wide_template(wide_stack: JunctionStack) -> Template:
    return Template.from_stack(wide_stack)


# The alarms and dashboards are in the stage's nested stack (infra/observability.py).
@pytest.fixture(scope="session")
def dev_observability(dev_stack: JunctionStack) -> Template:
    return Template.from_stack(dev_stack.observability)


@pytest.fixture(scope="session")
def prod_observability(prod_stack: JunctionStack) -> Template:
    return Template.from_stack(prod_stack.observability)


@pytest.fixture(scope="session")
def wide_observability(wide_stack: JunctionStack) -> Template:
    return Template.from_stack(wide_stack.observability)


def alarm_topic_ref(stack: JunctionStack) -> dict[str, str]:
    """How the nested stack's alarms name the alarm topic: the parameter the main stack passes its
    topic's ARN in (checked here, so an alarm that names it notifies that topic)."""
    parent = Template.from_stack(stack).to_json()["Resources"]
    nested_id = stack.get_logical_id(stack.observability.nested_stack_resource)  # type: ignore[arg-type]
    passed = parent[nested_id]["Properties"]["Parameters"]
    topic = {"Ref": stack.get_logical_id(stack.alarm_topic.node.default_child)}  # type: ignore[arg-type]
    [name] = [name for name, value in passed.items() if value == topic]
    return {"Ref": name}
