"""Where the CLI points: the local stack or a deployed stage on AWS, and the boto3 clients for it.

Resolution, in order: ``--local`` / ``--aws``; else the environment variable ``JUNCTION_OPS_ON``
(``local`` or ``aws``); else local when the local stack's state file exists, AWS otherwise.

- Local: the state file ``.junction/local.json`` (or ``$JUNCTION_LOCAL_STATE``) written by the
  local runtime names the stage, region and endpoints; clients use fake credentials.
- AWS: boto3's standard credential chain and region; the stage comes from ``--stage`` or
  ``$JUNCTION_STAGE``. ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` apply as usual.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

DEFAULT_STATE_FILE = Path(".junction") / "local.json"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}

TargetKind = Literal["local", "aws"]


class OpsError(Exception):
    """An error the operator can act on: printed as one line, exit code 1."""


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    stage: str
    region: str | None = None  # None on AWS: boto3's own resolution
    endpoints: Mapping[str, str] = field(default_factory=dict)
    state_file: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def endpoint_for(self, service: str) -> str | None:
        if not self.is_local:
            return None  # boto3 resolves AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL itself
        return self.endpoints.get(service) or self.endpoints.get("default")

    def describe(self) -> str:
        return f"target: {self.kind} (stage {self.stage})"


def state_file_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("JUNCTION_LOCAL_STATE") or DEFAULT_STATE_FILE)


def resolve_target(
    local: bool | None = None, stage: str | None = None, environ: Mapping[str, str] | None = None
) -> Target:
    """The target named by the flags and the environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    path = state_file_path(env)
    kind: TargetKind
    if local is not None:
        kind = "local" if local else "aws"
    else:
        wanted = (env.get("JUNCTION_OPS_ON") or "").strip().lower()
        if wanted in ("local", "aws"):
            kind = "local" if wanted == "local" else "aws"
        elif wanted:
            raise OpsError(f"JUNCTION_OPS_ON must be 'local' or 'aws', not {wanted!r}")
        else:
            kind = "local" if path.is_file() else "aws"
    if kind == "local":
        return _local_target(path, stage)
    stage = stage or env.get("JUNCTION_STAGE")
    if not stage:
        raise OpsError("no stage given for AWS: pass --stage or set JUNCTION_STAGE (or use --local)")
    return Target("aws", stage)


def _local_target(path: Path, stage: str | None) -> Target:
    if not path.is_file():
        raise OpsError(f"local stack not running: no state file at {path} (start it with `make up`, or use --aws)")
    try:
        doc: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OpsError(f"local stack state file {path} is unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise OpsError(f"local stack state file {path} is not a JSON object")
    endpoints = doc.get("endpoints") or {}
    if not isinstance(endpoints, dict) or not any(endpoints.values()):
        raise OpsError(f"local stack state file {path} names no endpoints")
    return Target(
        "local",
        stage or str(doc.get("stage") or "local"),
        region=str(doc.get("region") or "eu-central-1"),
        endpoints={str(k): str(v) for k, v in endpoints.items() if v},
        state_file=path,
    )


class Clients:
    """boto3 clients for a target, created on first use."""

    def __init__(self, target: Target, session: boto3.session.Session | None = None) -> None:
        self.target = target
        self._session = session
        self._clients: dict[str, Any] = {}

    def _make(self, service: str, *, attempts: int | None = None) -> Any:
        key = f"{service}/{attempts}"
        if key not in self._clients:
            session = self._session or boto3.session.Session()
            kwargs: dict[str, Any] = {}
            if self.target.is_local:
                # A local stack that is down should fail fast, not after boto3's backoff.
                retries: dict[str, Any] = {"mode": "standard", "max_attempts": attempts or 2}
                config = Config(connect_timeout=2, read_timeout=30, retries=retries)  # type: ignore[arg-type]
                kwargs.update(LOCAL_CREDENTIALS, region_name=self.target.region)
                kwargs["endpoint_url"] = self.target.endpoint_for(service)
            else:
                retries = {"mode": "standard", "max_attempts": attempts or 5}
                config = Config(retries=retries)  # type: ignore[arg-type]
            self._clients[key] = session.client(service, config=config, **kwargs)  # type: ignore[call-overload]
        return self._clients[key]

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self._make("sqs")
        return client

    @property
    def sqs_once(self) -> SQSClient:
        """SQS without retries: for a call whose failure has a fallback (StartMessageMoveTask)."""
        client: SQSClient = self._make("sqs", attempts=1)
        return client

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._make("dynamodb")
        return client

    @property
    def cloudwatch(self) -> CloudWatchClient:
        client: CloudWatchClient = self._make("cloudwatch")
        return client
