"""The webhook path stays lean: importing an ingress handler loads none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from functions.registry import INTEGRATIONS

HEAVY = ("pydantic", "httpx", "boto3", "botocore", "aws_lambda_powertools", "phonenumbers", "stdnum")


@pytest.mark.parametrize("integration", [i for i in INTEGRATIONS if i.webhook], ids=lambda i: i.name)
def test_ingress_handler_imports_nothing_heavy(integration: object) -> None:
    module = integration.ingress_handler.rsplit(".", 1)[0]  # type: ignore[attr-defined]
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m.split(".")[0] for m in json.loads(out)}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
