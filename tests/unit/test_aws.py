"""The lean AWS client: SigV4 must match botocore's, byte for byte; DynamoDB values round-trip."""

from __future__ import annotations

import calendar
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given
from hypothesis import strategies as st

from shared.aws import (
    AwsError,
    CredentialChain,
    Credentials,
    S3Client,
    from_ddb,
    item_from_ddb,
    item_to_ddb,
    regional_endpoint,
    resolve_endpoint,
    s3_client,
    sign_v4,
    sqs_client,
    to_ddb,
)


@pytest.mark.parametrize("token", [None, "session-token-value"])
@pytest.mark.parametrize(
    ("service", "url", "target"),
    [
        ("sqs", "https://sqs.eu-central-1.amazonaws.com/", "AmazonSQS.SendMessage"),
        ("dynamodb", "https://dynamodb.eu-central-1.amazonaws.com/", "DynamoDB_20120810.PutItem"),
        ("secretsmanager", "http://127.0.0.1:5000/", "secretsmanager.GetSecretValue"),
    ],
)
def test_signature_matches_botocore(service: str, url: str, target: str, token: str | None) -> None:
    body = b'{"QueueUrl": "https://x", "MessageBody": "zaz\\u00f3\\u0142\\u0107  two  spaces"}'
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    boto_creds = BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    SigV4Auth(boto_creds, service, "eu-central-1").add_auth(request)
    signed_at = calendar.timegm(time.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ"))
    ours = sign_v4(
        method="POST",
        url=url,
        headers=headers,
        body=body,
        service=service,
        region="eu-central-1",
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        now=signed_at,
    )
    assert ours["Authorization"] == request.headers["Authorization"]


def test_missing_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(AwsError, match="NoCredentials"):
        Credentials.from_env()


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "InternalError", True),
        (400, "ThrottlingException", True),
        (400, "ValidationException", False),
        (400, "ConditionalCheckFailedException", False),
        (0, "ConnectionError", True),
    ],
)
def test_retryable_errors(status: int, code: str, retryable: bool) -> None:
    assert AwsError("dynamodb", "PutItem", status, code, "m").retryable is retryable


ddb_values: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=20),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9),
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@given(value=ddb_values)
def test_dynamodb_values_round_trip(value: Any) -> None:
    assert from_ddb(to_ddb(value)) == value  # numbers come back as int or Decimal, never float


def test_items_round_trip() -> None:
    item = {"id": "k", "n": 3, "ok": True, "m": {"a": "b"}, "l": ["x", 1]}
    assert item_from_ddb(item_to_ddb(item)) == item


