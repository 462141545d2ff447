"""The one CDK stack of a Junction stage.

Everything is derived from the integrations' declarations (``functions/registry.py``); there is no
per-integration code here. Per target of an integration: a queue and its DLQ, a processor with its
SQS event source, its grants and its alarms. Per webhook integration: the ingress function and its
route, sending each delivery to every target's queue. Per scheduled integration: the poller and the
EventBridge rule that starts it. Shared per stage: the idempotency and state tables, the alarm topic
and its KMS key, the data key that encrypts everything kept at rest (tables, queues, payload bucket),
the claim-check bucket, the webhook APIs in front of the ingress functions: an HTTP API for every
signed route, a REST API only for routes open to their sender's addresses alone (``source_ips``, which
need a resource policy). The alarms and dashboards are in a nested stack (``infra/observability.py``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cdk_nag
from aws_cdk import Annotations, Aws, CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.registry import INTEGRATIONS
from infra import alarms, bundling, dashboards, history
from infra.alarms import AlarmKind, AlarmSubscriber
from infra.observability import Observability, lambda_metric, sqs_metric
from shared import claim_check, state_keys
from shared.declaration import (
    FOLLOWER_QUEUES_ENV,
    POLLER_HANDLER,
    PROCESSOR_HANDLER,
    TABLE_KEYS,
    TTL_ATTRIBUTE,
    Integration,
    SecretRef,
    Target,
    WebhookTrigger,
    function_name,
    idempotency_table_name,
    queue_name,
    secret_id,
    state_table_name,
    visibility_timeout_seconds,
)
from shared.envelope import SQS_MAX_MESSAGE_BYTES

# The Lambda platform; infra/bundling.py installs the processor dependencies for exactly this one.
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

# Claim-check payloads outlive the longest idempotency record by this much: a record keeps the raw
# envelope for replay, which for a large body points into the bucket, and DynamoDB's TTL deletes
# expired items only within a few days.
PAYLOAD_EXPIRY_MARGIN_DAYS = 7
# A DLQ message is dead this long before its retention ends: time to notice, fix and redrive it.
DLQ_EXPIRY_MARGIN_DAYS = 2
# 401s at an ingress in 15 minutes that alarm when at least as many deliveries failed verification as
# passed it: what a webhook secret rotated on one side only looks like (every delivery fails).
UNAUTHORIZED_SPIKE = 3
# How long SQS reuses a data key before asking KMS again (fewer KMS calls on the ingress hot path).
QUEUE_DATA_KEY_REUSE = Duration.hours(1)
# A poller's cursor lag alarms at three schedule periods, never below this (shorter schedules).
POLL_LAG_FLOOR_SECONDS = 900
# Retries of a scheduled start that could not be delivered or whose run failed; a run that keeps
# failing is the next tick's (it resumes from the cursor) and Poll_failed's to report.
POLL_RETRY_ATTEMPTS = 2

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


@dataclass(frozen=True)
class StageSettings:
    """Per-stage knobs, read from the ``stages`` context of cdk.json."""

    removal_policy: RemovalPolicy = RemovalPolicy.DESTROY
    log_retention_days: int = 14
    alarm_email: str | None = None
    # More subscribers of the alarm topic: {"protocol": "email" | "email-json" | "https" | "sms", "endpoint": ...}
    alarm_subscribers: tuple[AlarmSubscriber, ...] = ()
    api_throttle_rate_per_second: int = 100  # stage default; each webhook method sets its own
    api_throttle_burst: int = 200
    history_retention_days: int = 400  # exported history objects expire after this many days

    @classmethod
    def from_context(cls, raw: dict[str, Any] | None) -> StageSettings:
        raw = dict(raw or {})
        policy = str(raw.pop("removal_policy", "destroy")).lower()
        if policy not in {"destroy", "retain"}:
            raise ValueError(f"removal_policy must be 'destroy' or 'retain', not {policy!r}")
        days = int(raw.pop("log_retention_days", 14))
        if days not in _RETENTION:
            raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION)}, not {days}")
        settings = cls(
            removal_policy=RemovalPolicy.RETAIN if policy == "retain" else RemovalPolicy.DESTROY,
            log_retention_days=days,
            alarm_email=raw.pop("alarm_email", None) or None,
            alarm_subscribers=tuple(AlarmSubscriber.from_context(s) for s in raw.pop("alarm_subscribers", None) or ()),
            api_throttle_rate_per_second=int(raw.pop("api_throttle_rate_per_second", 100)),
            api_throttle_burst=int(raw.pop("api_throttle_burst", 200)),
            history_retention_days=int(raw.pop("history_retention_days", 400)),
        )
        if settings.history_retention_days < 1:
            raise ValueError("history_retention_days must be at least 1")
        if raw:
            raise ValueError(f"unknown stage settings: {', '.join(sorted(raw))}")
        return settings

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]

    def is_production(self, stage: str) -> bool:
        """A stage whose alarms must reach someone: ``prod``, or any stage that retains its data."""
        return stage == "prod" or self.removal_policy == RemovalPolicy.RETAIN


def construct_id(name: str) -> str:
    """A CloudFormation-safe id from a kebab-case name: ``shopify-orders`` -> ``ShopifyOrders``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def target_key(integration: Integration, target: Target) -> str:
    """How the stack (and the local runtime) names one target of one integration: ``<integration>/<target>``."""
    return f"{integration.name}/{target.name}"


def target_construct_id(integration: Integration, target: Target) -> str:
    """The construct id prefix of one target's resources: ``ShopifyOrders`` + ``Erp``."""
    return construct_id(integration.name) + construct_id(target.name)


def _method_path(path: str, method: str) -> str:
    return f"{path.rstrip('/')}/{method.upper()}"


def execute_api_resource(path: str, method: str) -> str:
    """A route in an API resource policy: ``execute-api:/<stage>/<METHOD>/<path>``, any stage, a
    path parameter (``{token}``) as ``*``."""
    parts = ["*" if p.startswith("{") and p.endswith("}") else p for p in path.strip("/").split("/")]
    return f"execute-api:/*/{method.upper()}/{'/'.join(parts)}"


def serves_over_rest(webhook: WebhookTrigger) -> bool:
    """A route open to its sender's addresses only (``source_ips``) needs an API resource policy,
    which only REST APIs have; every other route is signed, verified by its ingress, and served by
    the HTTP API (a third of the price per request)."""
    return bool(webhook.source_ips)


