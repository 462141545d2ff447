"""Lambda code assets, built without Docker.

Two assets, both plain directories under ``.build/`` handed to ``lambda_.Code.from_asset``:

* ingress: the ``shared/`` and ``functions/`` packages only. The ingress path imports the standard
  library and the lean modules of ``shared`` (see docs/decisions.md), so it carries no third-party
  code and its cold start stays small.
* processor: the same source plus the runtime dependencies of ``pyproject.toml``, installed by pip as
  prebuilt wheels for the Lambda platform (manylinux2014 aarch64, CPython 3.13). pip never compiles
  anything, so the host's own OS and architecture do not matter.

The installed dependencies are cached in ``.build/deps-<hash>/`` keyed by the dependency list and
the target platform: the first synth downloads them once, every later synth (also offline) reuses
the cache. Asset directories are keyed by a hash of their content, so CDK sees a stable asset hash
and a rebuild happens only when the source or the dependencies change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / ".build"
SOURCE_PACKAGES = ("shared", "functions")

# The Lambda platform the processor runs on; must match the runtime/architecture in infra/stack.py.
PYTHON_VERSION = "3.13"
PIP_PLATFORM = "manylinux2014_aarch64"
PIP_IMPLEMENTATION = "cp"

_IGNORED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = (".pyc", ".pyo")
_COMPLETE_MARKER = ".junction-complete"


class BundlingError(RuntimeError):
    """The processor dependencies could not be installed for the Lambda platform."""


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


def dependencies_hash(deps: Iterable[str]) -> str:
    key = [PIP_PLATFORM, PIP_IMPLEMENTATION, PYTHON_VERSION, *deps]
    return _digest(k.encode() for k in key)


def _source_files(root: Path) -> Iterator[Path]:
    for package in SOURCE_PACKAGES:
        base = root / package
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
            for name in sorted(filenames):
                if not name.endswith(_IGNORED_SUFFIXES):
                    yield Path(dirpath) / name


def source_hash(root: Path = REPO_ROOT) -> str:
    parts: list[bytes] = []
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


def dependencies_dir(deps: tuple[str, ...] | None = None) -> Path:
    """The cached, installed runtime dependencies for the Lambda platform (built on first use)."""
    deps = runtime_dependencies() if deps is None else deps
    final = BUILD_DIR / f"deps-{dependencies_hash(deps)}"
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
    (tmp / _COMPLETE_MARKER).write_text(" ".join(deps) + "\n")
    _prune("deps", keep=final)
    return _publish(tmp, final)


def ingress_asset_dir(root: Path = REPO_ROOT) -> Path:
    """Directory with the ingress code: ``shared/`` and ``functions/``, no third-party packages."""
    final = BUILD_DIR / f"ingress-{source_hash(root)}"
    if (final / _COMPLETE_MARKER).exists():
        return final
    tmp = _tmp_dir("ingress")
    _copy_sources(root, tmp)
    (tmp / _COMPLETE_MARKER).touch()
    _prune("ingress", keep=final)
    return _publish(tmp, final)


def processor_asset_dir(root: Path = REPO_ROOT) -> Path:
    """Directory with the processor code: the source packages plus the Lambda-platform dependencies."""
    deps = dependencies_dir()
    final = BUILD_DIR / f"processor-{source_hash(root)}-{deps.name.removeprefix('deps-')}"
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
    (tmp / _COMPLETE_MARKER).touch()
    _prune("processor", keep=final)
    return _publish(tmp, final)
