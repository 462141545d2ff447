"""``junction console``: a small web console over the same operations as the CLI.

A JSON API and a static page (``ops/console_assets``, no build step, nothing from a CDN), served
by the standard library's ``ThreadingHTTPServer``. Every answer comes from the functions the CLI
calls (``ops.commands``, ``ops.dlq``, ``ops.sync``), against the local stack or a deployed stage,
resolved as the CLI resolves it (``ops.context``).

Security, because a DLQ holds customers' data and a redrive changes what targets receive:

- It binds 127.0.0.1 by default. Any other address needs ``--host`` and ``--allow-remote``; a
  wildcard address (0.0.0.0, ::) is refused, since the Host check needs the one name clients use.
- Every request's Host header must be the bound host:port (``localhost:port`` too on loopback):
  a page on another name that rebinds its DNS to 127.0.0.1 is answered 403 (DNS rebinding).
- GETs only read (a DLQ peek hands its messages straight back). Every POST needs the token
  printed at start (``secrets.token_urlsafe``) in the ``X-Junction-Token`` header, a JSON body,
  and, when the browser says where it comes from (Origin, Sec-Fetch-Site), this very origin.
- No CORS headers: another origin's page cannot read an answer. A strict Content-Security-Policy:
  the page runs only its own script, and renders every value as text.

A redrive takes two steps, as the CLI's confirmation does: the preview (a dry run) lists the
messages that match the filter and their count; the redrive then moves exactly those messages
(by id), never one that arrived in the DLQ after the operator confirmed.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import secrets
import shutil
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .context import Clients, OpsError, Target, resolve_target

if TYPE_CHECKING:
    from .dlq import DlqMessage

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_HEADER = "X-Junction-Token"  # noqa: S105 (a header name)
ASSETS = Path(__file__).with_name("console_assets")
ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
MAX_BODY_BYTES = 1 << 20
MAX_REDRIVE_IDS = 10_000
MAX_RATE = 500.0  # SQS's own ceiling for a message move task; the manual path is slower anyway
ERROR_CLASS_ATTRIBUTE = "junction-error-class"
UNCLASSIFIED = "unclassified"  # a dead letter from before the class was recorded
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class NotFound(OpsError):
    """What was asked for does not exist (a message id, a trace): answered 404."""


class BadRequest(OpsError):
    """The request itself is wrong (a missing or mistyped field): answered 400."""


# -- the operations the console needs ----------------------------------------------------------
class Backend(Protocol):
    """What the console asks for, as JSON-ready values. ``OpsBackend`` is the real one."""

    def describe(self) -> dict[str, Any]: ...
    def integrations(self) -> list[dict[str, Any]]: ...
    def status(self) -> list[dict[str, Any]]: ...
    def dead_letters(self, integration: str | None, target: str | None, limit: int) -> list[dict[str, Any]]: ...
    def message(self, message_id: str, integration: str | None, target: str | None) -> dict[str, Any]: ...
    def redrive_preview(self, selection: Selection) -> list[dict[str, Any]]: ...
    def redrive(
        self, selection: Selection, chosen: Mapping[tuple[str, str], Sequence[str]]
    ) -> list[dict[str, Any]]: ...
    def trace(self, any_id: str) -> list[dict[str, Any]]: ...
    def sync(self) -> list[dict[str, Any]]: ...
    def describe_error(self, exc: BaseException) -> str | None: ...


@dataclass(frozen=True)
class Selection:
    """Which dead letters a redrive takes: the CLI's filters (``reason`` matches the reason or
    the last reason of ``retries_exhausted``), an error class, and the queues."""

    integration: str | None = None
    target: str | None = None
    reason: str | None = None
    error_class: str | None = None
    rate: float = 10.0

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Selection:
        def text(name: str) -> str | None:
            value = fields.get(name)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise BadRequest(f"{name} must be a string")
            return value.strip() or None

        rate = fields.get("rate", 10.0)
        if isinstance(rate, str):
            try:
                rate = float(rate)
            except ValueError:
                raise BadRequest("rate must be a number") from None
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE:
            raise BadRequest(f"rate must be a number above 0 and at most {MAX_RATE:g}")
        error_class = text("error_class")
        if error_class is not None and error_class not in ("business", "system", UNCLASSIFIED):
            raise BadRequest(f"error_class must be business, system or {UNCLASSIFIED}")
        return cls(text("integration"), text("target"), text("reason"), error_class, float(rate))

    def describe(self) -> str:
        parts = [
            f"reason={self.reason}" if self.reason else "",
            f"class={self.error_class}" if self.error_class else "",
        ]
        return ", ".join(p for p in parts if p) or "all messages"


def error_class_of(message: DlqMessage) -> str:
    return message.attributes.get(ERROR_CLASS_ATTRIBUTE) or UNCLASSIFIED


def _iso(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at is not None else None


def message_summary(message: DlqMessage) -> dict[str, Any]:
    """One DLQ message as a row of the list."""
    return {
        "integration": message.integration,
        "target": message.target,
        "message_id": message.message_id,
        "reason": message.reason,
        "last_reason": message.last_reason,
        "error_class": error_class_of(message),
        "entity_ids": message.entity_ids,
        "attempts": message.attempts,
        "failed_at": _iso(message.failed_at),
        "error": message.error,
    }


def decoded_body(body: str) -> tuple[bool, Any]:
    """(True, the JSON document, an envelope's inner JSON body decoded too) or (False, the text)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False, body
    if (
        isinstance(document, dict)
        and isinstance(document.get("body"), str)
        and document.get("body_encoding") == "utf-8"
    ):
        try:
            document["body"] = json.loads(document["body"])
        except ValueError:
            pass
    return True, document


def message_detail(message: DlqMessage) -> dict[str, Any]:
    """One DLQ message in full: every attribute, the system attributes and the event."""
    detail = message_summary(message)
    system: dict[str, str] = {}
    for name, value in sorted(message.system.items()):
        if name.endswith("Timestamp") and value.isdigit():
            at = datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="seconds")
            system[name] = f"{value} ({at})"
        else:
            system[name] = value
    check = message.claim_check
    if check is not None:
        # The body lies in S3: the pointer's body field is empty, show the envelope without it.
        is_json, body = decoded_body(message.body)
        if is_json and isinstance(body, dict):
            body.pop("body", None)
        claim: dict[str, Any] | None = {
            "bucket": check.bucket,
            "key": check.key,
            "size": check.size,
            "sha256": check.sha256,
        }
    else:
        claim = None
        is_json, body = decoded_body(message.body)
    detail.update(
        attributes=dict(sorted(message.attributes.items())),
        system=system,
        claim_check=claim,
        body_is_json=is_json,
        body=body,
    )
    return detail


