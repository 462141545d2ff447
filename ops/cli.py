"""``junction``: the operator's command line, against the local stack or a deployed stage.

A thin layer: options in, plain functions (ops.commands, ops.dlq) called, rich tables out.
Errors an operator can act on print as one line on stderr with exit code 1 (see ``describe_error``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from . import commands, dlq
from .context import Clients, OpsError, Target, resolve_target

MISSING_RESOURCE_CODES = commands.MISSING_QUEUE_CODES | {"ResourceNotFoundException"}
CREDENTIAL_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "AccessDenied"}
)


def out() -> Console:
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


class Options:
    """The global options; the target is resolved on first use (``integrations`` needs none)."""

    def __init__(self, local: bool | None, stage: str | None) -> None:
        self.local = local
        self.stage = stage
        self._target: Target | None = None
        self._clients: Clients | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve_target(self.local, self.stage)
            err().print(self._target.describe(), style="dim", soft_wrap=True, markup=False)
        return self._target

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = Clients(self.target)
        return self._clients

    @property
    def resolved(self) -> Target | None:
        return self._target


def describe_error(exc: BaseException, target: Target | None) -> str | None:
    """The one line to print for an error an operator can act on; None for anything else (a bug)."""
    stage = target.stage if target else "?"
    local = target is not None and target.is_local
    if isinstance(exc, OpsError):
        return str(exc)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials found: configure a profile or AWS_* variables (or use --local)"
    if isinstance(exc, NoRegionError):
        return "no AWS region configured: set AWS_REGION or a profile region (or use --local)"
    if isinstance(exc, ProfileNotFound):
        return f"AWS profile not found: {exc}"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
        if local:
            return f"local stack not running: {exc} (start it with `make up`)"
        return f"cannot reach the AWS endpoint: {exc}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        message = str(error.get("Message", "")).strip()
        if code in MISSING_RESOURCE_CODES:
            return f"{message or code}: stack not deployed for stage {stage}?"
        if code in CREDENTIAL_CODES:
            return f"AWS rejected the credentials ({code}): {message}"
        return f"AWS error {code}: {message}" if message else f"AWS error {code}"
    if isinstance(exc, BotoCoreError):
        return f"AWS client error: {exc}"
    return None


class JunctionGroup(TyperGroup):
    """Catches every operator-facing error in one place: one line on stderr, exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            options = ctx.obj if isinstance(ctx.obj, Options) else None
            line = describe_error(exc, options.resolved if options else None)
            if line is None:
                raise
            err().print(f"error: {' '.join(line.split())}", style="red", soft_wrap=True, markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=JunctionGroup,
    name="junction",
    help="Operate Junction integrations: queue status, dead-letter queues, redrive, replay and trace.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Inspect and redrive dead-letter queues.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.callback()
def _global(
    ctx: typer.Context,
    stage: Annotated[
        str | None, typer.Option("--stage", help="Stage to operate (AWS: required, or $JUNCTION_STAGE).")
    ] = None,
    local: Annotated[
        bool | None,
        typer.Option(
            "--local/--aws",
            help="Local stack (.junction/local.json) or AWS. Default: $JUNCTION_TARGET, else local if it runs.",
        ),
    ] = None,
) -> None:
    ctx.obj = Options(local, stage)


def _options(ctx: typer.Context) -> Options:
    root = ctx.find_root()
    if not isinstance(root.obj, Options):
        root.obj = Options(None, None)
    return root.obj


# -- formatting --------------------------------------------------------------------------------
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172_800:
        return f"{s // 3600}h"
    return f"{s // 86_400}d"


def _when(at: datetime | str | None, now: datetime | None = None) -> str:
    if at is None:
        return "-"
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return str(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ago = ((now or datetime.now(UTC)) - at).total_seconds()
    return f"{at.isoformat(timespec='seconds')} ({_age(max(0.0, ago))} ago)"


def _ids(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- integrations ------------------------------------------------------------------------------
@app.command()
def integrations() -> None:
    """List the declared integrations."""
    table = Table(title="Integrations")
    for column in ("name", "trigger", "source → target", "batch size", "max receives", "max concurrency"):
        table.add_column(column, justify="right" if column.startswith(("batch", "max")) else "left")
    for row in commands.integration_rows():
        table.add_row(
            row.name,
            row.trigger,
            row.flow.replace(" -> ", " → "),
            str(row.batch_size),
            str(row.max_receives),
            str(row.max_concurrency),
        )
    out().print(table)


# -- status ------------------------------------------------------------------------------------
@app.command()
def status(
    ctx: typer.Context,
    integration: Annotated[str | None, typer.Argument(help="One integration (default: all).")] = None,
) -> None:
    """Queue depths, DLQ depth, oldest message age, the target's circuit breaker and last success."""
    chosen = commands.selected(integration)
    options = _options(ctx)
    target, clients = options.target, options.clients
    table = Table(title=f"Status ({target.kind}, stage {target.stage})")
    columns = ("integration", "visible", "in flight", "delayed", "DLQ", "oldest message", "breaker", "last success")
    for column in columns:
        table.add_column(column, justify="right" if column in ("visible", "in flight", "delayed", "DLQ") else "left")
    for i in chosen:
        s = commands.queue_status(
            clients.sqs,
            clients.dynamodb,
            target.stage,
            i,
            cloudwatch=None if target.is_local else clients.cloudwatch,
        )
        table.add_row(
            s.integration,
            str(s.visible),
            str(s.in_flight),
            str(s.delayed),
            Text(str(s.dlq_depth), style="bold red" if s.dlq_depth else "green"),
            _age(s.oldest_age_seconds),
            _breaker(s.breaker, s.breaker_open_until),
            _when(s.last_success) if s.last_success else "never",
        )
    out().print(table)


def _breaker(state: str, open_until: float | None) -> Text:
    if state == "closed":
        return Text("closed", style="green")
    if state == "open" and open_until is not None:
        left = max(0, int(open_until - time.time()))
        return Text(f"open ({left} s left)", style="bold red")
    return Text(state.replace("_", "-"), style="yellow")


# -- dlq ---------------------------------------------------------------------------------------
@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    integration: Annotated[str | None, typer.Argument(help="One integration (default: all).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Peek at most this many messages per DLQ.")] = 1000,
) -> None:
    """Peek at DLQ messages (they stay in the DLQ), grouped by reason."""
    chosen = commands.selected(integration)
    options = _options(ctx)
    target, clients = options.target, options.clients
    console = out()
    for i in chosen:
        messages = dlq.peek(clients.sqs, target.stage, i, limit=limit)
        if not messages:
            console.print(f"{i.name}: DLQ empty", style="green", markup=False)
            continue
        groups = Table(title=f"{i.name}: {len(messages)} message(s) in the DLQ")
        for column in ("reason", "count", "oldest failed-at", "sample entity ids"):
            groups.add_column(column, justify="right" if column == "count" else "left")
        for g in dlq.group_by_reason(messages):
            groups.add_row(g.reason, str(g.count), _when(g.oldest_failed_at), ", ".join(g.sample_entity_ids) or "-")
        console.print(groups)
        console.print(_message_table(messages, f"{i.name}: messages"))
        if len(messages) >= limit:
            console.print(f"(showing the first {limit}; raise --limit to see more)", style="yellow", markup=False)


def _message_table(messages: list[dlq.DlqMessage], title: str) -> Table:
    table = Table(title=title)
    for column in ("message id", "reason", "entity ids", "attempts", "failed at", "error"):
        if column == "message id":
            table.add_column(column, no_wrap=True, min_width=36)
        else:
            table.add_column(column, overflow="fold" if column == "entity ids" else "ellipsis")
    ordered = sorted(messages, key=lambda m: m.failed_at or datetime.min.replace(tzinfo=UTC))
    for m in ordered:
        reason = f"{m.reason} ({m.last_reason})" if m.last_reason else m.reason
        at = m.failed_at.isoformat(timespec="seconds") if m.failed_at else "-"
        attempts = "-" if m.attempts is None else str(m.attempts)
        table.add_row(m.message_id, reason, _ids(m.entity_ids), attempts, at, _clip(m.error, 60))
    return table


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(help="The DLQ message id (see `junction dlq list`).")],
    integration: Annotated[str | None, typer.Option(help="Look only in this integration's DLQ.")] = None,
) -> None:
    """One DLQ message: every attribute and the event, pretty-printed."""
    chosen = commands.selected(integration)
    options = _options(ctx)
    message = dlq.find(options.clients.sqs, options.target.stage, chosen, message_id)
    console = out()
    table = Table(title=f"{message.integration}: message {message.message_id}", show_header=False)
    table.add_column("attribute", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in sorted(message.attributes.items()):
        table.add_row(name, value)
    for name, value in sorted(message.system.items()):
        if name.endswith("Timestamp") and value.isdigit():
            at = datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="seconds")
            table.add_row(name, f"{value} ({at})")
        else:
            table.add_row(name, value)
    console.print(table)
    check = message.claim_check
    if check is not None:
        # The body lies in S3: show where, not the pointer's empty body field.
        checked = Table(title="claim check (the body lies in S3)", show_header=False)
        checked.add_column("field", style="bold")
        checked.add_column("value", overflow="fold")
        checked.add_row("bucket", check.bucket)
        checked.add_row("key", check.key)
        checked.add_row("size", f"{check.size:,} bytes")
        checked.add_row("sha256", check.sha256)
        console.print(checked)
        console.print(
            "Redrive and replay send this pointer; the processor reads the body from S3 itself.",
            markup=False,
            soft_wrap=True,
        )
        console.print(Text("envelope", style="bold"))
        pointer = json.loads(message.body)
        pointer.pop("body", None)
        console.print_json(data=pointer)
        return
    console.print(Text("body", style="bold"))
    document = _decoded_body(message.body)
    if document is None:
        console.print(message.body, markup=False, highlight=False, soft_wrap=True)
    else:
        console.print_json(data=document)


