"""Child-process plumbing for the local runtime: free ports, readiness, clean shutdown."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def exit_with_parent(stop: threading.Event) -> None:
    """Set ``stop`` when the process that started us goes away, so no child outlives the runtime."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 30.0,
    cancel: threading.Event | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            raise RuntimeError(f"{url}: start cancelled")
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url} exited with status {process.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - 127.0.0.1 only
                return
        except urllib.error.HTTPError:
            return  # it answers: it is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f}s (log: {log})")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class LocalHandler(BaseHTTPRequestHandler):
    """The request handler every local server builds on: HTTP/1.1 keep-alive, quiet, and
    TCP_NODELAY (headers and body go out as separate writes: without it, 40 ms stalls)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, headers: dict[str, str], body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", content_type))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


_Served = TypeVar("_Served", bound="ServedStandIn")


class ServedStandIn:
    """The lifecycle of a stand-in that serves its API in-process on its own
    ``ThreadingHTTPServer`` (``_server``): ``url``, ``start``, ``stop`` (which first wakes any
    request it holds hanging, ``_stop_hanging``, if it has one) and use as a context manager."""

    thread_name: ClassVar[str] = "standin"
    _server: ThreadingHTTPServer
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def root_url(self) -> str:
        return self.url

    def start(self: _Served) -> _Served:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        hanging: threading.Event | None = getattr(self, "_stop_hanging", None)
        if hanging is not None:
            hanging.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: _Served) -> _Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
