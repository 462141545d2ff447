"""Fuzzing the ingress: whatever arrives, only our own rejections (``IngressRejection``) may
escape a verifier or the request parsing, and the handler answers 202, 400, 401 or 413, never
a 5xx. ``make test`` runs a few hundred inputs per property; ``benchmarks/fuzz_ingress.py``
runs the same properties over 100,000 and more.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.ingress import read_request
from shared.webhooks import VERIFIERS, Headers, IngressRejection, shopify, standard
from tests.unit.test_ingress_fakes import NOW, SHOP_SECRET, SW_SECRET, make_ingress

# -- strategies ----------------------------------------------------------------------------------
# Characters that have broken parsers: other scripts' digits, superscripts, NUL, separators,
# surrogates, noncharacters, and everything else hypothesis can draw.
TRICKY = ["\u00b2", "\u0663", "\uff11", "\u2028", "\x00", "\ud800", "\ufffe", " ", ",", "=", "-"]
text = st.lists(
    st.one_of(st.characters(codec=None), st.sampled_from(TRICKY), st.sampled_from(["v1,", "whsec_", "t="])), max_size=40
).map("".join)
digits = st.text(alphabet=st.sampled_from("0123456789\u00b2\u0663\uff11 +-_"), min_size=0, max_size=14)
b64 = st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode())
header_value = st.one_of(
    text,
    digits,
    b64,
    b64.map(lambda v: "v1," + v),
    st.lists(b64.map(lambda v: "v1," + v) | text, max_size=4).map(" ".join),
    st.just("A" * 5000),
)
HEADER_NAMES = sorted(
    {
        "content-type",
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Webhook-Id",
        "X-Shopify-Topic",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-event-type",
    }
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES) | text, header_value, max_size=8)
secrets = st.lists(st.sampled_from([SHOP_SECRET, SW_SECRET, "whsec_***", "", "whsec_"]) | text, max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=8,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.dictionaries(text, json_values, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.integers(0, 3000).map(lambda n: b"[" * n + b"]" * n),
)
verifier_inputs = st.tuples(st.sampled_from(sorted(VERIFIERS)), headers, st.binary(max_size=200), secrets)


def _event_body(raw: bytes) -> st.SearchStrategy[dict[str, Any]]:
    try:
        as_text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return st.just({"body": base64.b64encode(raw).decode(), "isBase64Encoded": True})
    return st.sampled_from(
        [{"body": as_text, "isBase64Encoded": False}, {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}]
    )


# API Gateway events of every shape, mostly wrong.
events = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "headers": st.one_of(json_values, headers, st.dictionaries(text, json_values, max_size=3)),
            "body": st.one_of(
                st.none(), text, b64, json_values, st.text(max_size=40).map(lambda t: t + "\udcff\ud800")
            ),
            "isBase64Encoded": st.one_of(st.booleans(), json_values),
        },
    ),
)


@st.composite
def signed_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Correctly signed requests (so parsing and enqueueing run), then perhaps one header spoilt."""
    scheme = draw(st.sampled_from(sorted(VERIFIERS)))
    raw = draw(bodies)
    delivery_id = draw(st.one_of(st.just("d-1"), text))
    if scheme == "shopify":
        signed = {"X-Shopify-Hmac-Sha256": shopify.sign(raw, SHOP_SECRET), "X-Shopify-Webhook-Id": delivery_id}
    else:
        ts = int(NOW) + draw(st.integers(-400, 400))
        try:
            signature = standard.sign(delivery_id, ts, raw, SW_SECRET)
        except UnicodeEncodeError:  # a delivery id no sender could have signed
            signature = "v1,"
        signed = {"webhook-id": delivery_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    signed["Content-Type"] = "application/json"
    if draw(st.booleans()):
        signed[draw(st.sampled_from(HEADER_NAMES))] = draw(header_value)
    built: dict[str, Any] = {"headers": signed, **draw(_event_body(raw))}
    return scheme, built


# -- properties (the benchmark runs these same functions) -----------------------------------------
ALLOWED_STATUSES = {202, 400, 401, 413}


def check_verifier(case: tuple[str, dict[str, str], bytes, list[str]]) -> str:
    scheme, raw_headers, body, active = case
    try:
        VERIFIERS[scheme].verify(Headers(raw_headers), body, active, now=NOW, tolerance=300)
    except IngressRejection as rejection:
        return f"{scheme}:{rejection.status}"
    return f"{scheme}:verified"


def check_read_request(event: Any) -> str:
    try:
        read_request(event, 1024)
    except IngressRejection as rejection:
        return f"read:{rejection.status}"
    return "read:ok"


def check_handle(case: tuple[str, Any]) -> str:
    scheme, event = case
    ingress, _, _ = make_ingress(scheme)
    status = int(ingress.handle(event)["statusCode"])
    assert status in ALLOWED_STATUSES, f"answered {status}"
    return f"handle:{status}"


def check_unsigned_handle(event: Any) -> str:
    return check_handle(("shopify", event))


PROPERTIES: list[tuple[str, st.SearchStrategy[Any], Callable[[Any], str]]] = [
    ("verifiers", verifier_inputs, check_verifier),
    ("read_request", events, check_read_request),
    ("handle, any event", events, check_unsigned_handle),
    ("handle, signed events", signed_events(), check_handle),
]

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(case=verifier_inputs)
def test_verifiers_raise_only_our_rejections(case: tuple[str, dict[str, str], bytes, list[str]]) -> None:
    check_verifier(case)


@FAST
@given(event=events)
def test_request_parsing_raises_only_our_rejections(event: Any) -> None:
    check_read_request(event)


@FAST
@given(event=events)
def test_any_event_gets_a_4xx_never_a_5xx(event: Any) -> None:
    check_unsigned_handle(event)


@FAST
@given(case=signed_events())
def test_signed_requests_get_202_or_a_4xx_never_a_5xx(case: tuple[str, Any]) -> None:
    check_handle(case)


# -- what the fuzzing found, pinned -----------------------------------------------------------------
def test_a_superscript_timestamp_is_a_401() -> None:
    case = (
        "standard-webhooks",
        {"webhook-id": "m", "webhook-timestamp": "\u00b2", "webhook-signature": "v1,AA=="},
        b"{}",
        [SW_SECRET],
    )
    assert check_verifier(case) == "standard-webhooks:401"


def test_a_body_with_a_lone_surrogate_is_a_400() -> None:
    assert check_read_request({"body": "{}\ud800"}) == "read:400"


def test_json_nested_beyond_the_parsers_stack_is_a_400() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    event = {
        "headers": {"X-Shopify-Hmac-Sha256": shopify.sign(raw, SHOP_SECRET), "X-Shopify-Webhook-Id": "d"},
        "body": raw.decode(),
    }
    assert check_handle(("shopify", event)) == "handle:400"


def test_a_secret_that_is_not_utf8_is_our_503_not_a_crash() -> None:
    ingress, _, _ = make_ingress()
    ingress.secrets.values = ["shpss_\ud800"]  # type: ignore[attr-defined]
    event = {
        "headers": {"X-Shopify-Hmac-Sha256": shopify.sign(b"{}", SHOP_SECRET), "X-Shopify-Webhook-Id": "d"},
        "body": "{}",
    }
    assert ingress.handle(event)["statusCode"] == 503


def test_a_bug_of_ours_is_a_500_with_a_traceback_and_no_payload(monkeypatch: Any) -> None:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "shared.ingress.log", lambda _logger, _level, message, **fields: lines.append({"message": message, **fields})
    )
    metrics: list[dict[str, float]] = []
    monkeypatch.setattr("shared.ingress.emit_metrics", lambda _name, values: metrics.append(values))
    ingress, _, _ = make_ingress()

    def broken(*_: Any, **__: Any) -> Any:
        payload = "secret-payload-value"
        raise KeyError(payload)

    ingress._envelope = broken  # type: ignore[method-assign]
    event = {
        "headers": {"X-Shopify-Hmac-Sha256": shopify.sign(b"{}", SHOP_SECRET), "X-Shopify-Webhook-Id": "d"},
        "body": "{}",
    }
    answer = ingress.handle(event)
    assert answer["statusCode"] == 500 and json.loads(answer["body"]) == {"error": "internal error"}
    [line] = lines
    assert line["message"] == "webhook error" and line["detail"] == "KeyError"
    assert "in broken" in line["traceback"]
    assert "secret-payload-value" not in json.dumps(line)
    assert metrics == [{"Webhook_error": 1}]
