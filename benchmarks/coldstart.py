"""Cold start of every Junction function: fresh interpreter -> first response, median of N runs.

For each integration in ``functions.registry.INTEGRATIONS`` this runs the ingress handler (when the
integration has a webhook) and, for each of its targets, the generic processor handler
(``PROCESSOR_HANDLER``, told its integration and target by ``JUNCTION_INTEGRATION`` and
``JUNCTION_TARGET`` as deployed) in a brand-new ``python -c`` process, on a sample event, against
local stand-ins only (127.0.0.1), booted by the local runtime's one boot without its function hosts
(``LocalRuntime(functions=False)``): moto, the local SQS + DynamoDB stand-in and each declared
target's stand-in. The events, their signed headers and the check that they arrived come from the
stand-ins' declarations (``junction_local.standins``): the benchmark names no provider, and a new
integration needs nothing here. A scheduled integration's processors are not measured (reported
as such): a sample message for them needs a change at the polled source, which no stand-in
declaration makes generically yet.

Measured per run:

* cold start: parent's wall clock just before the process is spawned -> the moment the child's
  handler returned its first response (the child reports ``time.time()`` right after it);
* import: the child's ``perf_counter`` around importing the handler module;
* invoke: the child's ``perf_counter`` around the first handler call;
* peak RSS: the child's own high-water mark right after the response (``VmHWM``; ``ru_maxrss``
  of a spawned child can carry the parent's).

By default a child runs what is deployed (``--as-deployed``): the Lambda runtime's Python version
(``infra.bundling.runtime_python``, 3.13 from pyenv here) on the asset directories infra/bundling.py
builds, with the bytecode they ship (none is written), plus the runtime's own boto3 when the asset
has none. On a machine of another architecture than Lambda's the compiled extensions (pydantic-core)
are the same versions' wheels for this one (``infra.bundling.host_twin``); everything else is the
asset's own files. ``--checkout`` runs the checkout with this interpreter instead (packages as
bundled, ``python -S``, see ``interpreter`` and ``absent_modules``, bytecode cached by a warm-up
round); ``--whole-venv`` and ``--no-bytecode`` change that. Every response is checked (ingress:
202; processor: no batch item failures and exactly one new effect in the target's stand-in); anything else
ends the benchmark with exit status 2. Processors are reported as
``<integration>/<target>-processor`` (the role in the deployed function's name).

Usage: ``make bench-coldstart`` or ``python benchmarks/coldstart.py [--runs 7] [--json] [--check]``;
``--imports`` also measures the import cost of reference libraries. See docs/coldstart.md.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the repository importable without an install
    sys.path.insert(0, str(REPO))

from functions.registry import INTEGRATIONS  # noqa: E402
from junction_local.runtime import STAGE  # noqa: E402 - the local runtime's stage: its resources' names
from shared.declaration import PROCESSOR_HANDLER, Integration, Target, function_name  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.preparations import Facts, World
    from junction_local.runtime import LocalRuntime
    from junction_local.standins import Sender

REGION = "eu-central-1"
BUDGET_MS = {"ingress": 150.0, "processor": 600.0}
CHILD_TIMEOUT_SECONDS = 120

# Put first in every child: packages installed here but absent from the function's Lambda asset
# (JUNCTION_COLDSTART_ABSENT, comma-separated top-level names) cannot be imported, as on Lambda.
# Without it the processor would pay for optional imports the asset cannot make (httpx imports
# its command line, and with it rich, whenever rich is installed, as it is here for the ops CLI).
NOT_BUNDLED = r"""
import os as _os, sys as _sys
_absent = frozenset(filter(None, _os.environ.get("JUNCTION_COLDSTART_ABSENT", "").split(",")))
class _NotBundled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _absent:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the function's asset)", name=name)
        return None
if _absent:
    _sys.meta_path.insert(0, _NotBundled)
"""

# Runs in the fresh interpreter. Only the standard library is loaded before the handler module.
CHILD_CODE = (
    r"""
import time
t_start = time.time()
"""
    + NOT_BUNDLED
    + r"""
import importlib, json, resource, sys
handler_path, event_path, result_path, name, timeout, memory = sys.argv[1:7]
with open(event_path, encoding="utf-8") as f:
    event = json.load(f)
module_name, _, attr = handler_path.rpartition(".")
t0 = time.perf_counter()
handler = getattr(importlib.import_module(module_name), attr)
t1 = time.perf_counter()
imported = sorted({m.partition(".")[0] for m in sys.modules if not m.startswith("_")} - set(sys.stdlib_module_names))
class LambdaContext:  # the parts of Lambda's context handlers use (as junction_local.events has it)
    def __init__(self, function_name, timeout_seconds, memory_mb):
        import uuid
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self._deadline = time.monotonic() + timeout_seconds
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))
context = LambdaContext(name, int(timeout), int(memory))
t2 = time.perf_counter()
response = handler(event, context)
t3 = time.perf_counter()
t_resp = time.time()
try:  # this process's own high-water mark; ru_maxrss can carry the spawning parent's (vfork + exec)
    with open("/proc/self/status", encoding="ascii") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration, ValueError):
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(result_path, "w", encoding="utf-8") as f:
    json.dump({"t_start": t_start, "t_resp": t_resp, "import_ms": (t1 - t0) * 1000,
               "invoke_ms": (t3 - t2) * 1000, "rss_kib": rss_kib, "response": response,
               "imported": imported}, f)
