"""The predict Lambda when the endpoint's connection drops: before an answer, or in the middle of its body.

Both are the upstream's failure (API Gateway's and SageMaker's 502 territory), never a bug of the handler: the
client gets a JSON 502 with its request id, not the catch-all 500 "internal error".
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from infra.api.runtime import handler
from infra.local.events import LambdaContext, proxy_event

RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}


def _serve(reply: bytes) -> tuple[socket.socket, str]:
    """A loopback server that reads each request, writes ``reply`` (maybe nothing) and closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=run, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bytes], None]]:
    listeners = []

    def start(reply: bytes) -> None:
        listener, url = _serve(reply)
        listeners.append(listener)
        monkeypatch.setenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", url)
        handler.sagemaker_runtime.cache_clear()

    for name, value in {"ENDPOINT_NAME": "student-score-test", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true", "SAGEMAKER_READ_TIMEOUT_S": "2"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "CAPTURE_STREAM", "CAPTURE_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield start
    for listener in listeners:
        listener.close()
    handler.sagemaker_runtime.cache_clear()


def _call() -> dict:
    event = proxy_event(method="POST", path=handler.ROUTE, query="", body=json.dumps(RECORD).encode(),
                        source_ip="127.0.0.1", headers={"Content-Type": "application/json"})
    return handler.lambda_handler(event, LambdaContext())


def test_a_connection_closed_before_any_answer_is_a_502_not_an_internal_error(endpoint) -> None:
    # Given an endpoint that drops every connection without answering
    endpoint(b"")
    # When a valid record is sent
    result = _call()
    # Then the client hears the upstream failed (502), in JSON with the request id
    assert result["statusCode"] == 502, result
    body = json.loads(result["body"])
    assert body["request_id"] == body["request_id"].strip() != ""
    assert "internal" not in body["error"]


def test_an_answer_cut_off_in_its_body_is_a_502_not_an_internal_error(endpoint) -> None:
    # Given an endpoint whose 200 promises 100 bytes of body and closes after 5
    endpoint(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pre")
    # When a valid record is sent
    result = _call()
    # Then it is the upstream's 502, not the handler's 500
    assert result["statusCode"] == 502, result
    assert "internal" not in json.loads(result["body"])["error"]
