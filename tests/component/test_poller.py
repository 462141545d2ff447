"""The poller (shared/polling.py) with the ERP stock source, against the AWS stand-ins and the
ERP stand-in: what reaches every target queue, where the cursor ends, and what the sync history
says, through full and incremental syncs, boundaries of a second and of a day, failures half-way,
crashes, deadlines, overlapping runs and moved cursors.

Each test names, in a comment, a change to the poller that would make it fail.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from functions.erp_stock_to_channels.rules import RULES_VERSION
from junction_local.standins.erp import ErpStandIn
from shared import state_keys
from shared.declaration import lease_seconds
from shared.polling import CHANGES_TOPIC, write_cursor
from shared.processing import REJECTED_TOPIC
from tests.component.poller_harness import (
    ITEMS_PER_MESSAGE,
    PAGE_SIZE,
    PLENTY,
    Crash,
    ManualClock,
    PollerRig,
    Sent,
    at,
    stamp,
)

START = at("2026-03-10T08:00:00")
SEEDED = 40  # with the stand-in's six default items: 46 items, five pages of ten
ITEMS = SEEDED + 6
PAGES = -(-ITEMS // PAGE_SIZE)

MakeRig = Callable[..., PollerRig]


@pytest.fixture
def make_rig(aws: str) -> Iterator[MakeRig]:
    """A poller and an ERP stand-in of ``SEEDED`` items, on one manual clock starting at ``start``."""
    made: list[PollerRig] = []

    def make(start: float = START) -> PollerRig:
        clock = ManualClock(start)
        erp = ErpStandIn(clock=clock).start()
        try:
            erp.seed_items(SEEDED)
            rig = PollerRig.start(erp, clock)
        except BaseException:
            erp.stop()
            raise
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()
        rig.erp.stop()


def keys(sent: list[Sent]) -> Counter[str]:
    return Counter(k for s in sent if s.envelope.topic == CHANGES_TOPIC for k in s.keys)


def changes(sent: list[Sent]) -> dict[str, dict[str, Any]]:
    """The last change sent per key."""
    return {c["key"]: c for s in sent if s.envelope.topic == CHANGES_TOPIC for c in s.payload["changes"]}


def set_stock(rig: PollerRig, **levels: int) -> str:
    """Set warehouse 01's stock of items (``SKU_000003=12``); returns the stamp they get."""
    rig.erp.set_stock([{"item": code.replace("_", "-"), "in_stock": n} for code, n in levels.items()])
    return stamp(rig.clock())


def synced(rig: PollerRig) -> None:
    """A first full sync, its messages taken off the queues."""
    assert rig.run().outcome == "caught_up"
    rig.take_all()


# -- 1. full sync ---------------------------------------------------------------------------
def test_full_sync_sends_every_item_once_to_every_target_and_records_the_run(make_rig: MakeRig) -> None:
    # Mutations caught: sending to the first queue only; a chunk lost or sent twice; the cursor
    # at the first or the last page's highest stamp instead of the pass's; no history item.
    rig = make_rig()
    rig.clock.advance(5)
    set_stock(rig, SKU_000007=500)
    rig.clock.advance(4)
    highest = set_stock(rig, MUG_RED=7)  # on the first page: the highest stamp is not on the last
    started = rig.clock()

    result = rig.run()

    codes = sorted(rig.erp.stock())
    assert len(codes) == ITEMS
    sent = rig.take_all()
    ids = {}
    for target, messages in sent.items():
        assert keys(messages) == Counter(codes), target
        assert {s.envelope.topic for s in messages} == {CHANGES_TOPIC}
        assert all(len(s.keys) <= ITEMS_PER_MESSAGE for s in messages)
        for code, change in changes(messages).items():
            assert change["data"] == rig.expected_data(code)
        for s in messages:
            assert s.envelope.idempotency_key == f"{rig.integration.name}:{s.envelope.delivery_id}"
            assert s.attributes["junction-delivery-id"] == s.envelope.delivery_id
        ids[target] = sorted(s.envelope.delivery_id for s in messages)
    assert ids["shopify"] == ids["allegro"]  # the same messages to both targets
    assert changes(sent["shopify"])["MUG-RED"]["stamp"] == highest

    assert (result.outcome, result.pages, result.changes, result.rejected) == ("caught_up", PAGES, ITEMS, 0)
    assert result.cursor_before is None and result.cursor_after == highest
    cursor = rig.cursor()
    assert (cursor.position, cursor.next, cursor.rules, cursor.version) == (highest, None, RULES_VERSION, PAGES)

    history = rig.history_of(result)
    assert history["outcome"] == "caught_up"
    assert (history["pages"], history["changes"]) == (PAGES, ITEMS)
    assert "cursor_before" not in history and history["cursor_after"] == highest
    # Lag: how long ago the last run that reached the end started; each read took a second.
    assert float(history["lag_seconds"]) == rig.clock() - started == PAGES
    assert rig.lease() is None  # released at the end


