"""Scan what the system writes for operators (log lines, dead-letter message attributes) for
secrets and clear-text personal data.

Personal data travels in message bodies (an order needs its buyer's address) and stays there:
it must never reach a log line or a DLQ attribute, which are read, copied and kept by people and
tools that have no business with it. What counts, as a declared list:

- e-mail addresses;
- phone numbers (``+48 600 100 200``, ``600-100-200``, ``+48600100200``);
- street addresses (``ul. Długa 5``, ``al. Jana Pawła II 12``, ``12 Main Street``);
- tax ids (a Polish NIP with its check digit, with or without ``PL``, plain or dashed);
- any key of a JSON log line that names such a field (``email``, ``phone``, ``address1``,
  ``street``, ``tax_id``, ``vat_number``, ...) with a non-empty value;
- the exact value of any secret (a signing secret, an API token, a password).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w.:/-])(?:\+48[ -]?)?[1-9]\d{2}[ -]\d{3}[ -]\d{3}(?![\w-])|\+48\d{9}(?!\d)")
STREET = re.compile(
    r"\b(?:ul\.|ulica|al\.|aleja|os\.|pl\.)\s+\w[\w .'-]*\d+[a-zA-Z]?\b"
    r"|\b\d+[a-zA-Z]?\s+\w+(?:\s\w+)?\s(?:Street|St\.|Road|Avenue|Ave\.|Lane)\b",
    re.IGNORECASE,
)
# A NIP as people write it: with ``PL``, dashed, or as a quoted string of ten digits (a bare
# number of ten digits in a log line is an epoch second far more often than a tax id).
NIP = re.compile(r"(?<![\w-])PL(\d{10})(?![\w-])|(?<![\w-])(\d{3}-\d{3}-\d{2}-\d{2})(?![\w-])|\"(\d{10})\"")
NIP_WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)
# JSON keys (lower case, separators ignored) that hold personal data whatever their value looks like.
PERSONAL_KEYS = frozenset(
    {
        "email",
        "billingemail",
        "phone",
        "phonenumber",
        "address",
        "address1",
        "address2",
        "addressline1",
        "addressline2",
        "street",
        "streetaddress",
        "taxid",
        "vatnumber",
        "nip",
        "federaltaxid",
    }
)
MIN_SECRET_CHARS = 8  # shorter values ("local", "admin") are not secrets worth the name


@dataclass(frozen=True)
class Finding:
    where: str  # file:line, or the DLQ message and attribute
    kind: str  # email | phone | street | tax_id | personal_key | secret
    excerpt: str  # the match, masked: the scan's own report never repeats the data


def _mask(text: str) -> str:
    return text[:2] + "…" + text[-1:] if len(text) > 4 else "…"


def _valid_nip(digits: str) -> bool:
    if len(digits) != 10 or len(set(digits)) == 1:
        return False
    check = sum(int(d) * w for d, w in zip(digits, NIP_WEIGHTS, strict=False)) % 11
    return check != 10 and check == int(digits[9])


def _keys(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield str(key), inner
            yield from _keys(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner, path)


def scan_text(text: str, where: str, secrets: Iterable[str] = ()) -> list[Finding]:
    found: list[Finding] = []
    for match in EMAIL.finditer(text):
        found.append(Finding(where, "email", _mask(match.group(0))))
    for match in PHONE.finditer(text):
        found.append(Finding(where, "phone", _mask(match.group(0))))
    for match in STREET.finditer(text):
        found.append(Finding(where, "street", _mask(match.group(0))))
    for match in NIP.finditer(text):
        digits = next(g for g in match.groups() if g).replace("-", "")
        if _valid_nip(digits):
            found.append(Finding(where, "tax_id", _mask(match.group(0))))
    for secret in secrets:
        if len(secret) >= MIN_SECRET_CHARS and secret in text:
            found.append(Finding(where, "secret", _mask(secret)))
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        for key, value in _keys(doc):
            normal = re.sub(r"[^a-z0-9]", "", key.lower())
            if normal in PERSONAL_KEYS and value not in (None, "", [], {}):
                found.append(Finding(where, "personal_key", key))
    return found


def scan_logs(folder: Path, secrets: Iterable[str] = ()) -> list[Finding]:
    """Every line of every ``*.log`` under ``folder``."""
    values = list(secrets)
    found: list[Finding] = []
    for path in sorted(folder.rglob("*.log")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for n, line in enumerate(lines, 1):
                found.extend(scan_text(line, f"{path.name}:{n}", values))
    return found


def scan_attributes(messages: Iterable[Mapping[str, Any]], secrets: Iterable[str] = ()) -> list[Finding]:
    """Every message attribute of dead letters (``MessageAttributes`` as SQS returns them)."""
    values = list(secrets)
    found: list[Finding] = []
    for message in messages:
        for name, attribute in (message.get("MessageAttributes") or {}).items():
            text = str(attribute.get("StringValue") or "")
            found.extend(scan_text(text, f"dlq {message.get('MessageId', '?')} {name}", values))
    return found


def secret_strings(values: Any) -> list[str]:
    """Every string leaf of the local secrets' values (``{"secrets": [...]}``, credentials), but
    the URLs and plain names that are not secret (``base_url``, ``username``, ids)."""
    public = {"base_url", "api_url", "auth_url", "username", "company_db", "api_version", "location_id"}
    out: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key not in public and not key.endswith("_id"):
            out.append(value)

    walk(values)
    return out