def class_groups(messages: Sequence[DlqMessage]) -> list[dict[str, Any]]:
    """The messages by error class (business first, then system), each by reason as the CLI groups."""
    from . import dlq

    by_class: dict[str, list[DlqMessage]] = {}
    for m in messages:
        by_class.setdefault(error_class_of(m), []).append(m)
    order = {"business": 0, "system": 1}
    return [
        {
            "error_class": name,
            "count": len(members),
            "groups": [
                {
                    "reason": g.reason,
                    # what the redrive filter takes: the last reason of retries_exhausted, else the reason
                    "filter_reason": _filter_reason(g.reason),
                    "count": g.count,
                    "oldest_failed_at": _iso(g.oldest_failed_at),
                    "sample_entity_ids": g.sample_entity_ids,
                }
                for g in dlq.group_by_reason(members)
            ],
        }
        for name, members in sorted(by_class.items(), key=lambda kv: (order.get(kv[0], 2), kv[0]))
    ]


def _filter_reason(group_reason: str) -> str:
    if group_reason.endswith(")") and " (" in group_reason:
        return group_reason[group_reason.index(" (") + 2 : -1]
    return group_reason


class OpsBackend:
    """The console's operations on a target (local stack or a deployed stage), through the
    functions the CLI calls."""

    def __init__(self, target: Target, clients: Clients | None = None) -> None:
        self.target = target
        self.clients = clients or Clients(target)
        # Made before the first request: the threads then share them (boto3 clients are thread-safe,
        # their lazy creation is not).
        _ = (self.clients.sqs, self.clients.sqs_once, self.clients.dynamodb)
        if not target.is_local:
            _ = self.clients.cloudwatch

    @classmethod
    def resolve(cls, local: bool | None = None, stage: str | None = None) -> OpsBackend:
        return cls(resolve_target(local, stage))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.target.kind, "stage": self.target.stage}

    def describe_error(self, exc: BaseException) -> str | None:
        from .app import describe_error

        return describe_error(exc, self.target)

    def integrations(self) -> list[dict[str, Any]]:
        from functions import registry

        from . import commands

        return [
            {
                "name": i.name,
                "trigger": commands.trigger_text(i),
                "scheduled": i.schedule is not None,
                "targets": [t.name for t in i.targets],
            }
            for i in registry.INTEGRATIONS
        ]

    def status(self) -> list[dict[str, Any]]:
        from . import commands

        rows: list[dict[str, Any]] = []
        cloudwatch = None if self.target.is_local else self.clients.cloudwatch
        for i, t in commands.every_target(None, None):
            try:
                s = commands.queue_status(
                    self.clients.sqs, self.clients.dynamodb, self.target.stage, i, t, cloudwatch=cloudwatch
                )
            except OpsError as exc:  # one missing queue: the other rows still help
                rows.append({"integration": i.name, "target": t.name, "error": str(exc)})
                continue
            rows.append(dataclasses.asdict(s))
        return rows

    def dead_letters(self, integration: str | None, target: str | None, limit: int) -> list[dict[str, Any]]:
        from . import commands, dlq

        queues: list[dict[str, Any]] = []
        for i, t in commands.one_queue_each(integration, target):
            messages = dlq.peek(self.clients.sqs, self.target.stage, i, t, limit=limit)
            messages.sort(key=lambda m: m.failed_at or datetime.min.replace(tzinfo=UTC))
            queues.append(
                {
                    "integration": i.name,
                    "target": t.name,
                    "count": len(messages),
                    "truncated": len(messages) >= limit,
                    "classes": class_groups(messages),
                    "messages": [message_summary(m) for m in messages],
                }
            )
        return queues

    def message(self, message_id: str, integration: str | None, target: str | None) -> dict[str, Any]:
        from . import commands, dlq

        chosen = commands.one_queue_each(integration, target)
        try:
            found = dlq.find(self.clients.sqs, self.target.stage, chosen, message_id)
        except OpsError as exc:
            if "not found in the DLQ" in str(exc):
                raise NotFound(str(exc)) from None
            raise
        return message_detail(found)

    def _filter(self, selection: Selection, ids: Iterable[str] | None = None) -> Any:
        from . import dlq

        @dataclass(frozen=True)
        class Chosen(dlq.Filter):
            error_class: str | None = None
            message_ids: frozenset[str] | None = None

            @property
            def active(self) -> bool:
                return super().active or self.error_class is not None or self.message_ids is not None

            def matches(self, message: dlq.DlqMessage, now: datetime | None = None) -> bool:
                if not super().matches(message, now):
                    return False
                if self.error_class is not None and error_class_of(message) != self.error_class:
                    return False
                return self.message_ids is None or message.message_id in self.message_ids

        return Chosen(
            reason=selection.reason,
            error_class=selection.error_class,
            message_ids=None if ids is None else frozenset(ids),
        )

    def redrive_preview(self, selection: Selection) -> list[dict[str, Any]]:
        """A dry run of the redrive: per queue, the messages that would move (none moves)."""
        from . import commands, dlq

        previews: list[dict[str, Any]] = []
        for i, t in commands.one_queue_each(selection.integration, selection.target):
            result = dlq.redrive(
                self.clients.sqs, self.target.stage, i, t, self._filter(selection), dry_run=True, rate=selection.rate
            )
            previews.append(
                {
                    "integration": i.name,
                    "target": t.name,
                    "count": len(result.matched),
                    "staying": result.skipped,
                    "message_ids": [m.message_id for m in result.matched],
                }
            )
        return previews

    def redrive(self, selection: Selection, chosen: Mapping[tuple[str, str], Sequence[str]]) -> list[dict[str, Any]]:
        """Move the confirmed messages (by id, per queue) back to their target's queue."""
        from . import commands, dlq

        results: list[dict[str, Any]] = []
        for (integration, target), ids in chosen.items():
            i = commands.integration(integration)
            t = commands.target_of(i, target)
            result = dlq.redrive(
                self.clients.sqs,
                self.target.stage,
                i,
                t,
                self._filter(selection, ids),
                rate=selection.rate,
                limit=MAX_REDRIVE_IDS,
                move_sqs=self.clients.sqs_once,
            )
            results.append(
                {
                    "integration": i.name,
                    "target": t.name,
                    "method": result.method,
                    "confirmed": len(ids),
                    "moved": result.moved,
                    "message_ids": [m.message_id for m in result.matched],
                }
            )
        return results

    def trace(self, any_id: str) -> list[dict[str, Any]]:
        from . import commands

        try:
            traces = commands.traces_of(self.clients.dynamodb, self.target.stage, any_id)
        except OpsError as exc:
            raise NotFound(str(exc)) from None
        return [t.as_json() for t in traces]

    def sync(self) -> list[dict[str, Any]]:
        import time

        from . import sync

        now = time.time()
        return [
            sync.sync_status(self.clients.dynamodb, self.target.stage, i, now=now).as_json() for i in sync.scheduled()
        ]


