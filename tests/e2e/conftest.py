"""The local runtime, started once for the end-to-end tests and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from junction_local.runtime import LocalRuntime


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state_dir: Path = tmp_path_factory.mktemp("junction-local")
    local = LocalRuntime(state_dir=state_dir).start()
    try:
        yield local
    finally:
        local.stop()
