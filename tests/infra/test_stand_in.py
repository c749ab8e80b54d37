"""Tests for the local stand-in: front door -> real handler -> boto3 -> stand-in endpoint -> a fake container.

The fake container is a loopback HTTP server speaking the container's contract (``/ping``,
``/invocations``, JSON errors with field and row); the end-to-end test through the real gunicorn
container lives with the container's tests once it is built.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from infra.api.runtime import handler
from infra.local import cli
from infra.local.endpoint import start_endpoint
from infra.local.front_door import start_front_door

ROOT = Path(__file__).resolve().parents[2]
RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}
ATTRIBUTES = "model-name=student-score,model-version=3,data-hash=d1e2"


class FakeContainer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {
            "Content-Type": "application/json",
            "X-Model-Name": "student-score",
            "X-Amzn-SageMaker-Custom-Attributes": ATTRIBUTES,
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._send(200 if self.path == "/ping" else 404, {})

    def do_POST(self) -> None:  # noqa: N802
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        records = payload if isinstance(payload, list) else [payload]
        for row, record in enumerate(records):
            if record.get("Gender") not in ("Male", "Female"):
                self._send(
                    400,
                    {"error": f"row {row}, field 'Gender': unknown category", "field": "Gender", "row": row},
                )
                return
        if any(record.get("Hours_Studied") == -1 for record in records):
            self._send(500, {"error": "internal"})
            return
        self._send(200, {"predictions": [60.0 + r["Hours_Studied"] / 10 for r in records]})


def _serve(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def container() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeContainer)
    server.daemon_threads = True
    for _ in _serve(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def chain_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore whatever the stand-in puts in os.environ, and give the handler a fresh client."""
    for name in cli.handler_environment(endpoint_name="x", endpoint_url="x"):
        monkeypatch.setenv(name, "placeholder")
    handler.sagemaker_runtime.cache_clear()
    yield
    handler.sagemaker_runtime.cache_clear()


@pytest.fixture
def endpoint(container: str) -> Iterator[Any]:
    server = start_endpoint(endpoint_name="student-score-local", container_url=container)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def front_door(endpoint: Any, chain_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in cli.handler_environment(
        endpoint_name="student-score-local", endpoint_url=endpoint.url
    ).items():
        monkeypatch.setenv(name, value)
    server = start_front_door()
    yield server.url
    server.shutdown()
    server.server_close()


def runtime_client(endpoint_url: str) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
    )


def test_the_endpoint_speaks_invoke_endpoint_for_boto3(endpoint: Any) -> None:
    # When boto3 calls InvokeEndpoint on the stand-in
    answer = runtime_client(endpoint.url).invoke_endpoint(
        EndpointName="student-score-local",
        Body=json.dumps(RECORD),
        ContentType="application/json",
        Accept="application/json",
    )
    # Then it sees the container's body, the variant and the custom attributes, as from SageMaker
    assert json.loads(answer["Body"].read()) == {"predictions": [62.3]}
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["CustomAttributes"] == ATTRIBUTES
    assert "x-model-name" not in answer["ResponseMetadata"]["HTTPHeaders"], (
        "SageMaker drops container headers"
    )


def test_a_container_4xx_reaches_boto3_as_a_424_model_error(endpoint: Any) -> None:
    client = runtime_client(endpoint.url)
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(
            EndpointName="student-score-local",
            Body=json.dumps({**RECORD, "Gender": "X"}),
            ContentType="application/json",
        )
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert json.loads(error["OriginalMessage"])["field"] == "Gender"
    assert error["Error"]["Message"].startswith("Received client error (400) from primary with message")


def test_an_unknown_endpoint_is_a_validation_error(endpoint: Any) -> None:
    client = runtime_client(endpoint.url)
    with pytest.raises(client.exceptions.ValidationError, match="not found"):
        client.invoke_endpoint(EndpointName="other", Body=b"{}", ContentType="application/json")


