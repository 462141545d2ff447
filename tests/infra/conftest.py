"""Synthesized stacks, built once per test session (synth and cdk-nag take several seconds)."""

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
from shared.declaration import Integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


def synth_stack(stage: str, integrations: Sequence[Integration] = INTEGRATIONS) -> JunctionStack:
    """The stack exactly as ``cdk synth -c stage=<stage>`` builds it (cdk.json context, cdk-nag on)."""
    app = cdk.App(context={**cdk_context(), "stage": stage})
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
