"""Create the AWS resources of every declared integration in an AWS stand-in.

Settings come from the same declarations and derived values the CDK stack uses
(shared.declaration): one queue and DLQ per target of every integration, with the deployed
queue's name, visibility timeout, redrive policy and retention, and every function's environment
under the names the stack gives it. tests/infra/test_local_matches_stack.py compares them with
the template. The claim-check bucket (bodies too large for an SQS message) is
``junction-<stage>-payloads``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.declaration import (
    FOLLOWER_QUEUES_ENV,
    TABLE_KEYS,
    TTL_ATTRIBUTE,
    Integration,
    Target,
    idempotency_table_name,
    queue_name,
    secret_id,
    state_table_name,
    visibility_timeout_seconds,
)
from shared.envelope import SQS_MAX_MESSAGE_BYTES

DAY = 86_400


def payload_bucket_name(stage: str) -> str:
    """The claim-check bucket of a stage: message bodies too large for SQS wait here."""
    return f"junction-{stage}-payloads"


INGRESS = "ingress"
POLLER = "poller"
PROCESSOR_SUFFIX = "-processor"


def queue_key(integration: Integration | str, target: Target | str) -> str:
    """How resources and the local state file name a target's queue pair: ``<integration>/<target>``."""
    i = integration if isinstance(integration, str) else integration.name
    t = target if isinstance(target, str) else target.name
    return f"{i}/{t}"


def processor_role(target: Target | str) -> str:
    """A target's processor role, as ``shared.declaration.function_name`` takes it."""
    return f"{target if isinstance(target, str) else target.name}{PROCESSOR_SUFFIX}"


def function_roles(integration: Integration) -> list[str]:
    """The integration's functions, as the stack deploys them: one processor per target, then
    the ingress (webhook) or the poller (schedule)."""
    roles = [processor_role(t) for t in integration.targets]
    if integration.webhook is not None:
        roles.append(INGRESS)
    if integration.schedule is not None:
        roles.append(POLLER)
    return roles


@dataclass(frozen=True)
class QueuePair:
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


@dataclass
class Resources:
    stage: str
    queues: dict[str, QueuePair] = field(default_factory=dict)  # queue_key(integration, target) -> pair
    idempotency_table: str = ""
    state_table: str = ""
    payload_bucket: str = ""

    def queue(self, integration: Integration | str, target: Target | str) -> QueuePair:
        key = queue_key(integration, target)
        if key not in self.queues:
            raise KeyError(f"no queue provisioned for {key} (provisioned: {', '.join(self.queues) or 'none'})")
        return self.queues[key]

    def queue_urls(self, integration: Integration) -> list[str]:
        """The queues ingress and pollers send to, in declaration order: the targets after no other."""
        return [self.queue(integration, t).url for t in integration.entry_targets]

    def function_env(self, integration: Integration, role: str) -> dict[str, str]:
        """The environment the stack gives one of the integration's functions. ``role``:
        ``"ingress"``, ``"poller"`` or ``"<target>-processor"`` (see ``function_roles``)."""
        base = {"JUNCTION_STAGE": self.stage, "JUNCTION_INTEGRATION": integration.name}
        if role == INGRESS:
            if integration.webhook is None:
                raise ValueError(f"{integration.name} has no webhook, so no ingress function")
            return {
                **base,
                "JUNCTION_QUEUE_URLS": ",".join(self.queue_urls(integration)),
                "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket,
            }
        if role == POLLER:
            if integration.schedule is None:
                raise ValueError(f"{integration.name} has no schedule, so no poller function")
            return {
                **base,
                "JUNCTION_STATE_TABLE": self.state_table,
                "JUNCTION_QUEUE_URLS": ",".join(self.queue_urls(integration)),
                "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket,
            }
        if not role.endswith(PROCESSOR_SUFFIX):
            raise ValueError(f"unknown function role {role!r}: one of {', '.join(function_roles(integration))}")
        target = integration.target(role.removesuffix(PROCESSOR_SUFFIX))
        pair = self.queue(integration, target)
        followers = integration.followers(target)
        return {
            **base,
            "JUNCTION_TARGET": target.name,
            "JUNCTION_QUEUE_URL": pair.url,
            "JUNCTION_DLQ_URL": pair.dlq_url,
            "JUNCTION_IDEMPOTENCY_TABLE": self.idempotency_table,
            "JUNCTION_STATE_TABLE": self.state_table,
            "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket,
            **({FOLLOWER_QUEUES_ENV: ",".join(self.queue(integration, t).url for t in followers)} if followers else {}),
        }

    def function_envs(self, integration: Integration) -> dict[str, dict[str, str]]:
        """Every function of the integration: role -> environment."""
        return {role: self.function_env(integration, role) for role in function_roles(integration)}


