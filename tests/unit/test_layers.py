"""Layering rules, checked on the source: shared/ never imports functions/ or infra/, and code
that runs inside Lambda never imports aws_cdk, moto or the local runtime. (boto3 is for
processors only: tests/unit/test_coldstart_imports.py keeps it off the ingress path.)"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_never_imports_functions_infra_or_the_local_runtime(path: Path) -> None:
    bad = {m for m in _imports(path) if m.split(".")[0] in {"functions", "infra", "junction_local"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _sources("shared", "functions"), ids=lambda p: str(p.relative_to(ROOT)))
def test_lambda_code_never_imports_cdk_or_the_local_runtime(path: Path) -> None:
    forbidden = {"aws_cdk", "constructs", "cdk_nag", "moto", "infra", "junction_local"}
    bad = {m for m in _imports(path) if m.split(".")[0] in forbidden}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
