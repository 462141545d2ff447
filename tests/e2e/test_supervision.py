"""The runtime's supervision policy, driven with a fake clock and fake processes (no children):
a dead function host is replaced, each time later while it keeps dying, promptly again once it
had run for a while; a dead stand-in is reported, not replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from junction_local.runtime import MAX_RESTART_DELAY, RESTART_DELAY, STABLE_AFTER, LocalRuntime, _Spec


class FakeProcess:
    def __init__(self, pid: int, code: int | None) -> None:
        self.pid = pid
        self.code = code

    def poll(self) -> int | None:
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def supervised(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalRuntime, list[int]]:
    local = LocalRuntime(state_dir=tmp_path, _clock=clock)
    (tmp_path / "logs").mkdir()
    local.state = {"pids": {}}
    spawned: list[int] = []

    def spawn(name: str, spec: _Spec, *, restart: bool = False) -> None:
        spawned.append(len(spawned) + 2)
        local.processes[name] = FakeProcess(spawned[-1], -9)  # type: ignore[assignment]
        spec.started, spec.due = clock(), None

    monkeypatch.setattr(local, "_spawn", spawn)
    local._specs["workers-1"] = _Spec(["-m", "x"], "http://127.0.0.1:1", {}, started=clock())
    local.processes["workers-1"] = FakeProcess(1, -9)  # type: ignore[assignment]
    return local, spawned


def delays(local: LocalRuntime, clock: Clock, deaths: int, lives: float) -> list[float]:
    """Let the host die ``deaths`` times, each after living ``lives`` seconds; the delays used."""
    seen = []
    for _ in range(deaths):
        clock.now += lives
        local._check("workers-1")  # noticed dead: counted, replacement scheduled
        spec = local._specs["workers-1"]
        assert spec.due is not None
        seen.append(spec.due - clock.now)
        clock.now = spec.due
        local._check("workers-1")  # due: replaced
    return seen


def test_a_host_that_keeps_dying_is_replaced_later_each_time(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, spawned = supervised(tmp_path, clock, monkeypatch)
    seen = delays(local, clock, deaths=9, lives=0.1)
    assert seen == [min(MAX_RESTART_DELAY, RESTART_DELAY * 2**k) for k in range(9)]
    assert len(spawned) == 9
    assert local.restarts == {"workers-1": 9}
    assert local.state["restarts"] == {"workers-1": 9}
    assert "was killed by SIGKILL" in local.events[0]
    assert (tmp_path / "logs" / "supervisor.log").read_text().count("replaced") == 9


def test_a_host_that_ran_for_a_while_is_replaced_promptly_again(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, _ = supervised(tmp_path, clock, monkeypatch)
    assert delays(local, clock, deaths=4, lives=0.1)[-1] == RESTART_DELAY * 8
    assert delays(local, clock, deaths=1, lives=STABLE_AFTER + 1) == [RESTART_DELAY]


def test_a_dead_stand_in_is_reported_not_replaced(tmp_path: Path) -> None:
    local = LocalRuntime(state_dir=tmp_path)
    local.processes["erp"] = FakeProcess(7, 1)  # type: ignore[assignment]
    local.processes["workers-0"] = FakeProcess(8, -9)  # type: ignore[assignment]
    assert local.failed() == ["erp"]
    assert not LocalRuntime.supervised("erp") and LocalRuntime.supervised("workers-0")