# -- 2. incremental -------------------------------------------------------------------------
def test_incremental_sends_only_what_changed(make_rig: MakeRig) -> None:
    # Mutations caught: no content dedup (the date filter re-reads the whole day: every item
    # again); dedup by key alone (a changed item dropped); the seen map not kept in the cursor.
    rig = make_rig()
    synced(rig)
    rig.clock.advance(30)
    changed = {"SKU-000003": 1001, "SKU-000021": 1002, "TEAPOT-L": 1003}
    rig.erp.set_stock([{"item": code, "in_stock": n} for code, n in changed.items()])
    position = stamp(rig.clock())
    # Stamped anew with the content it had: nothing to send.
    same = rig.erp.stock()["SKU-000030"]["01"]
    rig.erp.set_stock([{"item": "SKU-000030", "in_stock": same["InStock"], "committed": same["Committed"]}])

    result = rig.run()

    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter(list(changed)), target
        for code, n in changed.items():
            assert changes(messages)[code]["data"]["warehouses"]["01"]["in_stock"] == str(n)
    assert (result.outcome, result.changes, result.skipped, result.pages) == ("caught_up", 3, ITEMS - 3, PAGES)
    assert rig.cursor().position == position

    quiet = rig.run()
    assert (quiet.outcome, quiet.changes, quiet.skipped) == ("caught_up", 0, ITEMS)
    assert rig.take_all() == {"shopify": [], "allegro": []}


def test_incremental_after_an_idle_hour_does_not_send_unchanged_items_again(make_rig: MakeRig) -> None:
    # The ERP quiet for an hour (longer than the lookback), then one change on the first page.
    # The date filter re-reads every item of the day; those stamped within the lookback of the
    # cursor's position must still be recognised on the later pages of that pass.
    # Mutation caught: the seen map trimmed to the window of the pass's newest stamp after each
    # page, while the pass's later pages are still compared against the old position's window.
    # The hour also outlasts the ERP's 30-minute session: the run logs in again on its way.
    rig = make_rig()
    synced(rig)
    rig.clock.advance(3600)
    set_stock(rig, CUP_SET_4=77)  # the first item in ItemCode order

    result = rig.run()

    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter({"CUP-SET-4": 1}), target
    assert (result.changes, result.skipped) == (1, ITEMS - 1)


# -- 3. boundaries of a second ----------------------------------------------------------------
def test_changes_sharing_the_cursors_second_are_never_skipped(make_rig: MakeRig) -> None:
    # Mutations caught: reading or sending only stamps after the cursor (``stamp > position``);
    # dedup by (key, stamp) instead of content.
    rig = make_rig()
    synced(rig)
    rig.clock.advance(30)
    moment = rig.clock()
    boundary = set_stock(rig, SKU_000010=111)
    first = rig.run()
    assert rig.cursor().position == boundary and first.changes == 1
    rig.take_all()

    # Committed 20 s late, stamped in the cursor's own second.
    rig.clock.advance(20)
    rig.erp.set_stock([{"item": "SKU-000020", "in_stock": 222}], backdate_seconds=rig.clock() - moment)
    late = rig.run()
    sent = rig.take_all()
    for target, messages in sent.items():
        assert keys(messages) == Counter({"SKU-000020": 1}), target
        assert changes(messages)["SKU-000020"]["stamp"] == boundary
    assert late.changes == 1 and rig.cursor().position == boundary

    # The same item again within that second, with other stock: the new content is sent.
    rig.erp.set_stock([{"item": "SKU-000020", "in_stock": 223}], backdate_seconds=rig.clock() - moment)
    again = rig.run()
    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter({"SKU-000020": 1}), target
        change = changes(messages)["SKU-000020"]
        assert (change["stamp"], change["data"]["warehouses"]["01"]["in_stock"]) == (boundary, "223")
    assert again.changes == 1


