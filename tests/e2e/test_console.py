"""The web console on the local runtime, driven in headless Chromium: the status, a dead letter
grouped by class and reason, its inspection, a redrive confirmed with its count and refused
without the token, and the trace of the redriven order by its id and by its ERP DocEntry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from functions.registry import INTEGRATIONS, get
from junction_local.runtime import LocalRuntime, wait_for
from junction_local.standins.shop import make_order
from ops import console, dlq
from ops.context import Clients, resolve_target

pytestmark = pytest.mark.slow

INTEGRATION = "shopify-orders"
TARGET = "erp"
ORDER = 950_000
SKU = "PHANTOM-950"  # not in the ERP: the order is rejected there and dead-lettered
# Where the screenshot for the README goes when asked for (else the test's own folder).
SCREENSHOT_ENV = "JUNCTION_CONSOLE_SCREENSHOT"


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as `make setup` does)."""
    found = console.find_chromium()
    if found is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900, check=False)
        found = console.find_chromium()
    if found is None:
        pytest.skip("no chromium found and it could not be installed (apt-get install chromium, as root)")
    return found


@pytest.fixture(scope="module")
def running_console(runtime: LocalRuntime) -> Iterator[tuple[str, str]]:
    """``python -m ops.console`` on a free port against the local runtime: (its address, its token)."""
    env = {**os.environ, "JUNCTION_LOCAL_STATE": str(runtime.state_file), "JUNCTION_OPS_ON": "local"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.console", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("open: "):
                break
        opened = [line for line in lines if line.startswith("open: ")]
        assert opened, f"the console printed no address: {lines}"
        address, token = opened[0].removeprefix("open: ").strip().split("#token=")
        assert address.startswith("http://127.0.0.1:")  # loopback by default
        assert any(token in line for line in lines if line.startswith("token"))
        yield address, token
    finally:
        process.terminate()
        process.wait(timeout=10)


def dead_letters(runtime: LocalRuntime) -> list[dlq.DlqMessage]:
    target = resolve_target(True, None, environ={"JUNCTION_LOCAL_STATE": str(runtime.state_file)})
    i = get(INTEGRATION)
    return dlq.peek(Clients(target).sqs, target.stage, i, i.target(TARGET))


def ours(messages: list[dlq.DlqMessage]) -> dlq.DlqMessage | None:
    return next((m for m in messages if str(ORDER) in json.dumps(m.entity_ids)), None)


def erp_order(runtime: LocalRuntime) -> dict[str, Any] | None:
    return next((o for o in runtime.erp_state()["orders"] if o.get("NumAtCard") == f"shopify:{ORDER}"), None)


def test_the_console_shows_redrives_and_traces_a_dead_letter(
    runtime: LocalRuntime, running_console: tuple[str, str], tmp_path: Path
) -> None:
    binary = chromium()
    address, token = running_console
    assert runtime.sender(INTEGRATION).send(make_order(ORDER, skus=("MUG-BLUE", SKU))).status == 202
    assert wait_for(lambda: ours(dead_letters(runtime)) is not None, 30), "the order never reached the DLQ"
    message = ours(dead_letters(runtime))
    assert message is not None and message.reason == "target_rejected"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(address)  # without the token: the page reads, it cannot change anything
            see_status(page)
            see_dead_letter(page, message)
            screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "console.png")
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            redrive(page, runtime, token)
            trace(page, runtime)
            see_sync(page)
        finally:
            browser.close()


def see_status(page: Page) -> None:
    expect(page.locator("#where")).to_have_text("local, stage local")
    row = page.locator(f'#status-table tr[data-integration="{INTEGRATION}"][data-target="{TARGET}"]')
    expect(row).to_have_count(1)
    expect(row.locator("td.dlq")).not_to_have_text("0")
    # every declared target has a row, as `junction status` shows
    expect(page.locator("#status-table tbody tr")).to_have_count(sum(len(i.targets) for i in INTEGRATIONS))


