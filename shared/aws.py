"""A lean AWS client for the JSON-protocol services the functions use (SQS, DynamoDB, Secrets Manager).

Why not boto3 here: importing boto3 and creating one client costs ~0.4 s of cold start on every
function; this module imports only the standard library and signs requests with Signature
Version 4 itself (see docs/decisions.md). boto3 is still what the ops CLI, the local runtime and
the tests use. Endpoints resolve like boto3's: ``AWS_ENDPOINT_URL_<SERVICE>``, then
``AWS_ENDPOINT_URL``, then the public regional endpoint, so the same code talks to AWS or to the
local stand-ins.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "LimitExceededException",
        "SlowDown",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalServerError",
        "KMS.ThrottlingException",
    }
)


class AwsError(Exception):
    """An AWS API call failed. ``code`` is the AWS error code without its namespace."""

    def __init__(self, service: str, action: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service}.{action}: {status} {code}: {message}")
        self.service = service
        self.action = action
        self.status = status
        self.code = code
        self.aws_message = message

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 0 or self.code in _THROTTLING_CODES


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    @classmethod
    def from_env(cls) -> Credentials:
        try:
            return cls(
                os.environ["AWS_ACCESS_KEY_ID"],
                os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN") or None,
            )
        except KeyError as missing:
            raise AwsError("sts", "credentials", 0, "NoCredentials", f"{missing} not set") from None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_v4(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
    region: str,
    credentials: Credentials,
    now: float | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``X-Amz-Date``, the token and ``Authorization`` (SigV4).

    Only query-less URLs are used by this client, so the canonical query string is empty.
    """
    parts = urlsplit(url)
    t = time.gmtime(now if now is not None else time.time())
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", t)
    date = amz_date[:8]
    out = dict(headers)
    out["Host"] = parts.netloc
    out["X-Amz-Date"] = amz_date
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    canonical = {k.lower(): " ".join(v.strip().split()) for k, v in out.items()}
    signed = ";".join(sorted(canonical))
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            "",
            "".join(f"{k}:{canonical[k]}\n" for k in sorted(canonical)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(("AWS4" + credentials.secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return out


class _HTTPConnection(http.client.HTTPConnection):
    # http.client writes headers and body separately; without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs hold the body back for up to 40 ms on a kept-alive connection.
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class AwsJsonClient:
    """One AWS JSON-protocol service. Thread-safe: each thread keeps its own keep-alive connection."""

    def __init__(
        self,
        service: str,
        *,
        target_prefix: str,
        json_version: str,
        endpoint_env: str,
        region: str | None = None,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        self.service = service
        self.target_prefix = target_prefix
        self.content_type = f"application/x-amz-json-{json_version}"
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = (
            endpoint
            or os.environ.get(f"AWS_ENDPOINT_URL_{endpoint_env}")
            or os.environ.get("AWS_ENDPOINT_URL")
            or f"https://{service}.{self.region}.amazonaws.com"
        ).rstrip("/") + "/"
        self._credentials = credentials
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._local = threading.local()

    @property
    def credentials(self) -> Credentials:
        return self._credentials or Credentials.from_env()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            parts = urlsplit(self.endpoint)
            if parts.scheme == "https":
                conn = _HTTPSConnection(parts.netloc, timeout=self.timeout)
            else:
                conn = _HTTPConnection(parts.netloc, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Call ``action``; retries connection errors, 5xx and throttling with jittered backoff."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._call_once(action, body)
            except AwsError as err:
                if not err.retryable or attempt >= self.max_attempts:
                    raise
                time.sleep(random.uniform(0, 0.05 * 2**attempt))

    def _call_once(self, action: str, body: bytes) -> dict[str, Any]:
        headers = sign_v4(
            method="POST",
            url=self.endpoint,
            headers={
                "Content-Type": self.content_type,
                "X-Amz-Target": f"{self.target_prefix}.{action}",
            },
            body=body,
            service=self.service,
            region=self.region,
            credentials=self.credentials,
        )
        conn = self._connection()
        try:
            conn.request("POST", urlsplit(self.endpoint).path or "/", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise AwsError(self.service, action, 0, type(exc).__name__, str(exc)) from exc
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        if response.status == 200:
            return json.loads(data) if data else {}
        code, message = _parse_error(data, response.getheader("x-amzn-query-error"))
        raise AwsError(self.service, action, response.status, code, message)


def _parse_error(data: bytes, query_error: str | None) -> tuple[str, str]:
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    code = str(doc.get("__type") or doc.get("code") or "Unknown")
    if query_error:  # SQS sends the legacy error code here, e.g. "AWS.SimpleQueueService.NonExistentQueue;Sender"
        code = query_error.split(";")[0]
    code = code.rsplit("#", 1)[-1]
    message = str(doc.get("message") or doc.get("Message") or "")
    return code, message


def sqs_client(**kw: Any) -> AwsJsonClient:
    return AwsJsonClient("sqs", target_prefix="AmazonSQS", json_version="1.0", endpoint_env="SQS", **kw)


def dynamodb_client(**kw: Any) -> AwsJsonClient:
    return AwsJsonClient(
        "dynamodb", target_prefix="DynamoDB_20120810", json_version="1.0", endpoint_env="DYNAMODB", **kw
    )


def secretsmanager_client(**kw: Any) -> AwsJsonClient:
    return AwsJsonClient(
        "secretsmanager",
        target_prefix="secretsmanager",
        json_version="1.1",
        endpoint_env="SECRETS_MANAGER",
        **kw,
    )


class SecretCache:
    """Reads secrets from Secrets Manager at run time and keeps each for ``ttl_seconds``.

    A rotated secret is picked up within the TTL; values never touch environment variables.
    """

    def __init__(self, client: AwsJsonClient | None = None, ttl_seconds: float = 300.0) -> None:
        self._client = client
        self.ttl_seconds = ttl_seconds
        self._values: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> AwsJsonClient:
        if self._client is None:
            self._client = secretsmanager_client()
        return self._client

    def get(self, secret_id: str) -> str:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(secret_id)
        if hit and now - hit[0] < self.ttl_seconds:
            return hit[1]
        value = str(self.client.call("GetSecretValue", {"SecretId": secret_id})["SecretString"])
        with self._lock:
            self._values[secret_id] = (now, value)
        return value

    def get_json(self, secret_id: str) -> Any:
        return json.loads(self.get(secret_id))

    def invalidate(self, secret_id: str) -> None:
        with self._lock:
            self._values.pop(secret_id, None)


# DynamoDB attribute values <-> plain Python (str, int, Decimal, bool, None, dict, list).
def to_ddb(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {k: to_ddb(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_ddb(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def from_ddb(attr: dict[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "NULL":
        return None
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else Decimal(value)  # exact, never a float
    if kind == "M":
        return {k: from_ddb(v) for k, v in value.items()}
    if kind == "L":
        return [from_ddb(v) for v in value]
    return value


def item_to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: to_ddb(v) for k, v in item.items()}


def item_from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_ddb(v) for k, v in item.items()}
