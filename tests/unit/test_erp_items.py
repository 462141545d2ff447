"""The ERP stock read: the stand-in's Items resource as the Service Layer serves it, and the
client's paging over it, including what goes wrong (expiry, refusals, outages, changing data)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from junction_local.standins.erp import (
    COMPANY_DB,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PASSWORD,
    USERNAME,
    ErpStandIn,
)
from shared.connectors.erp import (
    ErpClient,
    ErpSettings,
    ItemsPage,
    WarehouseStock,
    item_version,
    parse_stock,
)
from shared.errors import ConfigurationError, RateLimited, TargetRejected, TargetUnavailable, ValidationFailed

DAY_1 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC).timestamp()
LOGIN = {"CompanyDB": COMPANY_DB, "UserName": USERNAME, "Password": PASSWORD}


class Clock:
    """The stand-in's clock, moved by the test: no waiting for days or sessions to pass."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, year: int, month: int, day: int, hour: int, minute: int, second: int) -> None:
        self.now = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def shared_clock() -> Clock:
    return Clock(DAY_1)


@pytest.fixture(scope="module")
def server(shared_clock: Clock) -> Iterator[ErpStandIn]:
    with ErpStandIn(clock=shared_clock, session_timeout_seconds=60) as standin:
        yield standin


@pytest.fixture
def clock(shared_clock: Clock) -> Clock:
    shared_clock.now = DAY_1
    return shared_clock


@pytest.fixture
def erp(server: ErpStandIn, clock: Clock) -> ErpStandIn:
    """One server for the module, emptied before each test (starting one costs half a second)."""
    server.set_behaviour("ok")
    server.set_session_timeout(60)
    server.reset()
    return server


class Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> None:
        self.paths.append(request.url.path.rsplit("/", 1)[-1])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(erp: ErpStandIn, recorder: Recorder) -> Iterator[ErpClient]:
    http = httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), event_hooks={"request": [recorder]})
    erp_client = ErpClient(ErpSettings(erp.url, COMPANY_DB, USERNAME, PASSWORD), http)
    yield erp_client
    erp_client.close()


@pytest.fixture
def raw(erp: ErpStandIn) -> Iterator[httpx.Client]:
    """A logged-in plain HTTP client, to see the Service Layer's own answers."""
    with httpx.Client(base_url=erp.url, timeout=10.0) as http:
        assert http.post("/Login", json=LOGIN).status_code == 200
        yield http