"""
)

# Reference import costs for docs/coldstart.md (``--imports``).
IMPORT_SNIPPETS: tuple[tuple[str, str], ...] = (
    ("empty interpreter (pass)", "pass"),
    ("boto3 + SQS client", 'import boto3; boto3.client("sqs", region_name="eu-central-1")'),
    ("pydantic", "import pydantic"),
    ("httpx", "import httpx"),
    ("powertools Logger", "import aws_lambda_powertools; from aws_lambda_powertools import Logger"),
    (
        "boto3 + powertools + pydantic + httpx",
        'import boto3; boto3.client("sqs", region_name="eu-central-1"); import aws_lambda_powertools; '
        "from aws_lambda_powertools import Logger; import pydantic; import httpx",
    ),
)
IMPORT_SNIPPETS += tuple(
    (module, f"import {module}")
    for module in dict.fromkeys(
        [
            *(i.ingress_handler.rsplit(".", 1)[0] for i in INTEGRATIONS if i.ingress_handler is not None),
            PROCESSOR_HANDLER.rsplit(".", 1)[0],
            *(i.flow_module(t) for i in INTEGRATIONS for t in i.targets),
        ]
    )
)
IMPORT_CHILD = (
    NOT_BUNDLED
    + r"""
import time, sys
t0 = time.perf_counter()
exec(sys.argv[1])
t1 = time.perf_counter()
with open("/proc/self/status", encoding="ascii") as f:
    rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print((t1 - t0) * 1000, rss_kib)
"""
)
# What the Lambda Python runtime itself provides next to the asset: the AWS SDK.
LAMBDA_RUNTIME_PACKAGES = ("boto3",)


class BenchmarkError(Exception):
    """A handler did not answer as expected: the figures would be meaningless."""


# -- what a function's Lambda asset contains (infra/bundling.py) -----------------------------------


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with their own dependencies (markers honoured)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if _dist_key(req.name) in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(_dist_key(req.name))
        try:
            todo += [Requirement(r) for r in distribution(req.name).requires or []]
        except PackageNotFoundError:
            continue
    return seen


def _top_level_names(dist: Any) -> set[str]:
    names: set[str] = set()
    for file in dist.files or []:
        parts = Path(file).parts
        top = parts[0]
        if top.startswith("..") or top.endswith((".dist-info", ".egg-info")) or top == "__pycache__":
            continue
        if len(parts) > 1:
            names.add(top)
        elif top.endswith(".py"):
            names.add(top[:-3])
        elif top.endswith((".so", ".pyd")):
            names.add(top.split(".")[0])
    return {n for n in names if n.isidentifier()}


def absent_modules(kind: str) -> list[str]:
    """Top-level modules installed here that the ``kind`` function's asset does not contain.

    The ingress asset is ``shared/`` + ``functions/`` only; the processor's adds the runtime
    dependencies of pyproject.toml; both run next to the runtime's own boto3.
    """
    from importlib.metadata import distributions

    bundled = list(LAMBDA_RUNTIME_PACKAGES)
    if kind == "processor":
        bundled += tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    keep = _closure(bundled) | {"junction"}  # junction: this project, imported from the checkout
    present: set[str] = set()
    absent: set[str] = set()
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        (present if _dist_key(name) in keep else absent).update(_top_level_names(dist))
    return sorted(absent - present - set(sys.stdlib_module_names) - {"_distutils_hack"})


# -- sample events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A delivery for an integration as its source system makes it, from the stand-ins'
    declarations (junction_local.standins): the source's event for business entity ``n`` and the
    headers its sender signs it with, sent to the webhook's route (its path token filled in with
    the secret, as the source's URL holds it). Ingress puts it on every target's queue; each
    target's stand-in shows it arrived there.

    ``prepared`` is what a processor run sends: the event made real on the source's side, with
    what the targets must hold first (benchmarks/preparations.py)."""

    event: Callable[[int], dict[str, Any]]  # n -> payload of a distinct business entity
    sender: Sender  # signs and dates a body as the source does
    integration: Integration
    secret: str  # the webhook secret the sender signs with (a path token: the URL's last segment)
    # Added to a prepared entity's number: each integration's orders, transactions and shipments
    # are its own (two integrations' runs never prepare the same shop order).
    base: int = 0

    @classmethod
    def of(cls, integration: Integration, sender: Sender, secret: str | None = None) -> Sample:
        from junction_local.standins import source

        declared = source(integration.source)
        names = [i.name for i in INTEGRATIONS]
        base = 10_000 * (1 + names.index(integration.name)) if integration.name in names else 0
        return cls(declared.event, sender, integration, secret or declared.signing_secret, base)

    def body(self, n: int) -> bytes:
        """The raw body, serialised as the source sends it (compact JSON)."""
        return self.encode(self.event(n))

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        return self.sender.headers(body, delivery_id)

    def route(self) -> tuple[str, str | None, dict[str, str] | None]:
        """The request path, the route's template and its path parameters (the path token)."""
        webhook = self.integration.webhook
        assert webhook is not None
        token = webhook.path_token
        if token is None:
            return webhook.path, None, None
        return webhook.path.replace("{" + token + "}", self.secret), webhook.path, {token: self.secret}

    def delivery_id(self, body: bytes, headers: dict[str, str]) -> str:
        """The delivery id ingress gives this request: the source's own (an event id in the body,
        a body digest, ...), as the integration's verifier reads it."""
        from shared.webhooks import Headers, verifier_for

        webhook = self.integration.webhook
        assert webhook is not None
        verified = verifier_for(webhook.scheme).verify(
            Headers(headers), body, [self.secret], now=time.time(), tolerance=webhook.timestamp_tolerance_seconds
        )
        return verified.delivery_id

    def prepared(self, n: int, shop: str | None, world: World) -> tuple[bytes, Facts]:
        """The body a processor run sends for entity ``n`` (about an order of ``shop``), made real
        on the source's side, and what the targets must hold before it reaches them."""
        from benchmarks.preparations import Facts, source_event

        made = source_event(self.integration.source, self.base + n, shop, world)
        if made is None:
            return self.body(n), Facts()
        payload, facts = made
        return self.encode(payload), facts


