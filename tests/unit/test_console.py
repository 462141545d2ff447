"""The console's request handling with a fake backend: the Host check, the token and the Origin
check on every change, the JSON shapes, and the pieces that turn DLQ messages into JSON."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from ops import console
from ops.console import NotFound, Selection
from ops.context import OpsError, Target
from ops.dlq import DlqMessage

TOKEN = "t0ken-for-tests-" + "x" * 30


class FakeBackend:
    """Answers like OpsBackend; records every call, so a test sees what a request reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: BaseException | None = None

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.fail_with is not None:
            raise self.fail_with

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "stage": "test"}

    def describe_error(self, exc: BaseException) -> str | None:
        return "local stack not running" if isinstance(exc, EndpointConnectionError) else None

    def integrations(self) -> list[dict[str, Any]]:
        return [{"name": "shopify-orders", "trigger": "webhook", "scheduled": False, "targets": ["erp", "hubspot"]}]

    def status(self) -> list[dict[str, Any]]:
        self._call("status")
        return [{"integration": "shopify-orders", "target": "erp", "dlq_depth": 2, "breaker": "closed"}]

    def dead_letters(self, integration: str | None, target: str | None, limit: int) -> list[dict[str, Any]]:
        self._call("dead_letters", integration, target, limit)
        return [{"integration": "shopify-orders", "target": "erp", "count": 0, "classes": [], "messages": []}]

    def message(self, message_id: str, integration: str | None, target: str | None) -> dict[str, Any]:
        self._call("message", message_id, integration, target)
        if message_id == "missing":
            raise NotFound("message missing not found in the DLQ of shopify-orders/erp")
        return {"message_id": message_id}

    def redrive_preview(self, selection: Selection) -> list[dict[str, Any]]:
        self._call("redrive_preview", selection)
        return [
            {"integration": "shopify-orders", "target": "erp", "count": 2, "staying": 1, "message_ids": ["m1", "m2"]},
            {"integration": "shopify-orders", "target": "hubspot", "count": 1, "staying": 0, "message_ids": ["m3"]},
        ]

    def redrive(self, selection: Selection, chosen: Mapping[tuple[str, str], Sequence[str]]) -> list[dict[str, Any]]:
        self._call("redrive", selection, dict(chosen))
        return [
            {"integration": i, "target": t, "method": "manual", "confirmed": len(ids), "moved": len(ids)}
            for (i, t), ids in chosen.items()
        ]

    def trace(self, any_id: str) -> list[dict[str, Any]]:
        self._call("trace", any_id)
        if any_id == "nothing":
            raise NotFound("no trace for 'nothing'")
        return [{"entity_id": any_id, "matched_as": [], "ids": {}, "hops": []}]

    def sync(self) -> list[dict[str, Any]]:
        self._call("sync")
        return [{"integration": "allegro-orders", "cursor": {"position": None}}]


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(backend: FakeBackend) -> Iterator[console.ConsoleServer]:
    srv = console.serve("127.0.0.1", 0, backend=backend, token=TOKEN, quiet=True)
    srv.start_background()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def request(
    server: console.ConsoleServer,
    method: str,
    path: str,
    *,
    host: str | None = "default",
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", f"127.0.0.1:{server.port}" if host == "default" else host)
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def doc(raw: bytes) -> Any:
    return json.loads(raw)


REDRIVE = {
    "integration": "shopify-orders",
    "reason": "target_rejected",
    "queues": [{"integration": "shopify-orders", "target": "erp", "message_ids": ["m1", "m2"]}],
}


def calls_named(backend: FakeBackend, name: str) -> list[Any]:
    return [args for called, args in backend.calls if called == name]


# -- static page -------------------------------------------------------------------------------
def test_the_page_and_its_assets_are_served_with_a_strict_policy(server: console.ConsoleServer) -> None:
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="/assets/console.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in headers  # no other origin reads an answer
    status, headers, _ = request(server, "GET", "/assets/console.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["/assets/../console.py", "/assets/..%2fconsole.py", "/assets/missing.js", "/nope"])
def test_nothing_outside_the_assets_is_served(server: console.ConsoleServer, path: str) -> None:
    status, _, body = request(server, "GET", path)
    assert status == 404
    assert b"import" not in body


def test_the_script_never_writes_markup() -> None:
    # Dead letters carry what webhooks sent: the page must render them as text only.
    script = (console.ASSETS / "console.js").read_text()
    assert "innerHTML" not in script and "outerHTML" not in script and "insertAdjacentHTML" not in script
    assert "eval(" not in script


# -- Host check (DNS rebinding) ----------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "127.0.0.1", ""])
def test_a_request_for_another_host_is_refused(server: console.ConsoleServer, backend: FakeBackend, host: str) -> None:
    status, _, body = request(server, "GET", "/api/status", host=host.format(port=server.port))
    assert status == 403
    assert "is not this console's address" in doc(body)["error"]
    assert backend.calls == []


def test_a_request_without_host_is_refused(server: console.ConsoleServer, backend: FakeBackend) -> None:
    status, _, _ = request(server, "GET", "/api/status", host=None)
    assert status == 403 and backend.calls == []


def test_a_post_for_another_host_is_refused_even_with_the_token(
    server: console.ConsoleServer, backend: FakeBackend
) -> None:
    status, _, _ = request(
        server, "POST", "/api/dlq/redrive", host="evil.example", headers={console.TOKEN_HEADER: TOKEN}, body=REDRIVE
    )
    assert status == 403 and calls_named(backend, "redrive") == []


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_the_bound_address_and_localhost_are_answered(server: console.ConsoleServer, host: str) -> None:
    status, _, body = request(server, "GET", "/api/status", host=host.format(port=server.port))
    assert status == 200
    assert doc(body)["target"] == {"kind": "local", "stage": "test"}


# -- token and Origin on changes ---------------------------------------------------------------
def test_a_redrive_without_the_token_is_refused(server: console.ConsoleServer, backend: FakeBackend) -> None:
    status, _, body = request(server, "POST", "/api/dlq/redrive", body=REDRIVE)
    assert status == 401
    assert console.TOKEN_HEADER in doc(body)["error"]
    assert calls_named(backend, "redrive") == []


@pytest.mark.parametrize("token", ["wrong", TOKEN[:-1], TOKEN + "x", " " + TOKEN + "x"])
def test_a_redrive_with_a_wrong_token_is_refused(
    server: console.ConsoleServer, backend: FakeBackend, token: str
) -> None:
    status, _, _ = request(server, "POST", "/api/dlq/redrive", headers={console.TOKEN_HEADER: token}, body=REDRIVE)
    assert status == 401 and calls_named(backend, "redrive") == []


def test_a_redrive_with_the_token_moves_the_confirmed_messages(
    server: console.ConsoleServer, backend: FakeBackend
) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    status, _, body = request(
        server,
        "POST",
        "/api/dlq/redrive",
        headers={console.TOKEN_HEADER: TOKEN, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
        body=REDRIVE,
    )
    assert status == 200, body
    answer = doc(body)
    assert answer == {
        "describe": "reason=target_rejected",
        "moved": 2,
        "queues": [{"integration": "shopify-orders", "target": "erp", "method": "manual", "confirmed": 2, "moved": 2}],
    }
    [(selection, chosen)] = calls_named(backend, "redrive")
    assert selection == Selection("shopify-orders", None, "target_rejected", None, 10.0)
    assert chosen == {("shopify-orders", "erp"): ["m1", "m2"]}


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://127.0.0.1:{port}"},
        {"Origin": "http://127.0.0.1:1"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_redrive_is_refused_even_with_the_token(
    server: console.ConsoleServer, backend: FakeBackend, headers: dict[str, str]
) -> None:
    sent = {k: v.format(port=server.port) for k, v in headers.items()}
    status, _, body = request(
        server, "POST", "/api/dlq/redrive", headers={console.TOKEN_HEADER: TOKEN, **sent}, body=REDRIVE
    )
    assert status == 403
    assert "cross-origin" in doc(body)["error"]
    assert calls_named(backend, "redrive") == []


def test_a_redrive_must_be_json(server: console.ConsoleServer, backend: FakeBackend) -> None:
    # A form post (what a cross-site page can send without CORS) is not JSON.
    status, _, _ = request(
        server,
        "POST",
        "/api/dlq/redrive",
        headers={console.TOKEN_HEADER: TOKEN, "Content-Type": "application/x-www-form-urlencoded"},
        body=b"queues=x",
    )
    assert status == 415
    status, _, _ = request(server, "POST", "/api/dlq/redrive", headers={console.TOKEN_HEADER: TOKEN}, body=b"{not json")
    assert status == 400
    assert calls_named(backend, "redrive") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reason": "x"}, "preview the redrive first"),
        ({"queues": []}, "preview the redrive first"),
        ({"queues": [{"integration": "shopify-orders", "target": "erp", "message_ids": []}]}, "matched none"),
        ({"queues": [{"integration": "shopify-orders", "message_ids": ["m1"]}]}, "integration and target"),
        ({"queues": [{"integration": "a", "target": "b", "message_ids": "m1"}]}, "message_ids"),
        ({**REDRIVE, "rate": 0}, "rate"),
        ({**REDRIVE, "rate": 10_000}, "rate"),
        ({**REDRIVE, "error_class": "weird"}, "error_class"),
        ({**REDRIVE, "reason": 5}, "reason must be a string"),
    ],
)
def test_a_redrive_needs_the_previewed_messages_and_valid_fields(
    server: console.ConsoleServer, backend: FakeBackend, body: dict[str, Any], message: str
) -> None:
    status, _, raw = request(server, "POST", "/api/dlq/redrive", headers={console.TOKEN_HEADER: TOKEN}, body=body)
    assert status == 400
    assert message in doc(raw)["error"]
    assert calls_named(backend, "redrive") == []


def test_posting_anywhere_else_and_other_methods_change_nothing(
    server: console.ConsoleServer, backend: FakeBackend
) -> None:
    status, _, _ = request(server, "POST", "/api/status", headers={console.TOKEN_HEADER: TOKEN}, body={})
    assert status == 404
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        status, _, _ = request(server, method, "/api/dlq/redrive", headers={console.TOKEN_HEADER: TOKEN}, body=REDRIVE)
        assert status == 405, method
    assert calls_named(backend, "redrive") == []


# -- JSON shapes -------------------------------------------------------------------------------
def test_gets_answer_json_and_never_redrive(server: console.ConsoleServer, backend: FakeBackend) -> None:
    overview = doc(request(server, "GET", "/api/overview")[2])
    assert overview["target"] == {"kind": "local", "stage": "test"}
    assert overview["integrations"][0]["targets"] == ["erp", "hubspot"]
    assert doc(request(server, "GET", "/api/status")[2])["rows"][0]["dlq_depth"] == 2
    dlq = doc(request(server, "GET", "/api/dlq?integration=shopify-orders&target=erp&limit=50")[2])
    assert dlq["queues"][0]["count"] == 0
    assert calls_named(backend, "dead_letters") == [("shopify-orders", "erp", 50)]
    assert doc(request(server, "GET", "/api/dlq/message?id=m1&integration=shopify-orders")[2]) == {"message_id": "m1"}
    assert calls_named(backend, "message") == [("m1", "shopify-orders", None)]
    traced = doc(request(server, "GET", "/api/trace?id=shopify-order%3A1")[2])
    assert traced == {
        "id": "shopify-order:1",
        "traces": [{"entity_id": "shopify-order:1", "matched_as": [], "ids": {}, "hops": []}],
    }
    assert doc(request(server, "GET", "/api/sync")[2])["integrations"][0]["integration"] == "allegro-orders"
    assert calls_named(backend, "redrive") == []


def test_the_preview_counts_every_queue(server: console.ConsoleServer, backend: FakeBackend) -> None:
    status, _, raw = request(server, "GET", "/api/dlq/preview?integration=shopify-orders&reason=target_rejected")
    assert status == 200
    preview = doc(raw)
    assert preview["count"] == 3
    assert preview["describe"] == "reason=target_rejected"
    assert [q["message_ids"] for q in preview["queues"]] == [["m1", "m2"], ["m3"]]
    [(selection,)] = calls_named(backend, "redrive_preview")
    assert selection == Selection("shopify-orders", None, "target_rejected", None, 10.0)
    assert calls_named(backend, "redrive") == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/trace?id=nothing", 404),
        ("/api/trace", 400),
        ("/api/dlq/message?id=missing", 404),
        ("/api/dlq/message", 400),
        ("/api/dlq?limit=0", 400),
        ("/api/dlq?limit=ten", 400),
        ("/api/dlq/preview?rate=-1", 400),
    ],
)
def test_errors_are_json_with_a_status(server: console.ConsoleServer, path: str, status: int) -> None:
    got, headers, raw = request(server, "GET", path)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert doc(raw)["error"]