def read_all(client: ErpClient, since: date, page_size: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    page = client.items_page(since, page_size=page_size)
    pages = 1
    items += page.items
    while page.next_link:
        page = client.items_page(since, page_size=page_size, next_link=page.next_link)
        pages += 1
        items += page.items
    return items, pages


def codes(items: list[dict[str, Any]]) -> list[str]:
    return [item["ItemCode"] for item in items]


# -- paging ----------------------------------------------------------------------------------
def test_paging_returns_every_item_once_in_code_order_with_next_links_until_the_end(
    erp: ErpStandIn, client: ErpClient
) -> None:
    erp.seed_items(95, prefix="P-")
    first = client.items_page(date(2026, 11, 23), page_size=10)
    assert isinstance(first, ItemsPage) and len(first.items) == 10
    assert first.next_link is not None and first.next_link.startswith("Items?")
    assert "$skip=10" in first.next_link and "$select=" in first.next_link
    assert set(first.items[0]) == {"ItemCode", "UpdateDate", "UpdateTime", "ItemWarehouseInfoCollection"}

    items, pages = read_all(client, date(2026, 11, 23), 10)
    expected = sorted(erp.stock())
    assert codes(items) == expected  # once each, ItemCode order
    assert len(expected) == 95 + 6 and pages == 11
    last = client.items_page(date(2026, 11, 23), page_size=200)
    assert last.next_link is None and len(last.items) == 101


def test_page_size_defaults_to_20_is_capped_and_the_applied_size_is_answered(
    erp: ErpStandIn, raw: httpx.Client
) -> None:
    erp.seed_items(MAX_PAGE_SIZE + 50)
    plain = raw.get("/Items", params={"$select": "ItemCode"})
    assert len(plain.json()["value"]) == DEFAULT_PAGE_SIZE and "preference-applied" not in plain.headers
    assert plain.json()["odata.nextLink"].endswith(f"$skip={DEFAULT_PAGE_SIZE}")

    asked = raw.get("/Items", params={"$select": "ItemCode"}, headers={"Prefer": "odata.maxpagesize=7"})
    assert len(asked.json()["value"]) == 7 and asked.headers["preference-applied"] == "odata.maxpagesize=7"

    too_many = raw.get("/Items", params={"$select": "ItemCode"}, headers={"Prefer": "odata.maxpagesize=5000"})
    assert len(too_many.json()["value"]) == MAX_PAGE_SIZE
    assert too_many.headers["preference-applied"] == f"odata.maxpagesize={MAX_PAGE_SIZE}"

    bad = raw.get("/Items", headers={"Prefer": "odata.maxpagesize=lots"})
    assert bad.status_code == 400 and "maxpagesize" in bad.json()["error"]["message"]["value"]


def test_top_and_skip_bound_the_read_and_the_next_link_carries_what_is_left(erp: ErpStandIn, raw: httpx.Client) -> None:
    erp.seed_items(30, prefix="T-")
    params = {"$select": "ItemCode", "$filter": "ItemCode ge 'T-'", "$top": "12", "$skip": "3"}
    first = raw.get("/Items", params=params, headers={"Prefer": "odata.maxpagesize=5"}).json()
    assert codes(first["value"]) == [f"T-{n:06d}" for n in range(4, 9)]
    assert "$top=7" in first["odata.nextLink"] and "$skip=8" in first["odata.nextLink"]
    read = codes(first["value"])
    link = first["odata.nextLink"]
    while link:
        page = raw.get("/" + link, headers={"Prefer": "odata.maxpagesize=5"}).json()
        read += codes(page["value"])
        link = page.get("odata.nextLink")
    assert read == [f"T-{n:06d}" for n in range(4, 16)]


def test_a_change_during_paging_may_repeat_an_item_but_never_skips_one(
    erp: ErpStandIn, client: ErpClient, clock: Clock
) -> None:
    erp.seed_items(60, prefix="C-")  # all stamped on day 1
    clock.set(2026, 11, 24, 9, 0, 0)
    changed_first = [f"C-{n:06d}" for n in range(10, 60, 5)]  # ten items change on day 2
    erp.set_stock([{"item": code, "warehouse": "01", "in_stock": 1} for code in changed_first])

    since = date(2026, 11, 24)
    page = client.items_page(since, page_size=3)
    read = codes(page.items)
    assert read == changed_first[:3]
    # An item before the reader's offset enters the set: later items shift back by one ...
    erp.set_stock([{"item": "C-000001", "in_stock": 2}])
    # ... and one after the offset enters too, to be read in its turn.
    erp.set_stock([{"item": "C-000057", "committed": 1}])
    while page.next_link:
        page = client.items_page(since, page_size=3, next_link=page.next_link)
        read += codes(page.items)

    assert set(changed_first) <= set(read)  # none of the items present when reading began is missed
    assert "C-000057" in read
    assert read.count(changed_first[2]) == 2  # the item on the page boundary was read twice


# -- the date filter ---------------------------------------------------------------------------
def test_the_date_only_filter_finds_changes_of_the_day_including_backdated_ones(
    erp: ErpStandIn, client: ErpClient, clock: Clock
) -> None:
    erp.seed_items(5, prefix="D-")
    clock.set(2026, 11, 24, 12, 0, 0)
    erp.set_stock([{"item": "D-000001", "in_stock": 9}])
    erp.set_stock([{"item": "D-000003", "in_stock": 4}], backdate_seconds=3 * 3600)  # committed late, at 09:00
    erp.set_stock([{"item": "D-000004", "in_stock": 4}], backdate_seconds=13 * 3600)  # stamped the day before

    items, _ = read_all(client, date(2026, 11, 24), 50)
    assert codes(items) == ["D-000001", "D-000003"]
    assert [item_version(i) for i in items] == ["2026-11-24T12:00:00", "2026-11-24T09:00:00"]
    assert erp.item("D-000004")["UpdateDate"] == "2026-11-23"  # type: ignore[index]
    assert "D-000004" in codes(read_all(client, date(2026, 11, 23), 50)[0])  # a day's lookback finds it


def test_a_combined_date_and_time_filter_misses_a_later_day_at_an_earlier_hour(
    erp: ErpStandIn, raw: httpx.Client, clock: Clock
) -> None:
    clock.set(2026, 11, 23, 23, 59, 59)
    erp.set_stock([{"item": "MUG-BLUE", "in_stock": 1}])  # the last change the reader saw: 23:59:59
    clock.set(2026, 11, 24, 0, 0, 1)
    erp.set_stock([{"item": "MUG-RED", "in_stock": 2}])  # two seconds later, on the next day
    assert raw.post("/Login", json=LOGIN).status_code == 200  # the clock moved past the session

    def matching(condition: str) -> list[str]:
        answer = raw.get("/Items", params={"$select": "ItemCode", "$filter": condition})
        assert answer.status_code == 200, answer.text
        return codes(answer.json()["value"])

    trap = "UpdateDate ge '2026-11-23' and UpdateTime ge '23:59:59'"
    assert matching(trap) == ["MUG-BLUE"]  # each field compared on its own: MUG-RED's 00:00:01 fails
    assert "MUG-RED" in matching("UpdateDate ge '2026-11-23'")  # the date alone finds it (and repeats others)
    assert matching("UpdateDate ge '2026-11-24'") == ["MUG-RED"]
    assert matching("UpdateDate eq '2026-11-24' or (ItemCode eq 'TEAPOT-L')") == ["MUG-RED", "TEAPOT-L"]


# -- stock and orders ------------------------------------------------------------------------
def test_a_sales_order_commits_stock_and_touches_the_items_stamp(
    erp: ErpStandIn, client: ErpClient, clock: Clock
) -> None:
    before = erp.stock()["MUG-BLUE"]
    clock.set(2026, 11, 25, 8, 30, 0)
    client.request("POST", "/BusinessPartners", {}, body={"CardCode": "C1", "CardName": "Anna"})
    client.request(
        "POST",
        "/Orders",
        {},
        body={
            "CardCode": "C1",
            "DocumentLines": [
                {"ItemCode": "MUG-BLUE", "Quantity": 2.0},
                {"ItemCode": "MUG-BLUE", "Quantity": 1, "WarehouseCode": "02"},
            ],
        },
    )
    after = erp.stock()["MUG-BLUE"]
    assert after["01"]["Committed"] == before["01"]["Committed"] + 2
    assert after["02"]["Committed"] == before["02"]["Committed"] + 1
    assert after["01"]["InStock"] == before["01"]["InStock"]
    page = client.items_page(date(2026, 11, 25), page_size=10)
    assert codes(page.items) == ["MUG-BLUE"] and item_version(page.items[0]) == "2026-11-25T08:30:00"
    stock = parse_stock(page.items[0])
    assert stock["01"].available == Decimal(before["01"]["InStock"]) - Decimal(after["01"]["Committed"])

    refused = client.request(
        "POST",
        "/Orders",
        {},
        body={"CardCode": "C1", "DocumentLines": [{"ItemCode": "MUG-BLUE", "Quantity": 1, "WarehouseCode": "99"}]},
        accept=(400,),
    )
    assert refused.status_code == 400 and erp.stock()["MUG-BLUE"] == after  # refused: nothing committed


def test_stock_control_over_http_sets_seeds_and_reports(erp: ErpStandIn) -> None:
    with httpx.Client(base_url=erp.root_url, timeout=10.0) as http:
        seeded = http.post("/_standin/items/seed", json={"count": 3, "prefix": "H-", "warehouses": ["01"], "seed": 7})
        assert seeded.json() == {"seeded": 3, "items": 9}
        with ErpStandIn(clock=lambda: DAY_1) as again:
            again.seed_items(3, prefix="H-", warehouses=["01"], seed=7)
            assert again.stock()["H-000002"] == erp.stock()["H-000002"]  # the same seed, the same stock
        changed = http.post(
            "/_standin/stock", json={"changes": [{"item": "H-000001", "warehouse": "01", "in_stock": 5, "ordered": 3}]}
        )
        assert changed.json() == {"changed": 1}
        assert http.get("/_standin/stock").json()["H-000001"]["01"] == {
            "InStock": 5,
            "Committed": erp.stock()["H-000001"]["01"]["Committed"],
            "Ordered": 3,
        }
        assert http.post("/_standin/stock", json={"changes": [{"item": "NOPE", "in_stock": 1}]}).status_code == 404
        assert (
            http.post("/_standin/stock", json={"changes": [{"item": "H-000001", "in_stock": "x"}]}).status_code == 400
        )
        assert http.post("/_standin/items/seed", json={"count": -1}).status_code == 400
        summary = http.get("/_standin/summary").json()
        assert summary["items"] == 9 and summary["items_reads"] == 0


# -- sessions and failures -------------------------------------------------------------------
def test_an_expired_session_mid_read_logs_in_again_and_the_read_continues(
    erp: ErpStandIn, client: ErpClient, clock: Clock, recorder: Recorder
) -> None:
    erp.seed_items(30, prefix="S-")
    page = client.items_page(date(2026, 11, 23), page_size=10)
    clock.now += 61  # idle past the 60 s SessionTimeout
    rest: list[dict[str, Any]] = []
    while page.next_link:
        page = client.items_page(date(2026, 11, 23), page_size=10, next_link=page.next_link)
        rest += page.items
    assert len(rest) == 36 - 10
    assert recorder.paths.count("Login") == 2
    assert erp.summary()["items_reads"] == 4  # the request refused for its expired session is not one


def test_an_unknown_or_expired_session_is_refused_with_code_301(erp: ErpStandIn, clock: Clock) -> None:
    with httpx.Client(base_url=erp.url, timeout=10.0) as http:
        unknown = http.get("/Items", headers={"Cookie": "B1SESSION=forged"})
        assert unknown.status_code == 401 and unknown.json()["error"]["code"] == 301
        login = http.post("/Login", json=LOGIN)
        assert login.json()["SessionTimeout"] == 1  # minutes, as the Service Layer reports it
        assert http.get("/Items('MUG-RED')").status_code == 200
        clock.now += 59
        assert http.get("/Items('MUG-RED')").status_code == 200  # used: the idle time starts again
        clock.now += 59
        assert http.get("/Items('MUG-RED')").status_code == 200
        clock.now += 61
        expired = http.get("/Items('MUG-RED')")
        assert expired.status_code == 401 and expired.json()["error"]["code"] == 301


@pytest.mark.parametrize(
    ("mode", "error"),
    [("down", TargetUnavailable), ("rate_limited", RateLimited), ("timeout", TargetUnavailable)],
)
def test_outages_are_classified(erp: ErpStandIn, client: ErpClient, mode: str, error: type[Exception]) -> None:
    client.items_page(date(2026, 11, 23), page_size=5)  # logged in
    erp.set_behaviour(mode, retry_after=7, delay=0.01)
    with pytest.raises(error) as raised:
        client.items_page(date(2026, 11, 23), page_size=5)
    if mode == "rate_limited":
        assert raised.value.retry_after == 7.0  # type: ignore[attr-defined]
    erp.set_behaviour("ok")
    assert len(client.items_page(date(2026, 11, 23), page_size=5).items) == 5


def test_flaky_refuses_a_seeded_fraction_of_requests(erp: ErpStandIn, client: ErpClient) -> None:
    client.items_page(date(2026, 11, 23), page_size=5)

    def outcomes() -> list[bool]:
        seen = []
        for _ in range(40):
            try:
                client.items_page(date(2026, 11, 23), page_size=5)
                seen.append(True)
            except TargetUnavailable:
                seen.append(False)
        return seen

    erp.set_behaviour("flaky", rate=0.5, seed=3)
    first = outcomes()
    erp.set_behaviour("flaky", rate=0.5, seed=3)
    assert outcomes() == first  # the same seed refuses the same requests
    assert 5 < first.count(False) < 35
    erp.set_behaviour("flaky", rate=1.0)
    with pytest.raises(TargetUnavailable):
        client.items_page(date(2026, 11, 23), page_size=5)
    with pytest.raises(ValueError, match="rate"):
        erp.set_behaviour("flaky", rate=1.5)


# -- refused queries and malformed items -------------------------------------------------------
@pytest.mark.parametrize(
    "condition",
    [
        "UpdateDate ge 2026-11-23",  # unquoted date
        "UpdateDate ge '23.11.2026'",
        "UpdateDate ge '2026-02-30'",
        "UpdateTime ge '25:00:00'",
        "UpdateDate foo '2026-11-23'",
        "InStock gt 5",
        "UpdateDate ge '2026-11-23' and",
        "(UpdateDate ge '2026-11-23'",
        "substringof('MUG', ItemCode)",
    ],
)
def test_a_malformed_filter_is_a_service_layer_400(raw: httpx.Client, condition: str) -> None:
    answer = raw.get("/Items", params={"$filter": condition})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert isinstance(error["code"], int) and error["message"]["lang"] == "en-us" and error["message"]["value"]


def test_other_unsupported_options_are_refused_and_a_missing_item_is_2028(raw: httpx.Client) -> None:
    assert raw.get("/Items", params={"$select": "ItemCode,Price"}).status_code == 400
    assert raw.get("/Items", params={"$orderby": "UpdateDate desc"}).status_code == 400
    assert raw.get("/Items", params={"$expand": "ItemPrices"}).status_code == 400
    assert raw.get("/Items", params={"$top": "-1"}).status_code == 400
    missing = raw.get("/Items('NO-SUCH')")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == -2028
    one = raw.get("/Items('MUG-RED')", params={"$select": "ItemCode,UpdateDate"}).json()
    assert one == {"ItemCode": "MUG-RED", "UpdateDate": "2026-11-23"}


def test_a_refused_query_or_a_forged_next_link_is_target_rejected(client: ErpClient, erp: ErpStandIn) -> None:
    with pytest.raises(TargetRejected) as raised:
        client.items_page(date(2026, 11, 23), page_size=5, next_link="Items?$filter=UpdateDate%20ge%20yesterday")
    assert raised.value.details["status"] == 400 and raised.value.details["erp_code"] is not None
    for forged in ("https://evil.example/Items?$skip=5", "Orders?$skip=5", "/other/Items?$skip=5"):
        with pytest.raises(TargetRejected):
            client.items_page(date(2026, 11, 23), page_size=5, next_link=forged)
    absolute = client.items_page(date(2026, 11, 23), page_size=5, next_link=f"{erp.url}/Items?$skip=4")
    assert len(absolute.items) == 2
    with pytest.raises(ConfigurationError):
        client.items_page(date(2026, 11, 23), page_size=0)


def good_item() -> dict[str, Any]:
    return {
        "ItemCode": "MUG-BLUE",
        "UpdateDate": "2026-11-23",
        "UpdateTime": "10:15:30",
        "ItemWarehouseInfoCollection": [
            {"WarehouseCode": "01", "InStock": 12, "Committed": 2.5, "Ordered": 0},
            {"WarehouseCode": "02", "InStock": -3, "Committed": 0, "Ordered": 4},
        ],
    }


def test_item_version_is_fixed_width_and_sortable() -> None:
    assert item_version(good_item()) == "2026-11-23T10:15:30"
    v4 = {**good_item(), "UpdateDate": "2026-11-23T00:00:00Z"}
    assert item_version(v4) == "2026-11-23T10:15:30"
    later = {**good_item(), "UpdateDate": "2026-11-24", "UpdateTime": "00:00:01"}
    assert item_version(later) > item_version(good_item())


@pytest.mark.parametrize(
    "change",
    [
        {"UpdateDate": None},
        {"UpdateDate": "2026-13-01"},
        {"UpdateDate": "23/11/2026"},
        {"UpdateDate": "2026-11-23T10:00:00Z"},  # a date field with a time: not what the Service Layer sends
        {"UpdateTime": None},
        {"UpdateTime": "10:15"},
        {"UpdateTime": "24:00:00"},
        {"UpdateTime": 101530},
    ],
)
def test_item_version_rejects_a_malformed_stamp(change: dict[str, Any]) -> None:
    item = {**good_item(), **change}
    with pytest.raises(ValidationFailed) as raised:
        item_version(item)
    assert raised.value.entity_ids == {"item": "MUG-BLUE"}


def test_parse_stock_reads_exact_quantities_and_allows_negative_stock() -> None:
    stock = parse_stock(good_item())
    assert stock == {
        "01": WarehouseStock(Decimal("12"), Decimal("2.5"), Decimal("0")),
        "02": WarehouseStock(Decimal("-3"), Decimal("0"), Decimal("4")),
    }
    assert stock["01"].available == Decimal("9.5")


@pytest.mark.parametrize(
    "rows",
    [
        None,
        "01",
        [{"InStock": 1, "Committed": 0, "Ordered": 0}],  # no WarehouseCode
        [{"WarehouseCode": "", "InStock": 1, "Committed": 0, "Ordered": 0}],
        [{"WarehouseCode": "01", "InStock": "12", "Committed": 0, "Ordered": 0}],
        [{"WarehouseCode": "01", "InStock": True, "Committed": 0, "Ordered": 0}],
        [{"WarehouseCode": "01", "InStock": float("nan"), "Committed": 0, "Ordered": 0}],
        [{"WarehouseCode": "01", "InStock": 1, "Committed": 0}],  # Ordered missing
        [
            {"WarehouseCode": "01", "InStock": 1, "Committed": 0, "Ordered": 0},
            {"WarehouseCode": "01", "InStock": 2, "Committed": 0, "Ordered": 0},
        ],
        ["01"],
    ],
)
def test_parse_stock_rejects_a_malformed_collection(rows: Any) -> None:
    with pytest.raises(ValidationFailed, match="ERP item"):
        parse_stock({**good_item(), "ItemWarehouseInfoCollection": rows})


# -- scale -------------------------------------------------------------------------------------
def test_a_hundred_thousand_items_read_in_pages_of_a_thousand(erp: ErpStandIn, client: ErpClient) -> None:
    assert erp.seed_items(100_000) == 100_006
    items, pages = read_all(client, date(2026, 11, 23), 1000)
    assert pages == 101
    read = codes(items)
    assert len(read) == len(set(read)) == 100_006
    assert read == sorted(read)
    assert all(len(parse_stock(item)) == 2 for item in items[:1000])
