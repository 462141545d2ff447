"""The root of the ``junction`` command line and what every command group shares: the global
options (where the CLI points), the one place operator-facing errors become one line, and the
table formatting.

Command groups live in modules of their own (``ops.cli`` for the core commands and ``dlq``) and
import only this module, so a new group registers in ``ops.cli`` with ``app.add_typer(...)``
without an import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
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
from rich.table import Table
from typer.core import TyperGroup

from .commands import MISSING_QUEUE_CODES
from .context import Clients, OpsError, Target, resolve_target

MISSING_RESOURCE_CODES = MISSING_QUEUE_CODES | {"ResourceNotFoundException"}
CREDENTIAL_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "AccessDenied"}
)


# Piped or redirected output is for grep and scripts: tables as wide as their content, never
# wrapped at 80 columns (which cuts ids in two), and no cell clipped or folded (``piped``).
PIPED_WIDTH = 20_000


class _PipedConsole(Console):
    """A console for pipes: a table's title is never wrapped to the table's width either."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for thing in objects:
            if isinstance(thing, Table) and thing.title is not None:
                wanted = len(str(thing.title)) + 4
                thing.min_width = max(thing.min_width or 0, wanted)
        super().print(*objects, **kwargs)


def out() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = _PipedConsole(highlight=False, width=PIPED_WIDTH)
    return console


def piped() -> bool:
    """Whether stdout is a pipe or a file: then nothing is clipped to fit a screen."""
    return not Console().is_terminal


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "as_json"):
        return value.as_json()
    return str(value)


def emit_json(document: Any) -> None:
    """One JSON document on stdout (``--json``)."""
    typer.echo(json.dumps(document, indent=2, default=_json_default))


def emit_jsonl(documents: Iterable[Any]) -> None:
    """JSON Lines on stdout: one compact document per line (streams: history events)."""
    for document in documents:
        typer.echo(json.dumps(document, separators=(",", ":"), default=_json_default))


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (one document) on stdout instead of tables.")]


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
            help="Local stack (.junction/local.json) or AWS. Default: $JUNCTION_OPS_ON, else local if it runs.",
        ),
    ] = None,
) -> None:
    ctx.obj = Options(local, stage)


def global_options(ctx: typer.Context) -> Options:
    """The global options, from any command or sub-command."""
    root = ctx.find_root()
    if not isinstance(root.obj, Options):
        root.obj = Options(None, None)
    return root.obj


# -- formatting --------------------------------------------------------------------------------
def fmt_age(seconds: float | None) -> str:
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


def fmt_when(at: datetime | str | None, now: datetime | None = None) -> str:
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
    return f"{at.isoformat(timespec='seconds')} ({fmt_age(max(0.0, ago))} ago)"


def fmt_ids(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "-"


def fmt_clip(text: str, width: int = 80) -> str:
    """One line; clipped to ``width`` on a terminal, whole when piped (grep finds every word)."""
    text = " ".join(text.split())
    return text if len(text) <= width or piped() else text[: width - 1] + "…"