def test_an_operator_error_is_400_and_an_aws_error_502_and_a_bug_500(
    server: console.ConsoleServer, backend: FakeBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    backend.fail_with = OpsError("shopify-orders has several targets (erp, hubspot): pass --target")
    status, _, raw = request(server, "GET", "/api/status")
    assert (status, doc(raw)["error"]) == (400, "shopify-orders has several targets (erp, hubspot): pass --target")
    backend.fail_with = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    status, _, raw = request(server, "GET", "/api/status")
    assert (status, doc(raw)["error"]) == (502, "local stack not running")
    backend.fail_with = KeyError("secret detail")
    status, _, raw = request(server, "GET", "/api/status")
    assert (status, doc(raw)["error"]) == (500, "internal error: KeyError")
    assert "secret detail" not in raw.decode()


# -- binding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_wildcard_address_is_refused(backend: FakeBackend, host: str) -> None:
    with pytest.raises(OpsError, match="every interface"):
        console.serve(host, 0, backend=backend, allow_remote=True)


def test_another_address_needs_allow_remote(backend: FakeBackend) -> None:
    with pytest.raises(OpsError, match="--allow-remote"):
        console.serve("192.0.2.10", 0, backend=backend)
    console.check_bind("192.0.2.10", allow_remote=True)  # allowed when asked for explicitly
    console.check_bind("127.0.0.1", allow_remote=False)
    console.check_bind("::1", allow_remote=False)


def test_allowed_hosts() -> None:
    assert console.allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765"}
    assert console.allowed_hosts("::1", 8765) == {"[::1]:8765", "localhost:8765"}
    assert console.allowed_hosts("192.0.2.10", 80) == {"192.0.2.10:80"}


def test_each_server_has_its_own_random_token(backend: FakeBackend) -> None:
    servers = [console.serve("127.0.0.1", 0, backend=backend, quiet=True) for _ in range(2)]
    try:
        first, second = (s.token for s in servers)
        assert first != second and len(first) >= 40
    finally:
        for s in servers:
            s.server_close()


def test_importing_the_console_loads_no_browser_tooling() -> None:
    code = "import sys, ops.console; print('playwright' in sys.modules, 'ops.sync' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- DLQ messages as JSON ----------------------------------------------------------------------
def dead_letter(message_id: str, reason: str, error_class: str | None, **extra: str) -> DlqMessage:
    attributes = {"junction-reason": reason, "junction-entity-ids": json.dumps({"order": message_id}), **extra}
    if error_class is not None:
        attributes["junction-error-class"] = error_class
    return DlqMessage(
        "shopify-orders",
        "erp",
        "http://sqs/q",
        message_id,
        "rh-" + message_id,
        json.dumps({"body": json.dumps({"id": 1}), "body_encoding": "utf-8"}),
        attributes,
        {"SentTimestamp": "1767225600000", "ApproximateReceiveCount": "1"},
    )


def test_dead_letters_are_grouped_by_class_then_reason() -> None:
    messages = [
        dead_letter("a", "target_rejected", "business"),
        dead_letter("b", "retries_exhausted", "system", **{"junction-last-reason": "target_down"}),
        dead_letter("c", "target_rejected", "business"),
        dead_letter("d", "unmapped_sku", None),
    ]
    groups = console.class_groups(messages)
    assert [(c["error_class"], c["count"]) for c in groups] == [("business", 2), ("system", 1), ("unclassified", 1)]
    assert groups[0]["groups"][0]["reason"] == "target_rejected"
    assert groups[0]["groups"][0]["count"] == 2
    assert groups[0]["groups"][0]["sample_entity_ids"] == ["a", "c"]
    system = groups[1]["groups"][0]
    assert (system["reason"], system["filter_reason"]) == ("retries_exhausted (target_down)", "target_down")


def test_a_message_in_full_decodes_the_envelope_body() -> None:
    detail = console.message_detail(dead_letter("a", "target_rejected", "business", **{"junction-error": "no SKU X"}))
    assert detail["body_is_json"] is True
    assert detail["body"] == {"body": {"id": 1}, "body_encoding": "utf-8"}
    assert detail["error"] == "no SKU X"
    assert detail["error_class"] == "business"
    assert detail["system"]["SentTimestamp"] == "1767225600000 (2026-01-01T00:00:00+00:00)"
    assert detail["claim_check"] is None
    json.dumps(detail)  # JSON-ready as it is


def test_a_body_that_is_not_json_is_text() -> None:
    assert console.decoded_body("not json <b>") == (False, "not json <b>")


def test_the_redrive_filter_takes_only_the_confirmed_messages() -> None:
    target = Target("local", "test", region="eu-central-1", endpoints={"default": "http://127.0.0.1:9"})
    backend = console.OpsBackend(target)
    a, b = dead_letter("a", "target_rejected", "business"), dead_letter("b", "target_rejected", "business")
    system = dead_letter("s", "retries_exhausted", "system", **{"junction-last-reason": "target_rejected"})
    chosen = backend._filter(Selection(reason="target_rejected"), ["a", "s"])
    assert chosen.active  # never the unfiltered move task: only the confirmed ids move
    assert [m.message_id for m in (a, b, system) if chosen.matches(m)] == ["a", "s"]
    by_class = backend._filter(Selection(reason="target_rejected", error_class="system"))
    assert [m.message_id for m in (a, b, system) if by_class.matches(m)] == ["s"]
    assert not backend._filter(Selection()).active  # a preview of everything is everything


def test_selection_from_query_strings() -> None:
    selection = Selection.from_fields({"integration": "shopify-orders", "target": "", "reason": " x ", "rate": "2.5"})
    assert selection == Selection("shopify-orders", None, "x", None, 2.5)
    assert Selection().describe() == "all messages"
    with pytest.raises(OpsError):
        Selection.from_fields({"rate": "fast"})
    with pytest.raises(OpsError):
        Selection.from_fields({"rate": True})


def test_the_entry_point_refuses_a_wildcard_address_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        console.main(["--host", "0.0.0.0", "--port", "0"])
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("error: --host 0.0.0.0 binds every interface")
