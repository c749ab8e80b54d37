"""Tests for the smoke test CLI (infra/smoke) and `make smoke` against a loopback HTTP server."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.smoke.cli import SAMPLE_RECORD, main
from tests.workflows.conftest import ROOT, run_make

FAST = ["--delay", "0", "--timeout", "5"]


class FakeApi(ThreadingHTTPServer):
    """Answers POSTs with the queued (status, body, headers) answers, the last one repeated; records requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[tuple[dict[str, str], Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/score/predict-student-score"

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers.append((status, raw, {"X-Model-Version": "3"} if headers is None else headers))


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((dict(self.headers.items()), json.loads(body)))
        index = min(len(self.server.requests), len(self.server.answers)) - 1
        status, raw, headers = self.server.answers[index]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    return lines[0]


def _tarball(path: Path, version: str, record: dict[str, Any]) -> Path:
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, content in (("metadata.json", {"registered_name": "student-score", "version": version}),
                              ("schema.json", {"self_test": {"record": record, "prediction": 60.0}})):
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_200_with_a_number_and_a_version_passes(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, {"predictions": [67.25]})
    assert main(["--url", api.url, *FAST]) == 0
    line = _one_line(capsys.readouterr().out)
    assert line.startswith(f"smoke ok: {api.url} answered 200") and "prediction 67.25" in line
    assert "model version 3" in line
    headers, record = api.requests[0]
    assert record == SAMPLE_RECORD and headers["Content-Type"] == "application/json"
    assert "x-api-key" not in {name.lower() for name in headers}


def test_a_client_error_fails_at_once_in_one_line(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(400, {"error": "unknown category 'Purple'", "field": "Gender", "row": 0})
    assert main(["--url", api.url, *FAST]) == 1
    assert _one_line(capsys.readouterr().err).startswith("error: HTTP 400: {\"error\": \"unknown category")
    assert len(api.requests) == 1, "a 4xx will not change by retrying"


@pytest.mark.parametrize("body", [{"predictions": ["high"]}, {"predictions": [True]}, {"predictions": []},
                                  {"predictions": [1.0, 2.0]}, {"prediction": 1.0}, b"NaN", b"<html>ok</html>",
                                  b'{"predictions": [1' + b"0" * 400 + b"]}"])
def test_a_200_without_one_numeric_prediction_fails(api: FakeApi, body: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, body)
    assert main(["--url", api.url, *FAST]) == 1
    assert _one_line(capsys.readouterr().err).startswith("error: HTTP 200 but")


def test_a_200_without_the_model_version_header_fails(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, {"predictions": [60.0]}, headers={})
    assert main(["--url", api.url, *FAST]) == 1
    assert _one_line(capsys.readouterr().err) == "error: HTTP 200 but no X-Model-Version header naming the model version"


def test_server_errors_are_retried_until_the_api_answers(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an endpoint still starting: 503, then 504, then a good answer
    api.answer(503, {"error": "the model endpoint is not available, try again later"})
    api.answer(504, {"error": "the model endpoint did not answer in time"})
    api.answer(200, {"predictions": [61.0]})
    assert main(["--url", api.url, "--attempts", "3", *FAST]) == 0
    assert "(attempt 3/3)" in _one_line(capsys.readouterr().out)


def test_retries_are_bounded(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(429, {"error": "too many requests"})
    assert main(["--url", api.url, "--attempts", "2", *FAST]) == 1
    assert _one_line(capsys.readouterr().err) == ("error: smoke failed after 2 attempt(s): HTTP 429: "
                                                  "{\"error\": \"too many requests\"}")
    assert len(api.requests) == 2


def test_an_unreachable_api_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--url", f"http://127.0.0.1:{port}/x", "--attempts", "2", *FAST]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: smoke failed after 2 attempt(s): cannot reach http://127.0.0.1:{port}/x")


def test_the_url_comes_from_the_cdk_outputs_file(api: FakeApi, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"StudentScore-dev-Storage": {"ArtifactBucketName": "b"},
                                   "StudentScore-dev-Serving": {"PredictUrl": api.url, "EndpointName": "e"}}))
    api.answer(200, {"predictions": [60.0]})
    assert main(["--outputs-file", str(outputs), *FAST]) == 0
    assert api.url in capsys.readouterr().out


@pytest.mark.parametrize(("outputs", "message"), [
    ({"StudentScore-dev-Storage": {"ArtifactBucketName": "b"}}, "no PredictUrl output in any stack"),
    ({"A": {"PredictUrl": "http://a"}, "B": {"PredictUrl": "http://b"}}, "PredictUrl in several stacks (A, B)"),
    ([], "expected an object of stacks"),
])
def test_an_outputs_file_without_one_url_fails_in_one_line(outputs: Any, message: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cdk-outputs.json"
    path.write_text(json.dumps(outputs))
    assert main(["--outputs-file", str(path)]) == 1
    assert message in _one_line(capsys.readouterr().err)


def test_url_and_outputs_file_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert _one_line(capsys.readouterr().err) == "error: give exactly one of --url and --outputs-file"


def test_the_released_bundle_sets_the_record_and_the_expected_version(api: FakeApi, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Given the API still serves version 3 while version 4 was released
    tar = _tarball(tmp_path / "model.tar.gz", "4", {"Hours_Studied": 30, "Gender": "Male"})
    api.answer(200, {"predictions": [60.0]})
    assert main(["--url", api.url, "--model-tarball", str(tar), *FAST]) == 1
    assert _one_line(capsys.readouterr().err) == ("error: the API serves model version 3, expected 4 "
                                                  "(the released one)")
    assert api.requests[0][1] == {"Hours_Studied": 30, "Gender": "Male"}, "the bundle's self-test record"


def test_the_api_key_is_sent_from_the_environment(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOKE_API_KEY", "k-123")
    api.answer(200, {"predictions": [60.0]})
    assert main(["--url", api.url, *FAST]) == 0
    assert {k.lower(): v for k, v in api.requests[0][0].items()}.get("x-api-key") == "k-123"


def test_make_smoke_reads_the_outputs_file(api: FakeApi, tmp_path: Path) -> None:
    outputs = tmp_path / "cdk-outputs.json"
    outputs.write_text(json.dumps({"StudentScore-dev-Serving": {"PredictUrl": api.url}}))
    api.answer(200, {"predictions": [60.0]})
    result = run_make(ROOT, "smoke", f"CDK_OUTPUTS={outputs}", f"MODEL_TAR={tmp_path / 'none.tar.gz'}",
                      "SMOKE_ARGS=--delay 0")
    assert result.returncode == 0, result.stderr
    assert "smoke ok:" in result.stdout


def test_reading_a_bundle_s_identity_does_not_load_xgboost() -> None:
    # The smoke test and the job summary read metadata.json through serving.layout, which needs no XGBoost.
    code = ("import sys; from infra.smoke import release, cli; "
            "assert 'xgboost' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_release_line_names_the_version_in_one_markdown_line(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from infra.smoke import release

    tar = _tarball(tmp_path / "model.tar.gz", "12", {"Hours_Studied": 1})
    assert release.main([str(tar)]) == 0
    assert _one_line(capsys.readouterr().out) == "Released **student-score** version **12**"


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "http://127.0.0.1:abc/x"], "error: cannot send to http://127.0.0.1:abc/x: nonnumeric port"),
    (["--url", "http://127.0.0.1:1/a b"], "error: cannot send to http://127.0.0.1:1/a b: URL can't contain control"),
    (["--url", "http://127.0.0.1:1/x", "--api-key", "key\n"], "error: cannot send to http://127.0.0.1:1/x: "
                                                              "Invalid header value"),
    (["--url", "http://[::1/x"], "error: cannot send to http://[::1/x: Invalid IPv6 URL"),
], ids=["port-not-a-number", "space-in-url", "newline-in-api-key", "unclosed-ipv6-address"])
def test_a_request_that_cannot_be_sent_fails_at_once_in_one_line(args: list[str], message: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Not retried: no later attempt can send it either.
    assert main([*args, "--attempts", "3", *FAST]) == 1
    assert _one_line(capsys.readouterr().err).startswith(message)


@pytest.mark.parametrize("option", ["--outputs-file", "--record"])
def test_a_file_that_is_not_utf8_fails_in_one_line(option: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    args = [option, str(path)] if option == "--outputs-file" else ["--url", "http://127.0.0.1:1/x", option, f"@{path}"]
    assert main([*args, *FAST]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(path) in line and ("not valid JSON" in line or "not UTF-8 text" in line)


@pytest.mark.parametrize(("record", "message"), [
    ('{"a": 1' + "0" * 4300 + "}", "--record holds a number of more than 4300 digits"),
    ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "--record is nested too deeply to be a record"),
], ids=["integer-past-python-s-digit-limit", "nested-5000-deep"])
def test_a_record_python_cannot_read_fails_in_one_line(record: str, message: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "record.json"
    path.write_text(record)
    assert main(["--url", "http://127.0.0.1:1/x", "--record", f"@{path}", *FAST]) == 1
    assert _one_line(capsys.readouterr().err) == f"error: {message}"
