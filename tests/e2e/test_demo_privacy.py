"""The whole demo, as `make demo` runs it, then the scan of everything operators read: every log
line of every process and every dead letter's attributes must hold no secret and no clear-text
personal data (e-mails, phone numbers, street addresses, tax ids; junction_local/pii.py). The demo
makes dead letters on purpose (an unknown SKU, an outage past the horizon), so the attributes
scanned are real ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1200)  # the whole demo: about six minutes
def test_the_whole_demo_holds_and_leaves_no_secret_or_personal_data_in_logs_or_dead_letters() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "junction_local.demo"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "all expectations held" in out
    scanned = re.search(r"(\d+) log lines and the attributes of (\d+) dead letters scanned .*?: (\d+) found", out, re.S)
    assert scanned is not None, out[-3000:]
    lines, dead_letters, found = (int(g) for g in scanned.groups())
    assert lines > 300 and dead_letters >= 1 and found == 0
    assert "✓ no secret, e-mail, phone number, street address or tax id" in out