def http_route_key(webhook: WebhookTrigger) -> str:
    """The HTTP API's route key of a webhook, also its metrics' ``Route``: ``POST /webhooks/...``."""
    return f"{webhook.method.upper()} {webhook.path}"


# The HTTP API's access log: the fields of the REST API's (json_with_standard_fields), from the HTTP
# API's context variables, plus why an integration failed (a 5xx the ingress did not answer).
HTTP_ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationError": "$context.integrationErrorMessage",
}


def source_networks(integration: Integration) -> list[str]:
    """The webhook's ``source_ips`` as networks, refused here if one is not an address or CIDR."""
    webhook = integration.webhook
    out: list[str] = []
    for value in webhook.source_ips if webhook else ():
        try:
            out.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError as exc:
            raise ValueError(
                f"{integration.name}: source_ips entry {value!r} is not an address or CIDR: {exc}"
            ) from None
    return out


def payload_prefix(integration: Integration) -> str:
    """The claim-check objects of one integration: ``payloads/<integration>/...`` (shared/claim_check.py)."""
    return f"{claim_check.KEY_PREFIX}/{integration.name}/*"


# What a function may do in the tables (never Scan: a Scan has no partition key to restrict).
_ITEM_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]


def leading_keys(*patterns: str) -> dict[str, Any]:
    """An IAM condition: every partition key the request touches matches one of ``patterns``."""
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(patterns)}}


def idempotency_keys(integration: Integration, target: Target) -> str:
    """Idempotency records of one target: ``<integration>#<target>#<business key>`` (each target its own scope)."""
    return f"{integration.name}#{target.name}#*"


def rotating_secrets(integrations: Sequence[Integration]) -> frozenset[str]:
    """Secrets some target writes back (``writes_secrets``): an OAuth pair whose refresh token is
    single-use (Allegro rotates it on every refresh), so whichever function refreshes it must store
    the new pair or the authorisation is lost. A poller whose source credential is one of them
    refreshes it too; the declaration names a source's secrets but not which it writes back."""
    return frozenset(ref.name for i in integrations for t in i.targets for ref in t.writes_secrets)


def processor_state_keys(integration: Integration, target: Target) -> list[str]:
    """State-table partition keys one target's processor owns (shared/state_keys.py)."""
    return state_keys.processor_keys(
        integration.name,
        target.name,
        target.rate.account if target.rate else None,
        cross_reference=target.cross_reference,
    )


# EventBridge rules take exactly these two forms. A rate's unit is singular for 1, plural otherwise.
_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)")
_CRON = re.compile(r"cron\(\S+(?: \S+){5}\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}


def schedule_interval_seconds(expression: str) -> int | None:
    """The period of a ``rate(...)`` schedule, None for a ``cron(...)`` one (no fixed period).

    Anything else is refused here rather than by CloudFormation halfway through a deployment."""
    rate = _RATE.fullmatch(expression)
    if rate is not None:
        value, unit = int(rate["value"]), rate["unit"]
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"schedule {expression!r}: the unit is singular for 1 and plural otherwise")
        return value * _UNIT_SECONDS[unit.rstrip("s")]
    if _CRON.fullmatch(expression):
        return None
    raise ValueError(f"schedule {expression!r} is neither rate(<n> <minute(s)|hour(s)|day(s)>) nor cron(<6 fields>)")


def poll_event_age_seconds(integration: Integration) -> int:
    """How long a scheduled start may wait (EventBridge and Lambda retries included) before it is
    dropped: one period, within EventBridge's 1 min .. and our 1 h (a cron schedule: 1 h). A start
    later than that would run into the next one; the lease would refuse it anyway."""
    assert integration.schedule is not None
    interval = schedule_interval_seconds(integration.schedule.expression)
    return 3600 if interval is None else min(max(interval, 60), 3600)


def poll_lag_threshold_seconds(integration: Integration) -> int:
    """The cursor lag (``Poll_lag_seconds``: how long ago a run last read the source to its end) that
    alarms: three schedule periods, at least 15 minutes, so one slow or skipped run does not page
    anyone; a cron schedule (no fixed period): 1 hour."""
    assert integration.schedule is not None
    interval = schedule_interval_seconds(integration.schedule.expression)
    return 3600 if interval is None else max(3 * interval, POLL_LAG_FLOOR_SECONDS)


