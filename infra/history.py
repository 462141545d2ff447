"""The hourly export of the message history to S3, for Athena.

Once an hour an EventBridge rule runs the history-export function (``functions.history_export``,
which reads the state table and writes ``history/integration=<name>/dt=YYYY-MM-DD/hour=HH/...``).
This module declares it and nothing of what it writes: the bucket (the stage's data key, SSL and
TLS 1.2 only, public access blocked, objects expiring after the stage's ``history_retention_days``),
the function with read-only access to the state table and write-only access to ``history/``, the
rule, an alarm when an export fails, and the Glue table Athena queries the objects through
(partition projection: no crawler, no partitions to add).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cdk_nag
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra import alarms
from infra.observability import lambda_metric

if TYPE_CHECKING:
    from infra.stack import JunctionStack

HANDLER = "functions.history_export.handler"
PREFIX = "history"
# Each run exports the hour that ended five minutes before it, so late trace writes are in.
SCHEDULE = "cron(5 * * * ? *)"
MEMORY_MB = 512
TIMEOUT_SECONDS = 300
# A failed run is retried by Lambda while the next one is still far off.
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.minutes(50)
# What the export may do in the state table: read. Trace items carry no time in their key, so an
# hour's items are found by a Scan (which no LeadingKeys condition can restrict).
READ_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
]


def partition_prefix(integration: str, day: str, hour: int) -> str:
    """Where one integration's hour lands: ``history/integration=<name>/dt=YYYY-MM-DD/hour=HH/``."""
    return f"{PREFIX}/integration={integration}/dt={day}/hour={hour:02d}/"


def function_name(stage: str) -> str:
    return f"junction-{stage}-history-export"


def database_name(stage: str) -> str:
    """The Glue database of a stage's history (Glue names: lower case, digits, underscores)."""
    return "junction_" + "".join(c if c.isalnum() else "_" for c in stage.lower())


TABLE = "history"
# One JSON line per delivery to a target or poller run (shared/history.py ``HistoryEvent.as_json``).
COLUMNS = (
    ("at", "string"),
    ("kind", "string"),
    ("target", "string"),
    ("outcome", "string"),
    ("reason", "string"),
    ("error_class", "string"),
    ("entity_id", "string"),
    ("attempts", "int"),
    ("latency_ms", "bigint"),
    ("delivery_id", "string"),
    ("replay_id", "string"),
    ("run_id", "string"),
    ("ended_at", "string"),
    ("pages", "int"),
    ("changes", "int"),
    ("rejected", "int"),
    ("error", "string"),
)
PARTITIONS = (("integration", "string"), ("dt", "string"), ("hour", "string"))
FIRST_DAY = "2026-01-01"  # the projection's first day; an earlier one only costs empty listings


class HistoryExport:
    """The bucket, function, rule and alarm of a stage's history export."""

    def __init__(self, stack: JunctionStack) -> None:
        stage = stack.stage
        self.bucket = s3.Bucket(
            stack,
            "HistoryBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=stack.data_key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=False,  # an hour is rewritten whole when it is exported again
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-history",
                    prefix=f"{PREFIX}/",
                    expiration=Duration.days(stack.settings.history_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=stack.settings.removal_policy,
        )
        cdk_nag.NagSuppressions.add_resource_suppressions(
            self.bucket,
            [
                {
                    "id": "AwsSolutions-S1",
                    "reason": "No server access logs: only the history-export function writes the bucket (PutObject "
                    "under history/) and analysts read it through Athena, whose queries CloudTrail records. S3 access "
                    "logs are best-effort and would be another store of request metadata to retain; object-level "
                    "audit, when needed, is CloudTrail S3 data events on this bucket.",
                }
            ],
        )

        self.function = stack._function(
            "HistoryExport",
            name=function_name(stage),
            description=f"Junction {stage}: exports the last hour's message history to S3 for Athena",
            code=stack._processor_code,
            handler=HANDLER,
            memory_mb=MEMORY_MB,
            timeout_seconds=TIMEOUT_SECONDS,
            environment={
                "JUNCTION_STAGE": stage,
                "JUNCTION_STATE_TABLE": stack.state_table.table_name,
                "JUNCTION_HISTORY_BUCKET": self.bucket.bucket_name,
            },
        )
        fn = self.function
        fn.add_to_role_policy(
            iam.PolicyStatement(sid="ReadStateTable", actions=READ_ACTIONS, resources=[stack.state_table.table_arn])
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteHistoryObjects",
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{PREFIX}/*")],
            )
        )
        # Reading the table and writing the bucket both go through the data key.
        stack.data_key.grant(fn, "kms:Decrypt", "kms:GenerateDataKey")
        role = fn.role
        assert role is not None
        cdk_nag.NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "The export writes one object per integration and hour under history/ "
                    "(history/integration=<name>/dt=<day>/hour=<hh>/...): the wildcard is that prefix, write only.",
                    "applies_to": [{"regex": "/^Resource::<HistoryBucket[A-Za-z0-9]*\\.Arn>\\/history\\/\\*$/g"}],
                }
            ],
            apply_to_children=True,
        )

        fn.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=RETRY_ATTEMPTS)
        self.rule = events.Rule(
            stack,
            "HistoryExportSchedule",
            rule_name=f"junction-{stage}-history-export",
            description="Junction: exports the last hour's message history to S3",
            schedule=events.Schedule.expression(SCHEDULE),
            targets=[targets.LambdaFunction(fn, retry_attempts=RETRY_ATTEMPTS, max_event_age=MAX_EVENT_AGE)],
        )
        self.database, self.table = self._glue_table(stack)
        self.alarm = stack._alarm(
            alarms.HISTORY_EXPORT_FAILED,
            "HistoryExportErrors",
            f"junction-{stage}-history-export-errors",
            "the hourly history export failed (a crash or timeout) even after Lambda's two retries: that hour's "
            "history is missing in S3 and Athena until it is exported again.",
            lambda_metric(function_name(stage), "Errors", period=Duration.hours(1)),
            threshold=0,
            above=True,
        )

    def _glue_table(self, stack: JunctionStack) -> tuple[glue.CfnDatabase, glue.CfnTable]:
        """Athena's view of the export: partitions projected from the declared integrations, the
        days since ``FIRST_DAY`` and the 24 hours, so a new hour is queryable as soon as it is written."""
        database = database_name(stack.stage)
        names = ",".join(i.name for i in stack.integrations)
        db = glue.CfnDatabase(
            stack,
            "HistoryDatabase",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database, description=f"Junction {stack.stage}: message history exported hourly"
            ),
        )
        location = f"s3://{self.bucket.bucket_name}/{PREFIX}/"
        table = glue.CfnTable(
            stack,
            "HistoryTable",
            catalog_id=stack.account,
            database_name=database,
            table_input=glue.CfnTable.TableInputProperty(
                name=TABLE,
                description="One line per delivery to a target or poller run (shared/history.py)",
                table_type="EXTERNAL_TABLE",
                partition_keys=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in PARTITIONS],
                parameters={
                    "classification": "json",
                    "projection.enabled": "true",
                    "projection.integration.type": "enum",
                    "projection.integration.values": names,
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": f"{FIRST_DAY},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "projection.hour.type": "integer",
                    "projection.hour.range": "0,23",
                    "projection.hour.digits": "2",
                    "storage.location.template": location + "integration=${integration}/dt=${dt}/hour=${hour}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in COLUMNS],
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"ignore.malformed.json": "true"},
                    ),
                ),
            ),
        )
        table.add_dependency(db)
        return db, table
