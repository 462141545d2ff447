"""CDK entry point: ``cdk synth`` / ``cdk deploy`` run ``python -m infra.app`` (see cdk.json).

The stage comes from the ``stage`` context (``-c stage=prod``; default in cdk.json), its settings
from the ``stages`` context of cdk.json. ``runbook_base_url`` (context) is where the alarms' runbook
links point: ``<base>/docs/runbook.md#<section>``, repository-relative when unset. cdk-nag's AWS
Solutions checks run on every synth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
import cdk_nag

from functions.registry import INTEGRATIONS
from infra.stack import JunctionStack, StageSettings
from shared.declaration import Integration


def build_app(
    app: cdk.App | None = None, integrations: Sequence[Integration] = INTEGRATIONS
) -> tuple[cdk.App, JunctionStack]:
    """The app with the stage's stack and the cdk-nag checks; tests pass their own app (context)."""
    app = app or cdk.App()
    stage = str(app.node.try_get_context("stage") or "dev")
    stages: dict[str, Any] = app.node.try_get_context("stages") or {}
    if stage not in stages:
        raise ValueError(f"stage {stage!r} has no settings under 'stages' in cdk.json (known: {', '.join(stages)})")
    stack = JunctionStack(
        app,
        f"junction-{stage}",
        stage=stage,
        settings=StageSettings.from_context(stages[stage]),
        integrations=integrations,
        runbook_base_url=app.node.try_get_context("runbook_base_url") or None,
        description=f"Junction integration pipelines ({stage})",
        # Every alarm and dashboard is generated per target: without indentation the template stays
        # well inside CloudFormation's 1 MB.
        suppress_template_indentation=True,
    )
    cdk.Tags.of(stack).add("project", "junction")
    cdk.Tags.of(stack).add("stage", stage)
    cdk.Aspects.of(app).add(cdk_nag.AwsSolutionsChecks(verbose=True))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
