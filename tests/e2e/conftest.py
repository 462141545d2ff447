"""The local runtime, started once for the end-to-end tests and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from junction_local.runtime import LocalRuntime


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    state_dir: Path = tmp_path_factory.mktemp("junction-local")
    # The redelivery policy 30x faster (backoff, settle time, breaker periods; never the horizon):
    # retries come sooner and more often, which can only reveal a duplicate sooner, not hide one.
    local = LocalRuntime(state_dir=state_dir, redelivery_time_scale=1 / 30).start()
    try:
        yield local
    finally:
        local.stop()
