"""Rate budgets shared through the state table: a token bucket and a sliding window, on moto and
the local hot path, with an injected clock (nothing sleeps for real)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest

from shared.declaration import RateBudget
from shared.errors import RateLimited
from shared.rate_budget import SlidingWindow, TokenBucket

TABLE = "junction-test-state"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


@pytest.fixture
def ddb(aws: str) -> Iterator[object]:
    client = boto3.client("dynamodb", region_name="eu-central-1")
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    yield client


def test_a_bucket_gives_its_burst_then_its_rate(ddb: object) -> None:
    clock = Clock()
    bucket = TokenBucket(ddb, TABLE, RateBudget("acct", per_second=10, burst=20), clock=clock, sleep=clock.sleep)
    for _ in range(20):
        assert bucket.try_take() == 0
    wait = bucket.try_take()
    assert wait == pytest.approx(0.1)  # one token at 10/s
    clock.now += 1.0
    taken = sum(1 for _ in range(15) if bucket.try_take() == 0)
    assert taken == 10  # a second refilled ten, no more


def test_two_clients_share_one_bucket(ddb: object) -> None:
    clock = Clock()
    budget = RateBudget("shared", per_second=1, burst=5)
    first = TokenBucket(ddb, TABLE, budget, clock=clock, sleep=clock.sleep)
    second = TokenBucket(ddb, TABLE, budget, clock=clock, sleep=clock.sleep)
    granted = [c.try_take() == 0 for c in (first, second) * 4]
    assert granted.count(True) == 5  # mutation: a per-client bucket grants 8


def test_concurrent_takers_never_spend_more_than_the_bucket(ddb: object) -> None:
    clock = Clock()
    budget = RateBudget("race", per_second=0.001, burst=30)
    granted: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        bucket = TokenBucket(ddb, TABLE, budget, clock=clock, sleep=clock.sleep)
        for _ in range(10):
            ok = bucket.try_take() == 0
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 60 attempts against 30 tokens: the conditional write on the refill time lets no two
    # takers spend the same token (mutation: an unconditional write grants more than 30).
    assert granted.count(True) == 30


def test_acquire_waits_within_its_limit_and_is_rate_limited_beyond(ddb: object) -> None:
    clock = Clock()
    bucket = TokenBucket(ddb, TABLE, RateBudget("wait", per_second=2, burst=2), clock=clock, sleep=clock.sleep)
    bucket.acquire(2, max_wait=0)
    bucket.acquire(1, max_wait=5)
    assert clock.slept == [pytest.approx(0.5)]
    with pytest.raises(RateLimited) as limited:
        bucket.acquire(2, max_wait=0.1)
    assert limited.value.retry_after == pytest.approx(1.0)


def test_a_429_holds_every_client_of_the_account(ddb: object) -> None:
    clock = Clock()
    budget = RateBudget("held", per_second=100, burst=100)
    one = TokenBucket(ddb, TABLE, budget, clock=clock, sleep=clock.sleep)
    other = TokenBucket(ddb, TABLE, budget, clock=clock, sleep=clock.sleep)
    one.hold(60)
    assert other.try_take() == pytest.approx(60)
    one.hold(10)  # a shorter hold never shortens a longer one
    assert other.try_take() == pytest.approx(60)
    clock.now += 60
    assert other.try_take() == 0


def test_a_window_spends_its_limit_at_once_then_what_leaves_it(ddb: object) -> None:
    clock = Clock()
    window = SlidingWindow(ddb, TABLE, "acct#changes", limit=100, window_seconds=60, clock=clock, sleep=clock.sleep)
    assert window.try_take(60) == 0
    clock.now += 10
    assert window.try_take(40) == 0  # the whole limit within one window
    # Until the first 60 leave: a whole window after the second they were taken in ends.
    assert window.try_take(1) == pytest.approx(51)
    clock.now += 51
    assert window.try_take(60) == 0
    assert window.try_take(1) == pytest.approx(10)  # the 40 leave ten seconds later


def test_a_window_never_holds_more_than_its_limit_in_any_window(ddb: object) -> None:
    clock = Clock()
    window = SlidingWindow(ddb, TABLE, "acct#kind", limit=50, window_seconds=60, clock=clock, sleep=clock.sleep)
    taken: list[tuple[float, int]] = []
    for step in range(200):
        n = 1 + step % 7
        window.acquire(n, max_wait=120)
        taken.append((clock.now, n))
        clock.now += 0.3
    for start, _ in taken:
        inside = sum(n for t, n in taken if start <= t < start + 60)
        assert inside <= 50


def test_a_window_refuses_what_can_never_fit(ddb: object) -> None:
    window = SlidingWindow(ddb, TABLE, "acct#big", limit=10, window_seconds=60)
    with pytest.raises(ValueError):
        window.try_take(11)