# -- S3 signing --------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "session-token-value"])
@pytest.mark.parametrize(
    ("method", "key", "body"),
    [
        ("PUT", "payloads/shopify-orders/2026/11/23/0f3a", b'{"id": 1}'),
        ("PUT", "payloads/odd key/with+plus/~tilde/za\u017c\u00f3\u0142\u0107", b"\x00\xff raw bytes"),
        ("GET", "payloads/a/b", b""),
    ],
)
def test_s3_signature_matches_botocore(method: str, key: str, body: bytes, token: str | None) -> None:
    client = S3Client(region="eu-central-1", credentials=Credentials("AKIDEXAMPLE", "secret/key", token))
    url = client.object_url("junction-prod-payloads", key)
    assert url.startswith("https://junction-prod-payloads.s3.eu-central-1.amazonaws.com/payloads/")
    headers = {"Content-Type": "application/octet-stream"} if method == "PUT" else {}
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    S3SigV4Auth(BotoCredentials("AKIDEXAMPLE", "secret/key", token), "s3", "eu-central-1").add_auth(request)
    signed_at = calendar.timegm(time.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ"))
    ours = sign_v4(
        method=method,
        url=url,
        headers=headers,
        body=body,
        service="s3",
        region="eu-central-1",
        credentials=Credentials("AKIDEXAMPLE", "secret/key", token),
        now=signed_at,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
    assert ours["X-Amz-Content-SHA256"] == request.headers["X-Amz-Content-SHA256"]
    assert ours["Authorization"] == request.headers["Authorization"]


def test_s3_uses_path_style_urls_on_a_custom_endpoint() -> None:
    client = S3Client(endpoint="http://127.0.0.1:5000", region="eu-central-1")
    assert client.object_url("bkt", "payloads/a b/c") == "http://127.0.0.1:5000/bkt/payloads/a%20b/c"
    aws = S3Client(region="eu-central-1")
    assert aws.object_url("with.dots", "k") == "https://s3.eu-central-1.amazonaws.com/with.dots/k"


# -- endpoints -----------------------------------------------------------------------------------
class _NoBody:
    def stream(self, **_: Any) -> Iterator[bytes]:
        return iter([b""])

    def read(self, *_: Any, **__: Any) -> bytes:
        return b""


_SESSION = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b")


def _botocore_host(service: str, region: str, fips: bool, dualstack: bool) -> str | None:
    """The host botocore's endpoint rules pick (the request is captured before it is sent)."""
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        seen.append(request.url)
        return AWSResponse(request.url, 500, HTTPHeaders(), _NoBody())

    config = Config(
        use_fips_endpoint=fips,
        use_dualstack_endpoint=dualstack,
        retries={"max_attempts": 1},
        s3={"addressing_style": "path", "us_east_1_regional_endpoint": "regional"},
    )
    client = _SESSION.client(service, region_name=region, config=config)  # type: ignore[call-overload]
    client.meta.events.register("before-send", capture)
    operation, args = {
        "sqs": ("list_queues", {}),
        "dynamodb": ("list_tables", {}),
        "secretsmanager": ("list_secrets", {}),
        "s3": ("get_object", {"Bucket": "bkt", "Key": "k"}),
    }[service]
    try:
        getattr(client, operation)(**args)
    except Exception:
        pass
    return urlsplit(seen[0]).netloc if seen else None


REGIONS = [
    "us-east-1",
    "eu-central-1",
    "ap-southeast-2",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-west-1",
    "us-gov-east-1",
]


@pytest.mark.parametrize("service", ["sqs", "dynamodb", "secretsmanager", "s3"])
@pytest.mark.parametrize("region", REGIONS)
def test_endpoints_match_botocores_rules(service: str, region: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv(f"AWS_ENDPOINT_URL_{service.upper()}", raising=False)
    for fips in (False, True):
        for dualstack in (False, True):
            expected = _botocore_host(service, region, fips, dualstack)
            if expected is None:
                with pytest.raises(AwsError, match="EndpointResolutionError"):
                    regional_endpoint(service, region, fips=fips, dualstack=dualstack)
                continue
            got = regional_endpoint(service, region, fips=fips, dualstack=dualstack)
            assert got == f"https://{expected}", (fips, dualstack)


@pytest.mark.parametrize(
    ("env", "service", "endpoint_env", "expected"),
    [
        ({}, "sqs", "SQS", "https://sqs.cn-north-1.amazonaws.com.cn"),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, "sqs", "SQS", "https://sqs-fips.cn-north-1.amazonaws.com.cn"),
        (
            {"AWS_USE_DUALSTACK_ENDPOINT": "TRUE"},
            "dynamodb",
            "DYNAMODB",
            "https://dynamodb.cn-north-1.api.amazonwebservices.com.cn",
        ),
        (
            {"AWS_USE_FIPS_ENDPOINT": "false"},
            "secretsmanager",
            "SECRETS_MANAGER",
            "https://secretsmanager.cn-north-1.amazonaws.com.cn",
        ),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1/"}, "s3", "S3", "http://127.0.0.1:1"),
        (
            {"AWS_ENDPOINT_URL": "http://x:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2"},
            "s3",
            "S3",
            "http://127.0.0.1:2",
        ),
    ],
)
def test_endpoint_resolution_order_and_flags(
    env: dict[str, str], service: str, endpoint_env: str, expected: str
) -> None:
    assert resolve_endpoint(service, endpoint_env, "cn-north-1", env) == expected


def test_clients_take_the_region_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-gov-west-1")
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    assert sqs_client().endpoint == "https://sqs-fips.us-gov-west-1.api.aws/"
    assert s3_client().object_url("bkt-x", "k") == "https://bkt-x.s3-fips.dualstack.us-gov-west-1.amazonaws.com/k"


# -- local HTTP servers (127.0.0.1 only) ---------------------------------------------------------
class _Server:
    """A tiny HTTP server on 127.0.0.1 whose answers the test sets; it records what it got."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                status, headers, data = answer(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _any

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HangingServer:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.sock.close()


def _credentials_doc(expires_in: float, key: str = "ASIACONTAINER") -> bytes:
    expiration = datetime.fromtimestamp(time.time() + expires_in, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"AccessKeyId": key, "SecretAccessKey": "s", "Token": "t", "Expiration": expiration}
    return json.dumps(doc).encode()


def test_environment_credentials_come_first() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKENV",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/",
    }
    assert CredentialChain(env).get().access_key == "AKENV"


def test_container_credentials_with_a_token_are_cached_until_shortly_before_expiry() -> None:
    keys = iter(["ASIA1", "ASIA2", "ASIA3"])
    with _Server(lambda _: (200, {"Content-Type": "application/json"}, _credentials_doc(900, next(keys)))) as server:
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok-1",
        }
        now = [time.time()]
        chain = CredentialChain(env, clock=lambda: now[0], refresh_before=300)
        first = chain.get()
        assert (first.access_key, first.token) == ("ASIA1", "t")
        assert chain.get().access_key == "ASIA1"  # cached
        now[0] += 700  # 200 s before expiry: refresh
        assert chain.get().access_key == "ASIA2"
        assert [r["path"] for r in server.requests] == ["/creds", "/creds"]
        assert server.requests[0]["headers"]["authorization"] == "tok-1"


def test_container_credentials_token_file_takes_precedence(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    with _Server(lambda _: (200, {}, _credentials_doc(3600))) as server:
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        }
        assert CredentialChain(env).get().access_key == "ASIACONTAINER"
        assert server.requests[0]["headers"]["authorization"] == "tok-from-file"


def test_relative_uri_goes_to_the_ecs_agent_address(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_fetch(self: CredentialChain, url: str, env: Any, deadline: float | None) -> Credentials:
        asked.append(url)
        return Credentials("ASIAREL", "s", "t", time.time() + 3600)

    monkeypatch.setattr(CredentialChain, "_fetch", fake_fetch)
    env = {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/",
    }
    assert CredentialChain(env).get().access_key == "ASIAREL"
    assert asked == ["http://169.254.170.2/v2/credentials/abc"]


@pytest.mark.parametrize("uri", ["http://example.com/creds", "http://10.0.0.1/creds", "ftp://127.0.0.1/x"])
def test_full_uri_over_plain_http_must_be_local(uri: str) -> None:
    with pytest.raises(AwsError, match="InvalidContainerUri"):
        CredentialChain({"AWS_CONTAINER_CREDENTIALS_FULL_URI": uri}).get()


def test_clients_use_container_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with _Server(lambda _: (200, {}, _credentials_doc(3600, "ASIASIGNER"))) as creds:
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.url + "/c"}
        client = sqs_client(endpoint="http://127.0.0.1:1", credentials=CredentialChain(env))
        assert client.credentials.access_key == "ASIASIGNER"


# -- errors carry request ids ----------------------------------------------------------------------
def test_json_errors_carry_the_request_id() -> None:
    error = json.dumps({"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "gone"}).encode()
    with _Server(lambda _: (400, {"x-amzn-RequestId": "req-123"}, error)) as server, pytest.raises(AwsError) as caught:
        sqs_client(endpoint=server.url).call("SendMessage", {"QueueUrl": "q", "MessageBody": "b"})
    assert (caught.value.code, caught.value.request_id) == ("QueueDoesNotExist", "req-123")
    assert "req-123" in str(caught.value)


def test_s3_errors_carry_the_request_id_and_code() -> None:
    xml = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>The key does not exist</Message></Error>"
    with _Server(lambda _: (404, {"x-amz-request-id": "s3req-9"}, xml)) as server, pytest.raises(AwsError) as caught:
        S3Client(endpoint=server.url).get_object("bkt", "payloads/k")
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (404, "NoSuchKey", "s3req-9")
    assert "s3req-9" in str(caught.value)


def test_s3_put_and_get_over_the_wire() -> None:
    stored: dict[str, bytes] = {}

    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        request = server.requests[-1]
        if request["method"] == "PUT":
            assert request["headers"]["x-amz-content-sha256"] == hashlib.sha256(request["body"]).hexdigest()
            stored[request["path"]] = request["body"]
            return 200, {"ETag": '"e"', "x-amz-request-id": "put-1"}, b""
        return 200, {}, stored[request["path"]]

    body = "\ufffe\x00 zażółć 🎉".encode()
    with _Server(answer) as server:
        client = S3Client(endpoint=server.url)
        assert client.put_object("bkt", "payloads/x/1", body)["RequestId"] == "put-1"
        assert client.get_object("bkt", "payloads/x/1") == body
    assert server.requests[0]["path"] == "/bkt/payloads/x/1"


# -- deadlines -------------------------------------------------------------------------------------
@pytest.mark.parametrize("attempts", [1, 3])
def test_a_hanging_endpoint_costs_no_more_than_the_deadline(attempts: int) -> None:
    with HangingServer() as server:
        client = sqs_client(endpoint=server.url, timeout=30.0, max_attempts=attempts)
        started = time.monotonic()
        with pytest.raises(AwsError) as caught:
            client.call("SendMessage", {"QueueUrl": "q", "MessageBody": "b"}, deadline=started + 0.4)
        took = time.monotonic() - started
    assert caught.value.status == 0 and caught.value.retryable
    assert took < 0.4 + 0.15


def test_a_passed_deadline_sends_nothing() -> None:
    with _Server(lambda _: (200, {}, b"{}")) as server:
        with pytest.raises(AwsError, match="DeadlineExceeded"):
            sqs_client(endpoint=server.url).call("SendMessage", {}, deadline=time.monotonic() - 1)
        assert server.requests == []


def test_backoff_never_sleeps_past_the_deadline() -> None:
    with _Server(lambda _: (500, {}, b'{"__type": "InternalFailure"}')) as server:
        client = sqs_client(endpoint=server.url, max_attempts=50)
        started = time.monotonic()
        with pytest.raises(AwsError):
            client.call("SendMessage", {}, deadline=started + 0.5)
        assert time.monotonic() - started < 0.5 + 0.15


def test_container_credentials_fetch_respects_the_deadline() -> None:
    with HangingServer() as server:
        chain = CredentialChain({"AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/c"}, timeout=10)
        started = time.monotonic()
        with pytest.raises(AwsError):
            chain.get(deadline=started + 0.3)
        assert time.monotonic() - started < 0.3 + 0.15
