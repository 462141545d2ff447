"""``junction history``, ``junction cost``, ``junction audit`` and ``junction breaker``.

The logic is elsewhere (``shared.history``, ``ops.cost``, ``shared.audit``, the breaker's item of
``shared.breaker``); these commands choose, print tables or ``--json``, and record the breaker
overrides they make.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.table import Table
from rich.text import Text

from functions import registry
from shared import audit, history, state_keys
from shared.breaker import CLOSED, OPEN
from shared.declaration import state_table_name

from . import auditing, commands
from . import cost as costs
from .app import JsonOption, app, emit_json, emit_jsonl, global_options, out
from .context import OpsError
from .prices import PRICES_AS_OF, REGION

breaker_app = typer.Typer(
    help="Override a target's circuit breaker: open it (hold deliveries), close it, or reset it.",
    no_args_is_help=True,
)

_STYLES = {"delivered": "green", "duplicate": "cyan", "retried": "yellow", "dead_lettered": "bold red", "failed": "red"}


def _time(value: str, option: str, now: datetime) -> datetime:
    try:
        return history.parse_time(value, now=now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def history_index(ddb: Any, table: str) -> str | None:
    """The history index when the stage's state table has it (else deliveries are scanned)."""
    try:
        described = ddb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError):
        return None
    names = {str(i.get("IndexName")) for i in described.get("GlobalSecondaryIndexes") or []}
    return history.HISTORY_INDEX if history.HISTORY_INDEX in names else None


# -- history -----------------------------------------------------------------------------------
@app.command("history")
def history_command(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The integration.")],
    since: Annotated[str, typer.Option(help="From: an ISO time, or a duration back from now (2h, 7d).")] = "1h",
    until: Annotated[str | None, typer.Option(help="To (excluded): ISO time or duration back. Default: now.")] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these outcomes (repeatable): delivered, duplicate, retried, dead_lettered, or a poller "
            "run's caught_up, deadline, failed, overlap, lost_lease."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events: the newest.")] = 1000,
    max_scan: Annotated[
        int, typer.Option("--max-scan", min=1, help="Without the history index: read at most this many items.")
    ] = history.DEFAULT_MAX_SCANNED,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or jsonl.")] = "table",
    as_json: JsonOption = False,
) -> None:
    """Deliveries to each target (delivered, duplicate, retried, dead-lettered, with reason and
    business/system class) and poller runs, oldest first."""
    chosen = commands.integration(integration)
    if fmt not in ("table", "csv", "jsonl"):
        raise typer.BadParameter("use table, csv or jsonl", param_hint="--format")
    known = set(history.DELIVERY_OUTCOMES) | set(history.RUN_OUTCOMES)
    for o in outcome or []:
        if o not in known:
            raise typer.BadParameter(f"{o!r} is not an outcome ({', '.join(sorted(known))})", param_hint="--outcome")
    now = datetime.now(UTC)
    low = _time(since, "--since", now)
    high = _time(until, "--until", now) if until else now
    if low >= high:
        raise OpsError(f"--since {since} is not before --until {until or 'now'}: the window is empty")
    options = global_options(ctx)
    ddb, table = options.clients.dynamodb, state_table_name(options.target.stage)
    page = history.read(
        ddb,
        table,
        chosen.name,
        low,
        high,
        outcomes=outcome or None,
        limit=limit,
        index=history_index(ddb, table),
        max_scanned=max_scan,
    )
    notes = _notes(page, limit)
    if as_json:
        emit_json({"integration": chosen.name, "since": history.iso(low), "until": history.iso(high)} | page.as_json())
        return
    for note in notes:
        typer.echo(note, err=True)
    if fmt == "jsonl":
        emit_jsonl(e.as_json() for e in page.events)
        return
    if fmt == "csv":
        import csv
        import sys

        columns = [*history.HistoryEvent("", "delivery", "", "").as_json().keys(), "run_id", "pages", "changes"]
        columns = list(dict.fromkeys([*columns, "ended_at", "rejected", "error"]))
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for e in page.events:
            writer.writerow({k: ("" if v is None else v) for k, v in e.as_json().items()})
        return
    console = out()
    totals = Table(title=f"History of {chosen.name}: {history.iso(low)} to {history.iso(high)}")
    for column in ("target", *history.DELIVERY_OUTCOMES, "business", "system", "poller runs"):
        totals.add_column(column, justify="left" if column == "target" else "right")
    for target, row in sorted(history.counts(page.events).items()):
        runs = sum(v for k, v in row.items() if k in history.RUN_OUTCOMES)
        totals.add_row(
            target,
            *(str(row.get(o, 0)) for o in history.DELIVERY_OUTCOMES),
            str(row.get("business", 0)),
            str(row.get("system", 0)),
            str(runs),
        )
    console.print(totals)
    listing = Table(title=f"Events of {chosen.name} ({len(page.events)})")
    for column in ("time", "kind", "target", "outcome", "reason", "class", "entity / run", "attempts", "detail"):
        listing.add_column(column, no_wrap=column == "time", overflow="fold")
    for e in page.events:
        detail = (
            f"delivery {e.delivery_id}" + (f" (replay {e.replay_id})" if e.replay_id else "")
            if e.kind == "delivery"
            else f"{e.pages or 0} page(s), {e.changes or 0} change(s)" + (f": {e.error}" if e.error else "")
        )
        listing.add_row(
            e.at.replace("+00:00", "Z"),
            "delivery" if e.kind == "delivery" else "poller run",
            e.target or "-",
            Text(e.outcome, style=_STYLES.get(e.outcome, "")),
            e.reason or "-",
            e.error_class or "-",
            (e.entity_id if e.kind == "delivery" else e.run_id) or "-",
            "-" if e.attempts is None else str(e.attempts),
            detail,
        )
    console.print(listing)


