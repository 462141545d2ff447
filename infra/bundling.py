"""Lambda code assets, built without Docker.

Two assets, both plain directories under ``.build/`` handed to ``lambda_.Code.from_asset``:

* ingress: the ``shared/`` and ``functions/`` packages only. The ingress path imports the standard
  library and the lean modules of ``shared`` (see docs/decisions.md), so it carries no third-party
  code and its cold start stays small.
* processor: the same source plus the runtime dependencies of ``pyproject.toml``, installed by pip as
  prebuilt wheels for the Lambda platform (manylinux2014 aarch64, CPython 3.13). pip never compiles
  anything, so the host's own OS and architecture do not matter.

Both assets ship bytecode compiled by the Lambda runtime's Python version (``PYTHON_VERSION``).
A function cannot write ``__pycache__`` into its code directory, so without it every cold start
compiles the whole bundle (measured: processor 370 ms without, 183 ms with). The ``.pyc`` files are
hash-based and unchecked (PEP 552): CDK and Lambda rewrite file timestamps, which would invalidate
timestamp-based ones, and the code never changes under a deployed function. Their embedded file names
are ``/var/task/...`` (the Lambda task root), so the output is byte-for-byte the same on every build
and the asset hash stays stable. The interpreter is looked up (``runtime_python``); when this machine
has none, the assets are built without bytecode and the synth warns loudly.

The installed dependencies are cached in ``.build/deps-<hash>/`` keyed by the dependency list, the
target platform and the bytecode (compiled or not, by which Python): the first synth downloads them
once, every later synth (also offline) reuses the cache. Asset directories are keyed by a hash of
their content, so CDK sees a stable asset hash and a rebuild happens only when the source, the
dependencies or the bytecode compiler change.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / ".build"
SOURCE_PACKAGES = ("shared", "functions")

# The Lambda platform the processor runs on; must match the runtime/architecture in infra/stack.py.
PYTHON_VERSION = "3.13"
PIP_PLATFORM = "manylinux2014_aarch64"
PIP_IMPLEMENTATION = "cp"
# Where the code lies on Lambda: the file names compiled into the bytecode (tracebacks show them).
LAMBDA_TASK_ROOT = "/var/task"
# An explicit interpreter of the runtime's version, when it is not found by itself.
RUNTIME_PYTHON_ENV = "JUNCTION_LAMBDA_PYTHON"

_IGNORED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = (".pyc", ".pyo")
_COMPLETE_MARKER = ".junction-complete"

# Runs in the runtime's interpreter: compile every .py under argv[1] as /var/task/..., hash-based.
_COMPILE = """
import compileall, py_compile, sys
root, prefix = sys.argv[1], sys.argv[2]
ok = compileall.compile_dir(
    root, quiet=1, workers=0, stripdir=root, prependdir=prefix,
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
sys.exit(0 if ok else 1)
"""


class BundlingError(RuntimeError):
    """The processor dependencies could not be installed for the Lambda platform."""


@dataclass(frozen=True)
class Bytecode:
    """How the assets' bytecode is made: by ``python`` (version ``version``), or not at all."""

    python: str | None
    version: str | None

    @property
    def compiled(self) -> bool:
        return self.python is not None

    @property
    def tag(self) -> str:
        """Part of every cache key: which interpreter's bytecode an asset carries, if any."""
        return f"pyc-cpython-{self.version}-unchecked" if self.compiled else "no-pyc"


def _version_of(python: str) -> str | None:
    """The full version (``3.13.0``) of an interpreter, or None if it does not run."""
    try:
        result = subprocess.run(  # noqa: S603
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+", version) else None


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _patch(path: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(n) for n in match.groups()) if match else ()


def runtime_python_candidates(version: str = PYTHON_VERSION) -> list[str]:
    """Interpreters that may be the runtime's version, most explicit first: ``$JUNCTION_LAMBDA_PYTHON``,
    pyenv's ``versions/<version>.*`` (newest patch first), ``python<version>`` on PATH, this one."""
    out: list[str] = []
    if os.environ.get(RUNTIME_PYTHON_ENV):
        out.append(os.environ[RUNTIME_PYTHON_ENV])
    root = _pyenv_root()
    if root is not None:
        found = glob.glob(str(root / "versions" / f"{version}.*" / "bin" / "python"))
        out += sorted((p for p in found if re.search(rf"/{re.escape(version)}\.\d+/", p)), key=_patch, reverse=True)
    on_path = shutil.which(f"python{version}")
    if on_path:
        out.append(on_path)
    out.append(sys.executable)
    return out


def runtime_python(version: str = PYTHON_VERSION) -> tuple[str, str] | None:
    """The first candidate interpreter whose ``major.minor`` is ``version``, with its full version."""
    for candidate in runtime_python_candidates(version):
        full = _version_of(candidate)
        if full is not None and full.rsplit(".", 1)[0] == version:
            return candidate, full
    return None


def warn_no_bytecode(version: str = PYTHON_VERSION) -> str:
    message = (
        f"NO BYTECODE: no Python {version} found (looked at ${RUNTIME_PYTHON_ENV}, pyenv's "
        f"versions/{version}.*, python{version} on PATH). The Lambda assets are built WITHOUT .pyc files, so "
        f"every cold start compiles the whole bundle (processor: about twice as slow). Install Python {version} "
        f"(e.g. `pyenv install {version}`) or set {RUNTIME_PYTHON_ENV} to one, then synthesize again."
    )
    bar = "!" * 100
    sys.stderr.write(f"\n{bar}\nWARNING {message}\n{bar}\n\n")
    return message


@functools.cache
def bytecode() -> Bytecode:
    """The bytecode compiler for this machine, looked up once per process (warns if there is none)."""
    found = runtime_python()
    if found is None:
        warn_no_bytecode()
        return Bytecode(None, None)
    return Bytecode(*found)


def compile_bytecode(
    directory: Path, compiler: Bytecode, *, strict: bool = True, deployed_as: str = LAMBDA_TASK_ROOT
) -> None:
    """Write ``__pycache__/*.cpython-3XX.pyc`` next to every ``.py`` under ``directory``, whose files
    are named ``deployed_as/...`` in the bytecode (where Lambda will find them).

    ``strict``: a file that does not compile fails the build (our sources); otherwise it is reported
    and left without bytecode (a dependency may ship files for other Python versions, which it never
    imports)."""
    if compiler.python is None:
        return
    result = subprocess.run(  # noqa: S603
        [compiler.python, "-I", "-c", _COMPILE, str(directory), deployed_as],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip()
        if strict:
            raise BundlingError(f"Python {compiler.version} could not compile {directory}:\n{detail}")
        sys.stderr.write(f"warning: some files under {directory} have no bytecode:\n{detail}\n")


def runtime_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[str, ...]:
    """The ``[project].dependencies`` of pyproject.toml: what the functions need at run time."""
    with pyproject.open("rb") as f:
        data = tomllib.load(f)
    deps = data["project"]["dependencies"]
    return tuple(sorted(str(d) for d in deps))


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def dependencies_hash(deps: Iterable[str], compiler: Bytecode | None = None) -> str:
    compiler = bytecode() if compiler is None else compiler
    key = [PIP_PLATFORM, PIP_IMPLEMENTATION, PYTHON_VERSION, compiler.tag, *deps]
    return _digest(k.encode() for k in key)


def _source_files(root: Path) -> Iterator[Path]:
    for package in SOURCE_PACKAGES:
        base = root / package
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
            for name in sorted(filenames):
                if not name.endswith(_IGNORED_SUFFIXES):
                    yield Path(dirpath) / name


def source_hash(root: Path = REPO_ROOT, compiler: Bytecode | None = None) -> str:
    """The sources' content, and the bytecode they are compiled to."""
    compiler = bytecode() if compiler is None else compiler
    parts: list[bytes] = [compiler.tag.encode()]
    for path in _source_files(root):
        parts.append(path.relative_to(root).as_posix().encode())
        parts.append(path.read_bytes())
    return _digest(parts)


def _copy_sources(root: Path, dest: Path) -> None:
    for path in _source_files(root):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link cached dependency files into an asset (fast, no extra disk); copy across devices."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _publish(tmp: Path, final: Path) -> Path:
    """Move a fully built directory into place; a concurrent builder may have won the race."""
    try:
        tmp.rename(final)
    except OSError:
        if not (final / _COMPLETE_MARKER).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _prune(prefix: str, keep: Path) -> None:
    for old in BUILD_DIR.glob(f"{prefix}-*"):
        if old != keep and old.is_dir() and (old / _COMPLETE_MARKER).exists():
            shutil.rmtree(old, ignore_errors=True)


def _tmp_dir(prefix: str) -> Path:
    tmp = BUILD_DIR / f".tmp-{prefix}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def dependencies_dir(deps: tuple[str, ...] | None = None, compiler: Bytecode | None = None) -> Path:
    """The cached, installed runtime dependencies for the Lambda platform, with their bytecode
    (built on first use)."""
    deps = runtime_dependencies() if deps is None else deps
    compiler = bytecode() if compiler is None else compiler
    final = BUILD_DIR / f"deps-{dependencies_hash(deps, compiler)}"
    if (final / _COMPLETE_MARKER).exists():
        return final
    tmp = _tmp_dir("deps")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # .pyc files built by the host's Python would be useless on Lambda
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        PIP_IMPLEMENTATION,
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(tmp),
        *deps,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundlingError(
            f"pip could not install the processor dependencies for {PIP_PLATFORM} / Python {PYTHON_VERSION} "
            f"(the first synth needs access to PyPI; later ones reuse {final}):\n{result.stderr}"
        )
    for cache in tmp.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    compile_bytecode(tmp, compiler, strict=False)
    (tmp / _COMPLETE_MARKER).write_text(" ".join(deps) + f"\n{compiler.tag}\n")
    _prune("deps", keep=final)
    return _publish(tmp, final)


def ingress_asset_dir(root: Path = REPO_ROOT, compiler: Bytecode | None = None) -> Path:
    """Directory with the ingress code: ``shared/`` and ``functions/`` and their bytecode, no
    third-party packages."""
    compiler = bytecode() if compiler is None else compiler
    final = BUILD_DIR / f"ingress-{source_hash(root, compiler)}"
    if (final / _COMPLETE_MARKER).exists():
        return final
    tmp = _tmp_dir("ingress")
    _copy_sources(root, tmp)
    compile_bytecode(tmp, compiler)
    (tmp / _COMPLETE_MARKER).write_text(f"{compiler.tag}\n")
    _prune("ingress", keep=final)
    return _publish(tmp, final)


def processor_asset_dir(root: Path = REPO_ROOT, compiler: Bytecode | None = None) -> Path:
    """Directory with the processor code: the source packages plus the Lambda-platform dependencies,
    all with their bytecode."""
    compiler = bytecode() if compiler is None else compiler
    deps = dependencies_dir(compiler=compiler)
    final = BUILD_DIR / f"processor-{source_hash(root, compiler)}-{deps.name.removeprefix('deps-')}"
    if (final / _COMPLETE_MARKER).exists():
        return final
    tmp = _tmp_dir("processor")
    shutil.copytree(
        deps,
        tmp,
        dirs_exist_ok=True,
        copy_function=_link_or_copy,
        ignore=shutil.ignore_patterns(_COMPLETE_MARKER),
    )
    for package in SOURCE_PACKAGES:
        if (tmp / package).exists():
            raise BundlingError(f"a runtime dependency installs a top-level {package!r} package")
    _copy_sources(root, tmp)
    for package in SOURCE_PACKAGES:  # the dependencies' bytecode came with them
        compile_bytecode(tmp / package, compiler, deployed_as=f"{LAMBDA_TASK_ROOT}/{package}")
    (tmp / _COMPLETE_MARKER).write_text(f"{compiler.tag}\n")
    _prune("processor", keep=final)
    return _publish(tmp, final)


def asset_bytecode(asset: Path) -> str:
    """The bytecode tag an asset directory was built with (``no-pyc`` if none)."""
    marker = asset / _COMPLETE_MARKER
    lines = marker.read_text().split() if marker.exists() else []
    return lines[-1] if lines and lines[-1].startswith(("pyc-", "no-pyc")) else "no-pyc"


# -- the same asset on this machine (benchmarks and tests) -----------------------------------------


def _native_distributions(asset: Path) -> list[tuple[str, str, Path]]:
    """(name, version, dist-info) of every distribution in ``asset`` with compiled code."""
    out: list[tuple[str, str, Path]] = []
    for info in sorted(asset.glob("*.dist-info")):
        wheel = info / "WHEEL"
        if wheel.exists() and "Root-Is-Purelib: false" in wheel.read_text():
            meta = (info / "METADATA").read_text(errors="replace")
            name = re.search(r"^Name: (.+)$", meta, re.MULTILINE)
            version = re.search(r"^Version: (.+)$", meta, re.MULTILINE)
            if name and version:
                out.append((name.group(1).strip(), version.group(1).strip(), info))
    return out


def host_platform() -> str:
    machine = os.uname().machine
    return f"manylinux2014_{machine}"


def host_twin(asset: Path, compiler: Bytecode | None = None) -> Path:
    """``asset`` runnable by the runtime's Python on this machine: the same files and bytecode, hard-linked,
    except that each distribution with compiled code is the same version's wheel for this machine's
    architecture (compiled the same way). On a machine of the Lambda architecture it is ``asset`` itself.

    Only for measuring and testing here; the deployed asset is ``asset``."""
    compiler = bytecode() if compiler is None else compiler
    natives = _native_distributions(asset)
    if host_platform() == PIP_PLATFORM or not natives:
        return asset
    final = BUILD_DIR / f"host-{os.uname().machine}-{asset.name}"
    if (final / _COMPLETE_MARKER).exists():
        return final
    tmp = _tmp_dir("host")
    wheels = tmp / ".wheels"
    pins = [f"{name}=={version}" for name, version, _ in natives]
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    cmd += ["--no-deps", "--platform", host_platform(), "--implementation", PIP_IMPLEMENTATION]
    cmd += ["--python-version", PYTHON_VERSION, "--only-binary=:all:", "--target", str(wheels), *pins]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundlingError(f"pip could not install {', '.join(pins)} for {host_platform()}:\n{result.stderr}")
    compile_bytecode(wheels, compiler, strict=False)
    replaced: set[str] = set()
    for _, _, info in natives:
        record = (info / "RECORD").read_text().splitlines()
        replaced |= {line.split(",")[0].split("/")[0] for line in record if line}
    twin = tmp / "asset"
    shutil.copytree(
        asset,
        twin,
        copy_function=_link_or_copy,
        ignore=lambda d, names: [n for n in names if Path(d) == asset and n in replaced],
    )
    for entry in wheels.iterdir():
        shutil.move(str(entry), twin / entry.name)
    _prune(f"host-{os.uname().machine}-{asset.name.split('-')[0]}", keep=final)
    published = _publish(twin, final)
    shutil.rmtree(tmp, ignore_errors=True)
    return published
