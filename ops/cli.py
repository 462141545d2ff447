"""``junction``: the operator's command line, against the local stack or a deployed stage.

A thin layer: options in, plain functions (ops.commands, ops.dlq) called, rich tables out.
Errors an operator can act on print as one line on stderr with exit code 1 (``ops.app``).
Queues, DLQs, breakers and last successes are per target of an integration: the commands that
act on one queue take ``<integration> [--target T]`` (the target may be left out when the
integration has only one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import auditing, commands, dlq, observe
from .app import JsonOption, app, emit_json, err, fmt_age, fmt_clip, fmt_ids, fmt_when, global_options, out, piped
from .context import OpsError
from .sync import sync_app

__all__ = ["app", "main"]

TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="The integration's target (required when it has several)."),
]

# Command groups: each a Typer app of its own, registered here under its name.
dlq_app = typer.Typer(help="Inspect and redrive dead-letter queues (one per target).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(sync_app, name="sync")
app.add_typer(observe.breaker_app, name="breaker")


# -- integrations ------------------------------------------------------------------------------
@app.command()
def integrations(as_json: JsonOption = False) -> None:
    """List the declared integrations, one row per target."""
    if as_json:
        emit_json([dataclasses.asdict(row) for row in commands.integration_rows()])
        return
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
    target: TargetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per integration and target: queue depths, DLQ depth, oldest message, breaker, last success."""
    chosen = commands.every_target(integration, target)
    options = global_options(ctx)
    where, clients = options.target, options.clients
    rows: list[commands.QueueStatus] = []
    table = Table(title=f"Status ({where.kind}, stage {where.stage})")
    columns = (
        "integration",
        "target",
        "visible",
        "in flight",
        "delayed",
        "DLQ",
        "oldest message",
        "breaker",
        "last success",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in ("visible", "in flight", "delayed", "DLQ") else "left")
    for i, t in chosen:
        s = commands.queue_status(
            clients.sqs,
            clients.dynamodb,
            where.stage,
            i,
            t,
            cloudwatch=None if where.is_local else clients.cloudwatch,
        )
        rows.append(s)
        table.add_row(
            s.integration,
            s.target,
            str(s.visible),
            str(s.in_flight),
            str(s.delayed),
            Text(str(s.dlq_depth), style="bold red" if s.dlq_depth else "green"),
            fmt_age(s.oldest_age_seconds),
            _breaker(s.breaker, s.breaker_open_until),
            fmt_when(s.last_success) if s.last_success else "never",
        )
    if as_json:
        emit_json([dataclasses.asdict(r) for r in rows])
        return
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
    target: TargetOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Peek at most this many messages per DLQ.")] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Peek at DLQ messages (they stay in the DLQ), grouped by reason."""
    chosen = commands.one_queue_each(integration, target)
    options = global_options(ctx)
    where, clients = options.target, options.clients
    console = out()
    documents: list[dict[str, Any]] = []
    for i, t in chosen:
        name = f"{i.name}/{t.name}"
        messages = dlq.peek(clients.sqs, where.stage, i, t, limit=limit)
        if as_json:
            documents.append(
                {
                    "integration": i.name,
                    "target": t.name,
                    "count": len(messages),
                    "limited": len(messages) >= limit,
                    "by_reason": [dataclasses.asdict(g) for g in dlq.group_by_reason(messages)],
                    "messages": [_message_json(m) for m in messages],
                }
            )
            continue
        if not messages:
            console.print(f"{name}: DLQ empty", style="green", markup=False)
            continue
        groups = Table(title=f"{name}: {len(messages)} message(s) in the DLQ")
        for column in ("reason", "count", "oldest failed-at", "sample entity ids"):
            groups.add_column(column, justify="right" if column == "count" else "left")
        for g in dlq.group_by_reason(messages):
            groups.add_row(g.reason, str(g.count), fmt_when(g.oldest_failed_at), ", ".join(g.sample_entity_ids) or "-")
        console.print(groups)
        console.print(_message_table(messages, f"{name}: messages"))
        if len(messages) >= limit:
            console.print(f"(showing the first {limit}; raise --limit to see more)", style="yellow", markup=False)
    if as_json:
        emit_json(documents)


def _message_json(m: dlq.DlqMessage, *, body: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "integration": m.integration,
        "target": m.target,
        "message_id": m.message_id,
        "reason": m.reason,
        "last_reason": m.last_reason,
        "error": m.error,
        "entity_ids": m.entity_ids,
        "attempts": m.attempts,
        "failed_at": m.failed_at.isoformat() if m.failed_at else None,
    }
    if body:
        check = m.claim_check
        doc["attributes"] = m.attributes
        doc["system"] = m.system
        doc["claim_check"] = dataclasses.asdict(check) if check is not None else None
        doc["body"] = _decoded_body(m.body) if _decoded_body(m.body) is not None else m.body
    return doc