def _notes(page: history.HistoryPage, limit: int) -> list[str]:
    notes: list[str] = []
    if page.method == "scan":
        notes.append(
            f"deliveries read by a Scan of the state table ({page.scanned:,} items read): "
            "the stage has no history index"
        )
    if not page.complete:
        notes.append("the Scan stopped at --max-scan before the table's end: narrow the window or raise --max-scan")
    if page.limited:
        notes.append(f"more than {limit} events: the newest {limit} shown; pass --until <the oldest shown> for earlier")
    return notes


# -- audit -------------------------------------------------------------------------------------
@app.command("audit")
def audit_command(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From: an ISO time, or a duration back from now (2h, 7d).")] = "7d",
    action: Annotated[str | None, typer.Option(help="Only this action (dlq.redrive) or family (sync).")] = None,
    integration: Annotated[str | None, typer.Option(help="Only actions on this integration.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Who did what to the stage: every redrive, replay, backfill, cursor reset and breaker override."""
    now = datetime.now(UTC)
    low = _time(since, "--since", now)
    options = global_options(ctx)
    table_name = state_table_name(options.target.stage)
    found = list(audit.records(options.clients.dynamodb, table_name, low, now, action=action, integration=integration))
    if as_json:
        emit_json([r.as_json() for r in found])
        return
    table = Table(title=f"Audit ({options.target.kind}, stage {options.target.stage}) since {history.iso(low)}")
    for column in ("time", "who", "action", "integration", "target", "count", "filters", "outcome", "details"):
        table.add_column(column, overflow="fold", no_wrap=column == "time")
    for r in found:
        table.add_row(
            r.at.replace("+00:00", "Z"),
            r.who,
            r.action,
            r.integration or "-",
            r.target or "-",
            "-" if r.count is None else str(r.count),
            ", ".join(f"{k}={v}" for k, v in r.filters.items()) or "-",
            Text(r.outcome, style="green" if r.outcome == "done" else "bold red"),
            ", ".join(f"{k}={v}" for k, v in r.details.items()) or "-",
        )
    out().print(table)


# -- cost --------------------------------------------------------------------------------------
@app.command("cost")
def cost_command(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From: an ISO time, or a duration back from now (24h, 30d).")] = "24h",
    model: Annotated[
        bool, typer.Option("--model", help="Only the modelled order to one target (no stack needed).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Cost per integration per million events, from counted requests x the prices in ops/prices.py."""
    modelled = {api: costs.order_to_one_target(costs.OrderProfile(api=api)) for api in ("rest", "http")}
    if model:
        if as_json:
            emit_json({"order_to_one_target": {api: c.as_json() for api, c in modelled.items()}})
            return
        _print_model(modelled)
        return
    now = datetime.now(UTC)
    low = _time(since, "--since", now)
    options = global_options(ctx)
    where = options.target
    if where.is_local:
        if where.state_file is None:
            raise OpsError("no local state file: start the local stack with `make up`")
        try:
            counts = costs.read_local_counts(where.state_file)
        except OSError as exc:
            raise OpsError(f"the local runtime's counters are unreachable: {exc} (start it with `make up`)") from None
        ddb, table = options.clients.dynamodb, state_table_name(where.stage)
        events: dict[str, int] = {}
        for i in registry.INTEGRATIONS:
            page = history.read(ddb, table, i.name, low, now, runs=False)
            events[i.name] = len({e.delivery_id for e in page.events if e.delivery_id})
        usage = costs.local_usage(counts, registry.INTEGRATIONS, events)
        source = "local runtime counters (since it started; events from the trace in the window)"
    else:
        usage = costs.aws_usage(options.clients.cloudwatch, where.stage, registry.INTEGRATIONS, low, now)
        source = "CloudWatch GetMetricData"
    rows = {name: costs.cost(u) for name, u in usage.items()}
    if as_json:
        emit_json(
            {
                "stage": where.stage,
                "since": history.iso(low),
                "until": history.iso(now),
                "source": source,
                "prices_as_of": PRICES_AS_OF,
                "region": REGION,
                "integrations": {name: c.as_json() for name, c in rows.items()},
                "order_to_one_target": {api: c.as_json() for api, c in modelled.items()},
            }
        )
        return
    report = Table(title=f"Cost ({where.kind}, stage {where.stage}) since {history.iso(low)}: {source}")
    for column in ("integration", "events", "USD", "USD per 1M events", "largest item"):
        report.add_column(column, justify="left" if column in ("integration", "largest item") else "right")
    for name, c in rows.items():
        lines = c.per_million_lines()
        top = max(lines, key=lambda k: lines[k]) if lines else None
        per = c.per_million
        report.add_row(
            name,
            costs.usd(c.events, "1"),
            costs.usd(c.total),
            "-" if per is None else costs.usd(per, "0.01"),
            f"{top} ({costs.usd(lines[top], '0.01')})" if top else "-",
        )
    out().print(report)
    _print_model(modelled)


def _print_model(modelled: dict[str, costs.Cost]) -> None:
    table = Table(title=f"Modelled: 1M orders from webhook to one target (prices {REGION}, {PRICES_AS_OF})")
    table.add_column("item")
    for api in modelled:
        table.add_column(f"USD, {api.upper()} API", justify="right")
    names = list(next(iter(modelled.values())).lines)
    for name in names:
        table.add_row(name, *(costs.usd(c.lines[name], "0.01") for c in modelled.values()))
    table.add_row("total", *(costs.usd(c.total, "0.01") for c in modelled.values()))
    out().print(table)


# -- breaker -----------------------------------------------------------------------------------
TargetOption = Annotated[str | None, typer.Option("--target", help="The target (required when there are several).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _breaker(
    ctx: typer.Context, verb: str, integration: str, target: str | None, seconds: int, yes: bool, as_json: bool
) -> None:
    chosen = commands.integration(integration)
    t = commands.target_of(chosen, target)
    options = global_options(ctx)
    where, ddb = options.target, options.clients.dynamodb
    before = commands.breaker_state(ddb, where.stage, chosen, t)
    if not yes:
        what = {"open": f"Open the breaker of {chosen.name}/{t.name} for {seconds} s (deliveries wait)"}.get(
            verb, f"{verb.capitalize()} the breaker of {chosen.name}/{t.name} (deliveries run)"
        )
        typer.confirm(f"{what} ({where.kind}, stage {where.stage})?", abort=True)
    pk, sk = state_keys.breaker(chosen.name, t.name)
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    table = state_table_name(where.stage)
    now = time.time()
    with auditing.acting(
        ddb, where, f"breaker.{verb}", integration=chosen.name, target=t.name, filters={"seconds": seconds}
    ) as action:
        if verb == "open":
            ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #s = :o, open_until = :until, open_seconds = :secs, opened_at = :now, "
                "failures = :zero, overridden = :yes REMOVE probe_until",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":o": {"S": OPEN},
                    ":until": {"N": str(round(now + seconds, 3))},
                    ":secs": {"N": str(seconds)},
                    ":now": {"N": str(round(now, 3))},
                    ":zero": {"N": "0"},
                    ":yes": {"BOOL": True},
                },
            )
        elif verb == "close":
            ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #s = :c, failures = :zero, open_seconds = :zero, overridden = :yes "
                "REMOVE open_until, probe_until",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":c": {"S": CLOSED}, ":zero": {"N": "0"}, ":yes": {"BOOL": True}},
            )
        else:
            ddb.delete_item(TableName=table, Key=key)
        after = commands.breaker_state(ddb, where.stage, chosen, t)
        action.details.update(before=before["breaker"], after=after["breaker"])
    document = {"integration": chosen.name, "target": t.name, "before": before, "after": after}
    if as_json:
        emit_json(document)
        return
    until = after.get("breaker_open_until")
    left = f" until {datetime.fromtimestamp(until, UTC).isoformat(timespec='seconds')}" if until else ""
    out().print(
        f"breaker of {chosen.name}/{t.name}: {before['breaker']} -> {after['breaker']}{left}",
        markup=False,
        soft_wrap=True,
    )


@breaker_app.command("open")
def breaker_open(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The integration.")],
    target: TargetOption = None,
    seconds: Annotated[int, typer.Option("--for", min=1, max=86_400, help="Seconds to hold it open.")] = 900,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Open the breaker: the target's processors stop calling it; messages wait in the queue."""
    _breaker(ctx, "open", integration, target, seconds, yes, as_json)


@breaker_app.command("close")
def breaker_close(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The integration.")],
    target: TargetOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Close the breaker: deliveries run again at once (its failure count starts from zero)."""
    _breaker(ctx, "close", integration, target, 0, yes, as_json)


@breaker_app.command("reset")
def breaker_reset(
    ctx: typer.Context,
    integration: Annotated[str, typer.Argument(help="The integration.")],
    target: TargetOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Forget the breaker's state: as if the target had never failed (closed, no failures)."""
    _breaker(ctx, "reset", integration, target, 0, yes, as_json)