def _decoded_body(body: str) -> Any:
    """The body as JSON, with an envelope's inner payload decoded too when it is JSON; None if not JSON."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(document, dict)
        and isinstance(document.get("body"), str)
        and document.get("body_encoding") == "utf-8"
    ):
        try:
            document["body"] = json.loads(document["body"])
        except ValueError:
            pass
    return document


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return dlq.parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    integration: Annotated[str | None, typer.Argument(help="One integration (default: all).")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Only this reason (also matches the last reason of retries_exhausted).")
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Only messages about this entity id (any id value).")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Only messages that failed at least this long ago: 10m, 2h, 1d.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Messages per second.")] = 10.0,
    limit: Annotated[int, typer.Option(min=1, help="Look at most at this many DLQ messages per integration.")] = 10_000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would move; move nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Move DLQ messages back to their queue, all of them or those matching the filters."""
    chosen = commands.selected(integration)
    flt = dlq.Filter(reason=reason, entity=entity, older_than=_duration(older_than))
    if rate <= 0:
        raise OpsError("--rate must be above 0")
    options = _options(ctx)
    target, clients = options.target, options.clients
    names = ", ".join(i.name for i in chosen)
    if not dry_run and not yes:
        typer.confirm(
            f"Redrive {flt.describe()} from the DLQ of {names} ({target.kind}, stage {target.stage})?", abort=True
        )
    console = out()
    results: list[dlq.RedriveResult] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=False,
    ) as progress:
        for i in chosen:
            task = progress.add_task(f"{i.name}", total=None)

            def update(done: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            results.append(
                dlq.redrive(
                    clients.sqs,
                    target.stage,
                    i,
                    flt,
                    rate=rate,
                    dry_run=dry_run,
                    limit=limit,
                    progress=update,
                    move_sqs=clients.sqs_once,
                )
            )
            last = results[-1]
            done = last.moved + last.skipped + (len(last.matched) if dry_run else 0)
            progress.update(task, total=done, completed=done)
    for result in results:
        if result.method == "dry-run":
            if result.matched:
                console.print(_message_table(result.matched, f"{result.integration}: would move"))
            console.print(
                f"{result.integration}: dry run, {len(result.matched)} would move, {result.skipped} would stay; "
                "nothing moved",
                markup=False,
                soft_wrap=True,
            )
        else:
            how = "message move task" if result.method == "move-task" else f"filter: {flt.describe()}"
            console.print(
                f"{result.integration}: moved {result.moved}, skipped {result.skipped} ({how})",
                markup=False,
                soft_wrap=True,
            )
    if not dry_run and any(r.moved for r in results):
        console.print(
            "Redriven events take effect once: the processor's idempotency record is keyed on the business key.",
            style="dim",
            markup=False,
            soft_wrap=True,
        )


# -- replay ------------------------------------------------------------------------------------
@app.command()
def replay(
    ctx: typer.Context,
    entity_id: Annotated[str, typer.Argument(help="The entity, as in its trace: e.g. shopify-order:123.")],
    integration: Annotated[str | None, typer.Option(help="Replay into this integration (default: the latest).")] = None,
    bypass_idempotency: Annotated[
        bool, typer.Option("--bypass-idempotency", help="Make the effect again (a new replay id).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Send an entity's recorded event to its integration's queue again."""
    if integration:
        commands.integration(integration)
    options = _options(ctx)
    target, clients = options.target, options.clients
    event = commands.recorded_event(clients.dynamodb, target.stage, entity_id, integration_name=integration)
    if bypass_idempotency and not yes:
        typer.confirm(
            f"Replay {entity_id} into {event.integration.name} as a NEW effect "
            f"({event.integration.target} receives it again)?",
            abort=True,
        )
    result = commands.replay(
        clients.sqs,
        clients.dynamodb,
        target.stage,
        entity_id,
        integration_name=integration,
        bypass_idempotency=bypass_idempotency,
        event=event,
    )
    console = out()
    console.print(
        f"sent event {event.envelope.delivery_id} of {entity_id} to {result.queue} (message {result.message_id})",
        markup=False,
        soft_wrap=True,
    )
    if bypass_idempotency:
        console.print(
            f"replay id {result.replay_id}: the processor keys this effect on "
            f"{result.record_key.split('#replay:')[0]}#replay:{result.replay_id} and makes it once more.",
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"idempotency kept: the processor finds the completed record {result.record_key} and treats the "
            "event as a duplicate (no change in the target). Use --bypass-idempotency to make the effect again.",
            markup=False,
            soft_wrap=True,
        )


# -- trace -------------------------------------------------------------------------------------
@app.command()
def trace(
    ctx: typer.Context,
    entity_id: Annotated[str, typer.Argument(help="The entity: e.g. shopify-order:123.")],
) -> None:
    """Every hop recorded for an entity, oldest first."""
    options = _options(ctx)
    hops = commands.trace(options.clients.dynamodb, options.target.stage, entity_id)
    table = Table(title=f"Trace of {entity_id}")
    for column in ("time", "integration", "outcome", "attempts", "latency ms", "reason", "target ids", "delivery id"):
        table.add_column(
            column,
            justify="right" if column in ("attempts", "latency ms") else "left",
            overflow="fold",
            no_wrap=column == "time",
        )
    styles = {"delivered": "green", "duplicate": "cyan", "dead_lettered": "bold red", "retry_scheduled": "yellow"}
    for hop in hops:
        outcome = hop.outcome + (f" (replay {hop.replay_id[:8]})" if hop.replay_id else "")
        table.add_row(
            hop.at.replace("+00:00", "Z"),
            hop.integration,
            Text(outcome, style=styles.get(hop.outcome, "")),
            "-" if hop.attempts is None else str(hop.attempts),
            "-" if hop.latency_ms is None else str(hop.latency_ms),
            hop.reason or "-",
            _ids(hop.target_ids),
            hop.delivery_id or "-",
        )
    out().print(table)


def main() -> None:
    app(prog_name="junction")


if __name__ == "__main__":
    main()