def queue_attributes(
    target: Target,
    *,
    dead_letter: bool,
    dlq_arn: str | None = None,
    visibility_timeout: int | None = None,
) -> dict[str, str]:
    """A target queue's attributes as the stack sets them. ``visibility_timeout`` overrides the
    derived one (a local knob for tests, see LocalRuntime.visibility_timeout_seconds)."""
    q = target.queue
    attributes = {
        "MessageRetentionPeriod": str((q.dlq_retention_days if dead_letter else q.retention_days) * DAY),
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES),
        "VisibilityTimeout": str(visibility_timeout or visibility_timeout_seconds(target)),
    }
    if q.fifo:
        attributes["FifoQueue"] = "true"
    if dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": q.max_receive_count}
        )
    return attributes


def _ensure_table(ddb: Any, name: str, keys: list[tuple[str, str]]) -> None:
    try:
        ddb.describe_table(TableName=name)
        return
    except ddb.exceptions.ResourceNotFoundException:
        pass
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in keys],
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def _ensure_bucket(s3: Any, name: str) -> None:
    try:
        s3.head_bucket(Bucket=name)
        return
    except s3.exceptions.ClientError:
        pass
    region = s3.meta.region_name
    location = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}
    s3.create_bucket(Bucket=name, **location)


def provision(
    integrations: tuple[Integration, ...],
    *,
    stage: str,
    sqs: Any,
    ddb: Any,
    secretsmanager: Any,
    secret_values: dict[str, Any],
    s3: Any = None,
    visibility_timeout: int | None = None,
) -> Resources:
    """Create every target's queue and DLQ, the tables, the secrets and (given an S3 client) the
    claim-check bucket. Idempotent: existing ones are kept. ``visibility_timeout`` overrides the main queues' derived
    visibility timeout (DLQs keep theirs)."""
    resources = Resources(
        stage,
        idempotency_table=idempotency_table_name(stage),
        state_table=state_table_name(stage),
        payload_bucket=payload_bucket_name(stage),
    )
    if s3 is not None:
        _ensure_bucket(s3, resources.payload_bucket)
    for table, name in ((resources.idempotency_table, "idempotency"), (resources.state_table, "state")):
        hash_key, range_key = TABLE_KEYS[name]
        _ensure_table(ddb, table, [(hash_key, "HASH")] + ([(range_key, "RANGE")] if range_key else []))
    for integration in integrations:
        for target in integration.targets:
            dlq_url = sqs.create_queue(
                QueueName=queue_name(stage, integration, target, dead_letter=True),
                Attributes=queue_attributes(target, dead_letter=True),
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            url = sqs.create_queue(
                QueueName=queue_name(stage, integration, target),
                Attributes=queue_attributes(
                    target, dead_letter=False, dlq_arn=dlq_arn, visibility_timeout=visibility_timeout
                ),
            )["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resources.queues[queue_key(integration, target)] = QueuePair(url, arn, dlq_url, dlq_arn)
        for ref in integration.all_secrets:
            if ref.name not in secret_values:
                raise KeyError(f"no local value for secret {ref.name!r} of {integration.name}")
            value = secret_values[ref.name]
            text = value if isinstance(value, str) else json.dumps(value)
            name = secret_id(stage, ref)
            try:
                secretsmanager.create_secret(Name=name, SecretString=text, Description=ref.description)
            except secretsmanager.exceptions.ResourceExistsException:
                secretsmanager.put_secret_value(SecretId=name, SecretString=text)
    return resources