def effects(runtime: LocalRuntime, system: str) -> int:
    """How many effects the target stand-in holds: its declared ``effect_count`` and the other
    counters of effects its summary keeps (benchmarks/preparations.py)."""
    from benchmarks.preparations import effect_counts
    from junction_local.standins import target

    declared = target(system)
    if not declared.effect_count:
        raise BenchmarkError(f"the {system!r} stand-in declares no effect_count: cannot see a delivery arrive")
    summary = runtime.target_summary(system)
    return sum(int(summary.get(name, 0)) for name in effect_counts(system, declared.effect_count))


def requests_served(runtime: LocalRuntime, system: str) -> int:
    """The requests the target stand-in has answered (its summary's ``requests``)."""
    return int(runtime.target_summary(system).get("requests", 0))


def _check_declared(integrations: tuple[Integration, ...]) -> None:
    """Every measured integration's source and targets have a local stand-in (junction_local/standins)."""
    from junction_local.standins import source, target

    for integration in integrations:
        try:
            if integration.webhook is not None:
                source(integration.source)
            for t in integration.targets:
                target(t.name)
        except (KeyError, TypeError) as exc:
            raise BenchmarkError(f"{integration.name}: {exc}") from None


# -- measurement -------------------------------------------------------------------------------


@dataclass
class Run:
    cold_start_ms: float
    startup_ms: float  # spawn -> first line of the child's code (interpreter start)
    import_ms: float
    invoke_ms: float
    rss_kib: int
    outcome: str
    imported: list[str] = field(default_factory=list)  # top-level non-stdlib modules the handler import loaded


@dataclass
class FunctionResult:
    integration: str
    kind: str  # "ingress" | "processor"
    handler: str
    budget_ms: float
    target: str | None = None  # a processor's target
    runs: list[Run] = field(default_factory=list)

    @staticmethod
    def verdict_for(cold_start_ms: float, budget_ms: float) -> str:
        """PASS when the median cold start is within the budget, else OVER."""
        return "PASS" if cold_start_ms <= budget_ms else "OVER"

    @property
    def name(self) -> str:
        """``<integration>/ingress`` or ``<integration>/<target>-processor``: the deployed function's role."""
        role = f"{self.target}-{self.kind}" if self.target else self.kind
        return f"{self.integration}/{role}"

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(r, attribute) for r in self.runs))

    @property
    def verdict(self) -> str:
        return self.verdict_for(self.median("cold_start_ms"), self.budget_ms)

    def as_dict(self) -> dict[str, Any]:
        cold = [r.cold_start_ms for r in self.runs]
        return {
            "function": self.name,
            "integration": self.integration,
            "kind": self.kind,
            "target": self.target,
            "handler": self.handler,
            "runs": len(self.runs),
            "cold_start_ms": {
                "median": round(self.median("cold_start_ms"), 1),
                "min": round(min(cold), 1),
                "max": round(max(cold), 1),
            },
            "startup_ms": round(self.median("startup_ms"), 1),
            "import_ms": round(self.median("import_ms"), 1),
            "invoke_ms": round(self.median("invoke_ms"), 1),
            "peak_rss_mib": round(self.median("rss_kib") / 1024, 1),
            "budget_ms": self.budget_ms,
            "verdict": self.verdict,
            "outcomes": [r.outcome for r in self.runs],
            "imports": self.runs[-1].imported if self.runs else [],
        }


def interpreter(*, as_bundled: bool) -> list[str]:
    """The command that starts a fresh interpreter.

    As bundled, the code is found on ``sys.path`` the way a Lambda asset's is, without this
    checkout's editable install: ``-S`` skips site-packages' .pth files (the editable-install
    finder, coverage's hook), and ``PYTHONPATH`` (see child_env) lists the checkout and
    site-packages instead."""
    return [sys.executable, "-S"] if as_bundled else [sys.executable]


def child_env(extra: Mapping[str, str], pycache: str, *, as_bundled: bool) -> dict[str, str]:
    """The parent's environment plus ``extra``, minus anything that would slow the child down without
    being part of a cold start (coverage started in subprocesses by pytest-cov).

    Bytecode is under the benchmark's control, whatever the shell says: every .pyc is read from
    and written to the private ``pycache`` (see drop_asset_bytecode).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    if as_bundled:
        import site

        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *site.getsitepackages()])
    env.update(extra)
    return env


def drop_asset_bytecode(pycache: str, *envs: dict[str, str]) -> None:
    """For ``--no-bytecode``, after the warm-up: forget the .pyc of the checkout and of site-packages
    (what a Lambda asset built by infra/bundling.py carries, without .pyc) and write none from now
    on. The standard library's stay cached, as they are in the Lambda runtime."""
    import site

    for root in (REPO, *map(Path, site.getsitepackages())):
        shutil.rmtree(Path(pycache, *root.resolve().parts[1:]), ignore_errors=True)
    for env in envs:
        env["PYTHONDONTWRITEBYTECODE"] = "1"