# -- 4. boundary of a day --------------------------------------------------------------------
def test_reads_across_midnight_use_the_window_starts_date(make_rig: MakeRig) -> None:
    # Mutations caught: filtering on the cursor's own date (misses the late commit stamped the
    # day before); adding ``UpdateTime ge`` to the filter (misses 00:00:05 after 23:59:50).
    rig = make_rig(at("2026-03-10T23:59:50"))
    rig.source.tick = 0.0
    synced(rig)
    assert rig.cursor().position == "2026-03-10T23:59:50"

    rig.clock.advance(15)
    assert set_stock(rig, SKU_000004=404) == "2026-03-11T00:00:05"
    after_midnight = rig.run()
    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter({"SKU-000004": 1}), target
    assert after_midnight.changes == 1 and rig.cursor().position == "2026-03-11T00:00:05"

    rig.clock.advance(25)
    set_stock(rig, SKU_000005=505)
    rig.run()
    rig.take_all()
    assert rig.cursor().position == "2026-03-11T00:00:30"
    # A transaction of the previous evening commits now, stamped 23:59:55 of 10 March: the
    # window starts at 23:58:30 on the 10th, so that day is read.
    rig.erp.set_stock([{"item": "SKU-000006", "in_stock": 606}], backdate_seconds=35)
    assert (rig.erp.item("SKU-000006") or {}).get("UpdateDate") == "2026-03-10"
    late = rig.run()
    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter({"SKU-000006": 1}), target
    assert late.changes == 1 and rig.cursor().position == "2026-03-11T00:00:30"


# -- 5. a page failing half-way --------------------------------------------------------------
def test_erp_down_on_the_second_page_leaves_the_cursor_after_the_first(make_rig: MakeRig) -> None:
    # Mutations caught: the cursor moved before the sends (page two lost after the failure);
    # the next run starting over instead of from ``next`` (pages counted twice); a source error
    # escaping the run instead of ending it as failed.
    rig = make_rig()
    rig.source.before_read = lambda n: rig.erp.set_behaviour("down", count=1) if n == 2 else None

    failed = rig.run()

    assert (failed.outcome, failed.pages, failed.changes) == ("failed", 1, PAGE_SIZE)
    assert failed.error is not None and failed.error.startswith("TargetUnavailable")
    assert rig.history_of(failed)["outcome"] == "failed"
    stopped = rig.cursor()
    assert stopped.position is None and stopped.next is not None and stopped.version == 1
    first = rig.take_all()

    rig.source.before_read = None
    resumed = rig.run()

    assert rig.source.reads[2].next == stopped.next  # the run after starts where the first stopped
    assert (resumed.outcome, resumed.pages, resumed.changes) == ("caught_up", PAGES - 1, ITEMS - PAGE_SIZE)
    second = rig.take_all()
    codes = Counter(list(rig.erp.stock()))
    for target in first:
        assert keys(first[target] + second[target]) == codes, target


def test_send_refused_on_the_second_page_is_sent_again_with_the_same_ids(make_rig: MakeRig) -> None:
    # The first target's queue takes page two, the second's refuses one of its messages. The
    # next run re-reads page two and sends it to both again: the first target gets it twice,
    # with the same delivery ids and idempotency keys, so its idempotency absorbs the repeat.
    # Mutations caught: the cursor advanced after a partial send (the refused message lost);
    # delivery ids drawn at random or from the run (a repeat the targets cannot recognise).
    rig = make_rig()
    rig.sqs.fail(rig.queue_url("allegro"), call=2, entries=1, sender_fault=True)

    failed = rig.run()

    assert (failed.outcome, failed.pages) == ("failed", 1)
    assert failed.error is not None and failed.error.startswith("SendFailed")
    first = rig.take_all()
    resumed = rig.run()
    assert (resumed.outcome, resumed.pages) == ("caught_up", PAGES - 1)
    second = rig.take_all()

    codes = set(rig.erp.stock())
    page_two = set(sorted(codes)[PAGE_SIZE : 2 * PAGE_SIZE])
    for target in first:
        everything = first[target] + second[target]
        assert set(keys(everything)) == codes, target
        contents: dict[str, set[tuple[str, str | None, str]]] = {}
        for s in everything:
            content = repr([(c["key"], c["stamp"]) for c in s.payload["changes"]])
            contents.setdefault(s.envelope.delivery_id, set()).add(
                (s.envelope.idempotency_key, s.envelope.topic, content)
            )
        assert all(len(v) == 1 for v in contents.values()), "one delivery id, two contents"
        twice = {code for code, n in keys(everything).items() if n > 1}
        assert twice <= page_two, target  # only page two was sent again
        if target == "shopify":  # it had taken all of page two
            assert twice == page_two
    assert {s.envelope.delivery_id for s in first["shopify"] + second["shopify"]} == {
        s.envelope.delivery_id for s in first["allegro"] + second["allegro"]
    }


