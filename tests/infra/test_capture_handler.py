"""The predict Lambda's capture: what it records for answers and refusals, and that capture never changes an answer.

The handler runs for real (its boto3 client against the canned InvokeEndpoint server); the capture sink is a
folder, a moto Firehose, or a broken one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.api.runtime import capture, handler
from tests.infra.runtime_stub import Canned, StubRuntime, aws_error
from tests.infra.test_predict_handler import RECORD, call

ATTRIBUTES = {"X-Amzn-SageMaker-Custom-Attributes": "model-name=student-score,model-version=7,data-hash=abc"}


@pytest.fixture
def captured(handler_env: StubRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Capture into a temp folder; yields the folder."""
    monkeypatch.setenv("CAPTURE_DIR", str(tmp_path))
    handler_env.answers = [Canned(headers=ATTRIBUTES)]
    capture.sender.cache_clear()
    yield tmp_path
    capture.sender.cache_clear()


def lines(folder: Path) -> list[dict[str, Any]]:
    assert capture.flush(5)
    return [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]


def emitted_metrics(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        if '"_aws"' in line:
            blob = json.loads(line)
            for definition in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = blob[definition["Name"]]
                found[definition["Name"]] = sum(value) if isinstance(value, list) else value
    return found


def test_every_predicted_record_is_captured_with_the_id_the_client_got(captured: Path,
                                                                       handler_env: StubRuntime) -> None:
    handler_env.answers = [Canned(body={"predictions": [61.5, 72.25]}, headers=ATTRIBUTES)]
    result = call([RECORD, dict(RECORD, Hours_Studied=30)])

    records = lines(captured)
    assert result["statusCode"] == 200 and result["json"] == {"predictions": [61.5, 72.25]}, "answer unchanged"
    assert [r["row"] for r in records] == [0, 1]
    assert {r["request_id"] for r in records} == {result["all_headers"]["X-Request-Id"]}
    assert [r["prediction"] for r in records] == [61.5, 72.25]
    assert records[1]["record"] == dict(RECORD, Hours_Studied=30)
    assert (records[0]["model_name"], records[0]["model_version"], records[0]["data_hash"]) == (
        "student-score", "7", "abc")
    assert records[0]["latency_ms"] > 0
    assert (captured / "capture" / "model=student-score" / "version=7").is_dir()


def test_the_request_id_header_is_readable_by_browsers(captured: Path) -> None:
    result = call(RECORD)
    assert "X-Request-Id" in result["all_headers"]["Access-Control-Expose-Headers"]


def test_dropped_fields_are_not_captured(captured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_DROP_FIELDS", "Gender, Attendance")
    call(RECORD)
    (record,) = lines(captured)
    assert record["record"] == {"Hours_Studied": 23}


def test_a_share_of_zero_captures_nothing_and_half_captures_about_half(captured: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_SHARE", "0")
    call(RECORD)
    assert lines(captured) == []
    monkeypatch.setenv("CAPTURE_SHARE", "0.5")
    for _ in range(100):
        call(RECORD)
    assert 30 < len(lines(captured)) < 70, "request ids are random: 4 standard deviations either side"


def test_capture_is_off_without_a_sink(handler_env: StubRuntime, tmp_path: Path) -> None:
    capture.sender.cache_clear()
    result = call(RECORD)
    assert result["statusCode"] == 200
    assert capture.sender() is None


def test_a_request_the_lambda_refuses_is_captured_as_a_refusal(captured: Path) -> None:
    result = call(b"{not json")
    (record,) = lines(captured)
    assert result["statusCode"] == 400
    assert record["kind"] == "refusal" and record["status"] == 400
    assert record["error"] == "the body is not valid JSON" and record["records"] is None


def test_a_request_the_container_refuses_is_captured_as_a_refusal(captured: Path, handler_env: StubRuntime) -> None:
    original = json.dumps({"error": "row 0, field 'Gender': unknown category 'Robot'", "field": "Gender", "row": 0})
    handler_env.answers = [aws_error(424, "ModelError", "refused", OriginalStatusCode=400, OriginalMessage=original)]
    result = call([RECORD, RECORD])
    (record,) = lines(captured)
    assert result["statusCode"] == 400
    assert record["kind"] == "refusal" and record["records"] == 2 and "Gender" in record["error"]


def test_an_endpoint_failure_is_not_a_refusal(captured: Path, handler_env: StubRuntime) -> None:
    handler_env.answers = [aws_error(424, "ModelError", "boom", OriginalStatusCode=500, OriginalMessage="x")]
    assert call(RECORD)["statusCode"] == 502
    assert lines(captured) == []


def test_a_failing_sink_leaves_the_answer_alone_and_is_a_metric_and_a_log_line(
        handler_env: StubRuntime, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # A Firehose stream nobody can reach: every put fails after botocore's retries.
    monkeypatch.setenv("CAPTURE_STREAM", "no-such-stream")
    monkeypatch.setenv("FIREHOSE_ENDPOINT_URL", "http://127.0.0.1:9")
    handler_env.answers = [Canned(headers=ATTRIBUTES)]
    capture.sender.cache_clear()
    try:
        first = call(RECORD)
        assert capture.flush(30)
        second = call(RECORD)  # reports the loss the first request's capture suffered
    finally:
        capture.sender.cache_clear()
    out = capfd.readouterr().out
    assert first["statusCode"] == second["statusCode"] == 200
    assert first["json"] == second["json"] == {"predictions": [67.5]}
    assert emitted_metrics(out).get("CaptureFailed") == 1
    assert any("capture of 1 record(s) failed" in r.getMessage() for r in caplog.records)


def test_a_bug_while_capturing_is_counted_and_the_answer_still_goes_out(
        captured: Path, handler_env: StubRuntime, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # The container answered two predictions for one record: capture cannot pair them.
    handler_env.answers = [Canned(body={"predictions": [1.0, 2.0]}, headers=ATTRIBUTES)]
    result = call(RECORD)
    out = capfd.readouterr().out
    assert result["statusCode"] == 200 and result["json"] == {"predictions": [1.0, 2.0]}
    assert emitted_metrics(out).get("CaptureFailed") == 1
    assert any(r.getMessage() == "capture failed" for r in caplog.records)


def test_capture_wait_ms_delivers_before_the_answer(captured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_WAIT_MS", "5000")
    call(RECORD)
    files = list(captured.rglob("*.jsonl"))
    assert files and files[0].read_text().count("\n") == 1, "written before the handler returned"


def test_the_capture_module_ships_in_the_lambda_asset() -> None:
    runtime = Path(handler.__file__).parent
    assert (runtime / "capture.py").is_file() and (runtime / "contract.py").resolve().name == "contract.py"
