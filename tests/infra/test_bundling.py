"""The code assets as Lambda gets them: bytecode of the runtime's Python, valid after CDK copies the
files, byte-for-byte the same on every build, and actually used by that Python when it imports them."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import site
import subprocess
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match

from functions.registry import INTEGRATIONS
from infra import bundling
from infra.stack import JunctionStack, StageSettings
from shared.declaration import POLLER_HANDLER, PROCESSOR_HANDLER

pytestmark = pytest.mark.slow

RUNTIME_PYTHON = bundling.runtime_python()
needs_runtime_python = pytest.mark.skipif(
    RUNTIME_PYTHON is None, reason=f"no Python {bundling.PYTHON_VERSION} on this machine"
)
TAG = "cpython-" + bundling.PYTHON_VERSION.replace(".", "")
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


def pyc_of(asset: Path, source: str) -> Path:
    path = asset / source
    return path.parent / "__pycache__" / f"{path.stem}.{TAG}.pyc"


def digest(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".junction-complete"
    }


@needs_runtime_python
@pytest.mark.parametrize(
    "source",
    ["shared/processing.py", "functions/registry.py", "pydantic/__init__.py", "pydantic/main.py", "httpx/__init__.py"],
)
def test_processor_asset_ships_unchecked_hash_bytecode(dev_stack: JunctionStack, source: str) -> None:
    asset = dev_stack.processor_code_dir
    pyc = pyc_of(asset, source)
    assert pyc.is_file(), f"{source} has no {TAG} bytecode in the processor asset"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == UNCHECKED_HASH
    assert bundling.asset_bytecode(asset).startswith(f"pyc-cpython-{bundling.PYTHON_VERSION}.")


@needs_runtime_python
def test_every_source_file_has_bytecode_of_the_runtime_and_no_other(dev_stack: JunctionStack) -> None:
    for asset in (dev_stack.ingress_code_dir, dev_stack.processor_code_dir):
        tags = {p.name.split(".")[-2] for p in asset.rglob("*.pyc")}
        assert tags == {TAG}, asset
        for package in bundling.SOURCE_PACKAGES:
            for source in (asset / package).rglob("*.py"):
                assert pyc_of(asset, str(source.relative_to(asset))).is_file(), source


@needs_runtime_python
def test_runtime_python_imports_the_processor_asset_from_its_bytecode(dev_stack: JunctionStack, tmp_path: Path) -> None:
    """The generic handler module and every declared flow and poller module, as Lambda imports them.
    Python 3.13 (``-v``) reports '<pyc> matches <source>' for every module it loads from bytecode and
    'code object from <source>.py' for one it compiles. Run from the asset as built (on another
    architecture: the same files, with the compiled extensions of this machine); the runtime's boto3
    comes from this virtualenv."""
    assert RUNTIME_PYTHON is not None
    asset = bundling.host_twin(dev_stack.processor_code_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_CORE_", "COVERAGE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(asset), *site.getsitepackages()])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    modules = [
        "pydantic.main",
        "shared.processing",
        *sorted({handler.rsplit(".", 1)[0] for handler in (PROCESSOR_HANDLER, POLLER_HANDLER)}),
        *(i.flow_module(t) for i in INTEGRATIONS for t in i.targets),
        *(i.poller_module for i in INTEGRATIONS if i.poller_module),
    ]
    proc = subprocess.run(
        [RUNTIME_PYTHON[0], "-S", "-P", "-v", "-c", f"import {', '.join(modules)}"],
        env=env,
        cwd=tmp_path,  # not the checkout: its shared/ must not shadow the asset's
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = re.escape(str(asset))
    from_bytecode = set(re.findall(rf"^# {root}/\S+\.pyc matches {root}/(\S+\.py)$", proc.stderr, re.MULTILINE))
    compiled = re.findall(rf"^# code object from {root}/(\S+\.py)$", proc.stderr, re.MULTILINE)
    assert {"shared/processing.py", "pydantic/main.py", "pydantic/__init__.py"} <= from_bytecode
    assert compiled == [], f"compiled at import instead of read from the asset's bytecode: {compiled}"


@needs_runtime_python
def test_bytecode_is_the_same_on_every_build(
    dev_stack: JunctionStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilt elsewhere (other directory, other timestamps), the ingress asset is byte-for-byte the
    same, so CDK's asset hash does not change between synths."""
    monkeypatch.setattr(bundling, "BUILD_DIR", tmp_path / "build")
    rebuilt = bundling.ingress_asset_dir()
    assert rebuilt.name == dev_stack.ingress_code_dir.name
    assert digest(rebuilt) == digest(dev_stack.ingress_code_dir)
    assert any(name.endswith(f".{TAG}.pyc") for name in digest(rebuilt))