# -- 6. SendMessageBatch partial failures ----------------------------------------------------
def test_failed_entries_without_sender_fault_are_retried_alone(make_rig: MakeRig) -> None:
    # Mutations caught: ``Failed`` ignored (two messages lost); the whole batch sent again
    # (duplicates); a retry treated as a failure of the run.
    rig = make_rig()
    shopify = rig.queue_url("shopify")
    rig.sqs.fail(shopify, call=1, entries=2, sender_fault=False)

    result = rig.run()

    assert result.outcome == "caught_up"
    batches = [ids for url, ids in rig.sqs.calls if url == shopify]
    assert batches[1] == batches[0][:2]  # the retry carried the two failed entries only
    codes = Counter(list(rig.erp.stock()))
    for target, messages in rig.take_all().items():
        assert keys(messages) == codes, target


def test_failed_entry_with_sender_fault_fails_the_run_and_keeps_the_cursor(make_rig: MakeRig) -> None:
    # Mutations caught: a sender fault retried (it cannot succeed) or ignored; the cursor moved
    # although a message of the page was refused.
    rig = make_rig()
    synced(rig)
    before = rig.cursor()
    rig.clock.advance(30)
    set_stock(rig, SKU_000003=303, SKU_000004=404)  # both on the first page: one message
    allegro = rig.queue_url("allegro")
    calls = rig.sqs.calls_to(allegro)
    rig.sqs.fail(allegro, call=calls + 1, entries=1, sender_fault=True)

    failed = rig.run()

    assert failed.outcome == "failed" and failed.pages == 0
    assert failed.error is not None and "InvalidParameterValue" in failed.error
    assert rig.sqs.calls_to(allegro) == calls + 1  # not retried
    assert rig.cursor() == before
    assert rig.history_of(failed)["outcome"] == "failed"
    assert rig.take("allegro") == []
    assert keys(rig.take("shopify")) == Counter({"SKU-000003": 1, "SKU-000004": 1})

    recovered = rig.run()
    assert recovered.outcome == "caught_up" and recovered.changes == 2
    for target, messages in rig.take_all().items():
        assert keys(messages) == Counter({"SKU-000003": 1, "SKU-000004": 1}), target


# -- 7. malformed items ----------------------------------------------------------------------
def _no_warehouse_code(item: dict[str, Any]) -> None:
    del item["ItemWarehouseInfoCollection"][0]["WarehouseCode"]


def _quantity_in_words(item: dict[str, Any]) -> None:
    item["ItemWarehouseInfoCollection"][1]["InStock"] = "twelve"


def test_a_malformed_item_is_rejected_to_every_target_and_the_rest_go_on(make_rig: MakeRig) -> None:
    # Mutations caught: a malformed item failing the run (or the page); rejected items dropped
    # silently or sent to one target only; the reason lost.
    rig = make_rig()
    rig.transport.tamper = {"SKU-000011": _no_warehouse_code, "SKU-000012": _quantity_in_words}

    result = rig.run()

    assert (result.outcome, result.changes, result.rejected) == ("caught_up", ITEMS - 2, 2)
    good = Counter(c for c in rig.erp.stock() if c not in ("SKU-000011", "SKU-000012"))
    for target, messages in rig.take_all().items():
        assert keys(messages) == good, target
        rejected = {s.payload["key"]: s.payload for s in messages if s.envelope.topic == REJECTED_TOPIC}
        assert set(rejected) == {"SKU-000011", "SKU-000012"}, target
        assert {r["reason"] for r in rejected.values()} == {"malformed_item"}
        assert "WarehouseCode" in rejected["SKU-000011"]["error"]
        assert "InStock" in rejected["SKU-000012"]["error"]
        assert rejected["SKU-000012"]["item"]["ItemWarehouseInfoCollection"][1]["InStock"] == "twelve"
        for s in messages:
            if s.envelope.topic == REJECTED_TOPIC:
                assert s.envelope.idempotency_key == f"{rig.integration.name}:{s.envelope.delivery_id}"
    assert rig.cursor().position is not None


