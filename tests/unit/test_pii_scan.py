"""The scan that proves no secret and no clear-text personal data reaches a log line or a dead
letter's attributes: it must find each kind it promises, and not cry wolf on ids and timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from junction_local.pii import scan_attributes, scan_logs, scan_text, secret_strings


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("customer jan.kowalski+shop@example.pl wrote", "email"),
        ("call +48 600 100 200 now", "phone"),
        ("call 600-100-200 now", "phone"),
        ("call +48600100200", "phone"),
        ("ship to ul. Długa 5/3", "street"),
        ("ship to al. Jana Pawła II 12", "street"),
        ("ship to 12 Main Street", "street"),
        ("NIP PL5260250995", "tax_id"),
        ("NIP 526-025-09-95", "tax_id"),
        ('{"note": "5260250995"}', "tax_id"),
        ('{"level": "INFO", "buyer": {"phoneNumber": "+48 1"}}', "personal_key"),
        ('{"address1": "x"}', "personal_key"),
    ],
)
def test_each_kind_of_personal_data_is_found(text: str, kind: str) -> None:
    assert kind in {f.kind for f in scan_text(text, "t")}


@pytest.mark.parametrize(
    "text",
    [
        '{"ts": 1796583628.011, "expires_at": 1796583628, "order": "shopify-order:820982911946154508"}',
        '{"delivery_id": "e7e23ff4-b9d8-4aaf-b817-b83d761feea4", "erp_doc_entry": "57", "ms": 4.53}',
        '{"email": null, "phone": "", "address": {}}',  # named, but empty
        "NIP 5260250990",  # a wrong check digit is no NIP
        '"1234567890"',  # nor is a quoted number whose check digit fails
        "version 2026-01-01 at 10:00:00",
    ],
)
def test_ids_timestamps_and_empty_fields_are_not_findings(text: str) -> None:
    assert scan_text(text, "t") == []


def test_a_secret_is_found_wherever_it_appears_and_the_report_never_repeats_it() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    found = scan_text(f"verification with {secret} failed", "t", [secret, "short"])
    assert [f.kind for f in found] == ["secret"]
    assert secret not in found[0].excerpt


def test_logs_and_dead_letter_attributes_are_scanned_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "workers-0.log").write_text('{"message": "ok"}\n{"message": "to a@b.pl"}\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "gateway.log").write_text("fine\n", encoding="utf-8")
    assert [(f.where, f.kind) for f in scan_logs(tmp_path)] == [("workers-0.log:2", "email")]
    dead = [
        {
            "MessageId": "m-1",
            "MessageAttributes": {
                "junction-reason": {"DataType": "String", "StringValue": "validation_failed"},
                "junction-entity-ids": {"DataType": "String", "StringValue": json.dumps({"email": "a@b.pl"})},
            },
        }
    ]
    assert {f.kind for f in scan_attributes(dead)} == {"email", "personal_key"}


def test_secret_strings_are_the_secret_leaves_not_urls_or_ids() -> None:
    values = {
        "shopify-webhook": {"secrets": ["shpss_one", "shpss_two"]},
        "erp": {"base_url": "http://127.0.0.1:1/b1s/v1", "username": "manager", "password": "p4ssw0rd!"},
        "shipbob": {"token": "pat_123456789", "channel_id": "42"},
    }
    assert sorted(secret_strings(values)) == ["p4ssw0rd!", "pat_123456789", "shpss_one", "shpss_two"]