# -- HTTP --------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def to_json(document: Any) -> bytes:
    return json.dumps(document, default=_json_default, ensure_ascii=False).encode()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool) -> None:
    """Refuse an address other than loopback unless asked for explicitly, and any wildcard."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if not host or (address is not None and address.is_unspecified):
        raise OpsError(
            f"--host {host} binds every interface: give the one address clients use (the Host check needs it)"
        )
    if not is_loopback(host) and not allow_remote:
        raise OpsError(
            f"--host {host} is reachable from other machines: pass --allow-remote as well if that is meant "
            "(the console can redrive dead letters; anyone with the token can)"
        )


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values this server answers: its own host:port (and localhost on loopback)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    hosts = {f"{name}:{port}".lower()}
    if is_loopback(host):
        hosts.add(f"localhost:{port}")
    return frozenset(hosts)


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        backend: Backend,
        *,
        token: str,
        assets: Path = ASSETS,
        quiet: bool = False,
    ) -> None:
        super().__init__(address, ConsoleHandler)
        self.backend = backend
        self.token = token
        self.assets = assets
        self.quiet = quiet
        host = address[0]
        self.port = int(self.server_address[1])
        self.hosts = allowed_hosts(host, self.port)
        self.url = f"http://{_url_host(host)}:{self.port}/"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, screenshots); ``shutdown()`` stops it."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="junction-console", daemon=True
        )
        thread.start()
        return thread


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConsoleHandler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "junction-console"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # -- plumbing --------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"console: {self.address_string()} {format % args}\n")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, document: Any) -> None:
        self._send(status, to_json(document), "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.hosts:
            raise _Refused(HTTPStatus.FORBIDDEN, f"Host {host or '(none)'!r} is not this console's address")

    def _check_same_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme != "http" or parts.netloc.lower() not in self.server.hosts or parts.path not in ("", "/"):
                raise _Refused(HTTPStatus.FORBIDDEN, f"cross-origin request refused (Origin {origin})")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused(HTTPStatus.FORBIDDEN, f"cross-origin request refused (Sec-Fetch-Site {site})")

    def _check_token(self) -> None:
        given = self.headers.get(TOKEN_HEADER) or ""
        if not given or not secrets.compare_digest(given.encode(), self.server.token.encode()):
            raise _Refused(
                HTTPStatus.UNAUTHORIZED,
                f"a change needs the console's token in {TOKEN_HEADER} (printed when `junction console` started)",
            )

    def _body(self) -> dict[str, Any]:
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        try:
            document = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(document, dict):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return document

    def _run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except _Refused as exc:
            self.close_connection = True
            self._error(exc.status, str(exc))
        except NotFound as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except OpsError as exc:
            self._error(HTTPStatus.BAD_REQUEST, " ".join(str(exc).split()))
        except Exception as exc:
            line = self.server.backend.describe_error(exc)
            if line is not None:
                self._error(HTTPStatus.BAD_GATEWAY, " ".join(line.split()))
                return
            traceback.print_exc(file=sys.stderr)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

    # -- methods ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._run(self._get)

    def do_HEAD(self) -> None:
        self._run(self._get)

    def do_POST(self) -> None:
        self._run(self._post)

    def _other(self) -> None:
        def refuse() -> None:
            self._check_host()
            raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served here")

        self._run(refuse)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    def _get(self) -> None:
        self._check_host()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        backend = self.server.backend
        route = url.path.rstrip("/") or "/"
        if route in ("/", "/index.html"):
            self._asset("index.html")
        elif route.startswith("/assets/"):
            self._asset(route.removeprefix("/assets/"))
        elif route == "/api/overview":
            self._json(HTTPStatus.OK, {"target": backend.describe(), "integrations": backend.integrations()})
        elif route == "/api/status":
            self._json(HTTPStatus.OK, {"target": backend.describe(), "rows": backend.status()})
        elif route == "/api/dlq":
            limit = _int(query.get("limit"), default=1000, low=1, high=10_000, name="limit")
            queues = backend.dead_letters(_opt(query, "integration"), _opt(query, "target"), limit)
            self._json(HTTPStatus.OK, {"target": backend.describe(), "queues": queues})
        elif route == "/api/dlq/message":
            message_id = _opt(query, "id")
            if message_id is None:
                raise BadRequest("pass id=<message id>")
            detail = backend.message(message_id, _opt(query, "integration"), _opt(query, "target"))
            self._json(HTTPStatus.OK, detail)
        elif route == "/api/dlq/preview":
            selection = Selection.from_fields(query)
            queues = backend.redrive_preview(selection)
            self._json(
                HTTPStatus.OK,
                {
                    "filter": dataclasses.asdict(selection),
                    "describe": selection.describe(),
                    "count": sum(q["count"] for q in queues),
                    "queues": queues,
                },
            )
        elif route == "/api/trace":
            any_id = _opt(query, "id")
            if any_id is None:
                raise BadRequest("pass id=<any id>")
            self._json(HTTPStatus.OK, {"id": any_id, "traces": backend.trace(any_id)})
        elif route == "/api/sync":
            self._json(HTTPStatus.OK, {"target": backend.describe(), "integrations": backend.sync()})
        else:
            raise NotFound(f"nothing at {url.path}")

    def _post(self) -> None:
        self._check_host()
        self._check_same_origin()
        self._check_token()
        route = urlsplit(self.path).path.rstrip("/")
        if route != "/api/dlq/redrive":
            raise NotFound(f"nothing to POST at {route or '/'}")
        body = self._body()
        selection = Selection.from_fields(body)
        chosen = _confirmed_queues(body.get("queues"))
        results = self.server.backend.redrive(selection, chosen)
        self._json(
            HTTPStatus.OK,
            {"describe": selection.describe(), "moved": sum(r["moved"] for r in results), "queues": results},
        )

    def _asset(self, name: str) -> None:
        # Only a file directly in the assets folder, named as listed there: no path leaves it.
        names = {p.name for p in self.server.assets.iterdir() if p.is_file()}
        suffix = Path(name).suffix
        if name not in names or suffix not in ASSET_TYPES:
            raise NotFound(f"no asset {name!r}")
        self._send(HTTPStatus.OK, (self.server.assets / name).read_bytes(), ASSET_TYPES[suffix])


def _opt(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    return value or None


def _int(value: str | None, *, default: int, low: int, high: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise BadRequest(f"{name} must be from {low} to {high}")
    return number


def _confirmed_queues(value: Any) -> dict[tuple[str, str], list[str]]:
    """The confirmed messages per queue, as the preview listed them: a redrive without them is
    refused, so nothing moves that the operator has not seen counted."""
    if not isinstance(value, list) or not value:
        raise BadRequest("queues: the preview's queues and message ids (preview the redrive first)")
    chosen: dict[tuple[str, str], list[str]] = {}
    total = 0
    for entry in value:
        if not isinstance(entry, dict):
            raise BadRequest("each of queues must be an object")
        integration, target, ids = entry.get("integration"), entry.get("target"), entry.get("message_ids")
        if not isinstance(integration, str) or not isinstance(target, str) or not integration or not target:
            raise BadRequest("each of queues needs integration and target")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise BadRequest("each of queues needs message_ids, a list of message ids")
        if not ids:
            continue
        total += len(ids)
        if total > MAX_REDRIVE_IDS:
            raise BadRequest(f"at most {MAX_REDRIVE_IDS} messages in one redrive")
        chosen.setdefault((integration, target), []).extend(ids)
    if not chosen:
        raise BadRequest("no message to redrive: the preview matched none")
    return chosen


# -- entry points ------------------------------------------------------------------------------
def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    backend: Backend | None = None,
    local: bool | None = None,
    stage: str | None = None,
    token: str | None = None,
    quiet: bool = False,
) -> ConsoleServer:
    """A console server bound to ``host:port`` (port 0: any free one), not yet serving: call
    ``serve_forever()`` (or ``start_background()``). The backend defaults to the target the CLI
    would use (``--local/--aws``, ``--stage``)."""
    check_bind(host, allow_remote=allow_remote)
    chosen = backend if backend is not None else OpsBackend.resolve(local, stage)
    return ConsoleServer((host, port), chosen, token=token or secrets.token_urlsafe(32), quiet=quiet)


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    backend: Backend | None = None,
    local: bool | None = None,
    stage: str | None = None,
    out: Any = None,
    as_json: bool = False,
) -> None:
    """What ``junction console`` does: serve until Ctrl-C, after printing the address and token
    (``as_json``: as one JSON line). The backend defaults to the target ``--local/--aws`` and
    ``--stage`` name (``OpsBackend``)."""
    server = serve(host, port, allow_remote=allow_remote, backend=backend, local=local, stage=stage)
    stream = out or sys.stdout
    where = server.backend.describe()
    if as_json:
        doc = {**where, "url": server.url, "token": server.token, "open": f"{server.url}#token={server.token}"}
        stream.write(json.dumps(doc) + "\n")
    else:
        stream.write(
            f"Junction console ({where['kind']}, stage {where['stage']}): {server.url}\n"
            f"token (for redrives): {server.token}\n"
            f"open: {server.url}#token={server.token}\n"
        )
    stream.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def find_chromium() -> str | None:
    """A Chromium (or Chrome) on this machine, for the screenshot and the browser tests."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(url: str, path: Path, *, executable: str | None = None, width: int = 1280) -> Path:
    """A screenshot of the console at ``url`` (its status, dead letters and sync), taken with
    headless Chromium through Playwright (a dev dependency)."""
    from playwright.sync_api import sync_playwright

    binary = executable or find_chromium()
    if binary is None:
        raise OpsError("no chromium found: install it (apt-get install chromium) to take a screenshot")
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url)
            page.wait_for_selector("#status-table tbody tr")
            page.click("#tab-dlq")
            page.wait_for_selector("#dlq-result .queue, #dlq-result .empty")
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help="Address to bind (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Port (default 8765; 0 for any free one).")
    parser.add_argument("--allow-remote", action="store_true", help="Allow a --host other than loopback.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", dest="local", action="store_true", default=None, help="The local stack.")
    where.add_argument("--aws", dest="local", action="store_false", help="A deployed stage on AWS.")
    parser.add_argument("--stage", default=None, help="Stage to operate (AWS: required, or $JUNCTION_STAGE).")
    parser.add_argument("--screenshot", type=Path, default=None, help="Take a screenshot of the console and exit.")
    args = parser.parse_args(argv)
    try:
        if args.screenshot is not None:
            server = serve(DEFAULT_HOST, 0, local=args.local, stage=args.stage, quiet=True)
            server.start_background()
            try:
                screenshot(server.url, args.screenshot)
            finally:
                server.shutdown()
                server.server_close()
            sys.stdout.write(f"wrote {args.screenshot}\n")
            return
        run(args.host, args.port, allow_remote=args.allow_remote, local=args.local, stage=args.stage)
    except OpsError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
