"""``python -m monitoring.drift`` end to end: capture folders and s3:// (moto), the report, the MLflow run, exit codes."""

from __future__ import annotations

import gzip
import json
import tarfile
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from monitoring import drift
from serving import contract
from tests.monitoring.helpers import DAY, capture_window, shifted_hours, tarball_with_profile, write_capture

SINCE, UNTIL = "2025-12-01", "2025-12-02"


def run(params_file: Path, *args: str) -> int:
    return drift.main(["--params", str(params_file), "--since", SINCE, "--until", UNTIL, *args])


@pytest.mark.slow
def test_a_quiet_window_exits_0_with_a_report_a_summary_and_an_mlflow_run(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:1000]))
    out = tmp_path / "report"

    code = run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(out))

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "no drift" and summary["records"] == 1000
    assert summary["model"] == {"name": "student-score", "version": "3"}
    assert summary["window"] == {"since": "2025-12-01T00:00:00.000Z", "until": "2025-12-02T00:00:00.000Z"}
    page = (out / "report.html").read_text()
    assert "Hours_Studied" in page and "data:image/png;base64," in page and "no drift" in page
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("student-score-monitoring")
    (run_,) = client.search_runs([experiment.experiment_id])
    assert run_.data.tags["model.name"] == "student-score" and run_.data.tags["model.version"] == "3"
    assert run_.data.tags["window.since"] == summary["window"]["since"]
    assert run_.data.tags["window.until"] == summary["window"]["until"]
    assert run_.data.tags["verdict"] == "no drift"
    assert run_.data.metrics["records"] == 1000 and "psi.Hours_Studied" in run_.data.metrics
    assert {a.path for a in client.list_artifacts(run_.info.run_id)} == {"report.html", "summary.json", "drift.png"}


def test_drift_exits_1_and_names_the_feature(tmp_path: Path, params_file: Path, model_tarball: Path,
                                             live: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(shifted_hours(live.iloc[:1000], 6)))
    code = run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(tmp_path / "r"),
               "--no-tracking")
    assert code == 1
    assert "Hours_Studied: PSI" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["drifted_features"] == ["Hours_Studied"]


def test_only_the_window_and_the_version_asked_for_are_read(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                           live: pd.DataFrame) -> None:
    inside = capture_window(live.iloc[:600])
    before = capture_window(shifted_hours(live.iloc[600:1200], 20), start=DAY - 3600)  # the day before
    other = capture_window(shifted_hours(live.iloc[1200:1800], 20), version="2")
    folder = write_capture(tmp_path / "bucket", inside + before + other)
    out = tmp_path / "r"
    assert run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(out),
               "--no-tracking") == 0
    assert json.loads((out / "summary.json").read_text())["records"] == 600


def test_the_version_defaults_to_the_one_that_answered_most(tmp_path: Path, live: pd.DataFrame) -> None:
    records = capture_window(live.iloc[:30], version="2") + capture_window(live.iloc[30:50], version="10")
    assert drift.busiest_version(records) == "2"
    assert drift.busiest_version(records[:20] + capture_window(live.iloc[:20], version="10")) == "10", "tie: newest"
    assert drift.busiest_version([]) is None


def test_a_small_window_is_not_enough_data_and_exits_0(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                       live: pd.DataFrame) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(shifted_hours(live.iloc[:100], 30)))
    assert run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(tmp_path / "r"),
               "--no-tracking") == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["verdict"] == "not enough data"


def test_an_empty_window_is_not_enough_data_too(tmp_path: Path, params_file: Path, model_tarball: Path) -> None:
    (tmp_path / "bucket").mkdir()
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(model_tarball),
               "--out", str(tmp_path / "r"), "--no-tracking") == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["verdict"] == "not enough data"


