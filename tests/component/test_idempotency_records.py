"""The idempotency records' states against DynamoDB (moto and the local stand-in)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from shared.declaration import TABLE_KEYS, idempotency_table_name
from shared.errors import IdempotencyConflict, InProgressElsewhere
from shared.idempotency import ATTEMPTED, COMPLETED, IdempotencyStore
from tests.component.harness import REGION, Clock

STAGE = "records"


@pytest.fixture
def store(aws: str) -> Iterator[tuple[IdempotencyStore, Clock]]:
    ddb = boto3.client("dynamodb", region_name=REGION)
    table = idempotency_table_name(STAGE)
    key, _ = TABLE_KEYS["idempotency"]
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    clock = Clock()
    yield IdempotencyStore(ddb, table, ttl_days=30, clock=clock), clock


def test_a_first_claim_is_a_first_attempt(store: tuple[IdempotencyStore, Clock]) -> None:
    records, _ = store
    claim = records.begin("k1", "fp", {}, hold_seconds=30)
    assert not claim.is_duplicate and not claim.maybe_delivered and claim.reached_at is None


def test_a_held_claim_makes_others_wait(store: tuple[IdempotencyStore, Clock]) -> None:
    records, _ = store
    records.begin("k2", "fp", {}, hold_seconds=30)
    with pytest.raises(InProgressElsewhere) as waited:
        records.begin("k2", "fp", {}, hold_seconds=30)
    assert waited.value.retry_after is not None and 1 <= waited.value.retry_after <= 31


def test_an_attempted_record_is_kept_and_the_next_claim_knows_it_may_exist(
    store: tuple[IdempotencyStore, Clock],
) -> None:
    records, clock = store
    first = records.begin("k3", "fp", {}, hold_seconds=30)
    records.attempted(first, "target_unavailable", reached_at=clock() - 1)
    kept = records.get("k3")
    assert kept is not None and kept["status"] == ATTEMPTED
    second = records.begin("k3", "fp", {}, hold_seconds=30)  # at once: no waiting for a lapse
    assert second.maybe_delivered and second.reached_at is not None and abs(second.reached_at - (clock() - 1)) < 1


def test_an_attempt_that_never_sent_keeps_the_earlier_reach(store: tuple[IdempotencyStore, Clock]) -> None:
    records, clock = store
    first = records.begin("k4", "fp", {}, hold_seconds=30)
    reached = clock()
    records.attempted(first, "target_unavailable", reached_at=reached)
    clock.advance(60)
    second = records.begin("k4", "fp", {}, hold_seconds=30)
    records.attempted(second, "outcome_unsettled", reached_at=second.reached_at)
    third = records.begin("k4", "fp", {}, hold_seconds=30)
    assert third.reached_at is not None and abs(third.reached_at - reached) < 1


def test_a_lapsed_claim_is_taken_over_as_a_possible_effect(store: tuple[IdempotencyStore, Clock]) -> None:
    records, clock = store
    records.begin("k5", "fp", {}, hold_seconds=30)  # the execution environment dies here
    clock.advance(32)
    claim = records.begin("k5", "fp", {}, hold_seconds=30)
    assert claim.maybe_delivered and claim.reached_at is not None


def test_a_lapsed_claim_taken_over_by_a_different_payload_is_a_conflict(
    store: tuple[IdempotencyStore, Clock],
) -> None:
    records, clock = store
    records.begin("k6", "fp-1", {}, hold_seconds=30)
    clock.advance(32)
    with pytest.raises(IdempotencyConflict):
        records.begin("k6", "fp-2", {}, hold_seconds=30)
    assert (records.get("k6") or {})["fingerprint"] == "fp-1"  # the first payload's record stands


def test_an_attempted_record_with_a_different_payload_is_a_conflict(store: tuple[IdempotencyStore, Clock]) -> None:
    records, clock = store
    first = records.begin("k7", "fp-1", {}, hold_seconds=30)
    records.attempted(first, "target_unavailable", reached_at=clock())
    with pytest.raises(IdempotencyConflict):
        records.begin("k7", "fp-2", {}, hold_seconds=30)


def test_a_completed_record_makes_duplicates(store: tuple[IdempotencyStore, Clock]) -> None:
    records, _ = store
    claim = records.begin("k8", "fp", {}, hold_seconds=30)
    assert records.complete_many([(claim, {"erp_doc_entry": "7"}, "{}")]) == []
    again = records.begin("k8", "fp", {}, hold_seconds=30)
    assert again.is_duplicate and (again.duplicate_of or {})["result"] == {"erp_doc_entry": "7"}
    assert (records.get("k8") or {})["status"] == COMPLETED


def test_a_slow_attempt_whose_claim_was_taken_over_cannot_overwrite_it(store: tuple[IdempotencyStore, Clock]) -> None:
    records, clock = store
    slow = records.begin("k9", "fp", {}, hold_seconds=30)
    clock.advance(32)
    taken = records.begin("k9", "fp", {}, hold_seconds=30)
    assert records.complete_many([(taken, {"erp_doc_entry": "9"}, "{}")]) == []
    records.attempted(slow, "target_unavailable", reached_at=clock())  # too late: ignored
    assert (records.get("k9") or {})["status"] == COMPLETED