def run_child(
    python: list[str],
    handler: str,
    event: dict[str, Any],
    env: Mapping[str, str],
    *,
    name: str,
    timeout: int,
    memory: int,
    cwd: Path = REPO,
) -> tuple[Run, Any]:
    """One fresh interpreter: import the handler, call it once, report. Returns the run and the response."""
    with tempfile.TemporaryDirectory(prefix="junction-coldstart-") as tmp:
        event_path, result_path = Path(tmp, "event.json"), Path(tmp, "result.json")
        event_path.write_text(json.dumps(event), encoding="utf-8")
        argv = [*python, "-c", CHILD_CODE, handler, str(event_path), str(result_path), name]
        argv += [str(timeout), str(memory)]
        t0 = time.time()
        proc = subprocess.run(
            argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=False
        )
        if proc.returncode != 0 or not result_path.exists():
            raise BenchmarkError(
                f"{handler}: child exited with {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        result = json.loads(result_path.read_text(encoding="utf-8"))
    run = Run(
        cold_start_ms=(result["t_resp"] - t0) * 1000,
        startup_ms=(result["t_start"] - t0) * 1000,
        import_ms=result["import_ms"],
        invoke_ms=result["invoke_ms"],
        rss_kib=int(result["rss_kib"]),
        outcome="",
        imported=list(result.get("imported", [])),
    )
    if run.cold_start_ms <= 0 or run.rss_kib <= 0:
        raise BenchmarkError(f"{handler}: implausible figures {run}")
    return run, result["response"]


def wall_ms(argv: list[str], env: Mapping[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=dict(env), cwd=REPO, check=True, capture_output=True, timeout=CHILD_TIMEOUT_SECONDS)
    return (time.perf_counter() - t0) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


# -- the local stand-ins -------------------------------------------------------------------------


@dataclass
class Stack:
    resources: Any
    runtime: Any  # junction_local.runtime.LocalRuntime without function hosts: the stand-ins
    sqs: Any  # boto3 SQS client
    python: list[str]  # starts a fresh interpreter
    env: dict[str, str]  # the children's environment, before the function's own variables
    absent: dict[str, str]  # kind -> JUNCTION_COLDSTART_ABSENT ("" with the whole virtualenv)
    pycache: str = ""  # the children's PYTHONPYCACHEPREFIX
    paths: dict[str, str] = field(default_factory=dict)  # kind -> PYTHONPATH (as deployed: the asset)
    cwd: Path = REPO  # the children's working directory
    made: dict[str, Any] = field(default_factory=dict)  # what the preparations made once

    def shop_of(self, system: str) -> str | None:
        """The shop whose orders a run against ``system`` is about: the target itself when it
        holds a shop's orders, else None (the source's default)."""
        from benchmarks.preparations import SHOPS

        return system if system in SHOPS else None

    def world(self, sender: Sender) -> World:
        """What the preparations reach: the stand-ins, by system, and the source's sender."""
        from benchmarks.preparations import World
        from junction_local.standins import target

        def root(system: str) -> str:
            return str(self.runtime.target_url(system))

        return World(root, lambda system: root(system) + target(system).control_path, sender, self.made)

    def apply_settings(self) -> None:
        """The stand-in settings the benchmark runs with (benchmarks/preparations.py SETTINGS)."""
        from benchmarks.preparations import SETTINGS, control
        from junction_local.standins import target

        for system, settings in SETTINGS.items():
            if system in self.runtime.state["targets"]:
                control(self.runtime.target_url(system) + target(system).control_path + "/settings", settings)

    def function_env(self, integration: Integration, role: str) -> dict[str, str]:
        """The environment of the integration's function ``role`` ("ingress", "<target>-processor"),
        as the stack sets it (junction_local.provision), in the asset of its kind."""
        kind = "ingress" if role == "ingress" else "processor"
        env = {
            **self.env,
            **self.resources.function_env(integration, role),
            "JUNCTION_COLDSTART_ABSENT": self.absent[kind],
        }
        if kind in self.paths:
            env["PYTHONPATH"] = self.paths[kind]
        return env


@dataclass(frozen=True)
class Deployed:
    """What Lambda runs: the runtime's Python version on the built asset directories."""

    python: str
    version: str
    paths: dict[str, str]  # kind -> PYTHONPATH
    assets: dict[str, str]  # kind -> asset directory (as built by infra/bundling.py)
    bytecode: bool

    @property
    def argv(self) -> list[str]:
        # -s: no user site-packages; -P: the working directory is not put on sys.path.
        return [self.python, "-s", "-P"]


def runtime_sdk_dir() -> Path:
    """boto3 as the Lambda runtime provides it next to the asset, compiled by the runtime's Python."""
    from infra import bundling

    compiler = bundling.bytecode()
    final = bundling.BUILD_DIR / f"runtime-sdk-{os.uname().machine}-{compiler.tag}"
    if (final / ".junction-complete").exists():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-sdk-", dir=bundling.BUILD_DIR))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    cmd += ["--platform", bundling.host_platform(), "--implementation", "cp", "--python-version"]
    cmd += [bundling.PYTHON_VERSION, "--only-binary=:all:", "--target", str(tmp), *LAMBDA_RUNTIME_PACKAGES]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchmarkError(f"could not install the runtime's {', '.join(LAMBDA_RUNTIME_PACKAGES)}:\n{result.stderr}")
    bundling.compile_bytecode(tmp, compiler, strict=False)
    (tmp / ".junction-complete").touch()
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _without_bytecode(directory: Path, into: Path) -> Path:
    """A hard-linked copy of ``directory`` without any ``__pycache__`` (an asset built without bytecode)."""
    shutil.copytree(directory, into, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def deployed(*, bytecode: bool, scratch: Path) -> Deployed:
    """The runtime's Python and the assets as built; ``bytecode=False``: the same assets without .pyc."""
    from infra import bundling

    found = bundling.runtime_python()
    if found is None:
        raise BenchmarkError(
            f"no Python {bundling.PYTHON_VERSION} here (pyenv or ${bundling.RUNTIME_PYTHON_ENV}): cannot run the "
            "assets as deployed; --checkout measures the checkout with this interpreter"
        )
    assets = {"ingress": bundling.ingress_asset_dir(), "processor": bundling.processor_asset_dir()}
    sdk = runtime_sdk_dir()
    paths: dict[str, str] = {}
    for kind, asset in assets.items():
        runnable = bundling.host_twin(asset)
        if not bytecode:
            runnable = _without_bytecode(runnable, scratch / kind)
        extra = [] if (asset / "boto3").is_dir() else [str(sdk)]
        paths[kind] = os.pathsep.join([str(runnable), *extra])
    return Deployed(found[0], found[1], paths, {k: str(v) for k, v in assets.items()}, bytecode)


def deployed_env(aws_env: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without anything Python-specific (a Lambda function has none), no
    coverage hooks, and no bytecode written: Lambda's code directory is read-only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_CORE_", "COVERAGE_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(aws_env)
    return env


@contextmanager
def local_stack(
    integrations: tuple[Integration, ...], *, as_bundled: bool, runtime: Deployed | None = None
) -> Iterator[Stack]:
    """The local runtime's one boot without function hosts: moto (Secrets Manager, S3), the local
    SQS + DynamoDB stand-in and every declared target's stand-in, on 127.0.0.1, with the
    integrations' resources and the secrets the stand-ins declare."""
    import boto3

    from junction_local.runtime import LocalRuntime

    if integrations != INTEGRATIONS:
        raise BenchmarkError("the local runtime boots every declared integration")
    state_dir = tempfile.mkdtemp(prefix="junction-coldstart-local-")  # not .junction: `make up` may be running
    pycache = tempfile.mkdtemp(prefix="junction-coldstart-pycache-")
    local = LocalRuntime(state_dir=Path(state_dir), functions=False)
    try:
        local.start()
        aws_env = dict(local.state["aws_env"])
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.update(aws_env)
        sqs = boto3.client("sqs", region_name=REGION)
        resources = local.resources
        if runtime is not None:
            absent = {"ingress": "", "processor": ""}
            env = deployed_env(aws_env)
            yield Stack(resources, local, sqs, runtime.argv, env, absent, pycache, runtime.paths, Path(pycache))
            return
        absent = {kind: ",".join(absent_modules(kind)) if as_bundled else "" for kind in ("ingress", "processor")}
        env = child_env(aws_env, pycache, as_bundled=as_bundled)
        yield Stack(resources, local, sqs, interpreter(as_bundled=as_bundled), env, absent, pycache)
    finally:
        local.stop()
        shutil.rmtree(pycache, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)


def _drain(sqs: Any, queue_url: str) -> None:
    """Delete whatever the ingress runs left on the queue."""
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


# -- the benchmark -------------------------------------------------------------------------------


def ingress_run(integration: Integration, sample: Sample, stack: Stack) -> Run:
    """One cold ingress: a signed delivery, answered 202 (or the route's declared acceptance)."""
    from junction_local.events import apigw_event

    assert integration.webhook is not None and integration.ingress_handler is not None
    body = sample.body(0)
    headers = sample.headers(body, f"bench-ingress-{uuid.uuid4()}")
    path, resource, parameters = sample.route()
    run, response = run_child(
        stack.python,
        integration.ingress_handler,
        apigw_event("POST", path, headers, body, stage=STAGE, resource=resource, path_parameters=parameters),
        stack.function_env(integration, "ingress"),
        name=function_name(STAGE, integration, "ingress"),
        timeout=integration.ingress.timeout_seconds,
        memory=integration.ingress.memory_mb,
        cwd=stack.cwd,
    )
    status = response.get("statusCode") if isinstance(response, dict) else None
    accepted = integration.webhook.accepted_status
    if status != accepted:
        raise BenchmarkError(f"{integration.name}/ingress: expected statusCode {accepted}, got {response!r}")
    run.outcome = str(status)
    return run


class Enqueuer:
    """Puts a delivery on an integration's queue through the ingress code, in this process."""

    def __init__(self, integration: Integration, stack: Stack) -> None:
        from shared.aws import SecretCache, sqs_client
        from shared.ingress import Ingress

        if integration.webhook is None:
            raise BenchmarkError(f"{integration.name}: no webhook, so no way to enqueue a sample message")
        self.webhook = integration.webhook
        self.ingress = Ingress(
            integration,
            stage=STAGE,
            queue_urls=stack.resources.queue_urls(integration),
            sqs=sqs_client(),
            secrets=SecretCache(),
        )
        logging.getLogger("junction.ingress").disabled = True  # its log lines are not the benchmark's output

    def send(self, body: bytes, headers: dict[str, str], route: tuple[str, str | None, dict[str, str] | None]) -> None:
        from junction_local.events import apigw_event

        path, resource, parameters = route
        event = apigw_event("POST", path, headers, body, resource=resource, path_parameters=parameters)
        with redirect_stdout(io.StringIO()):  # its metric lines
            answer = self.ingress.handle(event)
        if answer.get("statusCode") != self.webhook.accepted_status:
            raise BenchmarkError(f"{self.ingress.integration.name}: could not enqueue the sample: {answer!r}")


def _receive(stack: Stack, url: str, delivery_id: str, name: str) -> dict[str, Any]:
    """The one message of ``delivery_id`` on the queue, or BenchmarkError."""
    messages = stack.sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=1,
        WaitTimeSeconds=1,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if len(messages) != 1 or delivery_id not in messages[0]["Body"]:
        raise BenchmarkError(f"{name}: the sample message did not come back from the queue: {messages!r}")
    message: dict[str, Any] = messages[0]
    return message


def _process(
    stack: Stack, integration: Integration, target: Target, message: dict[str, Any], name: str
) -> tuple[Run, Any]:
    """The target's processor, in a fresh interpreter, on a batch of ``message``: BenchmarkError
    unless the batch has no failures."""
    from junction_local.events import sqs_event
    from junction_local.provision import processor_role

    role = processor_role(target)
    pair = stack.resources.queue(integration, target)
    run, response = run_child(
        stack.python,
        PROCESSOR_HANDLER,
        sqs_event([message], queue_arn=pair.arn, region=REGION),
        stack.function_env(integration, role),
        name=function_name(STAGE, integration, role),
        timeout=target.processor.timeout_seconds,
        memory=target.processor.memory_mb,
        cwd=stack.cwd,
    )
    if response != {"batchItemFailures": []}:
        raise BenchmarkError(f"{name}: expected no batch item failures, got {response!r}")
    return run, response


def _delete(stack: Stack, integration: Integration, target: Target, message: dict[str, Any]) -> None:
    """What Lambda's event source does after a successful batch."""
    url = stack.resources.queue(integration, target).url
    stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def handed_on(stack: Stack, integration: Integration, target: Target, delivery_id: str) -> dict[str, str] | None:
    """The ids ``target``'s processor handed the targets after it for ``delivery_id`` (the
    message stays on the follower's queue, drained before the next run); None without one."""
    followers = integration.followers(target)
    if not followers:
        return None
    url = stack.resources.queue(integration, followers[0]).url
    got = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, VisibilityTimeout=0)
    for message in got.get("Messages", []):
        envelope = json.loads(message["Body"])
        if envelope.get("delivery_id") == delivery_id:
            return {str(k): str(v) for k, v in (envelope.get("upstream") or {}).items()}
    return None


def processor_run(
    integration: Integration, target: Target, sample: Sample, stack: Stack, enqueuer: Enqueuer, n: int
) -> Run:
    """One cold processor of ``target`` on a batch of one new delivery (business entity ``n``),
    which must make one new effect at the target.

    As the real flow has it: the source's side made real first and the target holding what the
    event speaks of (``Sample.prepared``, benchmarks/preparations.py), the delivery through
    ingress onto the queues of the targets after no other, and, for a target after another
    (``Target.after``), the upstream target's processor run first (not measured) to hand it on
    with its ids. Only this target's copy is processed; the others are drained before their own
    target's run. A hop whose effect is a read it hands on (a status ShipX confirms) proves it
    by the request the target answered and the confirmed ids the targets after it get."""
    from benchmarks.preparations import prepare_target
    from junction_local.provision import processor_role

    role = processor_role(target)
    name = f"{integration.name}/{role}"
    pair = stack.resources.queue(integration, target)
    for t in integration.targets:
        _drain(stack.sqs, stack.resources.queue(integration, t).url)  # what earlier runs left
    world = stack.world(sample.sender)
    body, facts = sample.prepared(n, stack.shop_of(target.name), world)
    prepare_target(target.name, facts, world)
    before = effects(stack.runtime, target.name)
    served = requests_served(stack.runtime, target.name) if integration.followers(target) else 0
    headers = sample.headers(body, f"bench-processor-{uuid.uuid4()}")
    delivery_id = sample.delivery_id(body, headers)
    enqueuer.send(body, headers, sample.route())
    if target.after is not None:  # its copy comes from the upstream target's processor, after its effect
        upstream = integration.target(target.after)
        first = _receive(stack, stack.resources.queue(integration, upstream).url, delivery_id, name)
        _process(stack, integration, upstream, first, f"{integration.name}/{processor_role(upstream)}")
        _delete(stack, integration, upstream, first)
    message = _receive(stack, pair.url, delivery_id, name)
    run, _ = _process(stack, integration, target, message, name)
    after = effects(stack.runtime, target.name)
    if after == before + 1:
        run.outcome = f"{target.name} effect {after}"
    else:
        ids = handed_on(stack, integration, target, delivery_id) if after == before else None
        if not (ids and ids.get("effect") != "none" and requests_served(stack.runtime, target.name) > served):
            raise BenchmarkError(
                f"{name}: the processor answered, but the {target.name} stand-in has {after - before} new effects, "
                "not 1"
            )
        run.outcome = f"{target.name} read, handed on"
    _delete(stack, integration, target, message)
    return run


def _ingress_round(integration: Integration, sample: Sample, stack: Stack, round_: int) -> Run:
    return ingress_run(integration, sample, stack)


def _processor_round(
    integration: Integration, k: int, sample: Sample, stack: Stack, enqueuer: Enqueuer, round_: int
) -> Run:
    """Target ``k``'s run of a round, on an entity no run has sent before (entity 0 is the ingress's sample)."""
    n = 1 + round_ * len(integration.targets) + k
    return processor_run(integration, integration.targets[k], sample, stack, enqueuer, n)


def not_measured(integrations: tuple[Integration, ...]) -> list[str]:
    """Processors without a sample: a scheduled integration's messages come from its poller, after a
    change at the polled source, and no stand-in declaration makes such a change generically yet."""
    return [f"{i.name}/{t.name}-processor" for i in integrations if i.webhook is None for t in i.targets]


def bench(
    runs: int, warmup: int, *, bytecode: bool = True, as_bundled: bool = True, as_deployed: bool = True
) -> dict[str, Any]:
    """Round after round, every measurement once per round (baselines, then each function), so a
    slow spell of the machine falls on all of them alike."""
    with tempfile.TemporaryDirectory(prefix="junction-coldstart-assets-") as scratch:
        runtime = deployed(bytecode=bytecode, scratch=Path(scratch)) if as_deployed else None
        return _bench(runs, warmup, bytecode=bytecode, as_bundled=as_bundled, runtime=runtime)


def _bench(runs: int, warmup: int, *, bytecode: bool, as_bundled: bool, runtime: Deployed | None) -> dict[str, Any]:
    measurable = tuple(i for i in INTEGRATIONS if i.webhook is not None)
    _check_declared(measurable)
    load_before = os.getloadavg()[0]
    python = runtime.python if runtime else sys.executable
    with local_stack(INTEGRATIONS, as_bundled=as_bundled, runtime=runtime) as stack:
        stack.apply_settings()
        plain = deployed_env({}) if runtime else child_env({}, stack.pycache, as_bundled=False)
        baselines: dict[str, tuple[list[str], list[float]]] = {
            "python -c pass": ([python, "-c", "pass"], []),
            "python -S -c pass": ([python, "-S", "-c", "pass"], []),
        }
        measured: list[tuple[FunctionResult, Callable[[int], Run]]] = []
        for integration in measurable:
            assert integration.ingress_handler is not None
            sample = Sample.of(
                integration, stack.runtime.sender(integration.name), stack.runtime.webhook_secret(integration.name)
            )
            ingress = FunctionResult(integration.name, "ingress", integration.ingress_handler, BUDGET_MS["ingress"])
            measured.append((ingress, functools.partial(_ingress_round, integration, sample, stack)))
            enqueuer = Enqueuer(integration, stack)
            for k, target in enumerate(integration.targets):
                processor = FunctionResult(
                    integration.name, "processor", PROCESSOR_HANDLER, BUDGET_MS["processor"], target=target.name
                )
                measured.append(
                    (processor, functools.partial(_processor_round, integration, k, sample, stack, enqueuer))
                )
        for round_ in range(warmup + runs):
            if round_ == warmup and not bytecode and runtime is None:
                drop_asset_bytecode(stack.pycache, stack.env, plain)
            for argv, times in baselines.values():
                elapsed = wall_ms(argv, plain)
                if round_ >= warmup:
                    times.append(elapsed)
            for result, once in measured:
                run = once(round_)
                if round_ >= warmup:
                    result.runs.append(run)
    if runtime is not None:
        mode = {
            "mode": "as deployed",
            "bytecode": "as shipped" if bytecode else "none",
            "packages": "the built assets: " + ", ".join(Path(a).name for a in runtime.assets.values()),
            "interpreter": " ".join(["python", *runtime.argv[1:], "-c"]),
            "python": runtime.version,
        }
    else:
        mode = {
            "mode": "checkout",
            "bytecode": "cached" if bytecode else "none",
            "packages": "as bundled" if as_bundled else "whole virtualenv",
            "interpreter": " ".join(["python", *interpreter(as_bundled=as_bundled)[1:], "-c"]),
            "python": sys.version.split()[0],
        }
    return {
        "runs": runs,
        "warmup": warmup,
        **mode,
        "cpus": os.cpu_count(),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "baseline_python_pass_ms": summary(baselines["python -c pass"][1]),
        "baseline_python_no_site_pass_ms": summary(baselines["python -S -c pass"][1]),
        "functions": [result.as_dict() for result, _ in measured],
        "not_measured": not_measured(INTEGRATIONS),
    }


def bench_imports(runs: int, *, bytecode: bool = True, as_bundled: bool = True) -> list[dict[str, Any]]:
    """Spawn -> exit of ``python -c <snippet>`` and the in-process import time, median of ``runs``.

    Packages: those a processor asset contains plus the runtime's boto3 (every snippet's library)."""
    with tempfile.TemporaryDirectory(prefix="junction-coldstart-pycache-") as pycache:
        extra = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "JUNCTION_COLDSTART_ABSENT": ",".join(absent_modules("processor")) if as_bundled else "",
        }
        env = child_env(extra, pycache, as_bundled=as_bundled)
        return _bench_imports(runs, interpreter(as_bundled=as_bundled), env, pycache, bytecode=bytecode)


def _bench_imports(
    runs: int, python: list[str], env: dict[str, str], pycache: str, *, bytecode: bool
) -> list[dict[str, Any]]:
    figures: dict[str, tuple[list[float], list[float], list[int]]] = {}
    for label, _ in IMPORT_SNIPPETS:
        figures[label] = ([], [], [])
    for snippet in (code for _, code in IMPORT_SNIPPETS):  # warm-up: writes the .pyc
        subprocess.run([*python, "-c", snippet], env=env, cwd=REPO, check=True, capture_output=True)
    if not bytecode:
        drop_asset_bytecode(pycache, env)
    for _ in range(runs):  # round after round, like the functions
        for label, snippet in IMPORT_SNIPPETS:
            walls, imports, rss = figures[label]
            t0 = time.perf_counter()
            proc = subprocess.run(
                [*python, "-c", IMPORT_CHILD, snippet], env=env, cwd=REPO, check=True, capture_output=True
            )
            walls.append((time.perf_counter() - t0) * 1000)
            import_ms, rss_kib = proc.stdout.split()[-2:]
            imports.append(float(import_ms))
            rss.append(int(rss_kib))
    return [
        {
            "snippet": label,
            "code": snippet,
            "process_ms": round(statistics.median(figures[label][0]), 1),
            "import_ms": round(statistics.median(figures[label][1]), 1),
            "peak_rss_mib": round(statistics.median(figures[label][2]) / 1024, 1),
        }
        for label, snippet in IMPORT_SNIPPETS
    ]


# -- output --------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    base = report["baseline_python_pass_ms"]
    no_site = report["baseline_python_no_site_pass_ms"]
    bytecode = {
        "cached": "cached .pyc",
        "as shipped": "the assets' own .pyc (none written)",
    }.get(report["bytecode"], "no .pyc outside the standard library")
    lines = [
        f"Cold start: fresh interpreter -> first response, median of {report['runs']} runs "
        f"(+{report['warmup']} warm-up), Python {report['python']}",
        f"Mode: {report.get('mode', 'checkout')}; children: `{report['interpreter']}`; packages: {report['packages']}; "
        f"bytecode: {bytecode}",
        f"Machine: {report['cpus']} CPUs, 1-minute load average {report['load_average_1m']['before']} before, "
        f"{report['load_average_1m']['after']} after (other work on the machine inflates every figure)",
        f"Baseline `python -c pass`: {base['median']:.1f} ms (min {base['min']:.1f}, max {base['max']:.1f}); "
        f"`python -S -c pass`: {no_site['median']:.1f} ms (min {no_site['min']:.1f}, max {no_site['max']:.1f})",
        "",
    ]
    header = [
        "function",
        "cold start ms",
        "min-max ms",
        "import ms",
        "invoke ms",
        "peak RSS MiB",
        "budget ms",
        "verdict",
    ]
    rows: list[list[str]] = [header]
    for f in report["functions"]:
        cold = f["cold_start_ms"]
        rows.append(
            [
                f["function"],
                f"{cold['median']:.1f}",
                f"{cold['min']:.1f}-{cold['max']:.1f}",
                f"{f['import_ms']:.1f}",
                f"{f['invoke_ms']:.1f}",
                f"{f['peak_rss_mib']:.1f}",
                f"{f['budget_ms']:.0f}",
                f["verdict"],
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for f in report["functions"]:
        lines.append(f"{f['function']} imports: {', '.join(f.get('imports', [])) or '(standard library only)'}")
    if report.get("not_measured"):
        lines.append(
            f"Not measured (scheduled: no sample message without a change at the polled source): "
            f"{', '.join(report['not_measured'])}"
        )
    if "imports" in report:
        lines += ["", "Import cost in a fresh interpreter (median):", ""]
        iw = max(len(i["snippet"]) for i in report["imports"])
        lines.append(f"{'snippet'.ljust(iw)}  process ms  import ms  peak RSS MiB")
        for i in report["imports"]:
            figures = f"{i['process_ms']:>10.1f}  {i['import_ms']:>9.1f}  {i['peak_rss_mib']:>12.1f}"
            lines.append(f"{i['snippet'].ljust(iw)}  {figures}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="measured runs per function (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs first, per function (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a function is over its budget")
    parser.add_argument("--imports", action="store_true", help="also measure reference import costs (median of 5)")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="no .pyc for the checkout and site-packages (as in the Lambda assets): compiled in every process",
    )
    parser.add_argument(
        "--checkout",
        action="store_true",
        help="run the checkout with this interpreter instead of the built assets with the runtime's Python",
    )
    parser.add_argument(
        "--whole-venv",
        action="store_true",
        help="let the functions import everything installed here, not only what their Lambda asset contains",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    if args.no_bytecode and args.warmup < 1:
        parser.error("--no-bytecode needs a warm-up run (it caches the standard library's .pyc)")
    try:
        report = bench(
            args.runs,
            args.warmup,
            bytecode=not args.no_bytecode,
            as_bundled=not args.whole_venv,
            as_deployed=not (args.checkout or args.whole_venv),
        )
    except BenchmarkError as exc:
        print(f"coldstart benchmark FAILED: {exc}", file=sys.stderr)
        return 2
    if args.imports:
        report["imports"] = bench_imports(5, bytecode=not args.no_bytecode, as_bundled=not args.whole_venv)
    print(json.dumps(report, indent=2) if args.json else render(report))
    over = [f["function"] for f in report["functions"] if f["verdict"] != "PASS"]
    if args.check and over:
        print(f"over budget: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