def test_a_malformed_item_is_rejected_once_not_on_every_run_that_re_reads_it(make_rig: MakeRig) -> None:
    # Each rejected message goes straight to the target's DLQ: one a minute per bad item all
    # day floods the DLQ that pages the operator.
    rig = make_rig()
    rig.transport.tamper = {"SKU-000012": _quantity_in_words}
    assert rig.run().rejected == 1
    rig.take_all()
    rig.clock.advance(60)
    set_stock(rig, SKU_000001=3)

    again = rig.run()

    for target, messages in rig.take_all().items():
        assert [s.envelope.topic for s in messages] == [CHANGES_TOPIC], target
    assert again.rejected == 0


# -- 8. the lease ----------------------------------------------------------------------------
def test_a_run_while_another_holds_the_lease_stops_as_overlap(make_rig: MakeRig) -> None:
    # Mutations caught: no lease (both runs poll and send); an overlap raised instead of returned;
    # an overlap not written to the history.
    rig = make_rig()
    holding, let_go = threading.Event(), threading.Event()

    def hold(n: int) -> None:
        if n == 1:
            holding.set()
            assert let_go.wait(10)

    rig.source.before_read = hold
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(first=rig.run()))
    first.start()
    try:
        assert holding.wait(10)
        second = rig.another_poller().run(lambda: PLENTY)
        assert (second.outcome, second.pages, second.changes) == ("overlap", 0, 0)
        assert rig.history_of(second)["outcome"] == "overlap"
        assert rig.take_all() == {"shopify": [], "allegro": []}
        assert len(rig.source.reads) == 1  # the second never read the ERP
    finally:
        let_go.set()
        first.join(10)
    assert results["first"].outcome == "caught_up"
    codes = Counter(list(rig.erp.stock()))
    for target, messages in rig.take_all().items():
        assert keys(messages) == codes, target


def test_the_lease_of_a_crashed_run_is_taken_over_once_it_expires(make_rig: MakeRig) -> None:
    # Mutations caught: a lease that never expires (the poller stops for good after one crash);
    # one that expires before the invocation could have ended.
    rig = make_rig()
    assert rig.poller.take_lease("crashed-run")
    taken = rig.clock()

    assert rig.run().outcome == "overlap"
    rig.clock.now = taken + lease_seconds(rig.integration) - 1
    assert rig.run().outcome == "overlap"
    rig.clock.now = taken + lease_seconds(rig.integration) + 1
    result = rig.run()

    assert (result.outcome, result.changes) == ("caught_up", ITEMS)
    assert rig.lease() is None
    assert [h["outcome"] for h in rig.history()].count("overlap") == 2


# -- 9. a crash between enqueue and the cursor write ------------------------------------------
def test_a_crash_after_the_sends_sends_the_same_messages_again(make_rig: MakeRig) -> None:
    # The environment dies on the second page's cursor write (and so releases nothing). The next
    # run, once the lease has lapsed, reads page two again and sends the same messages.
    # Mutations caught: the cursor written before the sends (page two lost); message ids that
    # change between reads (run id or read time in the delivery id).
    rig = make_rig()
    cursor_writes = [0]

    def second_cursor_write(params: dict[str, Any]) -> bool:
        if params.get("Item", {}).get("sk") != {"S": state_keys.CURSOR_SK}:
            return False
        cursor_writes[0] += 1
        return cursor_writes[0] == 2

    rig.ddb.add("put_item", when=second_cursor_write)
    rig.ddb.add("delete_item", when=lambda p: p.get("Key", {}).get("sk") == {"S": state_keys.LEASE_SK})

    with pytest.raises(Crash):
        rig.run()

    first = rig.take_all()
    assert rig.cursor().version == 1 and rig.lease() is not None
    assert rig.run().outcome == "overlap"
    rig.clock.advance(lease_seconds(rig.integration) + 1)
    resumed = rig.run()
    assert (resumed.outcome, resumed.pages) == ("caught_up", PAGES - 1)
    second = rig.take_all()

    codes = set(rig.erp.stock())
    page_two = set(sorted(codes)[PAGE_SIZE : 2 * PAGE_SIZE])
    for target in first:
        assert set(keys(first[target] + second[target])) == codes, target
        before = {s.envelope.delivery_id: s for s in first[target]}
        again = [s for s in second[target] if s.envelope.delivery_id in before]
        assert {k for s in again for k in s.keys} == page_two, target
        for s in again:
            earlier = before[s.envelope.delivery_id]
            assert s.envelope.idempotency_key == earlier.envelope.idempotency_key
            assert [(c["key"], c["stamp"], c["data"]) for c in s.payload["changes"]] == [
                (c["key"], c["stamp"], c["data"]) for c in earlier.payload["changes"]
            ]
        assert keys(second[target]) - keys(list(again)) == Counter(sorted(codes)[2 * PAGE_SIZE :]), target