def _message_table(messages: list[dlq.DlqMessage], title: str) -> Table:
    table = Table(title=title)
    for column in ("message id", "reason", "entity ids", "attempts", "failed at", "error"):
        if column == "message id":
            table.add_column(column, no_wrap=True, min_width=36)
        else:
            table.add_column(column, overflow="ellipsis" if column != "entity ids" and not piped() else "fold")
    ordered = sorted(messages, key=lambda m: m.failed_at or datetime.min.replace(tzinfo=UTC))
    for m in ordered:
        reason = f"{m.reason} ({m.last_reason})" if m.last_reason else m.reason
        at = m.failed_at.isoformat(timespec="seconds") if m.failed_at else "-"
        attempts = "-" if m.attempts is None else str(m.attempts)
        table.add_row(m.message_id, reason, fmt_ids(m.entity_ids), attempts, at, fmt_clip(m.error, 60))
    return table


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(help="The DLQ message id (see `junction dlq list`).")],
    integration: Annotated[str | None, typer.Option(help="Look only in this integration's DLQ.")] = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
) -> None:
    """One DLQ message: every attribute and the event, pretty-printed."""
    chosen = commands.one_queue_each(integration, target)
    options = global_options(ctx)
    message = dlq.find(options.clients.sqs, options.target.stage, chosen, message_id)
    if as_json:
        emit_json(_message_json(message, body=True))
        return
    console = out()
    table = Table(title=f"{message.integration}/{message.target}: message {message.message_id}", show_header=False)
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
    target: TargetOption = None,
    reason: Annotated[
        str | None, typer.Option(help="Only this reason (also matches the last reason of retries_exhausted).")
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Only messages about this entity id (any id value).")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Only messages that failed at least this long ago: 10m, 2h, 1d.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Messages per second.")] = 10.0,
    limit: Annotated[int, typer.Option(min=1, help="Look at most at this many messages per DLQ.")] = 10_000,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would move; move nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Move DLQ messages back to their target's queue, all of them or those matching the filters."""
    chosen = commands.one_queue_each(integration, target)
    flt = dlq.Filter(reason=reason, entity=entity, older_than=_duration(older_than))
    if rate <= 0:
        raise OpsError("--rate must be above 0")
    options = global_options(ctx)
    where, clients = options.target, options.clients
    names = ", ".join(f"{i.name}/{t.name}" for i, t in chosen)
    if not dry_run and not yes:
        typer.confirm(
            f"Redrive {flt.describe()} from the DLQ of {names} ({where.kind}, stage {where.stage})?", abort=True
        )
    console = err() if as_json else out()
    results: list[dlq.RedriveResult] = []
    filters = {"reason": reason, "entity": entity, "older_than": older_than, "rate": rate, "limit": limit}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=False,
    ) as progress:
        for i, t in chosen:
            task = progress.add_task(f"{i.name}/{t.name}", total=None)

            def update(done: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=done, total=total)

            with contextlib.ExitStack() as recording:
                if not dry_run:  # a dry run changes nothing: no audit record
                    action = recording.enter_context(
                        auditing.acting(
                            clients.dynamodb, where, "dlq.redrive", integration=i.name, target=t.name, filters=filters
                        )
                    )
                moved = dlq.redrive(
                    clients.sqs,
                    where.stage,
                    i,
                    t,
                    flt,
                    rate=rate,
                    dry_run=dry_run,
                    limit=limit,
                    progress=update,
                    move_sqs=clients.sqs_once,
                )
                if not dry_run:
                    action.count = moved.moved
                    action.details.update(method=moved.method, skipped=moved.skipped)
            results.append(moved)
            last = results[-1]
            done = last.moved + last.skipped + (len(last.matched) if dry_run else 0)
            progress.update(task, total=done, completed=done)
    if as_json:
        emit_json(
            [
                {
                    "integration": r.integration,
                    "target": r.target,
                    "method": r.method,
                    "moved": r.moved,
                    "skipped": r.skipped,
                    "matched": [_message_json(m) for m in r.matched] if r.method == "dry-run" else [],
                }
                for r in results
            ]
        )
        return
    for result in results:
        name = f"{result.integration}/{result.target}"
        if result.method == "dry-run":
            if result.matched:
                console.print(_message_table(result.matched, f"{name}: would move"))
            console.print(
                f"{name}: dry run, {len(result.matched)} would move, {result.skipped} would stay; nothing moved",
                markup=False,
                soft_wrap=True,
            )
        else:
            how = "message move task" if result.method == "move-task" else f"filter: {flt.describe()}"
            console.print(
                f"{name}: moved {result.moved}, skipped {result.skipped} ({how})",
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
    entity_id: Annotated[
        str | None,
        typer.Argument(help="The entity, as in its trace: e.g. shopify-order:123 (not with --since/--until)."),
    ] = None,
    integration: Annotated[str | None, typer.Option(help="Replay into this integration (default: the latest).")] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Only the effect recorded by this target (default: the latest); with --since/--until, "
            "the one target to backfill.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Backfill: entities delivered at or after this ISO time.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Backfill: ... and before this ISO time.")] = None,
    bypass_idempotency: Annotated[
        bool, typer.Option("--bypass-idempotency", help="Make the effect again (a new replay id).")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation; a backfill sends (not a dry run).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Send an entity's recorded event again to the queue of the target that recorded it; or, with
    --since/--until --target, backfill one target with every entity delivered in the window."""
    if since is not None or until is not None:
        _backfill(
            ctx,
            entity_id,
            integration,
            target,
            since,
            until,
            bypass_idempotency=bypass_idempotency,
            yes=yes,
            as_json=as_json,
        )
        return
    if entity_id is None:
        raise OpsError("pass an entity id, or --since and --until with --target to backfill a target")
    if integration:
        chosen = commands.integration(integration)
        if target is not None:
            commands.target_of(chosen, target)
    options = global_options(ctx)
    where, clients = options.target, options.clients
    event = commands.recorded_event(
        clients.dynamodb, where.stage, entity_id, integration_name=integration, target_name=target
    )
    if bypass_idempotency and not yes:
        typer.confirm(
            f"Replay {entity_id} into {event.integration.name}/{event.target.name} as a NEW effect "
            f"({event.target.name} receives it again)?",
            abort=True,
        )
    with auditing.acting(
        clients.dynamodb,
        where,
        "replay",
        integration=event.integration.name,
        target=event.target.name,
        filters={"entity": entity_id, "bypass_idempotency": bypass_idempotency},
    ) as action:
        result = commands.replay(
            clients.sqs,
            clients.dynamodb,
            where.stage,
            entity_id,
            bypass_idempotency=bypass_idempotency,
            event=event,
        )
        action.count = 1
        action.details.update(message_id=result.message_id, record_key=result.record_key, replay_id=result.replay_id)
    if as_json:
        emit_json(dataclasses.asdict(result) | {"entity_id": entity_id, "delivery_id": event.envelope.delivery_id})
        return
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


def _backfill(
    ctx: typer.Context,
    entity_id: str | None,
    integration: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    *,
    bypass_idempotency: bool,
    yes: bool,
    as_json: bool = False,
) -> None:
    """``replay --since --until --target``: a dry run unless ``--yes``."""
    if entity_id is not None:
        raise OpsError("an entity id or --since/--until, not both: a backfill takes every entity in the window")
    if since is None or until is None:
        raise OpsError("a backfill needs both --since and --until")
    if target is None:
        raise OpsError("a backfill needs --target: the one target to send the window's events to")
    if bypass_idempotency:
        raise OpsError("--bypass-idempotency is for one entity: a backfill keeps idempotency")
    options = global_options(ctx)
    where, clients = options.target, options.clients
    plan = commands.backfill_plan(clients.dynamodb, where.stage, since, until, target, integration_name=integration)
    console = err() if as_json else out()
    window = f"{plan.since} to {plan.until}"
    document: dict[str, Any] = {
        "target": plan.target,
        "since": plan.since,
        "until": plan.until,
        "dry_run": not yes,
        "entities": plan.entities,
        "events": [
            {
                "entity_id": e.entity_id,
                "integration": e.integration.name,
                "target": e.target.name,
                "business_key": e.business_key,
                "delivery_id": e.envelope.delivery_id,
                "already_at_target": e.at_target,
            }
            for e in plan.events
        ],
        "skipped": [{"entity_id": entity, "why": why} for entity, why in plan.skipped],
        "sent": [],
    }
    if not plan.entities:
        console.print(f"no entity delivered from {window}: nothing to send", markup=False, soft_wrap=True)
        if as_json:
            emit_json(document)
        return
    for entity, why in plan.skipped:
        err().print(f"skipped {entity}: {why}", style="yellow", markup=False, soft_wrap=True)
    already = sum(1 for e in plan.events if e.at_target)
    counted = f"{len(plan.events)} event(s) of {len(plan.entities)} entities delivered from {window}" + (
        f" ({already} already made at {target}: duplicates there)" if already else ""
    )
    if not yes:
        if plan.events:
            console.print(_backfill_table(plan))
        console.print(
            f"dry run: {counted} would go to {target}; nothing sent. Pass --yes to send.",
            markup=False,
            soft_wrap=True,
        )
        if as_json:
            emit_json(document)
        return
    filters = {"since": plan.since, "until": plan.until, "target": target, "integration": integration}
    with auditing.acting(
        clients.dynamodb, where, "replay.backfill", integration=integration, target=target, filters=filters
    ) as action:
        done = commands.backfill(clients.sqs, where.stage, plan)
        action.count = sum(s.sent for s in done)
        action.details.update(entities=len(plan.entities), queues={s.queue: s.sent for s in done})
    document["sent"] = [dataclasses.asdict(s) for s in done]
    if as_json:
        emit_json(document)
        return
    for sent in done:
        console.print(
            f"{sent.integration}/{sent.target}: sent {sent.sent} to {sent.queue}", markup=False, soft_wrap=True
        )
    console.print(
        f"sent {counted}. Idempotency kept: an effect {target} already made is a duplicate there.",
        markup=False,
        soft_wrap=True,
    )


def _backfill_table(plan: commands.BackfillPlan) -> Table:
    table = Table(title=f"Backfill of {plan.target}: would send")
    for column in ("entity", "effect", "to", "event (delivery id)", "already at target"):
        table.add_column(column, overflow="fold")
    for e in plan.events:
        table.add_row(
            e.entity_id,
            e.business_key,
            f"{e.integration.name}/{e.target.name}",
            e.envelope.delivery_id,
            "yes (duplicate)" if e.at_target else "no",
        )
    return table


# -- trace -------------------------------------------------------------------------------------
@app.command()
def trace(
    ctx: typer.Context,
    any_id: Annotated[
        str,
        typer.Argument(
            help="The entity (shopify-order:123), or its id in any system: an ERP DocEntry, a HubSpot deal or "
            "contact id, a ShipBob order id, the shop's order id."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Every hop recorded for an entity, oldest first, below its ids in every system."""
    options = global_options(ctx)
    traces = commands.traces_of(options.clients.dynamodb, options.target.stage, any_id)
    if as_json:
        typer.echo(json.dumps([t.as_json() for t in traces], indent=2))
        return
    console = out()
    for found in traces:
        if found.matched_as:
            console.print(
                f"{any_id} is the {' and '.join(found.matched_as)} of {found.entity_id}", markup=False, soft_wrap=True
            )
        console.print(_xref_table(found))
        if found.hops:
            console.print(_hop_table(found))
        else:
            console.print(f"no hops left in the trace of {found.entity_id} (expired)", style="yellow", markup=False)


def _xref_table(found: commands.EntityTrace) -> Table:
    title = f"Cross-reference of {found.entity_id}"
    table = Table(title=title, min_width=len(title) + 4)  # the title on one line: tests and greps find it
    table.add_column("system id")
    table.add_column("value", overflow="fold")
    for kind, value in sorted(found.ids.items()):
        table.add_row(kind, value)
    if not found.ids:
        table.add_row("-", "no hop has recorded ids yet")
    return table


def _hop_table(found: commands.EntityTrace) -> Table:
    table = Table(title=f"Trace of {found.entity_id}")
    columns = (
        "time",
        "integration",
        "target",
        "outcome",
        "attempts",
        "latency ms",
        "reason",
        "target ids",
        "delivery id",
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in ("attempts", "latency ms") else "left",
            overflow="fold",
            no_wrap=column == "time",
        )
    styles = {"delivered": "green", "duplicate": "cyan", "dead_lettered": "bold red", "retry_scheduled": "yellow"}
    for hop in found.hops:
        outcome = hop.outcome + (f" (replay {hop.replay_id[:8]})" if hop.replay_id else "")
        table.add_row(
            hop.at.replace("+00:00", "Z"),
            hop.integration,
            hop.target or "-",
            Text(outcome, style=styles.get(hop.outcome, "")),
            "-" if hop.attempts is None else str(hop.attempts),
            "-" if hop.latency_ms is None else str(hop.latency_ms),
            hop.reason or "-",
            fmt_ids(hop.target_ids),
            hop.delivery_id or "-",
        )
    return table


# -- console -----------------------------------------------------------------------------------
@app.command("console")
def console_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs --allow-remote.")] = (
        "127.0.0.1"
    ),
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a --host other than loopback: anyone with the token can redrive."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A web console on 127.0.0.1: status, dead letters (inspect, redrive), trace and sync.
    With --json, its address and token are printed as one JSON line."""
    from . import console as web  # loaded only for this command: the CLI's start stays light

    web.check_bind(host, allow_remote=allow_remote)  # before the target: a refused address needs no AWS
    options = global_options(ctx)
    backend = web.OpsBackend(options.target, options.clients)
    web.run(host, port, allow_remote=allow_remote, backend=backend, as_json=as_json)


def main() -> None:
    app(prog_name="junction")


if __name__ == "__main__":
    main()
