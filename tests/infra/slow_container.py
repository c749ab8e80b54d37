"""Owns a test container that can be held or slowed: the container contract (``/ping``, ``/invocations``) on loopback.

Every request waits for ``gate`` (when set) and then ``delay_s``, so a test decides how many invocations are in
flight at once, or how long each one takes, without depending on how fast the machine is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SlowContainer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, delay_s: float = 0.0, gated: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_s = delay_s
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.lock = threading.Lock()
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: SlowContainer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._send(200 if self.path == "/ping" else 404, {})

    def do_POST(self) -> None:  # noqa: N802
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        records = payload if isinstance(payload, list) else [payload]
        with self.server.lock:
            self.server.requests += 1
        self.server.gate.wait(timeout=60)
        time.sleep(self.server.delay_s)
        self._send(200, {"predictions": [60.0 for _ in records]})


@contextmanager
def running(*, delay_s: float = 0.0, gated: bool = False) -> Iterator[SlowContainer]:
    server = SlowContainer(delay_s=delay_s, gated=gated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()
