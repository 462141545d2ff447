"""A lean AWS client for the ingress path: SQS, DynamoDB and Secrets Manager (AWS JSON protocol)
and S3 PutObject/GetObject (REST), signed with Signature Version 4 by the standard library alone.

Why not boto3 here: importing boto3 and creating one client costs ~0.4 s of cold start; the
ingress budget is 0.15 s (see docs/decisions.md). Processors, the ops CLI, the local runtime and
the tests use boto3.

What it covers, each checked against botocore by a unit test:
- endpoints: ``AWS_ENDPOINT_URL_<SERVICE>``, then ``AWS_ENDPOINT_URL``, then the regional
  endpoint of the region's partition (aws, aws-cn, aws-us-gov, ...), honouring
  ``AWS_USE_FIPS_ENDPOINT`` and ``AWS_USE_DUALSTACK_ENDPOINT`` with the hostnames of botocore's
  endpoint rules;
- credentials: environment variables first (what Lambda provides), then the container
  credentials endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` or ``..._RELATIVE_URI``), cached
  until shortly before they expire;
- errors carry the AWS request id;
- every call may be given a deadline (a ``time.monotonic()`` instant): socket timeouts, retries
  and backoff all stay inside it, and an exhausted deadline is an ``AwsError`` with code
  ``DeadlineExceeded``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

_T = TypeVar("_T")

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
DEADLINE_EXCEEDED = "DeadlineExceeded"
MIN_ATTEMPT_SECONDS = 0.01  # less than this left of a deadline: do not start another attempt


class AwsError(Exception):
    """An AWS API call failed. ``code`` is the AWS error code without its namespace; status 0
    means no answer (connection failure, timeout, deadline). ``request_id`` is AWS's id of the
    request when it answered (quote it to AWS support)."""

    def __init__(
        self, service: str, action: str, status: int, code: str, message: str, request_id: str | None = None
    ) -> None:
        text = f"{service}.{action}: {status} {code}: {message}"
        super().__init__(text + (f" (request id {request_id})" if request_id else ""))
        self.service = service
        self.action = action
        self.status = status
        self.code = code
        self.aws_message = message
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 0 or self.code in _THROTTLING_CODES


def remaining(deadline: float | None, service: str, action: str) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` instant); raises ``AwsError``
    ``DeadlineExceeded`` when too little is left to start anything."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left < MIN_ATTEMPT_SECONDS:
        raise AwsError(service, action, 0, DEADLINE_EXCEEDED, "the caller's deadline has passed")
    return left


# -- endpoints -------------------------------------------------------------------------------
# From botocore's data/partitions.json: (name, region pattern, DNS suffix, dual-stack DNS suffix).
_PARTITIONS = (
    ("aws-cn", re.compile(r"^cn\-\w+\-\d+$"), "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("aws-us-gov", re.compile(r"^us\-gov\-\w+\-\d+$"), "amazonaws.com", "api.aws"),
    ("aws-iso", re.compile(r"^us\-iso\-\w+\-\d+$"), "c2s.ic.gov", "api.aws.ic.gov"),
    ("aws-iso-b", re.compile(r"^us\-isob\-\w+\-\d+$"), "sc2s.sgov.gov", "api.aws.scloud"),
    ("aws-iso-e", re.compile(r"^eu\-isoe\-\w+\-\d+$"), "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    ("aws-iso-f", re.compile(r"^us\-isof\-\w+\-\d+$"), "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
    ("aws-eusc", re.compile(r"^eusc\-(de)\-\w+\-\d+$"), "amazonaws.eu", "api.amazonwebservices.eu"),
)
_AWS_PARTITION = ("aws", "amazonaws.com", "api.aws")  # also the fallback for unknown regions, as botocore's


def partition(region: str) -> tuple[str, str, str]:
    """(partition name, DNS suffix, dual-stack DNS suffix) of a region."""
    for name, pattern, dns, dual in _PARTITIONS:
        if pattern.match(region):
            return name, dns, dual
    return _AWS_PARTITION


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def regional_endpoint(service: str, region: str, *, fips: bool = False, dualstack: bool = False) -> str:
    """The public endpoint of ``service`` in ``region``, as botocore's endpoint rules build it
    (sqs, dynamodb, secretsmanager, s3)."""
    name, dns, dual = partition(region)
    if service == "s3":
        if fips and name == "aws-cn":
            raise AwsError("s3", "endpoint", 0, "EndpointResolutionError", "S3 has no FIPS endpoint in aws-cn")
        host = ("s3-fips" if fips else "s3") + (".dualstack" if dualstack else "") + f".{region}.{dns}"
        return f"https://{host}"
    prefix = f"{service}-fips" if fips else service
    suffix = dual if dualstack else dns
    if service in ("sqs", "dynamodb") and fips and not dualstack and name == "aws-us-gov":
        prefix = service  # GovCloud's regular SQS and DynamoDB endpoints are the FIPS ones
    if service == "secretsmanager" and dualstack and (name in ("aws", "aws-us-gov") or (name == "aws-cn" and not fips)):
        suffix = dns  # these Secrets Manager endpoints are dual-stack already
    return f"https://{prefix}.{region}.{suffix}"


def resolve_endpoint(service: str, endpoint_env: str, region: str, environ: Mapping[str, str] | None = None) -> str:
    """``AWS_ENDPOINT_URL_<SERVICE>``, then ``AWS_ENDPOINT_URL``, then the regional endpoint."""
    env = os.environ if environ is None else environ
    explicit = env.get(f"AWS_ENDPOINT_URL_{endpoint_env}") or env.get("AWS_ENDPOINT_URL")
    if explicit:
        return explicit.rstrip("/")
    fips = _env_flag(env, "AWS_USE_FIPS_ENDPOINT")
    dualstack = _env_flag(env, "AWS_USE_DUALSTACK_ENDPOINT")
    return regional_endpoint(service, region, fips=fips, dualstack=dualstack)


# -- credentials -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # epoch seconds; None for long-lived keys

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


CONTAINER_HOST = "169.254.170.2"  # ECS; the relative URI is resolved against it
# Hosts a plain-http full URI may name (botocore allows loopback and the ECS/EKS agent addresses).
_CONTAINER_HTTP_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"})


class CredentialChain:
    """Environment variables first (Lambda's way), then the container credentials endpoint.

    Container credentials are cached until ``refresh_before`` seconds before their
    ``Expiration``; if a refresh fails while the cached ones are still valid, those are used.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        refresh_before: float = 300.0,
        timeout: float = 2.0,
        max_attempts: int = 3,
    ) -> None:
        self._environ = environ
        self.clock = clock
        self.refresh_before = refresh_before
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._cached: Credentials | None = None
        self._lock = threading.Lock()

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def get(self, deadline: float | None = None) -> Credentials:
        env = self.environ
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return Credentials(
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN") or None
            )
        url = self._container_url(env)
        if url is None:
            raise AwsError("sts", "credentials", 0, "NoCredentials", "no credentials in the environment or container")
        with self._lock:
            cached = self._cached
            now = self.clock()
            if cached is not None and (cached.expires_at is None or cached.expires_at - now > self.refresh_before):
                return cached
            try:
                fresh = self._fetch(url, env, deadline)
            except AwsError:
                if cached is not None and cached.expires_at is not None and cached.expires_at > now + 10:
                    return cached  # still valid: a failed early refresh is no outage
                raise
            self._cached = fresh
            return fresh

    @staticmethod
    def _container_url(env: Mapping[str, str]) -> str | None:
        relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        if relative:
            return f"http://{CONTAINER_HOST}{relative if relative.startswith('/') else '/' + relative}"
        full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        if not full:
            return None
        parts = urlsplit(full)
        host = parts.hostname or ""
        if parts.scheme == "https" or (
            parts.scheme == "http" and (_is_loopback(host) or host in _CONTAINER_HTTP_HOSTS)
        ):
            return full
        raise AwsError(
            "sts", "credentials", 0, "InvalidContainerUri", f"container credentials host {host!r} not allowed"
        )

    def _fetch(self, url: str, env: Mapping[str, str], deadline: float | None) -> Credentials:
        headers = {"Accept": "application/json"}
        token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        if token_file:
            try:
                with open(token_file, encoding="utf-8") as f:
                    token = f.read().strip()
            except OSError as exc:
                raise AwsError("sts", "credentials", 0, "TokenFileUnreadable", str(exc)) from None
        if token:
            if "\r" in token or "\n" in token:
                raise AwsError("sts", "credentials", 0, "InvalidToken", "authorization token has a line break")
            headers["Authorization"] = token
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        last: AwsError | None = None
        for _attempt in range(self.max_attempts):
            left = remaining(deadline, "sts", "credentials")
            timeout = self.timeout if left is None else min(self.timeout, left)
            conn_type = _HTTPSConnection if parts.scheme == "https" else _HTTPConnection
            conn = conn_type(parts.netloc, timeout=timeout)
            try:
                conn.request("GET", path or "/", headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                last = AwsError("sts", "credentials", 0, type(exc).__name__, str(exc))
                continue
            finally:
                conn.close()
            if response.status != 200:
                last = AwsError("sts", "credentials", response.status, "ContainerCredentialsError", "refused")
                if response.status < 500:
                    raise last
                continue
            return _parse_container_credentials(data)
        assert last is not None
        raise last


_LOOPBACK_V4 = re.compile(r"127(\.[0-9]{1,3}){3}")


def _is_loopback(host: str) -> bool:
    return host == "::1" or _LOOPBACK_V4.fullmatch(host) is not None


def _parse_container_credentials(data: bytes) -> Credentials:
    try:
        doc = json.loads(data)
        expiration = doc.get("Expiration")
        expires_at = datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp() if expiration else None
        return Credentials(str(doc["AccessKeyId"]), str(doc["SecretAccessKey"]), doc.get("Token") or None, expires_at)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AwsError("sts", "credentials", 200, "InvalidCredentialsDocument", type(exc).__name__) from None


DEFAULT_CREDENTIALS = CredentialChain()


# -- signing ---------------------------------------------------------------------------------
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
    payload_hash: str | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``X-Amz-Date``, the token and ``Authorization`` (SigV4).

    ``url`` carries its path already percent-encoded and no query string. S3 signs that path
    as it is and wants ``X-Amz-Content-SHA256`` (``payload_hash``, signed); the other services
    sign the path encoded once more.
    """
    parts = urlsplit(url)
    t = time.gmtime(now if now is not None else time.time())
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", t)
    date = amz_date[:8]
    body_hash = payload_hash or hashlib.sha256(body).hexdigest()
    out = dict(headers)
    out["Host"] = parts.netloc
    out["X-Amz-Date"] = amz_date
    if payload_hash is not None:
        out["X-Amz-Content-SHA256"] = payload_hash
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    canonical = {k.lower(): " ".join(v.strip().split()) for k, v in out.items()}
    signed = ";".join(sorted(canonical))
    path = parts.path or "/"
    canonical_request = "\n".join(
        [
            method,
            path if service == "s3" else quote(path, safe="/~"),
            "",
            "".join(f"{k}:{canonical[k]}\n" for k in sorted(canonical)),
            signed,
            body_hash,
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


# -- transport -------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    data: bytes

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-amzn-RequestId") or self.headers.get("x-amz-request-id")


class _AwsHttpClient:
    """Signing, kept-alive connections (one per thread and host), retries and deadlines."""

    def __init__(
        self,
        service: str,
        *,
        endpoint_env: str,
        region: str | None = None,
        endpoint: str | None = None,
        credentials: Credentials | CredentialChain | None = None,
        timeout: float = 5.0,
        max_attempts: int = 3,
    ) -> None:
        self.service = service
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.custom_endpoint = bool(
            endpoint or os.environ.get(f"AWS_ENDPOINT_URL_{endpoint_env}") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.endpoint = (endpoint or resolve_endpoint(service, endpoint_env, self.region)).rstrip("/") + "/"
        self._credentials = credentials
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._local = threading.local()

    def credentials_for(self, deadline: float | None = None) -> Credentials:
        given = self._credentials
        if isinstance(given, Credentials):
            return given
        return (given or DEFAULT_CREDENTIALS).get(deadline)

    @property
    def credentials(self) -> Credentials:
        return self.credentials_for(None)

    def _connection(self, scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(netloc)
        if conn is None:
            conn_type = _HTTPSConnection if scheme == "https" else _HTTPConnection
            conn = conns[netloc] = conn_type(netloc, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self, netloc: str) -> None:
        conns = getattr(self._local, "conns", None) or {}
        conn = conns.pop(netloc, None)
        if conn is not None:
            conn.close()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        action: str,
        deadline: float | None,
        payload_hash: str | None = None,
    ) -> _Answer:
        left = remaining(deadline, self.service, action)
        signed = sign_v4(
            method=method,
            url=url,
            headers=headers,
            body=body,
            service=self.service,
            region=self.region,
            credentials=self.credentials_for(deadline),
            payload_hash=payload_hash,
        )
        parts = urlsplit(url)
        left = remaining(deadline, self.service, action)  # the credentials may have taken some
        timeout = self.timeout if left is None else min(self.timeout, left)
        conn = self._connection(parts.scheme, parts.netloc, timeout)
        try:
            conn.request(method, parts.path or "/", body=body, headers=signed)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection(parts.netloc)
            raise AwsError(self.service, action, 0, type(exc).__name__, str(exc)) from exc
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection(parts.netloc)
        return _Answer(response.status, response.headers, data)

    def _retrying(self, action: str, once: Callable[[], _T], deadline: float | None) -> _T:
        """Retry connection errors, 5xx and throttling with jittered backoff, inside the deadline."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return once()
            except AwsError as err:
                if not err.retryable or attempt >= self.max_attempts or err.code == DEADLINE_EXCEEDED:
                    raise
                pause = random.uniform(0, 0.05 * 2**attempt)
                if deadline is not None and time.monotonic() + pause + MIN_ATTEMPT_SECONDS >= deadline:
                    raise
                time.sleep(pause)


class AwsJsonClient(_AwsHttpClient):
    """One AWS JSON-protocol service. Thread-safe: each thread keeps its own keep-alive connection."""

    def __init__(self, service: str, *, target_prefix: str, json_version: str, endpoint_env: str, **kw: Any) -> None:
        super().__init__(service, endpoint_env=endpoint_env, **kw)
        self.target_prefix = target_prefix
        self.content_type = f"application/x-amz-json-{json_version}"

    def call(self, action: str, payload: dict[str, Any], *, deadline: float | None = None) -> dict[str, Any]:
        """Call ``action``; retries connection errors, 5xx and throttling with jittered backoff,
        all within ``deadline`` (a ``time.monotonic()`` instant) when one is given."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self._retrying(action, lambda: self._call_once(action, body, deadline), deadline)

    def _call_once(self, action: str, body: bytes, deadline: float | None) -> dict[str, Any]:
        headers = {"Content-Type": self.content_type, "X-Amz-Target": f"{self.target_prefix}.{action}"}
        answer = self._send("POST", self.endpoint, headers, body, action, deadline)
        if answer.status == 200:
            return json.loads(answer.data) if answer.data else {}
        code, message = _parse_error(answer.data, answer.headers.get("x-amzn-query-error"))
        raise AwsError(self.service, action, answer.status, code, message, answer.request_id)


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


_S3_ERROR_FIELD = re.compile(rb"<(Code|Message)>([^<]{0,512})</\1>")
_VIRTUAL_HOSTABLE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class S3Client(_AwsHttpClient):
    """S3 PutObject and GetObject, nothing more. Path-style URLs on a custom endpoint (moto, the
    local runtime); virtual-hosted on AWS for DNS-compatible bucket names without dots."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("s3", endpoint_env="S3", **kw)

    def object_url(self, bucket: str, key: str) -> str:
        parts = urlsplit(self.endpoint)
        path = "/" + quote(key, safe="/~")
        if self.custom_endpoint or not _VIRTUAL_HOSTABLE.match(bucket):
            return f"{parts.scheme}://{parts.netloc}/{bucket}{path}"
        return f"{parts.scheme}://{bucket}.{parts.netloc}{path}"

    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        deadline: float | None = None,
    ) -> dict[str, str | None]:
        """Store ``body`` under ``key``; returns the object's ETag and the request id."""
        url = self.object_url(bucket, key)
        digest = hashlib.sha256(body).hexdigest()
        headers = {"Content-Type": content_type}

        def once() -> dict[str, str | None]:
            answer = self._send("PUT", url, headers, body, "PutObject", deadline, payload_hash=digest)
            self._raise_for(answer, "PutObject")
            return {"ETag": answer.headers.get("ETag"), "RequestId": answer.request_id}

        return self._retrying("PutObject", once, deadline)

    def get_object(self, bucket: str, key: str, *, deadline: float | None = None) -> bytes:
        url = self.object_url(bucket, key)
        empty = hashlib.sha256(b"").hexdigest()

        def once() -> bytes:
            answer = self._send("GET", url, {}, b"", "GetObject", deadline, payload_hash=empty)
            self._raise_for(answer, "GetObject")
            return answer.data

        return self._retrying("GetObject", once, deadline)

    def _raise_for(self, answer: _Answer, action: str) -> None:
        if 200 <= answer.status < 300:
            return
        found = {
            m.group(1).decode(): m.group(2).decode("utf-8", "replace") for m in _S3_ERROR_FIELD.finditer(answer.data)
        }
        code = found.get("Code") or ("NoSuchKey" if answer.status == 404 else f"Http{answer.status}")
        raise AwsError("s3", action, answer.status, code, found.get("Message", ""), answer.request_id)