# -- 10. the deadline ------------------------------------------------------------------------
def test_near_the_deadline_the_run_stops_and_the_next_continues(make_rig: MakeRig) -> None:
    # Mutations caught: pages started without the time to finish them; ``next`` not kept (the
    # next run starts over); lag not growing while the poller is behind.
    rig = make_rig()

    stopped = rig.run(lambda: PLENTY if len(rig.source.reads) < 2 else 10.0)

    assert (stopped.outcome, stopped.pages, stopped.changes) == ("deadline", 2, 2 * PAGE_SIZE)
    cursor = rig.cursor()
    assert cursor.position is None and cursor.next is not None
    history = rig.history_of(stopped)
    assert history["outcome"] == "deadline" and cursor.next in history["cursor_after"]
    assert "lag_seconds" not in history  # never caught up yet
    first = rig.take_all()

    started = rig.clock()
    resumed = rig.run()
    assert rig.source.reads[2].next == cursor.next
    assert (resumed.outcome, resumed.pages) == ("caught_up", PAGES - 2)
    second = rig.take_all()
    codes = Counter(list(rig.erp.stock()))
    for target in first:
        assert keys(first[target] + second[target]) == codes, target

    # Behind again: the lag counts from the start of the last run that caught up.
    rig.clock.advance(600)
    set_stock(rig, SKU_000001=1, SKU_000035=35)
    behind = rig.run(lambda: PLENTY if len(rig.source.reads) < PAGES else 10.0)
    assert behind.outcome == "deadline"
    assert behind.lag_seconds == rig.clock() - started


# -- 11. business rules changed --------------------------------------------------------------
def test_a_cursor_of_other_rules_makes_a_full_resync(make_rig: MakeRig) -> None:
    # Mutation caught: the rules version not compared (the changed rules reach only the keys
    # that happen to change at the ERP).
    rig = make_rig()
    synced(rig)
    current = rig.cursor()
    table, name = rig.state_table, rig.integration.name
    assert write_cursor(rig.boto_ddb, table, name, replace(current, rules="rules-of-last-week"), current.version)
    rig.clock.advance(30)

    result = rig.run()

    assert (result.outcome, result.changes, result.cursor_before) == ("caught_up", ITEMS, None)
    codes = Counter(list(rig.erp.stock()))
    for target, messages in rig.take_all().items():
        assert keys(messages) == codes, target
    assert rig.cursor().rules == RULES_VERSION
    assert rig.run().changes == 0


# -- 12. the versioned cursor ----------------------------------------------------------------
def test_a_cursor_write_at_a_stale_version_changes_nothing(make_rig: MakeRig) -> None:
    # Mutations caught: an unconditional put (the stale writer wins); a first write that
    # replaces an existing cursor.
    rig = make_rig()
    synced(rig)
    table, name = rig.state_table, rig.integration.name
    current = rig.cursor()
    moved = replace(current, position="2026-03-01T00:00:00", seen={})

    assert write_cursor(rig.boto_ddb, table, name, moved, current.version - 1) is False
    assert write_cursor(rig.boto_ddb, table, name, moved, 0) is False
    assert rig.cursor() == current
    assert write_cursor(rig.boto_ddb, table, name, moved, current.version) is True
    assert rig.cursor() == replace(moved, version=current.version + 1)


def test_a_run_whose_cursor_moved_under_it_stops_as_lost_lease(make_rig: MakeRig) -> None:
    # An operator resets the cursor between the run's first and second page.
    # Mutation caught: the cursor written without its version condition (the run overwrites the
    # operator's reset and carries on).
    rig = make_rig()
    table, name = rig.state_table, rig.integration.name
    reset: list[Any] = []

    def operator_resets(n: int) -> None:
        if n == 2:
            c = rig.cursor()
            fresh = replace(c, position="2026-03-09T00:00:00", next=None, pass_high=None, seen={})
            assert write_cursor(rig.boto_ddb, table, name, fresh, c.version)
            reset.append(replace(fresh, version=c.version + 1))

    rig.source.before_read = operator_resets

    result = rig.run()

    assert (result.outcome, result.pages) == ("lost_lease", 1)
    assert rig.cursor() == reset[0]
    assert rig.history_of(result)["outcome"] == "lost_lease"
    assert rig.lease() is None