def test_a_request_through_the_front_door_returns_predictions_and_model_headers(front_door: str) -> None:
    answer = requests.post(
        front_door,
        json=[RECORD, {**RECORD, "Hours_Studied": 10}],
        headers={"Origin": "http://localhost:3000"},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.json() == {"predictions": [62.3, 61.0]}
    assert answer.headers["X-Model-Version"] == "3"
    assert answer.headers["X-Data-Hash"] == "d1e2"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_a_record_the_container_refuses_is_a_400_naming_field_and_row(front_door: str) -> None:
    answer = requests.post(front_door, json=[RECORD, {**RECORD, "Gender": "X"}], timeout=30)
    assert answer.status_code == 400
    assert (answer.json()["field"], answer.json()["row"]) == ("Gender", 1)


def test_a_container_failure_is_a_502(front_door: str) -> None:
    answer = requests.post(front_door, json={**RECORD, "Hours_Studied": -1}, timeout=30)
    assert answer.status_code == 502
    assert answer.json()["request_id"]


def test_the_front_door_answers_like_the_gateway_for_other_routes_and_preflight(front_door: str) -> None:
    base = front_door.rsplit("/", 1)[0]
    missing = requests.post(f"{base}/other", json=RECORD, timeout=10)
    assert missing.status_code == 403
    assert missing.json() == {"message": "Missing Authentication Token"}
    assert missing.headers["Access-Control-Allow-Origin"] == "*"
    preflight = requests.options(front_door, headers={"Origin": "http://localhost:3000"}, timeout=10)
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_the_cli_sends_one_request_through_a_running_container(
    container: str, chain_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--container-url", container, "--port", "0", "--request", json.dumps(RECORD)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "\nHTTP 200 " in f"\n{out}", "the handler's own JSON logs share stdout; the answer follows them"
    assert '"predictions": [62.3]' in out


def test_the_cli_exits_1_when_the_request_is_refused(container: str, chain_env: None) -> None:
    assert (
        cli.main(
            ["--container-url", container, "--port", "0", "--request", json.dumps({**RECORD, "Gender": "X"})]
        )
        == 1
    )


def test_the_cli_refuses_a_missing_tarball_in_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--model-tarball", str(tmp_path / "none.tar.gz"), "--port", "0"])
    assert code == 1
    assert "no model tarball at" in capsys.readouterr().err


def test_a_front_door_port_in_use_is_one_line(container: str, chain_env: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        code = cli.main(["--container-url", container, "--port", str(port), "--request", json.dumps(RECORD)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"front door port {port}: Address already in use" in err and "Traceback" not in err


def test_a_port_out_of_range_is_a_usage_error(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--model-tarball", str(tmp_path / "none.tar.gz"), "--port", "70000"])
    err = capsys.readouterr().err
    assert code == 2 and "Invalid value for '--port': 70000 is not in the range 0<=x<=65535" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--request", "@/nonexistent/record.json"], "--request @/nonexistent/record.json: No such file or directory"),
    (["--request", "@/"], "--request @/: Is a directory"),
], ids=["request-file-missing", "request-file-a-folder"])
def test_bad_options_are_one_line_before_anything_starts(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                                         args: list[str], message: str) -> None:
    # No container, no tarball: each is refused before the stand-in would start one.
    code = cli.main(["--model-tarball", str(tmp_path / "none.tar.gz"), "--capture", "off", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_capture_folder_that_cannot_be_made_is_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = cli.main(["--model-tarball", str(tmp_path / "none.tar.gz"), "--capture-dir", str(blocker / "x")])
    err = capsys.readouterr().err
    assert code == 1 and f"capture folder {blocker / 'x'}: Not a directory" in err and "Traceback" not in err


def test_sigterm_stops_the_running_stand_in_cleanly(container: str) -> None:
    # Given the stand-in serving in its own process (as `make stand-in` runs it)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "--container-url", container, "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("front door: POST http://127.0.0.1:"), first
        url = first.split()[-1]
        assert requests.post(url, json=RECORD, timeout=30).status_code == 200
        # When it gets SIGTERM, then it stops its servers and exits 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
