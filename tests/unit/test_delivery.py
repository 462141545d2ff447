"""HTTP outcome classification (by status and type, never text), Retry-After, backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from shared.declaration import RetryPolicy
from shared.errors import PermanentError, RateLimited, TargetRejected, TargetUnavailable, TransientError
from shared.http import classify_response, retry_after_seconds, transport_error
from shared.processing import backoff_seconds


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://127.0.0.1/x"))


@pytest.mark.parametrize("status", [100, 200, 201, 204, 299, 304, 399, 400, 404, 429, 499, 500, 503, 599])
def test_only_statuses_from_400_up_are_failures(status: int) -> None:
    try:
        classify_response(response(status), entity_ids={}, target="erp")
    except (TransientError, PermanentError):
        failed = True
    else:
        failed = False
    assert failed is (status >= 400)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RateLimited),
        (500, TargetUnavailable),
        (502, TargetUnavailable),
        (503, TargetUnavailable),
        (408, TargetUnavailable),
        (400, TargetRejected),
        (404, TargetRejected),
        (422, TargetRejected),
    ],
)
def test_statuses_map_to_error_types(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        classify_response(response(status), entity_ids={"order": "1"}, target="erp")
    transient = isinstance(info.value, TransientError)
    assert transient is (status in (408, 429) or status >= 500)
    assert isinstance(info.value, PermanentError) is not transient


def test_retry_after_is_carried() -> None:
    with pytest.raises(RateLimited) as info:
        classify_response(response(429, **{"Retry-After": "42"}), entity_ids={}, target="erp")
    assert info.value.retry_after == 42


def test_retry_after_forms() -> None:
    now = 1_763_900_000.0
    later = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(later, now=now) == pytest.approx(90, abs=1)
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("99999999") == 12 * 3600  # capped at the SQS visibility ceiling


def test_transport_errors_are_transient() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert "timed out" in transport_error(httpx.ReadTimeout("t", request=request), entity_ids={}, target="erp").message
    assert isinstance(
        transport_error(httpx.ConnectError("c", request=request), entity_ids={}, target="erp"), TransientError
    )


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay_seconds=5, max_delay_seconds=900)
    rng = random.Random(7)
    ceilings = [max(backoff_seconds(policy, attempt, None, rng) for _ in range(200)) for attempt in range(1, 10)]
    assert ceilings[0] <= 5 and ceilings[3] <= 40 and ceilings[-1] <= 900
    assert ceilings[-1] > ceilings[2]  # grows
    spread = {backoff_seconds(policy, 6, None, rng) for _ in range(50)}
    assert len(spread) > 10  # jittered, not lock-step
    assert all(backoff_seconds(policy, 1, 300, rng) >= 300 for _ in range(20))


@pytest.mark.parametrize("value", ["²", "١٢٠", "12\u00b3"])
def test_retry_after_in_other_scripts_digits_is_ignored(value: str) -> None:
    assert retry_after_seconds(value) is None


def test_credentials_never_show_their_secret() -> None:
    from shared.aws import Credentials

    creds = Credentials("AKIAEXAMPLE", "wJalrXUtnFEMI-secret", "session-token-value")
    assert "wJalrXUtnFEMI-secret" not in repr(creds) and "session-token-value" not in repr(creds)