def _module_file(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def our_imports(root: Path, modules: list[str]) -> set[str]:
    """``modules`` and every module of our packages they import, transitively (read from the source)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen or not _module_file(root, module).is_file():
            continue
        seen.add(module)
        path = _module_file(root, module)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            found = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""  # from .x / ..x
                source = ".".join(p for p in (base, node.module or "") if p)
                found = [source] + [f"{source}.{a.name}" for a in node.names]
            todo += [m for m in found if m.split(".")[0] in bundling.SOURCE_PACKAGES]
    return seen


def test_every_declared_module_and_what_it_imports_is_in_the_assets(dev_stack: JunctionStack) -> None:
    """The flows (``functions.orders.to_hubspot``), the pollers (``functions.orders.allegro_source``),
    the ingress handlers and the connectors they use are where Lambda imports them from."""
    root = bundling.REPO_ROOT
    handlers = [h.rsplit(".", 1)[0] for h in (PROCESSOR_HANDLER, POLLER_HANDLER)]
    processor = [*handlers, *(i.flow_module(t) for i in INTEGRATIONS for t in i.targets)]
    processor += [i.poller_module for i in INTEGRATIONS if i.poller_module]
    ingress = [i.ingress_handler.rsplit(".", 1)[0] for i in INTEGRATIONS if i.ingress_handler]
    for asset, modules in ((dev_stack.processor_code_dir, processor), (dev_stack.ingress_code_dir, ingress)):
        needed = our_imports(root, modules)
        assert set(modules) <= needed, "a declared module is missing from the source tree"
        for module in needed:
            assert _module_file(asset, module).is_file(), f"{module} is not in {asset.name}"
    assert {"functions.orders.to_hubspot", "shared.connectors.hubspot", "shared.connectors.shipbob"} <= our_imports(
        root, processor
    )
    assert "functions.woocommerce_orders.ingress" in our_imports(root, ingress)


def test_cache_keys_follow_the_bytecode() -> None:
    deps = bundling.runtime_dependencies()
    none = bundling.Bytecode(None, None)
    v0 = bundling.Bytecode("/opt/python3.13", "3.13.0")
    v1 = bundling.Bytecode("/opt/python3.13", "3.13.1")
    assert len({bundling.dependencies_hash(deps, c) for c in (none, v0, v1)}) == 3
    assert len({bundling.source_hash(bundling.REPO_ROOT, c) for c in (none, v0, v1)}) == 3
    assert none.tag == "no-pyc" and "3.13.0" in v0.tag


def test_no_runtime_python_is_a_loud_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(bundling, "runtime_python_candidates", lambda version=None: [str(tmp_path / "python")])
    assert bundling.runtime_python() is None
    compiler = bundling.bytecode.__wrapped__()
    assert compiler == bundling.Bytecode(None, None)
    assert "NO BYTECODE" in capsys.readouterr().err

    monkeypatch.setattr(bundling, "BUILD_DIR", tmp_path / "build")
    asset = bundling.ingress_asset_dir(compiler=compiler)
    assert not list(asset.rglob("*.pyc"))
    assert bundling.asset_bytecode(asset) == "no-pyc"

    stack = JunctionStack(
        cdk.App(),
        "no-bytecode",
        stage="dev",
        settings=StageSettings(),
        ingress_code_dir=asset,
        processor_code_dir=asset,
    )
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(".*no Python 3.13 bytecode.*"))
    assert len(warnings) == 2  # ingress and processor


def test_a_wrong_interpreter_version_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    found = bundling.runtime_python("3.13")
    if found is not None:
        assert found[1].startswith("3.13.")
    monkeypatch.setattr(bundling, "runtime_python_candidates", lambda version=None: ["/bin/false"])
    assert bundling.runtime_python("3.13") is None
