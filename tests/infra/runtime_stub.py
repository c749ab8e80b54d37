"""A canned SageMaker Runtime for the infra tests: InvokeEndpoint's REST shape on a loopback port."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Canned:
    """One answer of the stub: status, JSON or bytes body, headers."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"predictions": [67.5]})
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class StubRuntime(ThreadingHTTPServer):
    """A loopback server with InvokeEndpoint's REST shape; answers from a list, repeating the last one."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.answers: list[Canned] = [Canned()]
        self.requests: list[dict[str, Any]] = []
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_answer(self) -> Canned:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class _StubHandler(BaseHTTPRequestHandler):
    server: StubRuntime
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = self.server.next_answer()
        if answer.delay_s:
            self.server.released.wait(answer.delay_s)
        data = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout): expected
            pass


def aws_error(status: int, code: str, message: str = "", **members: Any) -> Canned:
    """A SageMaker Runtime error answer as botocore's rest-json parser reads it."""
    return Canned(status=status, body={"message": message, **members}, headers={"x-amzn-ErrorType": code})
