"""Przelewy24: the notification sign and its verifier, the REST client against the P24 API
stand-in (in-process, port 0), the stand-in's strictness and the notification sender.

P24's documentation publishes the sign recipe (SHA-384 of the fields' JSON with the CRC key,
``json_encode`` with ``JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES``) but no worked example.
The vectors below were computed from that recipe with ``openssl dgst -sha384`` over the JSON
text written out by hand (not by our code): a statement with Polish letters, a dash and a slash
proves the characters are hashed unescaped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from junction_local.standins.przelewy24 import LOCAL as NOTIFIER
from junction_local.standins.przelewy24 import Przelewy24NotificationStandIn, notification
from junction_local.standins.przelewy24_api import API_KEY, CRC, LOCAL, MERCHANT_ID, POS_ID, Przelewy24StandIn
from shared.connectors.przelewy24 import (
    ALREADY_VERIFIED,
    VERIFIED,
    P24Settings,
    Przelewy24Client,
    VerificationRefused,
)
from shared.errors import ConfigurationError, CredentialsRejected, RateLimited, TargetUnavailable
from shared.webhooks import VERIFIERS, BadRequest, Headers, VerificationFailed
from shared.webhooks.przelewy24 import (
    php_json,
    sign_notification,
    sign_register,
    sign_verify,
)

VECTOR_CRC = "a1b2c3d4e5f6a7b8"
VECTOR_FIELDS: dict[str, Any] = {
    "merchantId": 100200,
    "posId": 100200,
    "sessionId": "woocommerce:727",
    "amount": 35999,
    "originAmount": 35999,
    "currency": "PLN",
    "orderId": 300000001,
    "methodId": 154,
    "statement": "Zamówienie 727/2026 \u2013 Łódź",  # an en dash, as a shop writes it
}
VECTOR_NOTIFICATION_SIGN = (
    "d0b16030df7294b2103ab9faf08684d04c7a03c5ee2c9f96ee1691ad1e5a96ebec6f8a05c76521a50a267234b1170550"
)
VECTOR_VERIFY_SIGN = "e4c142fa5751c245820cbbd6d7d2340bbc237f1aa6c6b3da7b1a8e72dfdf02b9c09faca7d03008d7d62eb5baf403767f"
VECTOR_REGISTER_SIGN = (
    "e591d7666f23f5a4c8f1caf9c7e5c462bac94ef05e806f02920a068817d8a1f6b7d9f0e85dbc52fbf5c1cdb4e25201fa"
)
VERIFIER = VERIFIERS["przelewy24"]
IDS = {"order": "woocommerce-order:727"}


def signed(fields: dict[str, Any], crc: str = CRC) -> bytes:
    return json.dumps({**fields, "sign": sign_notification(fields, crc)}, ensure_ascii=False).encode()


def verify(body: bytes, secrets: tuple[str, ...] = (CRC,)) -> Any:
    return VERIFIER.verify(Headers({}), body, list(secrets), now=0.0, tolerance=300)


# -- the sign -----------------------------------------------------------------------------------
def test_the_documented_recipe_gives_the_vectors() -> None:
    assert sign_notification(VECTOR_FIELDS, VECTOR_CRC) == VECTOR_NOTIFICATION_SIGN
    assert sign_verify(VECTOR_FIELDS, VECTOR_CRC) == VECTOR_VERIFY_SIGN
    assert sign_register(VECTOR_FIELDS, VECTOR_CRC) == VECTOR_REGISTER_SIGN


def test_php_json_leaves_unicode_and_slashes_unescaped_but_not_line_separators() -> None:
    assert php_json({"a": "ó/ł", "b": 1}) == '{"a":"ó/ł","b":1}'
    assert php_json({"a": "x\u2028y\u2029"}) == '{"a":"x\\u2028y\\u2029"}'
    assert php_json({"a": 'q"\\\n\x01'}) == '{"a":"q\\"\\\\\\n\\u0001"}'


# -- the verifier -------------------------------------------------------------------------------
def test_the_vector_notification_verifies_with_its_crc() -> None:
    body = json.dumps({**VECTOR_FIELDS, "sign": VECTOR_NOTIFICATION_SIGN}, ensure_ascii=False).encode()
    delivery = verify(body, (VECTOR_CRC,))
    assert (delivery.delivery_id, delivery.topic) == ("300000001:woocommerce:727", "transaction.notification")


def test_the_sample_notification_verifies_with_the_local_crc() -> None:
    assert verify(json.dumps(NOTIFIER.sample("transaction-notification")).encode()).delivery_id == (
        "300000001:woocommerce:727"
    )


def test_any_of_the_active_crc_keys_verifies_and_no_other() -> None:
    body = signed(VECTOR_FIELDS, "new-crc")
    assert verify(body, ("old-crc", "new-crc")).delivery_id == "300000001:woocommerce:727"
    with pytest.raises(VerificationFailed):
        verify(body, ("old-crc",))


def test_a_notification_sent_again_is_the_same_delivery() -> None:
    body = signed(VECTOR_FIELDS)
    spaced = json.dumps({**VECTOR_FIELDS, "sign": sign_notification(VECTOR_FIELDS, CRC)}, indent=4).encode()
    assert verify(body).delivery_id == verify(spaced).delivery_id  # the sign covers values, not layout


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 36000},
        {"originAmount": 1},
        {"currency": "EUR"},
        {"orderId": 300000002},
        {"sessionId": "woocommerce:728"},
        {"merchantId": 1},
        {"posId": 1},
        {"methodId": 1},
        {"statement": "Zamowienie 727/2026 - Lodz"},
    ],
)
def test_a_changed_field_fails_its_sign(change: dict[str, Any]) -> None:
    body = json.dumps({**VECTOR_FIELDS, **change, "sign": sign_notification(VECTOR_FIELDS, CRC)}).encode()
    with pytest.raises(VerificationFailed):
        verify(body)


@pytest.mark.parametrize("sign", ["", "abc", "z" * 96, "0" * 95, "0" * 97, None, 12])
def test_a_sign_that_is_no_sha384_is_401_or_400(sign: Any) -> None:
    body = json.dumps({**VECTOR_FIELDS, "sign": sign}).encode()
    with pytest.raises((VerificationFailed, BadRequest)):
        verify(body)


def test_an_upper_case_sign_is_the_same_digest() -> None:
    body = json.dumps({**VECTOR_FIELDS, "sign": sign_notification(VECTOR_FIELDS, CRC).upper()}).encode()
    assert verify(body).delivery_id == "300000001:woocommerce:727"


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "35999"},  # P24 sends integers; a string is another digest and a bad request
        {"amount": 35999.0},
        {"amount": True},
        {"amount": -1},
        {"orderId": 2**63},
        {"merchantId": None},
        {"sessionId": 727},
        {"sessionId": ""},
        {"sessionId": "x" * 101},
        {"sessionId": "woocommerce:727\n"},
        {"currency": "pln"},
        {"currency": "PLNX"},
        {"statement": None},
        {"statement": "x" * 5000},
    ],
)
def test_wrong_types_are_400_whatever_the_sign(change: dict[str, Any]) -> None:
    fields = {**VECTOR_FIELDS, **change}
    body = json.dumps({**fields, "sign": "0" * 96}).encode()
    with pytest.raises(BadRequest):
        verify(body)


@pytest.mark.parametrize("missing", [*VECTOR_FIELDS, "sign"])
def test_a_missing_field_is_400(missing: str) -> None:
    doc = {**VECTOR_FIELDS, "sign": VECTOR_NOTIFICATION_SIGN}
    del doc[missing]
    with pytest.raises(BadRequest):
        verify(json.dumps(doc).encode(), (VECTOR_CRC,))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b"null", b"[" * 100_000, b'{"sessionId": "\\ud800"}'])
def test_a_body_that_is_no_notification_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        verify(body)


def test_a_lone_surrogate_in_the_statement_is_400() -> None:
    text = json.dumps({**VECTOR_FIELDS, "sign": "0" * 96}).replace('"statement": "', '"statement": "\\ud800')
    with pytest.raises(BadRequest):
        verify(text.encode())


# -- the client against the stand-in --------------------------------------------------------------
@pytest.fixture
def standin() -> Iterator[Przelewy24StandIn]:
    with Przelewy24StandIn() as running:
        yield running


@pytest.fixture
def client(standin: Przelewy24StandIn) -> Iterator[Przelewy24Client]:
    p24 = Przelewy24Client(P24Settings.from_secret(LOCAL.credentials(standin.url)), httpx.Client())
    yield p24
    p24.close()


def paid(standin: Przelewy24StandIn, session: str = "woocommerce:727", amount: int = 35999) -> dict[str, Any]:
    standin.register(session, amount)
    return standin.pay(session)


def verify_paid(client: Przelewy24Client, n: dict[str, Any], **change: Any) -> dict[str, Any]:
    args = {"session_id": n["sessionId"], "order_id": n["orderId"], "amount": n["amount"], "currency": n["currency"]}
    return client.verify_transaction(**{**args, **change}, ids=IDS)


def test_a_paid_transaction_is_verified_once(standin: Przelewy24StandIn, client: Przelewy24Client) -> None:
    n = paid(standin)
    assert verify_paid(client, n)["status"] == VERIFIED
    assert standin.summary()["verified"] == 1
    assert standin.transactions()[0]["status"] == 2


def test_a_second_verify_is_an_already_verified_success(standin: Przelewy24StandIn, client: Przelewy24Client) -> None:
    n = paid(standin)
    verify_paid(client, n)
    assert verify_paid(client, n)["status"] == ALREADY_VERIFIED
    summary = standin.summary()
    assert (summary["verified"], summary["verify_successes"], summary["verify_refused"]) == (1, 1, 1)


def test_a_p24_that_answers_a_second_verify_with_success_is_also_fine(
    standin: Przelewy24StandIn, client: Przelewy24Client
) -> None:
    standin.configure(reverify="success")
    n = paid(standin)
    assert [verify_paid(client, n)["status"] for _ in range(2)] == [VERIFIED, VERIFIED]
    assert standin.summary()["verified"] == 1


def test_a_lost_answer_then_a_retry_is_one_verification(standin: Przelewy24StandIn) -> None:
    n = paid(standin)
    slow = httpx.Client(timeout=httpx.Timeout(0.3, connect=1.0))
    p24 = Przelewy24Client(P24Settings.from_secret(LOCAL.credentials(standin.url)), slow)
    standin.set_behaviour("accept_then_hang", delay=2.0, count=1)
    with pytest.raises(TargetUnavailable, match="timed out"):
        verify_paid(p24, n)
    assert standin.summary()["verified"] == 1  # committed, answer lost
    assert verify_paid(p24, n)["status"] == ALREADY_VERIFIED
    slow.close()


@pytest.mark.parametrize(
    "change",
    [{"amount": 36000}, {"currency": "EUR"}, {"order_id": 300000999}, {"session_id": "woocommerce:728"}],
)
def test_details_p24_does_not_hold_are_refused(
    standin: Przelewy24StandIn, client: Przelewy24Client, change: dict[str, Any]
) -> None:
    n = paid(standin)
    paid(standin, "woocommerce:728", 100)
    with pytest.raises(VerificationRefused) as refused:
        verify_paid(client, n, **change)
    assert refused.value.details["status"] == 400
    assert refused.value.reason == "p24_verification_refused"
    assert standin.transactions()[0]["status"] == 1  # still the customer's advance payment


def test_a_transaction_not_paid_is_refused(standin: Przelewy24StandIn, client: Przelewy24Client) -> None:
    standin.register("woocommerce:729", 100)
    with pytest.raises(VerificationRefused):
        client.verify_transaction(session_id="woocommerce:729", order_id=1, amount=100, currency="PLN", ids=IDS)


def test_an_unknown_session_is_refused_and_said_so(client: Przelewy24Client) -> None:
    with pytest.raises(VerificationRefused, match="holds none"):
        client.verify_transaction(session_id="woocommerce:1", order_id=1, amount=100, currency="PLN", ids=IDS)


def test_a_rotated_api_key_and_crc_are_read_again_once(standin: Przelewy24StandIn) -> None:
    n = paid(standin)
    reads: list[bool] = []
    good = LOCAL.credentials(standin.url)

    def source(refresh: bool) -> P24Settings:
        reads.append(refresh)
        stale = {**good, "api_key": "rotated-out", "crc": "rotated-out-crc"}
        return P24Settings.from_secret(good if refresh else stale)

    p24 = Przelewy24Client(source, httpx.Client())
    assert verify_paid(p24, n)["status"] == VERIFIED
    assert reads == [False, True]


def test_a_refused_key_after_a_reread_is_credentials_rejected(standin: Przelewy24StandIn) -> None:
    bad = P24Settings.from_secret({**LOCAL.credentials(standin.url), "api_key": "wrong"})
    p24 = Przelewy24Client(bad, httpx.Client())
    with pytest.raises(CredentialsRejected):
        p24.test_access()
    with pytest.raises(CredentialsRejected):
        verify_paid(p24, paid(standin))


def test_access_is_confirmed(client: Przelewy24Client) -> None:
    assert client.test_access() is True


def test_p24_down_is_transient(standin: Przelewy24StandIn, client: Przelewy24Client) -> None:
    n = paid(standin)
    standin.set_behaviour("down")
    with pytest.raises(TargetUnavailable):
        verify_paid(client, n)
    standin.set_behaviour("ok")
    assert verify_paid(client, n)["status"] == VERIFIED


def test_rate_limited_says_when_to_come_back(standin: Przelewy24StandIn, client: Przelewy24Client) -> None:
    n = paid(standin)
    standin.set_behaviour("rate_limited", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        verify_paid(client, n)
    assert limited.value.retry_after == 7.0


def test_unreachable_is_transient() -> None:
    settings = P24Settings.from_secret(LOCAL.credentials("http://127.0.0.1:9"))
    with pytest.raises(TargetUnavailable):
        Przelewy24Client(settings, httpx.Client()).test_access()


def test_the_settings_keep_the_keys_out_of_their_repr() -> None:
    settings = P24Settings.from_secret(LOCAL.credentials("http://127.0.0.1:1"))
    assert API_KEY not in repr(settings) and CRC not in repr(settings)
    assert (settings.merchant_id, settings.pos_id) == (MERCHANT_ID, POS_ID)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"base_url": "x", "merchant_id": "abc", "pos_id": 1, "api_key": "k", "crc": "c"},
        {"base_url": "x", "merchant_id": True, "pos_id": 1, "api_key": "k", "crc": "c"},
        {"base_url": "x", "merchant_id": 0, "pos_id": 1, "api_key": "k", "crc": "c"},
        {"base_url": "x", "merchant_id": 1, "pos_id": 1, "api_key": "", "crc": "c"},
        {"base_url": "x", "merchant_id": 1, "pos_id": 1, "api_key": "k"},
        "not an object",
    ],
)
def test_a_broken_secret_is_a_configuration_error(doc: Any) -> None:
    with pytest.raises(ConfigurationError):
        P24Settings.from_secret(doc)


# -- the stand-in is as strict as P24 -------------------------------------------------------------
def api(standin: Przelewy24StandIn, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    auth = kw.pop("auth", (str(POS_ID), API_KEY))
    return httpx.request(method, f"{standin.url}{path}", json=body, auth=auth, timeout=5.0, **kw)


def register_body(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchantId": MERCHANT_ID,
        "posId": POS_ID,
        "sessionId": "woocommerce:900",
        "amount": 12345,
        "currency": "PLN",
        "description": "Order 900",
        "email": "anna.kowalska@example.pl",
        "country": "PL",
        "language": "pl",
        "urlReturn": "https://sklep.example.pl/zamowienie/900",
        "urlStatus": "https://junction.example.com/webhooks/przelewy24/notifications",
    }
    body.update(change)
    body["sign"] = sign_register(body, CRC)
    return body


def test_register_gives_a_token_and_the_customer_can_pay(standin: Przelewy24StandIn) -> None:
    answer = api(standin, "POST", "/api/v1/transaction/register", register_body())
    assert answer.status_code == 200 and answer.json()["data"]["token"]
    notified = standin.pay("woocommerce:900")
    assert verify(json.dumps(notified).encode()).delivery_id == f"{notified['orderId']}:woocommerce:900"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**register_body(), "sign": "0" * 96}, 400),
        (register_body(merchantId=1), 400),
        (register_body(amount="12345"), 400),
        (register_body(amount=0), 400),
        (register_body(sessionId="x" * 101), 400),
        (register_body(currency="XXX"), 400),
        (register_body(email="nobody"), 400),
        ({k: v for k, v in register_body().items() if k != "urlReturn"}, 400),
    ],
)
def test_register_refuses_what_p24_refuses(standin: Przelewy24StandIn, body: dict[str, Any], status: int) -> None:
    answer = api(standin, "POST", "/api/v1/transaction/register", body)
    assert answer.status_code == status and answer.json()["code"] == status
    assert standin.summary()["registered"] == 0


def test_a_session_is_registered_once(standin: Przelewy24StandIn) -> None:
    assert api(standin, "POST", "/api/v1/transaction/register", register_body()).status_code == 200
    assert api(standin, "POST", "/api/v1/transaction/register", register_body()).status_code == 400


@pytest.mark.parametrize("auth", [None, ("100200", "wrong"), ("999", API_KEY)])
def test_every_call_needs_the_pos_id_and_api_key(standin: Przelewy24StandIn, auth: Any) -> None:
    for method, path in (("GET", "/api/v1/testAccess"), ("POST", "/api/v1/transaction/register")):
        answer = api(standin, method, path, register_body(), auth=auth)
        assert answer.status_code == 401
        assert answer.json() == {"error": "Incorrect authentication", "code": 401}


def test_verify_needs_json_put_and_exact_types(standin: Przelewy24StandIn) -> None:
    n = paid(standin)
    body = {
        "merchantId": MERCHANT_ID,
        "posId": POS_ID,
        "sessionId": n["sessionId"],
        "amount": n["amount"],
        "currency": "PLN",
        "orderId": n["orderId"],
    }
    body["sign"] = sign_verify(body, CRC)
    assert api(standin, "POST", "/api/v1/transaction/verify", body).status_code == 405
    form = httpx.put(f"{standin.url}/api/v1/transaction/verify", data=body, auth=(str(POS_ID), API_KEY), timeout=5.0)
    assert form.status_code == 415
    as_text = {**body, "amount": str(n["amount"])}
    assert api(standin, "PUT", "/api/v1/transaction/verify", as_text).status_code == 400
    assert api(standin, "PUT", "/api/v1/transaction/verify", {**body, "sign": "0" * 96}).status_code == 400
    assert api(standin, "PUT", "/api/v1/transaction/verify", body).json() == {
        "data": {"status": "success"},
        "responseCode": 0,
    }


def test_a_session_and_an_order_that_do_not_belong_together_are_refused(standin: Przelewy24StandIn) -> None:
    first, second = paid(standin, "woocommerce:1", 100), paid(standin, "woocommerce:2", 100)
    body = {
        "merchantId": MERCHANT_ID,
        "posId": POS_ID,
        "sessionId": first["sessionId"],
        "amount": 100,
        "currency": "PLN",
        "orderId": second["orderId"],
    }
    body["sign"] = sign_verify(body, CRC)
    assert api(standin, "PUT", "/api/v1/transaction/verify", body).status_code == 400
    assert standin.summary()["verified"] == 0


def test_the_transaction_is_read_by_session(standin: Przelewy24StandIn) -> None:
    n = paid(standin)
    found = api(standin, "GET", "/api/v1/transaction/by/sessionId/woocommerce%3A727").json()["data"]
    assert (found["orderId"], found["status"], found["amount"]) == (n["orderId"], 1, 35999)
    assert api(standin, "GET", "/api/v1/transaction/by/sessionId/nope").status_code == 404


def test_paying_twice_keeps_one_order_id(standin: Przelewy24StandIn) -> None:
    standin.register("woocommerce:5", 100)
    assert standin.pay("woocommerce:5") == standin.pay("woocommerce:5")
    with pytest.raises(KeyError):
        standin.pay("woocommerce:6")


# -- the notification sender ----------------------------------------------------------------------
class Endpoint:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                endpoint.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(endpoint.statuses.pop(0) if endpoint.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/przelewy24/notifications"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    running = Endpoint()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_the_sender_notifies_only_what_p24_holds_as_paid(standin: Przelewy24StandIn, endpoint: Endpoint) -> None:
    sender = Przelewy24NotificationStandIn(endpoint.url, CRC, api_url=standin.url, retry_delay=0.0)
    endpoint.statuses[:] = [500]
    delivery = sender.send(notification(42))
    assert delivery.attempts == [500, 200]
    sent = json.loads(endpoint.bodies[-1])
    held = standin.transactions()[0]
    assert (sent["sessionId"], sent["orderId"], held["status"]) == ("woocommerce:42", held["orderId"], 1)
    assert verify(endpoint.bodies[-1]).delivery_id == delivery.delivery_id == f"{held['orderId']}:woocommerce:42"
    assert endpoint.bodies[0] == endpoint.bodies[1]  # a notification sent again is the same one


def test_without_the_api_the_sender_signs_what_it_is_given(endpoint: Endpoint) -> None:
    sender = Przelewy24NotificationStandIn(endpoint.url, "forged-crc", retry_delay=0.0)
    sender.send(notification(43))
    with pytest.raises(VerificationFailed):
        verify(endpoint.bodies[-1])
    assert verify(endpoint.bodies[-1], ("forged-crc",)).topic == "transaction.notification"


def test_local_events_are_distinct_signed_notifications() -> None:
    first, second = NOTIFIER.event(1), NOTIFIER.event(2)
    assert first["sessionId"] != second["sessionId"] and first["orderId"] != second["orderId"]
    assert verify(json.dumps(first).encode()).delivery_id == f"{first['orderId']}:woocommerce:1"
    retried = notification(1, attempt="2")
    assert retried["sessionId"] == "woocommerce:1#2"