def see_dead_letter(page: Page, message: dlq.DlqMessage) -> None:
    page.click("#tab-dlq")
    page.select_option("#dlq-integration", INTEGRATION)
    page.select_option("#dlq-target", TARGET)
    page.click("#dlq-load")
    queue = page.locator(f'.queue[data-queue="{INTEGRATION}/{TARGET}"]')
    expect(queue).to_be_visible()
    business = queue.locator('.class[data-error-class="business"]')
    expect(business.locator('tr.group[data-reason="target_rejected"]')).to_have_count(1)
    row = queue.locator(f'tr.message[data-message-id="{message.message_id}"]')
    expect(row).to_contain_text("business")
    expect(row).to_contain_text("target_rejected")

    row.locator("button.inspect").click()
    detail = page.locator("#message-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text(f"Message {message.message_id}")
    expect(detail.locator("table.attributes")).to_contain_text("junction-error-class")
    expect(page.locator("#message-body")).to_contain_text(SKU)  # the event itself, decoded


def redrive(page: Page, runtime: LocalRuntime, token: str) -> None:
    runtime.erp_add_item(SKU)  # the data fixed: the redriven order goes through
    matching = [m for m in dead_letters(runtime) if "target_rejected" in (m.reason, m.last_reason)]
    business = page.locator(f'.queue[data-queue="{INTEGRATION}/{TARGET}"] .class[data-error-class="business"]')
    business.locator('tr.group[data-reason="target_rejected"] button.prefill').click()
    expect(page.locator("#redrive-reason")).to_have_value("target_rejected")
    page.click("#redrive-preview")
    confirm = page.locator("#redrive-count")
    expect(confirm).to_contain_text(f"{len(matching)} message(s) will move")
    expect(confirm).to_contain_text(f"{INTEGRATION}/{TARGET} ({len(matching)})")

    page.click("#redrive-go")  # no token in the page yet: refused, nothing moved
    expect(page.locator("#redrive-result")).to_contain_text("token is missing or wrong")
    assert ours(dead_letters(runtime)) is not None

    page.fill("#token", token)
    page.click("#redrive-go")
    expect(page.locator("#redrive-result")).to_contain_text(f"Redriven: {len(matching)} message(s)")
    expect(page.locator(f'tr.message[data-message-id="{matching[0].message_id}"]')).to_have_count(0)
    assert wait_for(lambda: erp_order(runtime) is not None, 30), "the redriven order never reached the ERP"
    assert ours(dead_letters(runtime)) is None


def trace(page: Page, runtime: LocalRuntime) -> None:
    entity = f"shopify-order:{ORDER}"
    page.click("#tab-trace")
    page.fill("#trace-id", entity)
    page.click("#trace-search")
    hops = page.locator(f'.entity[data-entity="{entity}"] table.hops')
    expect(hops).to_contain_text("dead_lettered")
    expect(hops).to_contain_text("delivered")
    # the same trace found by the order's id in the ERP
    order = erp_order(runtime)
    assert order is not None
    doc_entry = str(order["DocEntry"])
    assert wait_for(lambda: doc_entry in runtime_trace_ids(page, entity), 10)
    page.fill("#trace-id", doc_entry)
    page.click("#trace-search")
    # (a fresh stand-in numbers from 1: the same number may be another system's id of it too)
    expect(page.locator(f'.entity[data-entity="{entity}"] .matched')).to_contain_text(
        re.compile(rf"^{doc_entry} is the (\S+ and )*erp_doc_entry( and \S+)* of {entity}$")
    )
    page.fill("#trace-id", "shopify-order:does-not-exist")
    page.click("#trace-search")
    expect(page.locator("#error")).to_contain_text("no trace for")


def runtime_trace_ids(page: Page, entity: str) -> str:
    """The cross-reference the console shows for the entity, searched again (it fills in after delivery)."""
    page.fill("#trace-id", entity)
    page.click("#trace-search")
    xref = page.locator(f'.entity[data-entity="{entity}"] table.xref')
    xref.wait_for()
    return xref.inner_text()


def see_sync(page: Page) -> None:
    page.click("#tab-sync")
    for name in ("allegro-orders", "erp-stock-to-channels"):
        expect(page.locator(f'#sync-table tr[data-integration="{name}"]')).to_have_count(1)
