"""How capture objects arrive, as the jobs must take them: Firehose delivers at least once, and S3 can refuse one
object of many."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from monitoring import drift
from serving import contract
from tests.monitoring import test_drift_job as drift_job
from tests.monitoring.helpers import DAY, capture_window

moto_s3 = drift_job.moto_s3  # the fixture: a moto server on loopback, reached through AWS_ENDPOINT_URL

SINCE, UNTIL = "2025-12-01", "2025-12-02"
PARTITION = Path("capture", "model=student-score", "version=3", "dt=2025-12-01")


def run(params_file: Path, source: str, profile: Path, out: Path) -> int:
    return drift.main(["--params", str(params_file), "--since", SINCE, "--until", UNTIL, "--capture", source,
                       "--profile", str(profile), "--out", str(out), "--no-tracking"])


def test_records_delivered_twice_count_once(tmp_path: Path, params_file: Path, model_tarball: Path,
                                            live: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    # Given 400 predicted records and 3 refusals, and Firehose's retry of that delivery in a second object
    refusals = [contract.refusal_record(request_id=f"bad-{i}", status=400, error="unknown category", records=1,
                                        now=DAY + i) for i in range(3)]
    lines = b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:400]) + refusals)
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    for name in ("stream-1-2025-12-01-00-00-00-a", "stream-1-2025-12-01-00-05-00-b"):
        (partition / name).write_bytes(lines)
    out = tmp_path / "r"
    # When drift reads the window
    assert run(params_file, str(tmp_path / "bucket"), model_tarball, out) == 0
    # Then each record counts once: 400 records are below the minimum sample, not a window of 800 to judge
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["records"], summary["refused_requests"], summary["requests"]) == (400, 3, 43), summary
    assert summary["verdict"] == "not enough data"
    assert summary["duplicate_records"] == 403
    assert "403 capture record(s) delivered twice, counted once" in capsys.readouterr().out


def test_an_s3_object_that_cannot_be_read_is_named_in_the_one_line_error(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, moto_s3,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a day of Firehose objects, one of them archived to Glacier (GetObject refuses it)
    moto_s3.create_bucket(Bucket="artifacts")
    body = gzip.compress(b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:600])))
    folder = "capture/model=student-score/version=3/dt=2025-12-01"
    moto_s3.put_object(Bucket="artifacts", Key=f"{folder}/stream-1-a.gz", Body=body)
    moto_s3.put_object(Bucket="artifacts", Key=f"{folder}/stream-1-b.gz", Body=body, StorageClass="GLACIER")
    # When drift reads the prefix
    code = run(params_file, "s3://artifacts/capture/", model_tarball, tmp_path / "r")
    # Then it stops in one line naming that object, not only the prefix it was listing
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"reading s3://artifacts/{folder}/stream-1-b.gz: " in err and "InvalidObjectState" in err, err


def test_files_of_which_no_line_is_a_capture_record_are_exit_2_not_not_enough_data(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a day of captures in a format this job does not read (a newer capture_format)
    lines = b"".join(contract.capture_line(c | {"capture_format": 2}) for c in capture_window(live.iloc[:600]))
    partition = tmp_path / "bucket" / PARTITION
    partition.mkdir(parents=True)
    (partition / "stream-1-a").write_bytes(lines)
    # When drift reads the window
    code = run(params_file, str(tmp_path / "bucket"), model_tarball, tmp_path / "r")
    # Then it cannot tell, and says so in one line, rather than "not enough data" with exit 0 every day
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "not one of the 600 line(s) read from 1 file(s)" in err and "capture record of format 1" in err, err
    assert not (tmp_path / "r").exists()


def test_a_capture_file_given_as_the_folder_is_named_as_a_file_not_missing(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given one capture object downloaded from S3 and passed as --capture
    got = tmp_path / "stream-1-a.gz"
    got.write_bytes(gzip.compress(b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:10]))))
    # When drift reads it, then the one-line error says what is wrong with it (it is there: not "not found")
    assert run(params_file, str(got), model_tarball, tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert f"--capture {got} is a file, not a folder" in err and err.count("\n") == 1, err
