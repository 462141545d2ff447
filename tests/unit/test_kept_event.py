"""The event a completed idempotency record keeps for replay is compressed (a record is billed a
write unit per started KB) and read back exactly, from new records and from older text ones."""

from __future__ import annotations

from pathlib import Path

from shared.envelope import Envelope
from shared.idempotency import EVENT_ATTRIBUTE, kept_event_json, pack_event

SAMPLE = Path(__file__).parents[1] / "events" / "shopify" / "orders-create.json"


def envelope_json() -> str:
    body, encoding = Envelope.encode_body(SAMPLE.read_bytes())
    return Envelope(
        integration="shopify-orders",
        delivery_id="d-1",
        idempotency_key="shopify-orders:d-1",
        source="shopify",
        topic="orders/create",
        received_at="2026-12-06T12:00:00.000+00:00",
        body=body,
        body_encoding=encoding,
    ).to_json()


def test_the_kept_event_reads_back_exactly_and_costs_a_third_of_the_write_units() -> None:
    text = envelope_json()
    packed = pack_event(text)
    assert kept_event_json({EVENT_ATTRIBUTE: packed}) == text
    text_units, packed_units = -(-len(text.encode()) // 1024), -(-len(packed) // 1024)
    assert text_units >= 7 and packed_units <= 2  # the Shopify sample: 7 write units as text, 2 packed


def test_records_written_before_compression_still_replay() -> None:
    text = envelope_json()
    assert kept_event_json({"envelope": text}) == text


def test_a_record_without_an_event_or_with_a_damaged_one_has_none() -> None:
    assert kept_event_json({}) is None
    assert kept_event_json({EVENT_ATTRIBUTE: b"not zlib"}) is None
