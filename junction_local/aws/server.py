"""The HTTP front of the local SQS and DynamoDB stand-ins (AWS JSON protocol 1.0).

Requests are routed by ``X-Amz-Target``: ``AmazonSQS.<Action>`` or ``DynamoDB_20120810.<Action>``.
Run on its own: ``python -m junction_local.aws.server --port 4566``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from junction_local.aws.dynamodb import DynamoError, DynamoService
from junction_local.aws.sqs import SqsError, SqsService
from junction_local.process import LocalHandler


class LocalAws:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.server.request_queue_size = 256
        self.sqs = SqsService(self.url)
        self.dynamodb = DynamoService()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.calls: dict[str, int] = {}  # action -> requests served (for benchmarks)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalAws:
        for target in (self.server.serve_forever, self._sweep):
            thread = threading.Thread(target=target, daemon=True, name=f"local-aws-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.sqs.wake_all()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sweep(self) -> None:
        while not self._stopping.wait(30):
            self.dynamodb.expire()

    def dispatch(self, target: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        prefix, _, action = target.partition(".")
        self.calls[action] = self.calls.get(action, 0) + 1  # a lost increment under a race is fine
        if prefix == "AmazonSQS":
            service: Any = self.sqs
            namespace = "com.amazonaws.sqs#"
        elif prefix.startswith("DynamoDB_"):
            service = self.dynamodb
            namespace = "com.amazonaws.dynamodb.v20120810#"
        else:
            return 400, {}, {"__type": "UnknownOperationException", "message": f"unknown target {target}"}
        method = getattr(service, action, None) if action[:1].isupper() else None
        if method is None:
            return 400, {}, {"__type": namespace + "UnknownOperationException", "message": f"{action} is not supported"}
        try:
            return 200, {}, method(payload)
        except SqsError as exc:
            headers = {"x-amzn-query-error": f"{exc.query_code};Sender"}
            return exc.status, headers, {"__type": namespace + exc.code, "message": exc.message}
        except DynamoError as exc:
            body: dict[str, Any] = {"__type": namespace + exc.code, "message": exc.message}
            if exc.item is not None:
                body["Item"] = exc.item
            return 400, {}, body
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {}, {"__type": namespace + "ValidationException", "message": f"invalid request: {exc!r}"}


def _handler_for(aws: LocalAws) -> type[BaseHTTPRequestHandler]:
    class Handler(LocalHandler):
        def do_POST(self) -> None:
            try:
                payload = json.loads(self.body() or b"{}")
            except ValueError:
                payload = None
            headers: dict[str, str]
            if not isinstance(payload, dict):
                status, headers = 400, {}
                body: dict[str, Any] = {"__type": "SerializationException", "message": "body is not JSON"}
            else:
                status, headers, body = aws.dispatch(self.headers.get("X-Amz-Target") or "", payload)
            headers = {**headers, "x-amzn-RequestId": "local"}
            self.reply(status, headers, json.dumps(body, separators=(",", ":")).encode(), "application/x-amz-json-1.0")

        def do_GET(self) -> None:  # health check, and the requests served per action
            self.reply(200, {}, json.dumps({"status": "ok", "calls": dict(aws.calls)}).encode())

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SQS + DynamoDB (AWS JSON protocol)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
    # Many threads mostly waiting on sockets: a short GIL switch interval keeps a thread whose
    # answer has arrived from waiting up to 5 ms behind a busy one.
    sys.setswitchinterval(0.0005)
    aws = LocalAws(args.host, args.port).start()
    print(json.dumps({"url": aws.url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    aws.stop()
    time.sleep(0.05)


if __name__ == "__main__":
    main()
