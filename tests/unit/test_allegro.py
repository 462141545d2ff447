"""The Allegro client against the Allegro stand-in (in-process, port 0): stock commands, OAuth
refresh-token rotation shared through one secret, rate limits and failure modes."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from junction_local.standins.allegro import (
    CLIENT_ID,
    CLIENT_SECRET,
    INITIAL_REFRESH_TOKEN,
    LOCAL,
    MEDIA_TYPE,
    AllegroStandIn,
)
from shared.connectors.allegro import (
    MAX_OFFERS_PER_COMMAND,
    AllegroClient,
    AllegroSettings,
    TaskFailure,
    derive_command_id,
)
from shared.errors import (
    ConfigurationError,
    CredentialsRejected,
    IdempotencyConflict,
    RateLimited,
    StoreUnavailable,
    TargetRejected,
    TargetUnavailable,
)

TWELVE_HOURS = 12 * 3600.0


class Clock:
    """One controllable clock for the stand-in and the clients: tokens age when it moves."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Secret:
    """The allegro-api secret as Secrets Manager holds it, with every read and write recorded."""

    def __init__(self, doc: dict[str, Any], events: list[tuple[str, ...]] | None = None) -> None:
        self.doc = dict(doc)
        self.reads: list[bool] = []
        self.writes: list[dict[str, Any]] = []
        self.events = events if events is not None else []
        self.fail_writes = 0
        self.after_next_read: Callable[[], None] | None = None  # plays what happens meanwhile

    def source(self, refresh: bool) -> dict[str, Any]:
        self.reads.append(refresh)
        doc = dict(self.doc)
        meanwhile, self.after_next_read = self.after_next_read, None
        if meanwhile is not None:
            meanwhile()
        return doc

    def store(self, doc: dict[str, Any]) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise StoreUnavailable("secret store unavailable")
        self.events.append(("store",))
        self.writes.append(dict(doc))
        self.doc = dict(doc)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def standin(clock: Clock) -> Iterator[AllegroStandIn]:
    with AllegroStandIn(tasks_per_second=500_000, clock=clock) as running:
        yield running


def make_client(
    standin: AllegroStandIn, secret: Secret, clock: Clock, events: list[tuple[str, ...]] | None = None
) -> AllegroClient:
    hooks = {"request": [lambda r: events.append(("http", r.method, r.url.path))]} if events is not None else {}
    return AllegroClient(secret.source, secret.store, httpx.Client(event_hooks=hooks), clock=clock)


def secret_for(standin: AllegroStandIn, **overrides: Any) -> Secret:
    return Secret({**LOCAL.credentials(standin.url), **overrides})


def settle(standin: AllegroStandIn) -> None:
    """Wait until the stand-in has processed every queued task (a condition, not a duration)."""
    for _ in range(4000):
        if standin.summary()["tasks_pending"] == 0:
            return
        time.sleep(0.005)
    raise AssertionError("the stand-in did not finish its tasks")


def grant(standin: AllegroStandIn, refresh_token: str, secret: str = CLIENT_SECRET) -> httpx.Response:
    return httpx.post(
        standin.url + "/auth/oauth/token",
        auth=(CLIENT_ID, secret),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )


