"""Create the AWS resources of every declared integration in an AWS stand-in.

Settings come from the same declarations and derived values the CDK stack uses
(shared.declaration), so a local queue has the deployed queue's visibility timeout, redrive
policy and retention. tests/infra/test_local_matches_stack.py compares them with the template.
The claim-check bucket (bodies too large for an SQS message) is ``junction-<stage>-payloads``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.declaration import (
    TABLE_KEYS,
    TTL_ATTRIBUTE,
    Integration,
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


@dataclass(frozen=True)
class QueuePair:
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


@dataclass
class Resources:
    stage: str
    queues: dict[str, QueuePair] = field(default_factory=dict)
    idempotency_table: str = ""
    state_table: str = ""
    payload_bucket: str = ""

    def function_env(self, integration: Integration) -> dict[str, str]:
        """The environment the stack gives the integration's functions."""
        pair = self.queues[integration.name]
        return {
            "JUNCTION_STAGE": self.stage,
            "JUNCTION_INTEGRATION": integration.name,
            "JUNCTION_QUEUE_URL": pair.url,
            "JUNCTION_DLQ_URL": pair.dlq_url,
            "JUNCTION_IDEMPOTENCY_TABLE": self.idempotency_table,
            "JUNCTION_STATE_TABLE": self.state_table,
            "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket,
        }


def queue_attributes(
    integration: Integration,
    *,
    dead_letter: bool,
    dlq_arn: str | None = None,
    visibility_timeout: int | None = None,
) -> dict[str, str]:
    """The queue's attributes as the stack sets them. ``visibility_timeout`` overrides the derived
    one (a local knob for tests, see LocalRuntime.visibility_timeout_seconds)."""
    q = integration.queue
    attributes = {
        "MessageRetentionPeriod": str((q.dlq_retention_days if dead_letter else q.retention_days) * DAY),
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES),
        "VisibilityTimeout": str(visibility_timeout or visibility_timeout_seconds(integration)),
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
    """Create queues, DLQs, tables, secrets and (given an S3 client) the claim-check bucket.
    Idempotent: existing ones are kept. ``visibility_timeout`` overrides the main queues' derived
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
        dlq_url = sqs.create_queue(
            QueueName=queue_name(stage, integration, dead_letter=True),
            Attributes=queue_attributes(integration, dead_letter=True),
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=queue_name(stage, integration),
            Attributes=queue_attributes(
                integration, dead_letter=False, dlq_arn=dlq_arn, visibility_timeout=visibility_timeout
            ),
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resources.queues[integration.name] = QueuePair(url, arn, dlq_url, dlq_arn)
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