class JunctionStack(Stack):
    """Queues, functions, tables, API, secrets and alarms for every declared integration of a stage."""

    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        stage: str,
        settings: StageSettings,
        integrations: Sequence[Integration] = INTEGRATIONS,
        ingress_code_dir: Path | None = None,
        processor_code_dir: Path | None = None,
        runbook_base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id_, **kwargs)
        # The nested stack's template is written as compactly as this one's (read at its construction).
        self.node.set_context("@aws-cdk/core:suppressTemplateIndentation", True)
        self.stage = stage
        self.settings = settings
        self.runbook_base_url = runbook_base_url
        self.alarms: dict[str, cloudwatch.Alarm] = {}  # by alarm name
        self.alarm_kinds: dict[str, AlarmKind] = {}  # by alarm name
        self.integrations = tuple(integrations)
        names = [i.name for i in self.integrations]
        if len(set(names)) != len(names):
            raise ValueError(f"integration names must be unique: {names}")
        self._check_construct_ids()
        for integration in self.integrations:
            if integration.schedule:
                schedule_interval_seconds(integration.schedule.expression)  # refuses a malformed one now
            source_networks(integration)  # and a malformed source address

        self.ingress_code_dir = ingress_code_dir or bundling.ingress_asset_dir()
        self.processor_code_dir = processor_code_dir or bundling.processor_asset_dir()
        self._ingress_code = lambda_.Code.from_asset(str(self.ingress_code_dir), exclude=[".junction-complete"])
        self._processor_code = lambda_.Code.from_asset(str(self.processor_code_dir), exclude=[".junction-complete"])
        for kind, asset in (("ingress", self.ingress_code_dir), ("processor", self.processor_code_dir)):
            if bundling.asset_bytecode(asset) == "no-pyc":
                Annotations.of(self).add_warning_v2(
                    f"junction:no-bytecode-{kind}",
                    f"The {kind} asset ({asset.name}) has no Python {bundling.PYTHON_VERSION} bytecode: every cold "
                    f"start compiles it (processor about twice as slow). Install Python {bundling.PYTHON_VERSION} "
                    f"(pyenv) or set {bundling.RUNTIME_PYTHON_ENV}, then synthesize again.",
                )

        self.key = self._kms_key("AlarmTopicKey", "encrypts the alarm topic")
        # CloudWatch alarms publish to the encrypted topic as the service itself.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"junction-{stage}-alarms",
            display_name=f"Junction {stage} alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        if settings.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        for n, subscriber in enumerate(settings.alarm_subscribers, start=1):
            sns.Subscription(
                self,
                f"AlarmSubscriber{n}",
                topic=self.alarm_topic,
                protocol=getattr(sns.SubscriptionProtocol, subscriber.protocol.replace("-", "_").upper()),
                endpoint=subscriber.endpoint,
            )
        if not settings.alarm_email and not settings.alarm_subscribers and settings.is_production(stage):
            Annotations.of(self).add_warning_v2(
                "junction:alarm-topic-without-subscriber",
                f"Stage {stage!r}: the alarm topic junction-{stage}-alarms has no subscriber, so nobody hears of a "
                "DLQ filling up, a webhook secret rotated on one side only or a target down. Set alarm_email or "
                "alarm_subscribers for the stage in cdk.json (or subscribe the topic to your paging tool).",
            )
        self._alarm_action = cw_actions.SnsAction(self.alarm_topic)
        # Alarms and dashboards: a nested stack, so this one keeps room for integrations (500 resources).
        self.observability = Observability(self, "Observability", stage=stage)

        # Everything kept at rest (the raw orders in idempotency records and queue messages, trace items,
        # claim-check payloads) is encrypted with this key, separate from the alarm topic's: the alarm
        # key lets the CloudWatch service decrypt, this one only the functions that hold the data.
        self.data_key = self._kms_key("DataKey", "encrypts data at rest (tables, queues, payload bucket)")
        self.idempotency_table = self._table("IdempotencyTable", idempotency_table_name(stage), "idempotency")
        self.state_table = self._table("StateTable", state_table_name(stage), "state")
        self.payload_bucket = self._payload_bucket()

        self.secrets: dict[str, secretsmanager.Secret] = {}
        self.rotating_secrets = rotating_secrets(self.integrations)
        for integration in self.integrations:
            for ref in integration.all_secrets:
                self._secret(ref)

        # Signed routes on the HTTP API, routes open to their sender's addresses only on the REST API.
        self.api = self._rest_api()
        self.http_api = self._http_api()
        self._http_routes: list[apigwv2.HttpRoute] = []
        if self.http_api is not None:
            CfnOutput(self, "ApiUrl", value=self.http_api_url, description="Base URL of the webhook HTTP API")
        if self.api is not None:
            CfnOutput(
                self,
                "RestApiUrl",
                value=self.api.url,
                description="Base URL of the webhook REST API (routes open to their sender's addresses only)",
            )

        # Per target, keyed "<integration>/<target>" (target_key); per integration, keyed by its name.
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.processors: dict[str, lambda_.Function] = {}
        self.ingress_functions: dict[str, lambda_.Function] = {}
        self.pollers: dict[str, lambda_.Function] = {}
        self.schedules: dict[str, events.Rule] = {}
        for integration in self.integrations:
            self._integration(integration)
        self.http_stage = self._http_stage()

        self.history = history.HistoryExport(self)
        self.dashboards = dashboards.build(self)
        self._suppressions()

    def _check_construct_ids(self) -> None:
        """Every integration and every target gets its own construct id prefix; two names that
        differ only in punctuation would share one and their resources would collide."""
        seen: dict[str, str] = {}
        for i in self.integrations:
            for cid, what in [(construct_id(i.name), i.name)] + [
                (target_construct_id(i, t), target_key(i, t)) for t in i.targets
            ]:
                if cid in seen:
                    raise ValueError(f"{what!r} and {seen[cid]!r} both make the construct id {cid!r}: rename one")
                seen[cid] = what

    # ----------------------------------------------------------------------------------- shared
    def _kms_key(self, cid: str, purpose: str) -> kms.Key:
        """A customer-managed key of this stage, rotated yearly."""
        return kms.Key(
            self,
            cid,
            description=f"Junction {self.stage}: {purpose}",
            enable_key_rotation=True,
            removal_policy=self.settings.removal_policy,
        )

    def _table(self, cid: str, name: str, kind: str) -> dynamodb.Table:
        partition, sort = TABLE_KEYS[kind]
        return dynamodb.Table(
            self,
            cid,
            table_name=name,
            partition_key=dynamodb.Attribute(name=partition, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort, type=dynamodb.AttributeType.STRING) if sort else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.data_key,
            deletion_protection=self.settings.removal_policy == RemovalPolicy.RETAIN,
            removal_policy=self.settings.removal_policy,
        )

    @property
    def payload_expiry_days(self) -> int:
        """Claim-check objects expire after the longest idempotency record of the stage, plus a margin."""
        ttl = max((t.idempotency_ttl_days for i in self.integrations for t in i.targets), default=30)
        return ttl + PAYLOAD_EXPIRY_MARGIN_DAYS

    def _payload_bucket(self) -> s3.Bucket:
        """Webhook bodies too large for one SQS message: the ingress writes them, the processor reads."""
        bucket = s3.Bucket(
            self,
            "PayloadBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.data_key,
            bucket_key_enabled=True,  # one KMS call per bucket key, not per object
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=False,  # written once, never changed; replaced only by a new delivery's own key
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-payloads",
                    expiration=Duration.days(self.payload_expiry_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=self.settings.removal_policy,
        )
        cdk_nag.NagSuppressions.add_resource_suppressions(
            bucket,
            [
                {
                    "id": "AwsSolutions-S1",
                    "reason": "No server access logs: only the integrations' own functions may touch the bucket "
                    "(ingress and poller PutObject, processor GetObject, each under its integration's prefix), every "
                    "object is referenced by exactly one queue message and trace item, and S3 access logs are "
                    "best-effort and would be another store of request metadata to retain. Object-level audit, "
                    "when needed, is CloudTrail S3 data events on this bucket.",
                }
            ],
        )
        return bucket

    def _secret(self, ref: SecretRef) -> secretsmanager.Secret:
        if ref.name not in self.secrets:
            secret = secretsmanager.Secret(
                self,
                f"Secret{construct_id(ref.name)}",
                secret_name=secret_id(self.stage, ref),
                description=ref.description,
                removal_policy=self.settings.removal_policy,
            )
            self.secrets[ref.name] = secret
            cdk_nag.NagSuppressions.add_resource_suppressions(
                secret,
                [
                    {
                        "id": "AwsSolutions-SMG4",
                        "reason": "The value is issued by a third party (a provider's webhook signing secret or a "
                        "target system's credentials); AWS cannot rotate it. Operators rotate it at the provider; "
                        'for webhook secrets every value listed in {"secrets": [...]} verifies during the overlap.',
                    }
                ],
            )
        return self.secrets[ref.name]

    def _log_group(self, cid: str, name: str | None = None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            cid,
            log_group_name=name,
            retention=self.settings.log_retention,
            removal_policy=self.settings.removal_policy,
        )

    def _rest_api(self) -> apigw.RestApi | None:
        """The REST API, for the routes open to their sender's addresses only (its resource policy)."""
        webhooks = [i.webhook for i in self.integrations if i.webhook and serves_over_rest(i.webhook)]
        if not webhooks:
            return None
        access_logs = self._log_group("ApiAccessLogs")
        method_options = {
            _method_path(w.path, w.method): apigw.MethodDeploymentOptions(
                throttling_rate_limit=w.throttle_rate_per_second,
                throttling_burst_limit=w.throttle_burst,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
            )
            for w in webhooks
        }
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"junction-{self.stage}",
            description=f"Junction {self.stage}: webhook ingress",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            policy=self._api_policy(),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=self.settings.removal_policy,
            deploy_options=apigw.StageOptions(
                stage_name=self.stage,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies carry personal data; never log them
                metrics_enabled=True,
                throttling_rate_limit=self.settings.api_throttle_rate_per_second,
                throttling_burst_limit=self.settings.api_throttle_burst,
                method_options=method_options,
            ),
        )
        return api

    def _api_policy(self) -> iam.PolicyDocument | None:
        """The REST API's resource policy, when some webhook declares ``source_ips``: such a route is
        refused to every other address (an explicit Deny beats the Allow), every other route stays
        open to anyone (its sender signs each request; the ingress verifies it)."""
        restricted = [(i.webhook, source_networks(i)) for i in self.integrations if i.webhook and i.webhook.source_ips]
        if not restricted:
            return None
        statements = [
            iam.PolicyStatement(
                sid="AnyoneMayCallTheWebhookRoutes",
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
            )
        ]
        for n, (webhook, networks) in enumerate(restricted, start=1):
            statements.append(
                iam.PolicyStatement(
                    sid=f"OnlyDocumentedSourceAddresses{n}",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["execute-api:Invoke"],
                    resources=[execute_api_resource(webhook.path, webhook.method)],
                    conditions={"NotIpAddress": {"aws:SourceIp": networks}},
                )
            )
        return iam.PolicyDocument(statements=statements)

    @property
    def http_api_url(self) -> str:
        """``https://<api id>.execute-api.<region>.<suffix>/<stage>/`` (the stage is named like the REST API's)."""
        assert self.http_api is not None
        return f"https://{self.http_api.api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{self.stage}/"

    def _http_api(self) -> apigwv2.HttpApi | None:
        """The HTTP API of the signed routes (payload format 2.0); its stage comes after the routes."""
        if not any(i.webhook and not serves_over_rest(i.webhook) for i in self.integrations):
            return None
        return apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"junction-{self.stage}",
            description=f"Junction {self.stage}: webhook ingress (signed routes)",
            create_default_stage=False,
        )

    def _http_stage(self) -> apigwv2.CfnStage | None:
        """The HTTP API's stage ``<stage>``: deployed on every change, JSON access logs, the stage's
        default throttling, and per route its declared rate and burst with route-level metrics
        (``Route`` dimension: the alarms and dashboards read them)."""
        if self.http_api is None:
            return None
        webhooks = [i.webhook for i in self.integrations if i.webhook and not serves_over_rest(i.webhook)]
        access_logs = self._log_group("HttpApiAccessLogs")
        stage = apigwv2.CfnStage(
            self,
            "HttpApiStage",
            api_id=self.http_api.api_id,
            stage_name=self.stage,
            description=f"Junction {self.stage}: webhook ingress",
            auto_deploy=True,
            access_log_settings=apigwv2.CfnStage.AccessLogSettingsProperty(
                destination_arn=access_logs.log_group_arn,
                format=json.dumps(HTTP_ACCESS_LOG_FORMAT, separators=(",", ":")),
            ),
            default_route_settings=apigwv2.CfnStage.RouteSettingsProperty(
                detailed_metrics_enabled=True,
                throttling_rate_limit=self.settings.api_throttle_rate_per_second,
                throttling_burst_limit=self.settings.api_throttle_burst,
            ),
            route_settings={
                http_route_key(w): {
                    "DetailedMetricsEnabled": True,
                    "ThrottlingRateLimit": w.throttle_rate_per_second,
                    "ThrottlingBurstLimit": w.throttle_burst,
                }
                for w in webhooks
            },
        )
        # Route settings name routes, which must exist when the stage is created or updated.
        for route in self._http_routes:
            stage.node.add_dependency(route)
        return stage

    def api_metric(
        self, i: Integration, name: str, *, statistic: str = "Sum", period: Duration | None = None
    ) -> cloudwatch.Metric:
        """API Gateway's metric of one webhook route: ``Count``, ``4xx``, ``5xx`` or ``Latency``. A
        REST route's are ``4XXError``/``5XXError`` by ``ApiName``, ``Stage``, ``Method``, ``Resource``
        (per-method metrics are on); an HTTP route's ``4xx``/``5xx`` by ``ApiId``, ``Stage``, ``Route``
        (detailed route metrics are on)."""
        webhook = i.webhook
        assert webhook is not None
        if name not in {"Count", "4xx", "5xx", "Latency"}:
            raise ValueError(f"no API metric {name!r}: Count, 4xx, 5xx or Latency")
        if serves_over_rest(webhook):
            metric_name = {"4xx": "4XXError", "5xx": "5XXError"}.get(name, name)
            dimensions = {
                "ApiName": f"junction-{self.stage}",
                "Stage": self.stage,
                "Method": webhook.method.upper(),
                "Resource": webhook.path,
            }
        else:
            assert self.http_api is not None
            metric_name = name
            dimensions = {"ApiId": self.http_api.api_id, "Stage": self.stage, "Route": http_route_key(webhook)}
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=metric_name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=period or Duration.minutes(5),
        )

    # ------------------------------------------------------------------------------ integration
    def _function(
        self,
        cid: str,
        *,
        name: str,
        description: str,
        code: lambda_.Code,
        handler: str,
        memory_mb: int,
        timeout_seconds: int,
        environment: dict[str, str],
    ) -> lambda_.Function:
        if len(name) > 64:
            raise ValueError(f"Lambda function name too long (> 64 characters): {name}")
        log_group = self._log_group(f"{cid}Logs", f"/aws/lambda/{name}")
        # An own role with write access to its own log group only, instead of the broad managed
        # AWSLambdaBasicExecutionRole (which allows writing to every log group of the account).
        role = iam.Role(
            self,
            f"{cid}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Junction {self.stage}: {name}",
        )
        log_group.grant_write(role)
        cdk_nag.NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "kms:GenerateDataKey* and kms:ReEncrypt* are the action families that aws-cdk-lib's "
                    "SQS and DynamoDB grants need on the stage's data key (GenerateDataKey / "
                    "GenerateDataKeyWithoutPlaintext, ReEncryptFrom / ReEncryptTo); the resource is that one key.",
                    "applies_to": ["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "Claim-check objects are keyed by delivery under the integration's own prefix "
                    "(payloads/<integration>/...): the wildcard is that prefix, so a function reaches its own "
                    "integration's payloads only (ingress and poller PutObject, processor GetObject).",
                    "applies_to": [
                        {"regex": "/^Resource::<PayloadBucket[A-Za-z0-9]*\\.Arn>\\/[a-z0-9-]+\\/[a-z0-9-]+\\/\\*$/g"}
                    ],
                },
            ],
            apply_to_children=True,
        )
        fn = lambda_.Function(
            self,
            cid,
            function_name=name,
            description=description[:256],
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code,
            handler=handler,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            environment=environment,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.TEXT,  # shared/observability.py writes JSON lines itself
        )
        # cfn-lint W3005 is a false positive here: aws-cdk-lib's Function always adds its role (and the
        # role's policy) to DependsOn, so the policy is attached before the function can be invoked; the
        # Role property's GetAtt alone would not wait for the policy. The redundancy is harmless.
        cfn_fn = fn.node.default_child
        assert isinstance(cfn_fn, lambda_.CfnFunction)
        cfn_fn.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        cdk_nag.NagSuppressions.add_resource_suppressions(
            fn,
            [
                {
                    "id": "AwsSolutions-L1",
                    "reason": "Pinned to Python 3.13 on purpose: infra/bundling.py installs the processor's "
                    "compiled dependencies (pydantic-core) for exactly this runtime and architecture, and the "
                    "cold-start budgets in docs/coldstart.md were measured on it. Moving up is a deliberate "
                    "change of RUNTIME and bundling.PYTHON_VERSION together.",
                }
            ],
        )
        return fn

    def _integration(self, i: Integration) -> None:
        for t in i.targets:
            self._target(i, t)
        # The source sends to the targets after no other; each of those sends on to its followers.
        entry_queues = [self.queues[target_key(i, t)] for t in i.entry_targets]
        for t in i.targets:
            followers = [self.queues[target_key(i, f)] for f in i.followers(t)]
            if followers:
                processor = self.processors[target_key(i, t)]
                processor.add_environment(FOLLOWER_QUEUES_ENV, Fn.join(",", [q.queue_url for q in followers]))
                for queue in followers:
                    queue.grant_send_messages(processor)
        if i.webhook:
            self._webhook(i, entry_queues)
        if i.schedule:
            self._poller(i, entry_queues)

    def _queue(self, cid: str, name: str, t: Target, *, dlq: sqs.Queue | None = None) -> sqs.Queue:
        """A target's queue (``dlq`` given) or its dead-letter queue: the data key, SSL only, the size
        ingress measures against (so AWS's default cannot drift from it)."""
        return sqs.Queue(
            self,
            cid,
            queue_name=name,
            fifo=t.queue.fifo or None,
            retention_period=Duration.days(t.queue.retention_days if dlq else t.queue.dlq_retention_days),
            visibility_timeout=Duration.seconds(visibility_timeout_seconds(t)) if dlq else None,
            max_message_size_bytes=SQS_MAX_MESSAGE_BYTES,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.data_key,
            data_key_reuse=QUEUE_DATA_KEY_REUSE,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=t.queue.max_receive_count)
            if dlq
            else None,
            removal_policy=self.settings.removal_policy,
        )

    def _target(self, i: Integration, t: Target) -> sqs.Queue:
        """One target's queue, DLQ, processor, event source, grants and alarms. Returns the queue."""
        cid = target_construct_id(i, t)
        key = target_key(i, t)
        stage = self.stage
        dlq = self._queue(f"{cid}Dlq", queue_name(stage, i, t, dead_letter=True), t)
        queue = self._queue(f"{cid}Queue", queue_name(stage, i, t), t, dlq=dlq)
        self.queues[key] = queue
        self.dead_letter_queues[key] = dlq

        processor = self._function(
            f"{cid}Processor",
            name=function_name(stage, i, f"{t.name}-processor"),
            description=f"Junction processor ({t.name}): {i.description}",
            code=self._processor_code,
            handler=PROCESSOR_HANDLER,
            memory_mb=t.processor.memory_mb,
            timeout_seconds=t.processor.timeout_seconds,
            environment={
                "JUNCTION_STAGE": stage,
                "JUNCTION_INTEGRATION": i.name,
                "JUNCTION_TARGET": t.name,
                "JUNCTION_QUEUE_URL": queue.queue_url,
                "JUNCTION_DLQ_URL": dlq.queue_url,
                "JUNCTION_IDEMPOTENCY_TABLE": self.idempotency_table.table_name,
                "JUNCTION_STATE_TABLE": self.state_table.table_name,
                "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket.bucket_name,
            },
        )
        self.processors[key] = processor
        queue.grant_consume_messages(processor)  # includes ChangeMessageVisibility (retry backoff)
        dlq.grant_send_messages(processor)  # the processor dead-letters poison messages itself
        self._grant_processor_tables(i, t, processor)
        # Claim-check payloads of its own integration, read only (the data key's Decrypt comes with the queue).
        processor.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadOwnClaimCheckPayloads",
                actions=["s3:GetObject"],
                resources=[self.payload_bucket.arn_for_objects(payload_prefix(i))],
            )
        )
        self.data_key.grant_decrypt(processor)
        for ref in t.secrets:
            self.secrets[ref.name].grant_read(processor)
        self._grant_write_back(processor, t.writes_secrets)

        processor.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=t.queue.batch_size,
                max_batching_window=(
                    Duration.seconds(t.queue.batching_window_seconds) if t.queue.batching_window_seconds else None
                ),
                report_batch_item_failures=True,
                max_concurrency=t.max_concurrency,
            )
        )
        self._target_alarms(i, t, cid)
        return queue

    def _grant_processor_tables(self, i: Integration, t: Target, processor: lambda_.Function) -> None:
        """Item access limited by partition key (``dynamodb:LeadingKeys``) to what the target owns.

        Idempotency records are keyed ``<integration>#<target>#...``: its own only. State items: the
        keys shared/state_keys.py gives the target's processor (status, breaker, version gate, id map,
        its rate budget), read and write. Trace items are keyed ``trace#<entity id>`` (one entity's
        history across every integration, read by one Query), so no key tells whose they are:
        processors may only add them (PutItem, BatchWriteItem), never read, change or delete one. A
        batch mixes trace and status items, so the add-only statement also covers the own keys (IAM
        matches each statement against all keys of a request at once)."""
        own = processor_state_keys(i, t)
        statements = [
            iam.PolicyStatement(
                sid="OwnIdempotencyRecords",
                actions=_ITEM_ACTIONS,
                resources=[self.idempotency_table.table_arn],
                conditions=leading_keys(idempotency_keys(i, t)),
            ),
            iam.PolicyStatement(
                sid="OwnStateItems",
                actions=_ITEM_ACTIONS,
                resources=[self.state_table.table_arn],
                conditions=leading_keys(*own),
            ),
            iam.PolicyStatement(
                sid="AddTraceItems",
                actions=["dynamodb:BatchWriteItem", "dynamodb:PutItem"],
                resources=[self.state_table.table_arn],
                conditions=leading_keys(f"{state_keys.TRACE}*", *own),
            ),
        ]
        for statement in statements:
            processor.add_to_role_policy(statement)
        self._grant_table_key(processor)

    def _grant_write_back(self, fn: lambda_.Function, refs: Sequence[SecretRef]) -> None:
        """Read and write back rotated credentials (an OAuth refresh token): a new version, through
        PutSecretValue (shared/parameters.py ``put_json``). Nothing else about the secret (its
        policy, rotation, stages) may change."""
        if not refs:
            return
        written = [self.secrets[ref.name] for ref in refs]
        for secret in written:
            secret.grant_read(fn)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteRotatedCredentials",
                actions=["secretsmanager:PutSecretValue"],
                resources=[secret.secret_arn for secret in written],
            )
        )

    def _grant_table_key(self, fn: lambda_.Function) -> None:
        """What DynamoDB needs of the caller on the data key the tables are encrypted with."""
        self.data_key.grant(
            fn, "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"
        )

    def _grant_write_payloads(self, i: Integration, fn: lambda_.Function) -> None:
        """Claim check: messages too large for SQS go to the bucket under the integration's prefix, write only."""
        fn.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteOwnClaimCheckPayloads",
                actions=["s3:PutObject"],
                resources=[self.payload_bucket.arn_for_objects(payload_prefix(i))],
            )
        )

    def _queue_urls(self, queues: Sequence[sqs.Queue]) -> str:
        """``JUNCTION_QUEUE_URLS``: every target's queue, in declaration order, comma-separated."""
        return Fn.join(",", [q.queue_url for q in queues])

    def _webhook(self, i: Integration, queues: Sequence[sqs.Queue]) -> None:
        webhook = i.webhook
        assert webhook is not None and i.ingress_handler is not None
        cid = construct_id(i.name)
        ingress = self._function(
            f"{cid}Ingress",
            name=function_name(self.stage, i, "ingress"),
            description=f"Junction ingress: {i.description}",
            code=self._ingress_code,
            handler=i.ingress_handler,
            memory_mb=i.ingress.memory_mb,
            timeout_seconds=i.ingress.timeout_seconds,
            environment={
                "JUNCTION_STAGE": self.stage,
                "JUNCTION_INTEGRATION": i.name,
                "JUNCTION_QUEUE_URLS": self._queue_urls(queues),
                "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket.bucket_name,
            },
        )
        self.ingress_functions[i.name] = ingress
        # Each delivery goes to every target's queue. With the data key's GenerateDataKey and
        # Decrypt, which the PutObject below needs as well.
        for queue in queues:
            queue.grant_send_messages(ingress)
        self._grant_write_payloads(i, ingress)
        self.secrets[webhook.secret.name].grant_read(ingress)

        if serves_over_rest(webhook):
            assert self.api is not None
            resource = self.api.root.resource_for_path(webhook.path)
            resource.add_method(webhook.method.upper(), apigw.LambdaIntegration(ingress, proxy=True))
            url = self.api.url_for_path(webhook.path)
        else:
            assert self.http_api is not None
            [route] = self.http_api.add_routes(
                path=webhook.path,
                methods=[apigwv2.HttpMethod(webhook.method.upper())],
                integration=apigwv2_integrations.HttpLambdaIntegration(
                    f"{cid}Integration",
                    ingress,
                    payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
                ),
            )
            self._http_routes.append(route)
            url = self.http_api_url.rstrip("/") + webhook.path
        CfnOutput(
            self,
            f"{cid}WebhookUrl",
            value=url,
            description=f"{i.name}: the URL to register at {i.source}",
        )
        self._alarm(
            alarms.INGRESS_ERRORS,
            f"{cid}IngressErrors",
            f"junction-{self.stage}-{i.name}-ingress-errors",
            f"{i.name}: the ingress function failed (webhooks are not being accepted)",
            lambda_metric(function_name(self.stage, i, "ingress"), "Errors", period=Duration.minutes(5)),
            threshold=0,
            above=True,
        )
        # Losses at the sender's end: deliveries it will give up on, after its retries.
        unauthorized = self.junction_metric(i, "Webhook_unauthorized", Duration.minutes(15))
        accepted = self.junction_metric(i, "Webhook_accepted", Duration.minutes(15))
        self._alarm(
            alarms.WEBHOOK_UNAUTHORIZED,
            f"{cid}WebhookUnauthorized",
            f"junction-{self.stage}-{i.name}-webhook-unauthorized",
            f"{i.name}: at least {UNAUTHORIZED_SPIKE} deliveries in 15 minutes failed signature verification (401), "
            "no fewer than passed it. A webhook secret rotated on one side only looks like this: compare "
            f"junction/{self.stage}/{webhook.secret.name} with {i.source}'s; {i.source} retries, then drops them.",
            cloudwatch.MathExpression(
                expression="IF(FILL(unauthorized, 0) >= FILL(accepted, 0), FILL(unauthorized, 0), 0)",
                using_metrics={"unauthorized": unauthorized, "accepted": accepted},
                period=Duration.minutes(15),
                label="401s when at least as many as 202s",
            ),
            threshold=UNAUTHORIZED_SPIKE,
        )
        self._alarm(
            alarms.WEBHOOK_UNAVAILABLE,
            f"{cid}WebhookUnavailable",
            f"junction-{self.stage}-{i.name}-webhook-unavailable",
            f"{i.name}: the ingress answered 503 (could not enqueue, or could not read its secret); {i.source} "
            "retries for a while, then drops the delivery.",
            self.junction_metric(i, "Webhook_unavailable", Duration.minutes(5)),
            threshold=1,
        )
        # 5xx the ingress did not answer itself (those are Webhook_unavailable and Webhook_error):
        # the function throttled, timed out or crashed before answering, or the integration broke.
        self._alarm(
            alarms.INGRESS_5XX,
            f"{cid}Ingress5xx",
            f"junction-{self.stage}-{i.name}-ingress-5xx",
            f"{i.name}: API Gateway answered 5xx on {webhook.method.upper()} {webhook.path} without the ingress "
            f"answering it (throttled, timed out or crashed function); {i.source} retries, then drops the delivery.",
            cloudwatch.MathExpression(
                expression="FILL(gateway, 0) - FILL(unavailable, 0) - FILL(failed, 0)",
                using_metrics={
                    "gateway": self.api_metric(i, "5xx"),
                    "unavailable": self.junction_metric(i, "Webhook_unavailable", Duration.minutes(5)),
                    "failed": self.junction_metric(i, "Webhook_error", Duration.minutes(5)),
                },
                period=Duration.minutes(5),
                label="5xx not answered by the ingress",
            ),
            threshold=1,
        )

    def _poller(self, i: Integration, queues: Sequence[sqs.Queue]) -> None:
        """A scheduled integration's poller: started by its EventBridge rule only (no queue of its
        own, no event source), it reads the source from its cursor and enqueues each change for
        every target. No reserved concurrency: the lease in the state table refuses an overlapping run."""
        schedule = i.schedule
        assert schedule is not None
        cid = construct_id(i.name)
        poller = self._function(
            f"{cid}Poller",
            name=function_name(self.stage, i, "poller"),
            description=f"Junction poller: {i.description}",
            code=self._processor_code,
            handler=POLLER_HANDLER,
            memory_mb=schedule.function.memory_mb,
            timeout_seconds=schedule.function.timeout_seconds,
            environment={
                "JUNCTION_STAGE": self.stage,
                "JUNCTION_INTEGRATION": i.name,
                "JUNCTION_STATE_TABLE": self.state_table.table_name,
                "JUNCTION_QUEUE_URLS": self._queue_urls(queues),
                "JUNCTION_PAYLOAD_BUCKET": self.payload_bucket.bucket_name,
            },
        )
        self.pollers[i.name] = poller
        for queue in queues:
            queue.grant_send_messages(poller)
        # Its lease, cursor and run history (sync#<integration>), nothing else of the state table.
        poller.add_to_role_policy(
            iam.PolicyStatement(
                sid="OwnSyncItems",
                actions=_ITEM_ACTIONS,
                resources=[self.state_table.table_arn],
                conditions=leading_keys(*state_keys.poller_keys(i.name)),
            )
        )
        self._grant_table_key(poller)
        self._grant_write_payloads(i, poller)
        for ref in i.secrets:
            self.secrets[ref.name].grant_read(poller)
        self._grant_write_back(poller, [ref for ref in i.secrets if ref.name in self.rotating_secrets])

        max_age = Duration.seconds(poll_event_age_seconds(i))
        # A failed run is retried by Lambda (asynchronous invocation) only while its tick is fresh.
        poller.configure_async_invoke(max_event_age=max_age, retry_attempts=POLL_RETRY_ATTEMPTS)
        self.schedules[i.name] = events.Rule(
            self,
            f"{cid}Schedule",
            rule_name=f"junction-{self.stage}-{i.name}",
            description=f"Junction: starts the {i.name} poller",
            schedule=events.Schedule.expression(schedule.expression),
            targets=[targets.LambdaFunction(poller, retry_attempts=POLL_RETRY_ATTEMPTS, max_event_age=max_age)],
        )
        self._poller_alarms(i, cid)

    def junction_metric(
        self, i: Integration, name: str, period: Duration, *, target: Target | None = None, statistic: str = "Sum"
    ) -> cloudwatch.Metric:
        """A metric the functions emit (EMF, namespace ``Junction``): dimensions ``Integration`` and,
        for a processor's, ``Target``. Exactly that set: CloudWatch treats any other as another metric."""
        dimensions = {"Integration": i.name} | ({"Target": target.name} if target else {})
        return cloudwatch.Metric(
            namespace="Junction",
            metric_name=name,
            dimensions_map=dimensions,
            period=period,
            statistic=statistic,
        )

    def dlq_age_threshold_seconds(self, t: Target) -> int:
        """The age at which a DLQ message is close to expiring. In a standard queue's DLQ a message
        expires by its original enqueue time, while the age metric counts from its move to the DLQ:
        one moved by SQS's redrive may have spent up to the source queue's retention before. A FIFO
        DLQ resets the enqueue time."""
        spent = 0 if t.queue.fifo else t.queue.retention_days
        days = t.queue.dlq_retention_days - spent - DLQ_EXPIRY_MARGIN_DAYS
        return max(days, 1) * 86_400

    def _target_alarms(self, i: Integration, t: Target, cid: str) -> None:
        prefix = f"junction-{self.stage}-{i.name}-{t.name}"
        where = target_key(i, t)
        dlq_name = queue_name(self.stage, i, t, dead_letter=True)
        self._alarm(
            alarms.DLQ_NEAR_EXPIRY,
            f"{cid}DlqNearExpiry",
            f"{prefix}-dlq-near-expiry",
            f"{where}: a dead-lettered message expires within about {DLQ_EXPIRY_MARGIN_DAYS} days; redrive or "
            "export it now (junction dlq list / redrive) or it is lost.",
            sqs_metric(dlq_name, "ApproximateAgeOfOldestMessage", period=Duration.minutes(15)),
            threshold=self.dlq_age_threshold_seconds(t),
        )
        self._alarm(
            alarms.BREAKER_OPEN,
            f"{cid}BreakerOpened",
            f"{prefix}-breaker-opened",
            f"{where}: the circuit breaker to {t.name} opened (the target keeps failing); its messages wait "
            "in its queue until it recovers or the retry horizon ends. Other targets are not held up.",
            self.junction_metric(i, "Breaker_opened", Duration.minutes(5), target=t),
            threshold=1,
        )
        self._alarm(
            alarms.DLQ_DEPTH,
            f"{cid}DlqDepth",
            f"{prefix}-dlq-depth",
            f"{where}: messages are waiting in the dead-letter queue",
            sqs_metric(dlq_name, "ApproximateNumberOfMessagesVisible", period=Duration.minutes(1)),
            threshold=t.alarms.dlq_depth,
        )
        self._alarm(
            alarms.QUEUE_AGE,
            f"{cid}OldestMessageAge",
            f"{prefix}-oldest-message-age",
            f"{where}: the queue is lagging behind",
            sqs_metric(queue_name(self.stage, i, t), "ApproximateAgeOfOldestMessage", period=Duration.minutes(1)),
            threshold=t.alarms.oldest_message_age_seconds,
        )
        self._alarm(
            alarms.PROCESSOR_ERRORS,
            f"{cid}ProcessorErrors",
            f"{prefix}-processor-errors",
            f"{where}: the processor function failed (not a per-message failure)",
            lambda_metric(function_name(self.stage, i, f"{t.name}-processor"), "Errors", period=Duration.minutes(5)),
            threshold=0,
            above=True,
        )

    def _poller_alarms(self, i: Integration, cid: str) -> None:
        prefix = f"junction-{self.stage}-{i.name}-poller"
        self._alarm(
            alarms.POLLER_ERRORS,
            f"{cid}PollerErrors",
            f"{prefix}-errors",
            f"{i.name}: the poller function failed (a crash or timeout, not a source error it reported)",
            lambda_metric(function_name(self.stage, i, "poller"), "Errors", period=Duration.minutes(5)),
            threshold=0,
            above=True,
        )
        self._alarm(
            alarms.POLL_FAILED,
            f"{cid}PollFailed",
            f"{prefix}-failed",
            f"{i.name}: a poll of {i.source} ended with an error; the next run resumes from the cursor, "
            "but nothing new reaches the targets while it keeps failing.",
            self.junction_metric(i, "Poll_failed", Duration.minutes(15)),
            threshold=1,
        )
        threshold = poll_lag_threshold_seconds(i)
        self._alarm(
            alarms.POLLER_LAG,
            f"{cid}PollLag",
            f"{prefix}-lag",
            f"{i.name}: the poller last read {i.source} to its end more than {threshold // 60} minutes ago: "
            "it is falling behind (a backlog longer than its runs) or its runs keep failing.",
            self.junction_metric(i, "Poll_lag_seconds", Duration.minutes(15), statistic="Maximum"),
            threshold=threshold,
            above=True,
        )

    def _alarm(
        self,
        kind: AlarmKind,
        cid: str,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        above: bool = False,
    ) -> cloudwatch.Alarm:
        """An alarm on one period's datapoint that notifies the alarm topic when it fires and when it
        is over; no data is not a breach. ``above``: breach when the metric exceeds the threshold,
        else when it reaches it. Its description ends with the link to its kind's runbook section."""
        operator = cloudwatch.ComparisonOperator
        alarm = cloudwatch.Alarm(
            self.observability,
            cid,
            alarm_name=name,
            alarm_description=alarms.described(description, alarms.runbook_url(self.runbook_base_url, kind)),
            metric=metric,
            threshold=threshold,
            comparison_operator=operator.GREATER_THAN_THRESHOLD
            if above
            else operator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._alarm_action)
        alarm.add_ok_action(self._alarm_action)
        self.alarms[name] = alarm
        self.alarm_kinds[name] = kind
        return alarm

    # ------------------------------------------------------------------------------ suppressions
    def _suppressions(self) -> None:
        if self.http_api is not None:
            self._http_api_suppressions(self.http_api)
        if self.api is None:
            return
        cdk_nag.NagSuppressions.add_resource_suppressions(
            self.api,
            [
                {
                    "id": "AwsSolutions-APIG2",
                    "reason": "Webhook bodies are provider-defined JSON. The ingress function verifies the HMAC "
                    "signature over the raw body, the body size and the JSON itself and answers 400/401/413; a "
                    "gateway model would duplicate that and could reject provider payload changes.",
                },
                {
                    "id": "AwsSolutions-APIG3",
                    "reason": "No WAF: every method has its own stage throttling, forged requests fail the HMAC "
                    "check in the ingress, and providers deliver from shared IP pools, so per-IP rate rules "
                    "would throttle legitimate delivery bursts. Revisit if abuse traffic shows up.",
                },
                {
                    "id": "AwsSolutions-APIG4",
                    "reason": "Webhook senders (e.g. Shopify) can neither sign with IAM nor obtain Cognito or "
                    "custom-authorizer tokens; each request is authenticated by its HMAC signature, verified "
                    "with the integration's secret in the ingress function before anything is enqueued.",
                },
                {
                    "id": "AwsSolutions-COG4",
                    "reason": "Webhook senders cannot use Cognito user pools; requests are authenticated by their "
                    "HMAC signature in the ingress function.",
                },
            ],
            apply_to_children=True,
        )
        cdk_nag.NagSuppressions.add_resource_suppressions(
            self.api,
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "The account-level role API Gateway needs to write execution and access logs; "
                    "AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained policy for exactly that.",
                    "applies_to": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                    ],
                }
            ],
            apply_to_children=True,
        )

    def _http_api_suppressions(self, api: apigwv2.HttpApi) -> None:
        """The HTTP API's routes have no authorizer: senders sign, the ingress verifies. cdk-nag has
        no WAF or request-validation rule for HTTP APIs (they support neither): the ingress's HMAC
        check over the raw body is the gate, and every route is throttled on its own (docs/infra.md)."""
        cdk_nag.NagSuppressions.add_resource_suppressions(
            api,
            [
                {
                    "id": "AwsSolutions-APIG4",
                    "reason": "Webhook senders (Shopify, WooCommerce, Stripe, Przelewy24, the WMS) can neither sign "
                    "with IAM nor obtain JWT or Lambda-authorizer tokens; each request is authenticated by its "
                    "HMAC signature over the raw body, verified in the ingress function before anything is enqueued.",
                },
            ],
            apply_to_children=True,
        )
