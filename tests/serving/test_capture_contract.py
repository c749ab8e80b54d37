"""The capture half of the wire contract: record format, sampling, partitions, and the background sender."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from serving import contract

HEADERS = {"X-Model-Name": "student-score", "X-Model-Version": "7", "X-Data-Hash": "abc.dir"}
NOW = 1_764_601_445.25  # 2025-12-01T15:04:05.250Z


def _predicted(**overrides):
    args = {"request_id": "req-1", "records": [{"Hours_Studied": 20, "Gender": "Male"}, {"Hours_Studied": 5,
            "Gender": None}], "predictions": [70.5, 60.25], "headers": HEADERS, "latency_ms": 12.3456, "now": NOW}
    return contract.prediction_records(**{**args, **overrides})


def test_one_capture_record_per_predicted_record_with_the_model_that_answered() -> None:
    first, second = _predicted()
    assert first == {"capture_format": 1, "kind": "prediction", "request_id": "req-1", "row": 0,
                     "time": "2025-12-01T15:04:05.250Z", "model_name": "student-score", "model_version": "7",
                     "data_hash": "abc.dir", "latency_ms": 12.346, "prediction": 70.5,
                     "record": {"Hours_Studied": 20, "Gender": "Male"}}
    assert second["row"] == 1 and second["record"] == {"Hours_Studied": 5, "Gender": None}


def test_dropped_fields_never_reach_a_capture_record() -> None:
    records = _predicted(drop_fields=["Gender"])
    assert all("Gender" not in r["record"] for r in records)
    assert records[0]["record"] == {"Hours_Studied": 20}


def test_a_nan_input_is_captured_as_null_so_the_line_stays_strict_json() -> None:
    (record,) = _predicted(records=[{"Hours_Studied": float("nan")}], predictions=[1.0])
    assert json.loads(contract.capture_line(record))["record"] == {"Hours_Studied": None}


def test_an_answer_without_one_prediction_per_record_is_refused() -> None:
    with pytest.raises(ValueError, match="2 records but 1 predictions"):
        _predicted(predictions=[1.0])


def test_a_refusal_says_why_and_how_many_records_but_carries_no_input() -> None:
    record = contract.refusal_record(request_id="r", status=400, error="row 0, field 'Gender': unknown",
                                     records=3, now=NOW)
    assert record["kind"] == "refusal" and record["status"] == 400 and record["records"] == 3
    assert "record" not in record and record["model_version"] == "unknown"


def test_sampling_keeps_the_configured_share_and_decides_the_same_way_twice() -> None:
    ids = [f"request-{i}" for i in range(20_000)]
    kept = [i for i in ids if contract.sampled(i, 0.25)]
    assert 0.23 < len(kept) / len(ids) < 0.27
    assert kept == [i for i in ids if contract.sampled(i, 0.25)]
    assert all(contract.sampled(i, 1.0) for i in ids[:100])
    assert not any(contract.sampled(i, 0.0) for i in ids[:100])


def test_the_partition_names_model_version_and_day_and_cannot_be_escaped() -> None:
    (record, _) = _predicted()
    assert contract.capture_partition(record) == "capture/model=student-score/version=7/dt=2025-12-01"
    evil = dict(record, model_name="../../etc", model_version="a/b")
    assert contract.capture_partition(evil) == "capture/model=.._.._etc/version=a_b/dt=2025-12-01"


def test_the_partition_keys_match_what_firehose_extracts() -> None:
    # The jq expressions are evaluated by Firehose on AWS; here: they name the fields the partition is built from.
    (record, _) = _predicted()
    assert record[contract.CAPTURE_PARTITIONS["model"].lstrip(".")] == "student-score"
    assert record[contract.CAPTURE_PARTITIONS["version"].lstrip(".")] == "7"
    assert contract.CAPTURE_PARTITIONS["dt"] == ".time[0:10]" and record["time"][0:10] == "2025-12-01"


def test_a_capture_line_is_one_json_object_and_a_newline() -> None:
    line = contract.capture_line(_predicted()[0])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["request_id"] == "req-1"


def _lines(n: int) -> list[bytes]:
    return [contract.capture_line(dict(_predicted()[0], row=i)) for i in range(n)]


def test_the_sender_delivers_everything_in_batches_firehose_accepts() -> None:
    batches: list[list[bytes]] = []
    sender = contract.CaptureSender(lambda batch: batches.append(batch) or 0)
    assert sender.submit(_lines(1203)) == 0
    assert sender.flush(10)
    assert sum(len(b) for b in batches) == 1203 == sender.sent
    assert max(len(b) for b in batches) <= contract.FIREHOSE_MAX_RECORDS
    assert sender.take_failed() == 0


def test_the_sender_never_puts_more_than_4_mb_in_one_batch() -> None:
    batches: list[list[bytes]] = []
    busy, gate = threading.Event(), threading.Event()
    sender = contract.CaptureSender(lambda batch: busy.set() or gate.wait(5) and batches.append(batch) or 0)
    # 10 lines of 820,000 bytes: 5 fit in 4 MiB, only 4 in 4 MB (the API reference's limit, read as 10^6 bytes)
    big = [b"x" * 819_999 + b"\n"] * 10
    sender.submit([b"first\n"])
    assert busy.wait(5), "the thread is sending the first line"
    sender.submit(big)
    gate.set()
    assert sender.flush(10)
    assert [len(b) for b in batches[1:]] == [4, 4, 2]
    assert all(sum(map(len, b)) <= 4_000_000 for b in batches)


def test_a_failing_sink_is_counted_and_reported_never_raised() -> None:
    errors: list[str] = []

    def broken(batch: list[bytes]) -> int:
        raise ConnectionError("firehose unreachable")

    sender = contract.CaptureSender(broken, on_error=errors.append)
    sender.submit(_lines(3))
    assert sender.flush(5)
    assert sender.take_failed() == 3 and sender.take_failed() == 0, "counted once"
    assert "ConnectionError: firehose unreachable" in errors[0]


def test_records_firehose_did_not_accept_are_counted() -> None:
    sender = contract.CaptureSender(lambda batch: 2)
    sender.submit(_lines(5))
    assert sender.flush(5)
    assert sender.take_failed() == 2 and sender.sent == 3


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    busy, gate = threading.Event(), threading.Event()
    sender = contract.CaptureSender(lambda batch: busy.set() or gate.wait(5) and 0, max_queue=2)
    sender.submit(_lines(1))
    assert busy.wait(5), "the thread took it and waits on the gate"
    assert not sender.flush(0.05), "flush gives up at its timeout"
    dropped = sender.submit(_lines(5))
    assert dropped == 3, "two fit the queue, three do not"
    gate.set()
    assert sender.flush(5)
    assert sender.take_failed() == dropped


def test_the_folder_sink_writes_json_lines_in_the_partition_layout(tmp_path: Path) -> None:
    put = contract.folder_put(tmp_path)
    assert put(_lines(2)) == 0
    (file,) = (tmp_path / "capture" / "model=student-score" / "version=7" / "dt=2025-12-01").iterdir()
    assert [json.loads(line)["row"] for line in file.read_text().splitlines()] == [0, 1]


def _stream_to_s3():
    """moto's bucket ``capture`` and delivery stream ``cap`` into it (call inside ``mock_aws``): the S3 and Firehose
    clients."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="capture")
    firehose = boto3.client("firehose", region_name="us-east-1")
    firehose.create_delivery_stream(DeliveryStreamName="cap", ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::123456789012:role/x", "BucketARN": "arn:aws:s3:::capture", "Prefix": "capture/"})
    return s3, firehose


@mock_aws
def test_the_firehose_sink_puts_records_that_land_in_s3() -> None:
    # Real boto3 against moto's Firehose -> S3.
    s3, firehose = _stream_to_s3()
    lines = _lines(3)
    assert contract.firehose_put(firehose, "cap")(lines) == 0
    (item,) = s3.list_objects_v2(Bucket="capture")["Contents"]
    assert item["Key"].startswith("capture/")
    assert s3.get_object(Bucket="capture", Key=item["Key"])["Body"].read() == b"".join(lines)


class _RefusesOnce:
    """Firehose refusing one record of a put once (moto never does): the others are written, that one is not."""

    def __init__(self, firehose, refuse: int) -> None:
        self.firehose, self.refuse, self.puts = firehose, refuse, 0

    def put_record_batch(self, *, DeliveryStreamName, Records):  # noqa: N803 - boto3's argument names
        self.puts += 1
        if self.puts > 1:
            return self.firehose.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=Records)
        kept = [r for i, r in enumerate(Records) if i != self.refuse]
        answer = self.firehose.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=kept)
        entries = answer["RequestResponses"]
        entries.insert(self.refuse, {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
        return {**answer, "FailedPutCount": 1, "RequestResponses": entries}


@mock_aws
def test_records_firehose_refused_in_a_put_that_succeeded_are_resent_once() -> None:
    # Given a stream that refuses the middle record of the first put (FailedPutCount 1, its entry an ErrorCode)
    s3, firehose = _stream_to_s3()
    lines = _lines(3)
    # When the sink puts three lines
    lost = contract.firehose_put(_RefusesOnce(firehose, refuse=1), "cap")(lines)
    # Then none is lost and none is written twice
    assert lost == 0
    written = b"".join(s3.get_object(Bucket="capture", Key=o["Key"])["Body"].read()
                       for o in s3.list_objects_v2(Bucket="capture")["Contents"])
    assert sorted(written.splitlines(keepends=True)) == sorted(lines), "each line exactly once"


def test_lingering_puts_records_submitted_close_together_in_one_batch() -> None:
    batches: list[list[bytes]] = []
    sender = contract.CaptureSender(lambda batch: batches.append(batch) or 0, linger_s=0.3)
    for line in _lines(5):
        sender.submit([line])
    assert sender.flush(5)
    assert [len(b) for b in batches] == [5]