def sqs_client(**kw: Any) -> AwsJsonClient:
    return AwsJsonClient("sqs", target_prefix="AmazonSQS", json_version="1.0", endpoint_env="SQS", **kw)


def secretsmanager_client(**kw: Any) -> AwsJsonClient:
    return AwsJsonClient(
        "secretsmanager",
        target_prefix="secretsmanager",
        json_version="1.1",
        endpoint_env="SECRETS_MANAGER",
        **kw,
    )


def s3_client(**kw: Any) -> S3Client:
    return S3Client(**kw)


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

    def get(self, secret_id: str, *, deadline: float | None = None) -> str:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(secret_id)
        if hit and now - hit[0] < self.ttl_seconds:
            return hit[1]
        answer = self.client.call("GetSecretValue", {"SecretId": secret_id}, deadline=deadline)
        value = str(answer["SecretString"])
        with self._lock:
            self._values[secret_id] = (now, value)
        return value

    def get_json(self, secret_id: str, *, deadline: float | None = None) -> Any:
        return json.loads(self.get(secret_id, deadline=deadline))

    def invalidate(self, secret_id: str) -> None:
        with self._lock:
            self._values.pop(secret_id, None)


# DynamoDB attribute values <-> plain Python (str, int, Decimal, bool, None, dict, list).
_INTEGER = re.compile(r"-?[0-9]+")


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
        return int(value) if _INTEGER.fullmatch(value) else Decimal(value)  # exact, never a float
    if kind == "M":
        return {k: from_ddb(v) for k, v in value.items()}
    if kind == "L":
        return [from_ddb(v) for v in value]
    return value


def item_to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: to_ddb(v) for k, v in item.items()}


def item_from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: from_ddb(v) for k, v in item.items()}