def test_unreadable_capture_lines_are_counted_and_said(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                       live: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:500]))
    (folder / "capture" / "stray.jsonl").write_text('not json\n{"capture_format": 99}\n')
    assert run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(tmp_path / "r"),
               "--no-tracking") == 0
    assert "2 unreadable capture line(s) skipped" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since must be a date"),
    (["--since", "2025-12-03"], "must be before --until"),
    (["--capture", "/no/such/folder"], "capture folder /no/such/folder not found"),
    (["--capture", "gs://bucket/x"], "must be a folder or s3://"),
    (["--capture", "s3://"], "must look like s3://bucket/prefix"),
    (["--capture", "s3://bu cket/x"], "'bu cket' is not an S3 bucket name"),
    (["--capture", "s3://[::1/x"], "'[::1' is not an S3 bucket name"),
    (["--no-tracking"], "--no-tracking needs --profile"),
    (["--until", "0001-01-01T00:00:00+01:00"], "--until '0001-01-01T00:00:00+01:00' is outside the dates there are"),
    (["--since", "0001-01-01T00:00:00+01:00"], "--since '0001-01-01T00:00:00+01:00' is outside the dates there are"),
])
def test_bad_input_exits_2_in_one_line(tmp_path: Path, params_file: Path, model_tarball: Path,
                                       capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    (tmp_path / "bucket").mkdir()
    base = ["--capture", str(tmp_path / "bucket")] + ([] if "--no-tracking" in args else ["--profile",
                                                                                         str(model_tarball)])
    code = drift.main(["--params", str(params_file), "--since", SINCE, "--until", UNTIL, *base, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_profile_of_another_model_is_refused(tmp_path: Path, params_file: Path, profile: dict) -> None:
    from tests.monitoring.helpers import tarball_with_profile

    other = tarball_with_profile(tmp_path / "other", profile, name="house-prices")
    (tmp_path / "bucket").mkdir()
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(other)) == 2


def test_a_broken_profile_is_an_error_not_a_verdict(tmp_path: Path, params_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "profile.json"
    broken.write_text('{"profile_format": 1}')
    (tmp_path / "bucket").mkdir()
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(broken), "--no-tracking") == 2
    assert "needs 'features'" in capsys.readouterr().err


def test_an_unreachable_tracking_server_is_exit_2(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                  live: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    write_capture(tmp_path / "bucket", capture_window(live.iloc[:5]))
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(model_tarball)) == 2
    assert "unreachable" in capsys.readouterr().err


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch):
    """A moto server on loopback; boto3 reaches it through AWS_ENDPOINT_URL, as the job would reach S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's buckets live in the process, not the server: without a reset a test sees an earlier test's objects.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    import boto3

    yield boto3.client("s3")
    server.stop()


def test_firehose_s_gzip_objects_are_read_from_s3_and_other_days_are_not_opened(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, moto_s3) -> None:
    moto_s3.create_bucket(Bucket="artifacts")
    lines = b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:700]))
    key = "capture/model=student-score/version=3/dt=2025-12-01/stream-1-2025-12-01-00-00-00-abc.gz"
    moto_s3.put_object(Bucket="artifacts", Key=key, Body=gzip.compress(lines))
    for skipped in ("capture/model=student-score/version=3/dt=2025-11-02/x.gz",
                    "capture/model=house-prices/version=3/dt=2025-12-01/x.gz"):
        moto_s3.put_object(Bucket="artifacts", Key=skipped, Body=b"not even gzip")
    out = tmp_path / "r"

    code = run(params_file, "--capture", "s3://artifacts/capture/", "--profile", str(model_tarball),
               "--out", str(out), "--no-tracking")

    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["records"] == 700
    assert summary["files"] == 1 and summary["unreadable_lines"] == 0, "partitions outside the window stay unread"


def test_a_damaged_s3_object_is_named_by_its_own_uri(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                     live: pd.DataFrame, moto_s3) -> None:
    # Given a Firehose object under the prefix, one byte of its gzip checksum changed
    moto_s3.create_bucket(Bucket="artifacts")
    data = bytearray(gzip.compress(b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:700]))))
    data[-8] ^= 0x01
    key = "capture/model=student-score/version=3/dt=2025-12-01/stream-1-2025-12-01-00-00-00-abc.gz"
    moto_s3.put_object(Bucket="artifacts", Key=key, Body=bytes(data))
    out = tmp_path / "r"
    # When drift reads the prefix, then the object is named as s3://bucket/key (the key holds the prefix already)
    assert run(params_file, "--capture", "s3://artifacts/capture/", "--profile", str(model_tarball), "--out",
               str(out), "--no-tracking") == 0
    assert json.loads((out / "summary.json").read_text())["first_damaged_file"] == f"s3://artifacts/{key}"


def test_a_missing_bucket_is_exit_2(tmp_path: Path, params_file: Path, model_tarball: Path, moto_s3,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run(params_file, "--capture", "s3://no-such-bucket/capture/", "--profile", str(model_tarball),
               "--no-tracking") == 2
    assert "NoSuchBucket" in capsys.readouterr().err


@pytest.mark.parametrize("prefix", ["", "captrue/"], ids=["empty-bucket", "misspelt-prefix"])
def test_a_prefix_without_any_object_is_exit_2_naming_it(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                        moto_s3, prefix: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a bucket with no object under the prefix given (a capture elsewhere, or none at all)
    moto_s3.create_bucket(Bucket="artifacts")
    if prefix:
        moto_s3.put_object(Bucket="artifacts", Key="capture/model=student-score/version=3/dt=2025-12-01/x", Body=b"")
    # When drift reads it
    code = run(params_file, "--capture", f"s3://artifacts/{prefix}", "--profile", str(model_tarball),
               "--out", str(tmp_path / "r"), "--no-tracking")
    # Then it names the prefix instead of calling the window "not enough data"
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"s3://artifacts/{prefix}: no object at all under this prefix" in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_objects_outside_the_window_are_not_enough_data_not_an_error(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, moto_s3) -> None:
    # Given a prefix whose only capture is of another day
    moto_s3.create_bucket(Bucket="artifacts")
    lines = b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:700], start=DAY - 86_400 * 30))
    moto_s3.put_object(Bucket="artifacts", Key="capture/model=student-score/version=3/dt=2025-11-01/x", Body=lines)
    # When drift reads the window, then the prefix is right and the window is "not enough data"
    assert run(params_file, "--capture", "s3://artifacts/capture/", "--profile", str(model_tarball),
               "--out", str(tmp_path / "r"), "--no-tracking") == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["verdict"] == "not enough data"


def test_refusals_are_counted_though_they_name_no_model(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                        live: pd.DataFrame) -> None:
    # The container refused before a model answered: the refusal sits under model=unknown/version=unknown.
    refusals = [contract.refusal_record(request_id=f"bad-{i}", status=400, error="unknown category", records=1,
                                        now=DAY + i) for i in range(3)]
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:500]) + refusals)
    assert (folder / "capture" / "model=unknown" / "version=unknown").is_dir()
    out = tmp_path / "r"
    assert run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(out),
               "--no-tracking") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refused_requests"] == 3 and summary["requests"] == 53


def test_a_canarys_refused_share_is_of_every_versions_requests(tmp_path: Path, params_file: Path, profile: dict,
                                                                live: pd.DataFrame) -> None:
    # Given a canary: version 4 answers 500 requests, version 3 the other 1,500, and 60 requests were refused
    # before any version answered (a refusal names no version)
    refusals = [contract.refusal_record(request_id=f"bad-{i}", status=400, error="unknown category", records=1,
                                        now=DAY + i) for i in range(60)]
    captures = (capture_window(live.iloc[:1500], version="3", per_request=1)
                + capture_window(live.iloc[1500:2000], version="4", per_request=1) + refusals)
    folder = write_capture(tmp_path / "bucket", captures)
    out = tmp_path / "r"
    # When the canary's window is judged
    assert run(params_file, "--capture", str(folder), "--version", "4", "--profile",
               str(tarball_with_profile(tmp_path / "v4", profile, version="4")), "--out", str(out),
               "--no-tracking") == 0
    # Then 60 of 2,060 requests were refused (2.9%, under the 5% alarm), not 60 of the canary's 560 (10.7%)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["records"], summary["requests"], summary["refused_requests"]) == (500, 2060, 60), summary
    assert summary["refused_share"] == pytest.approx(60 / 2060) and summary["alarms"] == [], summary["alarms"]


def _partition(root: Path) -> Path:
    folder = root / "capture" / "model=student-score" / "version=3" / "dt=2025-12-01"
    folder.mkdir(parents=True)
    return folder


def test_a_cut_off_gzip_object_keeps_its_records_before_the_damage_and_says_so(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a Firehose object of 700 records cut off at 60% of its bytes
    whole = gzip.compress(b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:700])))
    (_partition(tmp_path / "bucket") / "part-0.gz").write_bytes(whole[: len(whole) * 6 // 10])
    out = tmp_path / "r"
    # When drift reads it
    code = run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(model_tarball), "--out",
               str(out), "--no-tracking")
    # Then the records before the damage count, the file is reported damaged, and the job still answers
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and 0 < summary["records"] < 700, summary["records"]
    assert summary["damaged_files"] == 1
    assert "1 capture file(s) cut off or corrupt" in capsys.readouterr().out


def test_a_gzip_object_with_a_changed_byte_is_named(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                    live: pd.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a Firehose object one byte of which changed (in its checksum: what it holds cannot be trusted)
    data = bytearray(gzip.compress(b"".join(contract.capture_line(c) for c in capture_window(live.iloc[:700]))))
    data[-8] ^= 0x01
    part = _partition(tmp_path / "bucket") / "part-0.gz"
    part.write_bytes(bytes(data))
    out = tmp_path / "r"
    # When drift reads it, then the damage is counted and the file named, to be looked at
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(model_tarball), "--out",
               str(out), "--no-tracking") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["damaged_files"], summary["first_damaged_file"]) == (1, str(part))
    assert f"1 capture file(s) cut off or corrupt (the first: {part})" in capsys.readouterr().out


def test_a_byte_that_is_not_utf8_costs_its_line_not_the_file(tmp_path: Path, params_file: Path,
                                                            model_tarball: Path, live: pd.DataFrame) -> None:
    lines = [contract.capture_line(c) for c in capture_window(live.iloc[:700])]
    lines[350] = lines[350].replace(b'"record"', b'"rec\xffrd"')
    (_partition(tmp_path / "bucket") / "part-0").write_bytes(b"".join(lines))
    out = tmp_path / "r"
    assert run(params_file, "--capture", str(tmp_path / "bucket"), "--profile", str(model_tarball), "--out",
               str(out), "--no-tracking") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["records"], summary["unreadable_lines"], summary["damaged_files"]) == (699, 1, 0)


def test_a_window_without_records_removes_an_earlier_report_from_its_folder(
        tmp_path: Path, params_file: Path, model_tarball: Path, profile: dict, live: pd.DataFrame) -> None:
    # Given a report of a window that had records
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:600]))
    out = tmp_path / "r"
    assert run(params_file, "--capture", str(folder), "--profile", str(model_tarball), "--out", str(out),
               "--no-tracking") == 0
    assert (out / "report.html").exists() and (out / "drift.png").exists()
    # When a later window in the same folder has none (and a bare profile names no version: nothing to compare),
    # then no earlier report stands beside its summary
    bare = tmp_path / "profile.json"
    bare.write_text(json.dumps(profile))
    assert drift.main(["--params", str(params_file), "--since", "2026-01-01", "--until", "2026-01-02",
                       "--capture", str(folder), "--profile", str(bare), "--out", str(out), "--no-tracking"]) == 0
    assert json.loads((out / "summary.json").read_text())["records"] == 0
    assert not (out / "report.html").exists() and not (out / "drift.png").exists()


@pytest.mark.parametrize("records", [600, 0], ids=["report", "not-enough-data"])
def test_a_failed_write_leaves_the_earlier_window_s_outputs_as_they_were(
        tmp_path: Path, params_file: Path, model_tarball: Path, live: pd.DataFrame, records: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an earlier window's summary and report, and a folder where this window's figure would go
    out = tmp_path / "r"
    out.mkdir()
    earlier = {name: f"earlier {name}\n" for name in ("summary.json", "report.html")}
    for name, text in earlier.items():
        (out / name).write_text(text)
    (out / "drift.png").mkdir()
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:records]))
    folder.mkdir(exist_ok=True)
    bare = tmp_path / "profile.json"  # no metadata: without records there is no version, the summary-only path
    with tarfile.open(model_tarball) as tar:
        bare.write_bytes(tar.extractfile("profile.json").read())
    # When drift cannot put its files there
    code = run(params_file, "--capture", str(folder), "--profile", str(bare), "--out", str(out), "--no-tracking")
    # Then it says so in one line, and the earlier summary still stands beside the report it describes
    err = capsys.readouterr().err
    assert {name: (out / name).read_text() for name in earlier} == earlier, "a new summary beside an old report"
    assert code == 2 and f"cannot write {out / 'drift.png'}" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["drift.png", "report.html", "summary.json"], "staging left"


def test_days_reaching_before_the_first_date_is_exit_2_naming_days(tmp_path: Path, params_file: Path,
                                                                  model_tarball: Path, capsys) -> None:
    (tmp_path / "bucket").mkdir()
    assert drift.main(["--params", str(params_file), "--days", "1000000", "--capture", str(tmp_path / "bucket"),
                       "--profile", str(model_tarball), "--no-tracking", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--days 1e+06 reaches before the first date" in err and err.count("\n") == 1, err


def test_days_that_are_not_a_number_is_exit_2_naming_days(tmp_path: Path, params_file: Path, model_tarball: Path,
                                                          capsys) -> None:
    (tmp_path / "bucket").mkdir()
    assert drift.main(["--params", str(params_file), "--days", "nan", "--capture", str(tmp_path / "bucket"),
                       "--profile", str(model_tarball), "--no-tracking", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--days': 'nan' is not a number" in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_column_name_mlflow_refuses_as_a_metric_name_still_logs_its_run(
        tmp_path: Path, params_file: Path, profile: dict, live: pd.DataFrame) -> None:
    # Given a model trained on a table with a column "Attendance (%)" (training takes any column name)
    from tests.monitoring.helpers import tarball_with_profile

    renamed = profile | {"features": {("Attendance (%)" if n == "Attendance" else n): f
                                      for n, f in profile["features"].items()}}
    captures = capture_window(live.iloc[:600])
    for c in captures:
        c["record"]["Attendance (%)"] = c["record"].pop("Attendance")
    folder = write_capture(tmp_path / "bucket", captures)
    # When drift judges a window and logs its run
    code = run(params_file, "--capture", str(folder), "--profile", str(tarball_with_profile(tmp_path / "m", renamed)),
               "--out", str(tmp_path / "r"))
    # Then the run holds the column's scores under a name MLflow takes, instead of the job failing at the end
    assert code == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run_,) = client.search_runs([client.get_experiment_by_name("student-score-monitoring").experiment_id])
    assert run_.data.metrics["psi.Attendance ___"] == pytest.approx(
        json.loads((tmp_path / "r" / "summary.json").read_text())["features"]["Attendance (%)"]["psi"])