def api(standin: AllegroStandIn, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": MEDIA_TYPE, **kw.pop("headers", {})}
    return httpx.request(method, standin.url + path, headers=headers, **kw)


def standin_token(standin: AllegroStandIn) -> str:
    response = grant(standin, INITIAL_REFRESH_TOKEN)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def command_body(offer_ids: list[str], value: int, change_type: str = "FIXED") -> dict[str, Any]:
    return {
        "modification": {"changeType": change_type, "value": value},
        "offerCriteria": [{"type": "CONTAINS_OFFERS", "offers": [{"id": o} for o in offer_ids]}],
    }


# -- stock commands ---------------------------------------------------------------------------
def test_commands_set_the_quantity_of_many_offers(standin: AllegroStandIn, clock: Clock) -> None:
    standin.seed_offers(2500, quantity=3)
    client = make_client(standin, secret_for(standin), clock)
    by_sku = dict(client.offers())
    offer_ids = sorted(by_sku.values())
    chunks = [offer_ids[i : i + MAX_OFFERS_PER_COMMAND] for i in range(0, len(offer_ids), MAX_OFFERS_PER_COMMAND)]

    commands = [derive_command_id(f"stock-run-1/{n}") for n in range(len(chunks))]
    for command_id, chunk in zip(commands, chunks, strict=True):
        accepted = client.change_quantity(command_id, chunk, 7)
        assert (accepted.id, accepted.done) == (command_id, False)
    settle(standin)

    statuses = [client.command(c) for c in commands]
    assert [(s.total, s.success, s.failed, s.done) for s in statuses] == [
        (1000, 1000, 0, True),
        (1000, 1000, 0, True),
        (500, 500, 0, True),
    ]
    assert set(standin.quantities().values()) == {7}
    assert standin.summary()["tasks_done"] == 2500


def test_offers_allegro_cannot_change_are_reported_with_its_reason(standin: AllegroStandIn, clock: Clock) -> None:
    active, ended = standin.seed_offers(2, quantity=1)
    standin.end_offers(["SKU-000002"])
    client = make_client(standin, secret_for(standin), clock)
    command_id = str(uuid.uuid4())

    client.change_quantity(command_id, [active, ended, "19999999999"], 5)
    settle(standin)

    status = client.command(command_id)
    assert (status.total, status.success, status.failed, status.done) == (3, 2, 1, True)
    assert client.failed_tasks(command_id) == [
        TaskFailure("19999999999", "OfferNotFoundException", "Offer 19999999999 not found")
    ]
    # An ended offer takes stock too (Allegro asks for stock before it activates one); it stays ended.
    assert standin.quantities() == {"SKU-000001": 5, "SKU-000002": 5}
    assert standin.state()["ended"] == ["SKU-000002"]


def test_offers_without_stock_are_ended_and_activated_once_they_have_stock(
    standin: AllegroStandIn, clock: Clock
) -> None:
    offers = standin.seed_offers(2, quantity=3)
    client = make_client(standin, secret_for(standin), clock)
    end, early, activate = (derive_command_id(f"publication/{n}") for n in range(3))

    client.change_publication(end, offers, "END")
    settle(standin)
    assert client.publication(end).done
    assert standin.state()["ended"] == ["SKU-000001", "SKU-000002"]

    zero = standin.add_offer("ZERO-1", quantity=0, status="ENDED")
    client.change_publication(early, [zero], "ACTIVATE")  # no stock yet: refused per offer
    settle(standin)
    assert [(f.offer_id, f.code) for f in client.failed_publication_tasks(early)] == [
        (zero, "AvailableStockMustEqualToOneOrBeGreaterThanOne")
    ]

    client.change_quantity(derive_command_id("stock/zero"), [zero], 2)
    settle(standin)
    client.change_publication(activate, [*offers, zero], "ACTIVATE")
    settle(standin)
    status = client.publication(activate)
    assert (status.total, status.success, status.failed) == (3, 3, 0)
    assert standin.state()["ended"] == []
    assert client.failed_publication_tasks(activate) == []

    with pytest.raises(IdempotencyConflict):
        client.change_publication(end, offers, "ACTIVATE")
    with pytest.raises(ValueError, match="action"):
        client.change_publication(str(uuid.uuid4()), offers, "PAUSE")
    with pytest.raises(TargetRejected):  # the two kinds of command do not share ids
        client.command(end)


def test_a_quantity_allegro_cannot_hold_fails_the_task(standin: AllegroStandIn, clock: Clock) -> None:
    """FIXED 0 is accepted and fails per offer; a GAIN past the stock ceiling fails the same way."""
    (offer,) = standin.seed_offers(1, quantity=4)
    token = grant(standin, INITIAL_REFRESH_TOKEN).json()["access_token"]
    headers = {"Content-Type": MEDIA_TYPE}
    zero, gain = str(uuid.uuid4()), str(uuid.uuid4())
    path = "/sale/offer-quantity-change-commands/"

    assert api(standin, "PUT", path + zero, token, json=command_body([offer], 0), headers=headers).status_code == 201
    assert (
        api(standin, "PUT", path + gain, token, json=command_body([offer], 99_999, "GAIN"), headers=headers).status_code
        == 201
    )
    settle(standin)

    client = make_client(standin, secret_for(standin), clock)
    assert [f.code for f in client.failed_tasks(zero) + client.failed_tasks(gain)] == ["INVALID_OFFER_QUANTITY"] * 2
    assert standin.quantities() == {"SKU-000001": 4}


def test_the_same_command_sent_again_applies_nothing_new(standin: AllegroStandIn, clock: Clock) -> None:
    offers = standin.seed_offers(3)
    client = make_client(standin, secret_for(standin), clock)
    first, later = derive_command_id("run-1"), derive_command_id("run-2")
    client.change_quantity(first, offers, 5)
    settle(standin)
    client.change_quantity(later, offers, 9)
    settle(standin)

    again = client.change_quantity(first, offers, 5)  # a retry of the first run
    settle(standin)

    assert (again.id, again.total, again.success, again.done) == (first, 3, 3, True)
    assert set(standin.quantities().values()) == {9}
    assert standin.summary()["commands"] == 2
    assert standin.summary()["tasks_done"] == 6


def test_the_same_command_id_with_other_content_is_refused(standin: AllegroStandIn, clock: Clock) -> None:
    offers = standin.seed_offers(2)
    client = make_client(standin, secret_for(standin), clock)
    command_id = derive_command_id("run-1")
    client.change_quantity(command_id, offers, 5)

    with pytest.raises(IdempotencyConflict) as refused:
        client.change_quantity(command_id, offers, 6)
    assert refused.value.details["codes"] == ["COMMAND_ALREADY_REGISTERED_WITH_DIFFERENT_CONTENT"]
    with pytest.raises(IdempotencyConflict):
        client.change_quantity(command_id, offers[:1], 5)


def test_more_offers_than_a_command_takes_are_refused(standin: AllegroStandIn, clock: Clock) -> None:
    offers = standin.seed_offers(MAX_OFFERS_PER_COMMAND + 1)
    client = make_client(standin, secret_for(standin), clock)
    list(client.offers())
    before = standin.summary()["requests"]

    with pytest.raises(ValueError, match="at most 1000"):
        client.change_quantity(str(uuid.uuid4()), offers, 5)
    assert standin.summary()["requests"] == before  # refused before sending

    token = standin_token(standin)
    answer = api(
        standin,
        "PUT",
        f"/sale/offer-quantity-change-commands/{uuid.uuid4()}",
        token,
        json=command_body(offers, 5),
        headers={"Content-Type": MEDIA_TYPE},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    assert standin.summary()["commands"] == 0


@pytest.mark.parametrize(
    ("command_id", "offer_ids", "quantity", "reason"),
    [
        ("not-a-uuid", ["1"], 5, "UUID"),
        (str(uuid.uuid4()), [], 5, "at least one offer"),
        (str(uuid.uuid4()), "123", 5, "not one string"),
        (str(uuid.uuid4()), ["12", "12"], 5, "more than once"),
        (str(uuid.uuid4()), ["SKU-1"], 5, "numeric"),
        (str(uuid.uuid4()), ["1"], 0, "ended instead"),
        (str(uuid.uuid4()), ["1"], 100_000, "between 1 and 99999"),
        (str(uuid.uuid4()), ["1"], True, "integer"),
    ],
)
def test_bad_input_is_refused_before_sending(
    standin: AllegroStandIn, clock: Clock, command_id: str, offer_ids: Any, quantity: Any, reason: str
) -> None:
    client = make_client(standin, secret_for(standin), clock)
    with pytest.raises(ValueError, match=reason):
        client.change_quantity(command_id, offer_ids, quantity)
    assert standin.summary()["requests"] == 0


def test_a_command_counts_zeros_until_allegro_starts_it(clock: Clock) -> None:
    with AllegroStandIn(tasks_per_second=1e-6, clock=clock) as slow:
        offers = slow.seed_offers(2)
        client = make_client(slow, secret_for(slow), clock)
        command_id = str(uuid.uuid4())

        accepted = client.change_quantity(command_id, offers, 5)
        status = client.command(command_id)

        assert (accepted.total, accepted.done) == (0, False)
        assert (status.total, status.success, status.failed, status.done) == (0, 0, 0, False)
        assert client.failed_tasks(command_id) == []


def test_an_unknown_command_is_rejected_with_allegros_code(standin: AllegroStandIn, clock: Clock) -> None:
    client = make_client(standin, secret_for(standin), clock)
    with pytest.raises(TargetRejected) as rejected:
        client.command(str(uuid.uuid4()))
    assert rejected.value.details["status"] == 404
    assert rejected.value.details["codes"] == ["COMMAND_NOT_FOUND"]


def test_derived_command_ids_are_stable_uuids() -> None:
    assert derive_command_id("erp-stock/2026-11-21T10:00/0") == derive_command_id("erp-stock/2026-11-21T10:00/0")
    assert derive_command_id("a") != derive_command_id("b")
    uuid.UUID(derive_command_id("a"))
    with pytest.raises(ValueError):
        derive_command_id("")


# -- offers -----------------------------------------------------------------------------------
def test_offers_paging_lists_each_active_offer_once(standin: AllegroStandIn, clock: Clock) -> None:
    standin.seed_offers(2500)
    standin.end_offers([f"SKU-{n:06d}" for n in range(1, 11)])
    standin.add_offer(None)  # listed without an external id
    client = make_client(standin, secret_for(standin), clock)

    pages = client.offers(page_size=333)
    listed = list(itertools.islice(pages, 500))
    standin.add_offer("NEW-000001")  # arrives mid-way: shifts the newest-first list by one
    listed += list(pages)

    expected = {f"SKU-{n:06d}" for n in range(11, 2501)}
    skus = [sku for sku, _ in listed]
    offer_ids = [offer_id for _, offer_id in listed]
    assert len(offer_ids) == len(set(offer_ids))
    assert expected <= set(skus) <= expected | {"NEW-000001"}


def test_offer_paging_is_bounded_like_allegros(standin: AllegroStandIn, clock: Clock) -> None:
    client = make_client(standin, secret_for(standin), clock)
    with pytest.raises(ValueError):
        list(client.offers(page_size=1001))
    token = standin_token(standin)
    for query in ("limit=1001", "limit=0", "offset=-1", "limit=abc"):
        answer = api(standin, "GET", f"/sale/offers?{query}", token)
        assert answer.status_code == 422, query
        assert answer.json()["errors"][0]["code"] == "VALIDATION_ERROR"
    assert (
        api(standin, "GET", f"/sale/offer-quantity-change-commands/{uuid.uuid4()}/tasks?limit=1001", token).status_code
        == 422
    )


# -- OAuth ------------------------------------------------------------------------------------
def test_an_expired_access_token_is_refreshed_and_the_new_pair_stored_before_use(
    standin: AllegroStandIn, clock: Clock
) -> None:
    events: list[tuple[str, ...]] = []
    secret = secret_for(standin)
    secret.events = events
    client = make_client(standin, secret, clock, events)

    list(client.offers())
    first = dict(secret.doc)
    clock.advance(TWELVE_HOURS)
    list(client.offers())

    refresh_then_use = [
        ("http", "POST", "/auth/oauth/token"),
        ("store",),
        ("http", "GET", "/sale/offers"),
    ]
    assert events == refresh_then_use * 2
    assert first["refresh_token"] != INITIAL_REFRESH_TOKEN
    assert secret.doc["refresh_token"] not in (INITIAL_REFRESH_TOKEN, first["refresh_token"])
    assert secret.doc["access_token_expires_at"] == clock.now + 43199
    assert standin.summary()["token_refreshes"] == 2


def test_a_valid_stored_access_token_is_used_without_refreshing(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin)
    list(make_client(standin, secret, clock).offers())
    list(make_client(standin, secret, clock).offers())  # a later invocation: the stored token is valid
    clock.advance(TWELVE_HOURS - 600)
    list(make_client(standin, secret, clock).offers())
    assert standin.summary()["token_refreshes"] == 1
    clock.advance(400)  # within the margin before expiry: refreshed ahead of time
    list(make_client(standin, secret, clock).offers())
    assert standin.summary()["token_refreshes"] == 2


def test_a_refresh_token_is_refused_once_rotated_past_its_grace(standin: AllegroStandIn, clock: Clock) -> None:
    first = grant(standin, INITIAL_REFRESH_TOKEN)
    assert first.status_code == 200
    second = grant(standin, first.json()["refresh_token"])
    assert second.status_code == 200
    ended = api(standin, "GET", "/sale/offers", first.json()["access_token"])
    assert (ended.status_code, ended.json()["error"]) == (401, "invalid_token")  # the previous pair ended

    clock.advance(59)
    assert grant(standin, INITIAL_REFRESH_TOKEN).status_code == 200  # 60 s more after its first use
    clock.advance(2)
    refused = grant(standin, INITIAL_REFRESH_TOKEN)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert grant(standin, second.json()["refresh_token"]).status_code == 200


def test_an_invocation_refused_after_another_rotated_uses_the_stored_token(
    standin: AllegroStandIn, clock: Clock
) -> None:
    secret = secret_for(standin)
    first, second = make_client(standin, secret, clock), make_client(standin, secret, clock)

    def meanwhile() -> None:  # the second has read R0; the first rotates it, and R0's grace passes
        list(first.offers())
        clock.advance(120)

    secret.after_next_read = meanwhile
    list(second.offers())  # R0 refused -> reads the secret again -> uses the pair the first stored

    assert standin.summary()["token_refreshes"] == 1
    assert len(secret.writes) == 1
    assert second.settings.access_token == first.settings.access_token


def test_an_invocation_refused_after_another_rotated_refreshes_with_the_stored_token(
    standin: AllegroStandIn, clock: Clock
) -> None:
    secret = secret_for(standin)
    first, second = make_client(standin, secret, clock), make_client(standin, secret, clock)

    def meanwhile() -> None:
        list(first.offers())
        clock.advance(TWELVE_HOURS)  # the pair the first stored has expired too

    secret.after_next_read = meanwhile
    list(second.offers())  # R0 refused -> reads the secret -> refreshes with the stored R1

    assert standin.summary()["token_refreshes"] == 2
    assert len(secret.writes) == 2
    list(first.offers())  # its token expired: it reads the secret first and uses the second's pair
    assert standin.summary()["token_refreshes"] == 2


def test_an_expired_token_is_looked_up_in_the_secret_before_refreshing(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin)
    first, second = make_client(standin, secret, clock), make_client(standin, secret, clock)
    list(first.offers())
    list(second.offers())  # holds no token yet: finds the first's in the secret
    clock.advance(TWELVE_HOURS)
    list(second.offers())
    list(first.offers())
    assert standin.summary()["token_refreshes"] == 2


def test_an_access_token_ended_early_is_replaced_once(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin)
    client = make_client(standin, secret, clock)
    list(client.offers())
    standin.expire_tokens()

    list(client.offers())

    assert standin.summary()["token_refreshes"] == 2
    assert secret.reads == [False, True, True]  # built; before the first refresh; after the 401


def test_a_wrong_client_secret_is_credentials_rejected(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin, client_secret="not-the-secret")
    client = make_client(standin, secret, clock)
    with pytest.raises(CredentialsRejected) as refused:
        list(client.offers())
    assert refused.value.details["status"] == 401
    assert secret.reads == [False, True, True]  # read again once refused, in case it was just fixed
    assert secret.writes == []


def test_a_refresh_token_nobody_holds_is_credentials_rejected(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin, refresh_token="revoked-long-ago")
    with pytest.raises(CredentialsRejected) as refused:
        list(make_client(standin, secret, clock).offers())
    assert refused.value.details["error"] == "invalid_grant"


def test_a_fixed_secret_is_picked_up_on_the_read_again(standin: AllegroStandIn, clock: Clock) -> None:
    secret = secret_for(standin, client_secret="old-secret")
    client = make_client(standin, secret, clock)
    secret.doc["client_secret"] = CLIENT_SECRET  # an operator fixed it meanwhile
    list(client.offers())
    assert secret.writes[-1]["client_secret"] == CLIENT_SECRET


def test_a_pair_the_store_did_not_take_is_never_used(standin: AllegroStandIn, clock: Clock) -> None:
    events: list[tuple[str, ...]] = []
    secret = secret_for(standin)
    secret.events = events
    secret.fail_writes = 1
    client = make_client(standin, secret, clock, events)

    with pytest.raises(StoreUnavailable):
        list(client.offers())
    assert events == [("http", "POST", "/auth/oauth/token")]

    list(client.offers())  # stores the pair it holds first, then uses it; no second refresh
    assert events[1:] == [("store",), ("http", "GET", "/sale/offers")]
    assert standin.summary()["token_refreshes"] == 1


def test_the_settings_need_every_field_and_keep_secrets_out_of_repr(standin: AllegroStandIn) -> None:
    doc = LOCAL.credentials(standin.url)
    settings = AllegroSettings.from_secret(doc)
    assert (settings.api_url, settings.auth_url) == (standin.url, standin.url + "/auth/oauth")
    assert CLIENT_SECRET not in repr(settings) and INITIAL_REFRESH_TOKEN not in repr(settings)
    with pytest.raises(ConfigurationError):
        AllegroSettings.from_secret({k: v for k, v in doc.items() if k != "refresh_token"})
    with pytest.raises(ConfigurationError):
        AllegroSettings.from_secret("not a document")


# -- limits and failure modes -----------------------------------------------------------------
def test_the_rate_limit_blocks_the_client_id_for_a_minute(clock: Clock) -> None:
    with AllegroStandIn(requests_per_minute=5, clock=clock) as limited:
        client = make_client(limited, secret_for(limited), clock)
        for _ in range(5):
            list(client.offers())

        with pytest.raises(RateLimited) as limited_error:
            list(client.offers())
        assert limited_error.value.retry_after is not None and limited_error.value.retry_after >= 60
        assert limited_error.value.details["status"] == 429

        token = client.settings.access_token or ""
        clock.advance(45)
        held = api(limited, "GET", "/sale/offers", token)
        assert (held.status_code, held.headers["Retry-After"]) == (429, "15")  # the block holds
        clock.advance(15)
        assert api(limited, "GET", "/sale/offers", token).status_code == 200
        assert limited.summary()["errors_429"] == 2


def test_offer_changes_over_the_per_minute_limit_wait(clock: Clock) -> None:
    with AllegroStandIn(offer_changes_per_minute=10, tasks_per_second=500_000, clock=clock) as limited:
        offers = limited.seed_offers(13)
        client = make_client(limited, secret_for(limited), clock)
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        client.change_quantity(first, offers[:8], 2)

        with pytest.raises(RateLimited) as waited:
            client.change_quantity(second, offers[8:], 2)
        # Told to wait until enough changes leave the window (here all of them: 60 s), not a block.
        assert waited.value.retry_after == 60
        client.change_quantity(first, offers[:8], 2)  # a re-sent command changes nothing: not limited
        clock.advance(60)
        client.change_quantity(second, offers[8:], 2)
        settle(limited)

        assert set(limited.quantities().values()) == {2}
        assert limited.summary()["commands"] == 2


def test_behaviours_are_classified(standin: AllegroStandIn, clock: Clock) -> None:
    client = make_client(standin, secret_for(standin), clock)
    list(client.offers())

    standin.set_behaviour("down")
    with pytest.raises(TargetUnavailable):
        list(client.offers())

    standin.set_behaviour("rate_limited", retry_after=3)
    with pytest.raises(RateLimited) as limited:
        list(client.offers())
    assert limited.value.retry_after == 3  # as Allegro says (its Retry-After)

    standin.set_behaviour("flaky", rate=1.0)
    with pytest.raises(TargetUnavailable):
        list(client.offers())

    standin.set_behaviour("down", count=1)
    with pytest.raises(TargetUnavailable):
        list(client.offers())
    list(client.offers())  # the next one is served

    standin.set_behaviour("down")
    with pytest.raises(TargetUnavailable):  # the token endpoint is down too
        list(make_client(standin, secret_for(standin), clock).offers())
    assert standin.summary()["rejected_by_behaviour"] == 5


def test_flaky_fails_a_seeded_fraction(standin: AllegroStandIn) -> None:
    def run() -> list[int]:
        standin.set_behaviour("flaky", rate=0.5, seed=7)
        with httpx.Client() as http:
            return [http.get(standin.url + "/sale/offers").status_code for _ in range(40)]

    first = run()
    assert first == run()
    assert 5 < first.count(503) < 35
    assert set(first) == {401, 503}  # the rest were served (and refused for lack of a token)


def test_an_unreachable_allegro_is_unavailable(clock: Clock) -> None:
    with AllegroStandIn() as gone:
        url = gone.url
    secret = Secret({**LOCAL.credentials(url)})
    with pytest.raises(TargetUnavailable):
        list(AllegroClient(secret.source, secret.store, httpx.Client(), clock=clock).offers())


def test_the_api_speaks_only_its_media_type(standin: AllegroStandIn) -> None:
    token = standin_token(standin)
    without_accept = httpx.get(standin.url + "/sale/offers", headers={"Authorization": f"Bearer {token}"})
    assert without_accept.status_code == 406
    wrong_type = api(
        standin, "PUT", f"/sale/offer-quantity-change-commands/{uuid.uuid4()}", token, json=command_body(["1"], 1)
    )
    assert wrong_type.status_code == 415
    served = api(standin, "GET", "/sale/offers", token)
    assert served.headers["Content-Type"] == MEDIA_TYPE


def test_malformed_commands_get_clear_errors(standin: AllegroStandIn) -> None:
    token = standin_token(standin)
    headers = {"Content-Type": MEDIA_TYPE}
    path = "/sale/offer-quantity-change-commands/"
    cases: list[tuple[str, Any, int, str]] = [
        ("not-a-uuid", command_body(["1"], 1), 400, "VALIDATION_ERROR"),
        (str(uuid.uuid4()), {"modification": {"changeType": "SET", "value": 1}}, 422, "VALIDATION_ERROR"),
        (str(uuid.uuid4()), command_body(["1"], -1), 422, "INCORRECT_QUANTITY_VALUE"),
        (str(uuid.uuid4()), command_body(["1"], 100_000), 422, "INCORRECT_QUANTITY_VALUE"),
        (str(uuid.uuid4()), command_body(["1", "1"], 1), 422, "VALIDATION_ERROR"),
        (str(uuid.uuid4()), {**command_body(["1"], 1), "offerCriteria": []}, 422, "VALIDATION_ERROR"),
    ]
    for command_id, body, status, code in cases:
        answer = api(standin, "PUT", path + command_id, token, json=body, headers=headers)
        assert (answer.status_code, answer.json()["errors"][0]["code"]) == (status, code), body
    not_json = api(standin, "PUT", path + str(uuid.uuid4()), token, content=b"{", headers=headers)
    assert not_json.status_code == 400
    assert standin.summary()["commands"] == 0


def test_the_token_endpoint_refuses_what_allegro_refuses(standin: AllegroStandIn) -> None:
    assert grant(standin, INITIAL_REFRESH_TOKEN, secret="wrong").status_code == 401
    no_auth = httpx.post(standin.url + "/auth/oauth/token", data={"grant_type": "refresh_token"})
    assert no_auth.status_code == 401
    other_grant = httpx.post(
        standin.url + "/auth/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={"grant_type": "password"}
    )
    assert (other_grant.status_code, other_grant.json()["error"]) == (400, "unsupported_grant_type")
    no_bearer = httpx.get(standin.url + "/sale/offers", headers={"Accept": MEDIA_TYPE})
    assert (no_bearer.status_code, no_bearer.json()["error"]) == (401, "unauthorized")
    unknown = api(standin, "GET", "/sale/offers", "made-up")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_token")


# -- control ----------------------------------------------------------------------------------
def test_control_endpoints_seed_end_and_report(standin: AllegroStandIn) -> None:
    control = standin.url + "/_standin/"
    seeded = httpx.post(control + "offers/seed", json={"count": 3, "prefix": "X-", "quantity": 4})
    assert (seeded.status_code, seeded.json()["created"]) == (201, 3)
    ended = httpx.post(control + "offers/end", json={"skus": ["X-000002", "nope"]})
    assert ended.json() == {"ended": 1, "unknown": ["nope"]}
    state = httpx.get(control + "state").json()
    assert state["quantities"] == {"X-000001": 4, "X-000002": 4, "X-000003": 4}
    assert state["ended"] == ["X-000002"]
    summary = httpx.get(control + "summary").json()
    assert {"requests", "commands", "tasks_done", "tasks_failed", "errors_429", "token_refreshes"} <= set(summary)
    assert summary["limits"]["requests_per_minute"] == 9000
    assert summary["limits"]["max_offers_per_command"] == 1000
    assert summary["limits"]["tasks_per_second"] == 500_000

    for path, body in [
        ("offers/seed", {"count": -1}),
        ("offers/seed", {"count": "3"}),
        ("offers/seed", {"count": 1, "prefix": "X-"}),  # X-000001 exists
        ("offers/seed", {"count": 1, "quantity": 100_000}),
        ("offers/end", {"skus": "X-000001"}),
        ("behaviour", {"mode": "sideways"}),
        ("behaviour", {"mode": "flaky", "rate": 2}),
        ("clock/advance", {"seconds": -5}),
    ]:
        assert httpx.post(control + path, json=body).status_code == 400, (path, body)
    assert httpx.post(control + "offers/seed", content=b"{").status_code == 400


def test_lookup_reads_stock_and_ended_offers_by_sku(standin: AllegroStandIn) -> None:
    standin.seed_offers(3, quantity=5)
    standin.add_offer("ENDED-1", quantity=2, status="ENDED")
    standin.add_offer(None)  # an offer without an external id is found by no sku
    standin.end_offers(["SKU-000002"])
    lookup = standin.url + "/_standin/lookup"

    found = httpx.post(lookup, json={"skus": ["SKU-000001", "SKU-000002", "ENDED-1", "NOPE"]})

    assert found.status_code == 200
    assert found.json() == {
        "quantities": {"SKU-000001": 5, "SKU-000002": 5, "ENDED-1": 2},
        "ended": ["SKU-000002", "ENDED-1"],
        "unknown": ["NOPE"],
    }
    assert standin.lookup([]) == {"quantities": {}, "ended": [], "unknown": []}
    for body in ({}, {"skus": "SKU-000001"}, {"skus": [1]}):
        assert httpx.post(lookup, json=body).status_code == 400, body
    assert standin.summary()["requests"] == 0  # control calls are not API requests


def test_the_stand_in_seeds_a_large_catalogue(standin: AllegroStandIn) -> None:
    offer_ids = standin.seed_offers(100_000)
    assert len(set(offer_ids)) == 100_000
    assert standin.summary()["offers"] == 100_000
    assert standin.offer(offer_ids[-1]) == {
        "id": offer_ids[-1],
        "name": "Offer SKU-100000",
        "external": {"id": "SKU-100000"},
        "stock": {"available": 0, "sold": 0},
        "publication": {"status": "ACTIVE"},
    }


def test_the_local_declaration_fills_the_allegro_secret() -> None:
    assert (LOCAL.system, LOCAL.fills, LOCAL.effect_count) == ("allegro", "allegro-api", "tasks_done")
    assert LOCAL.credentials("http://127.0.0.1:8093") == {
        "api_url": "http://127.0.0.1:8093",
        "auth_url": "http://127.0.0.1:8093/auth/oauth",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": INITIAL_REFRESH_TOKEN,
    }


# -- protocol edges, against an httpx transport playing Allegro -----------------------------------
MOCK_SECRET = {
    "api_url": "https://api.allegro.test",
    "auth_url": "https://allegro.test/auth/oauth",
    "client_id": "c",
    "client_secret": "s",
    "refresh_token": "r0",
}


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[AllegroClient, Secret]:
    secret = Secret(MOCK_SECRET)
    transport = httpx.MockTransport(handler)
    return AllegroClient(secret.source, secret.store, httpx.Client(transport=transport), clock=Clock()), secret


def pair(request: httpx.Request) -> httpx.Response | None:
    if request.url.host == "allegro.test":
        return httpx.Response(200, json={"access_token": "a1", "refresh_token": "r1", "expires_in": 43199})
    return None


def test_calls_within_bounded_take_the_given_timeout() -> None:
    seen: list[Any] = []

    def allegro(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return pair(request) or httpx.Response(200, json={"offers": [], "count": 0, "totalCount": 0})

    client, _ = mocked(allegro)
    with client.bounded(lambda default: min(default, 1.5)):
        list(client.offers())
    list(client.offers())
    assert seen == [1.5, 1.5, 5.0]  # then the http client's own read timeout again


def test_an_api_that_refuses_a_fresh_token_is_credentials_rejected() -> None:
    def allegro(request: httpx.Request) -> httpx.Response:
        return pair(request) or httpx.Response(401, json={"error": "invalid_token"})

    client, secret = mocked(allegro)
    with pytest.raises(CredentialsRejected):
        list(client.offers())
    assert len(secret.writes) == 2  # refreshed once after the first refusal, no more


@pytest.mark.parametrize(
    ("token_answer", "error"),
    [
        (httpx.Response(429, headers={"Retry-After": "5"}), RateLimited),
        (httpx.Response(502), TargetUnavailable),
        (httpx.Response(200, json={"token_type": "bearer"}), TargetUnavailable),
        (httpx.Response(404, json={}), CredentialsRejected),
    ],
)
def test_token_endpoint_failures_are_classified(token_answer: httpx.Response, error: type[Exception]) -> None:
    client, secret = mocked(lambda request: token_answer)
    with pytest.raises(error):
        list(client.offers())
    assert secret.writes == []


def test_malformed_answers_and_transport_failures_are_unavailable() -> None:
    def allegro(request: httpx.Request) -> httpx.Response:
        if (answer := pair(request)) is not None:
            return answer
        if request.url.path.endswith("/tasks"):
            raise httpx.ConnectError("connection reset")
        if request.url.path.startswith("/sale/offer-quantity-change-commands/"):
            return httpx.Response(200, json={"id": "x"})
        return httpx.Response(200, json={"count": 0})

    client, _ = mocked(allegro)
    command_id = str(uuid.uuid4())
    with pytest.raises(TargetUnavailable):
        client.command(command_id)
    with pytest.raises(TargetUnavailable):
        client.failed_tasks(command_id)
    with pytest.raises(TargetUnavailable):
        list(client.offers())


def test_a_secret_that_is_not_a_document_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        AllegroClient(lambda refresh: "nope", lambda doc: None)  # type: ignore[arg-type,return-value]
