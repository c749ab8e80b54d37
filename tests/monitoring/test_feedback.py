"""``python -m monitoring.feedback``: late labels joined with captured predictions, live accuracy per version,
bad labels counted and reported, and ``--append`` turning labelled records into new rows of the DVC table."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.cli import UserError
from experiments.data import load_table
from experiments.generate import generate
from monitoring import feedback
from monitoring.labels import read_labels
from serving import contract
from tests.conftest import write_params
from tests.monitoring.helpers import capture_window, write_capture

pytestmark = pytest.mark.slow  # a real MLflow store per test
BIN = Path(sys.executable).parent


@pytest.fixture
def store(tmp_path: Path, sample_csv: Path) -> tuple[Path, MlflowClient]:
    """params.yaml and an MLflow registry with versions 1 and 2 of student-score, each with a test RMSE."""
    params_file = write_params(tmp_path, sample_csv)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("student-score")
    (tmp_path / "model").mkdir()
    for _ in (1, 2):
        client.create_model_version("student-score", source=str(tmp_path / "model"), tags={"test_rmse": "2.1"})
    return params_file, client


def traffic(tmp_path: Path, frame: pd.DataFrame, *, version: str, bias: float = 0.0) -> list[dict]:
    from experiments.generate import ground_truth

    captures = capture_window(frame, version=version, predictions=ground_truth(frame) + bias)
    write_capture(tmp_path / "bucket", captures)
    return captures


def labels_file(tmp_path: Path, rows: list[tuple], name: str = "labels.csv") -> Path:
    path = tmp_path / name
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "row", "actual"])
        writer.writerows(rows)
    return path


def truth(captures: list[dict], frame: pd.DataFrame) -> list[tuple]:
    return [(c["request_id"], c["row"], int(score)) for c, score in zip(captures, frame["Exam_Score"], strict=True)]


def run(params_file: Path, tmp_path: Path, labels: Path, *extra: str) -> int:
    return feedback.main(["--params", str(params_file), "--labels", str(labels), "--capture",
                          str(tmp_path / "bucket"), "--out", str(tmp_path / "out"), *extra])


def test_live_accuracy_per_version_is_logged_tagged_and_a_worse_version_exits_1(
        tmp_path: Path, store, capsys: pytest.CaptureFixture[str]) -> None:
    params_file, client = store
    frame = generate(400, 5)
    good = traffic(tmp_path, frame.iloc[:200], version="1")
    bad = traffic(tmp_path, frame.iloc[200:], version="2", bias=3.0)  # three points too high
    labels = labels_file(tmp_path, truth(good, frame.iloc[:200]) + truth(bad, frame.iloc[200:]))

    code = run(params_file, tmp_path, labels)

    assert code == 1
    v1, v2 = (client.get_model_version("student-score", v).tags for v in ("1", "2"))
    assert v1["live.status"] == "ok" and v2["live.status"] == "worse"
    assert float(v1["live.rmse"]) == pytest.approx(2.05, abs=0.35), "noise and rounding, as on the test split"
    assert float(v2["live.rmse"]) > 2.1 * 1.1
    assert v1["live.labels"] == "200" and v1["live.window"].endswith("Z") and v1["live.run_id"]
    experiment = client.get_experiment_by_name("student-score-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["model.version"] for r in runs} == {"1", "2"}
    assert all(r.data.tags["monitor.kind"] == "feedback" and r.data.tags["window.until"] for r in runs)
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {"feedback.json", "rejected_labels.csv"}
    summary = json.loads((tmp_path / "out" / "feedback.json").read_text())
    assert summary["matched"] == 400 and summary["versions"]["2"]["status"] == "worse"
    assert "version 2: 200 labels" in capsys.readouterr().out


def test_every_bad_label_is_counted_reported_and_written_never_dropped(
        tmp_path: Path, store, capsys: pytest.CaptureFixture[str]) -> None:
    params_file, client = store
    frame = generate(150, 6)
    captures = traffic(tmp_path, frame, version="1")
    other = dict(captures[0], request_id="other-model-req", model_name="house-prices")
    refused = contract.refusal_record(request_id="refused-req", status=400, error="bad", records=1,
                                      now=1_764_547_300.0)
    write_capture(tmp_path / "bucket", [other, refused])
    good = truth(captures, frame)
    bad = [(good[0][0], good[0][1], "seventy"), (good[1][0], good[1][1], "inf"), good[2],
           ("no-such-request", 0, 70), ("other-model-req", 0, 70), ("refused-req", 0, 70), (good[3][0], "x", 70),
           (good[4][0], good[4][1], "1e300")]  # beyond float32: no table could train on it
    labels = labels_file(tmp_path, good + bad)

    code = run(params_file, tmp_path, labels)

    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "out" / "feedback.json").read_text())
    assert summary["labels"] == 158 and summary["matched"] == 150
    assert summary["rejected"] == {"actual not a finite number": 3, "bad row": 1, "duplicate label": 1,
                                   "request of another model": 1, "refused request": 1, "unknown request id": 1,
                                   "row not in its request": 0}
    rejected = list(csv.DictReader((tmp_path / "out" / "rejected_labels.csv").open()))
    assert len(rejected) == 8 and {r["line"] for r in rejected} == {str(n) for n in range(152, 160)}
    assert "rejected 3: actual not a finite number" in out and "rejected 1: unknown request id" in out
    assert "version 1: 150 labels" in out and out.rstrip().endswith(": ok"), "the good labels still count"


@pytest.mark.parametrize("append", [False, True], ids=["feedback", "append"])
def test_labels_of_which_none_joins_are_exit_2_and_nothing_is_recorded(
        tmp_path: Path, store, capsys: pytest.CaptureFixture[str], append: bool) -> None:
    # Given a window of traffic, and labels for it whose every actual is not a number, or whose ids are unknown
    params_file, client = store
    frame = generate(120, 11)
    captures = traffic(tmp_path, frame, version="1")
    rows = [(c["request_id"], c["row"], "n/a") for c in captures[:60]] + [(f"other-{i}", 0, 70) for i in range(60)]
    before = client.get_model_version("student-score", "1").tags
    # When the feedback job runs (or appends), then it is exit 2 in one line naming the reasons and the report
    code = run(params_file, tmp_path, labels_file(tmp_path, rows), *(["--append"] if append else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: none of the 120 labels joined a captured prediction (60 actual not a finite number, "
                          "60 unknown request id); see ") and err.count("\n") == 1
    assert len(list(csv.DictReader((tmp_path / "out" / "rejected_labels.csv").open()))) == 120
    # and no version is tagged, no monitoring run logged
    assert client.get_model_version("student-score", "1").tags == before
    experiment = client.get_experiment_by_name("student-score-monitoring")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_a_row_is_read_as_a_count_and_one_its_request_lacks_is_named(
        tmp_path: Path, store, capsys: pytest.CaptureFixture[str]) -> None:
    # Given 110 captured records (ten per request), labelled with rows as a spreadsheet may write them ("03")
    params_file, _ = store
    frame = generate(110, 12)
    captures = traffic(tmp_path, frame, version="1")
    good = truth(captures, frame)
    odd = [(good[0][0], f"{good[0][1]:02d}", 70), (good[1][0], "10", 70), (good[2][0], "١", 70),
           (good[3][0], "9" * 5000, 70)]
    # When they are joined
    assert run(params_file, tmp_path, labels_file(tmp_path, [(i, f"0{r}", a) for i, r, a in good[4:]] + odd)) == 0
    # Then "03" is row 3 and joins; row 10 of a ten-record request is named as such, not as an unknown id;
    # digits of another script and 5,000 digits are bad rows
    summary = json.loads((tmp_path / "out" / "feedback.json").read_text())
    assert summary["matched"] == 107
    assert {k: v for k, v in summary["rejected"].items() if v} == {"row not in its request": 1, "bad row": 2}
    capsys.readouterr()


def test_a_labels_file_without_the_columns_is_exit_2(tmp_path: Path, store, capsys) -> None:
    params_file, _ = store
    (tmp_path / "bucket").mkdir()
    bad = tmp_path / "labels.csv"
    bad.write_text("id,score\nx,1\n")
    assert run(params_file, tmp_path, bad) == 2
    assert "needs the column(s) ['request_id', 'actual']" in capsys.readouterr().err
    assert run(params_file, tmp_path, tmp_path / "missing.csv") == 2


def test_a_labels_file_saved_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    # A spreadsheet's "CSV UTF-8" starts with U+FEFF; read as plain UTF-8 it named the column '\ufeffrequest_id'.
    path = tmp_path / "labels.csv"
    path.write_bytes("request_id,actual\r\nabc,71\r\n".encode("utf-8-sig"))
    (label,) = read_labels(path)
    assert (label.request_id, label.row, label.actual, label.line) == ("abc", "0", "71", 2)


def test_a_labels_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "labels.csv")  # click's dir_okay=False lets it through; reading it waits for a writer
    with pytest.raises(UserError, match=r"labels\.csv: not a regular file$"):
        read_labels(tmp_path / "labels.csv")


def test_too_few_labels_is_not_an_alarm(tmp_path: Path, store) -> None:
    params_file, client = store
    frame = generate(20, 8)
    captures = traffic(tmp_path, frame, version="1", bias=10.0)
    assert run(params_file, tmp_path, labels_file(tmp_path, truth(captures, frame))) == 0
    assert client.get_model_version("student-score", "1").tags["live.status"] == "not enough labels"


def test_a_version_without_a_test_rmse_is_exit_2(tmp_path: Path, store, capsys) -> None:
    params_file, client = store
    client.delete_model_version_tag("student-score", "1", "test_rmse")
    frame = generate(10, 9)
    captures = traffic(tmp_path, frame, version="1")
    assert run(params_file, tmp_path, labels_file(tmp_path, truth(captures, frame))) == 2
    assert "has no test_rmse tag" in capsys.readouterr().err


def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)


@pytest.fixture
def repo(tmp_path: Path, store, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DVC project (no git) whose data/ holds a copy of the sample table, as the cwd."""
    params_file, _ = store
    (tmp_path / "data").mkdir()
    table = tmp_path / "data" / "students.csv"
    table.write_bytes(sample_csv.read_bytes())
    raw = yaml.safe_load(params_file.read_text())
    raw["data"]["path"] = "data/students.csv"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    _dvc(tmp_path, "init", "--no-scm", "-q")
    _dvc(tmp_path, "add", "-q", "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_append_adds_each_labelled_record_once_as_served_and_versions_the_data(
        repo: Path, store, capsys: pytest.CaptureFixture[str]) -> None:
    params_file, _ = store
    table = repo / "data" / "students.csv"
    before_rows, before_md5 = len(pd.read_csv(table)), yaml.safe_load((repo / "data.dvc").read_text())
    frame = generate(120, 12)
    captures = traffic(repo, frame, version="1")
    labels = labels_file(repo, truth(captures, frame))

    assert run(params_file, repo, labels, "--append") == 0

    after = load_table(table, "Exam_Score")  # the training stage's own boundary checks
    assert len(after) == before_rows + 120
    served = pd.DataFrame([c["record"] for c in captures])
    tail = after.tail(120).reset_index(drop=True)
    assert tail["Hours_Studied"].tolist() == served["Hours_Studied"].tolist()
    assert tail["Gender"].tolist() == served["Gender"].tolist()
    assert tail["Exam_Score"].tolist() == frame["Exam_Score"].tolist()
    assert np.array_equal(tail["Teacher_Quality"].isna(), served["Teacher_Quality"].isna())
    assert yaml.safe_load((repo / "data.dvc").read_text()) != before_md5, "dvc add recorded a new data version"
    out = capsys.readouterr().out
    assert "appended 120 new rows" in out and "git add data.dvc" in out and "dvc push" in out

    assert run(params_file, repo, labels, "--append") == 0
    assert len(pd.read_csv(table)) == before_rows + 120, "the same labels twice add nothing"
    assert "appended 0 new rows" in capsys.readouterr().out


def test_a_table_saved_with_a_byte_order_mark_takes_the_appended_rows(repo: Path, store,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Given the table as a spreadsheet saves it (a UTF-8 byte-order mark first), which training reads past
    params_file, _ = store
    table = repo / "data" / "students.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    before = len(load_table(table, "Exam_Score"))
    frame = generate(20, 15)
    captures = traffic(repo, frame, version="1")
    # When labelled records are appended, then they fit its columns (the mark is not part of the first name)
    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") == 0
    assert "appended 20 new rows" in capsys.readouterr().out
    assert len(load_table(table, "Exam_Score")) == before + 20


def test_a_table_that_is_not_utf8_stops_append_in_one_line(repo: Path, store, capsys: pytest.CaptureFixture[str]) -> None:
    params_file, _ = store
    table = repo / "data" / "students.csv"
    table.write_bytes(table.read_bytes().replace(b"Male", b"M\xe4le", 1))
    before = table.read_bytes()
    frame = generate(5, 16)
    captures = traffic(repo, frame, version="1")
    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") != 0
    err = capsys.readouterr().err
    assert "the table is not UTF-8 text" in err and "Traceback" not in err
    assert table.read_bytes() == before


def test_records_that_do_not_fit_the_table_are_reported_not_appended(repo: Path, store,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    params_file, _ = store
    frame = generate(10, 13)
    captures = capture_window(frame, version="1")
    for c in captures[:3]:
        del c["record"]["Gender"]  # dropped at capture (personal data)
    captures[3]["record"]["Attendance"] = "eighty"
    captures[4]["record"]["Hours_Studied"] = 10**400  # JSON digits no float can hold
    write_capture(repo / "bucket", captures)
    table = repo / "data" / "students.csv"
    rows = len(pd.read_csv(table))

    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") == 0

    out = capsys.readouterr().out
    assert len(pd.read_csv(table)) == rows + 5
    assert out.count("fields differ from the table (missing ['Gender']") == 3
    assert "'Attendance' does not fit the table's numeric column" in out
    assert "'Hours_Studied' does not fit the table's numeric column" in out


def test_a_labels_column_named_twice_is_exit_2(tmp_path: Path, store, capsys) -> None:
    params_file, client = store
    (tmp_path / "bucket").mkdir()
    bad = tmp_path / "labels.csv"
    bad.write_text("request_id,row,actual,actual\nx,0,70,90\n")
    assert run(params_file, tmp_path, bad) == 2
    assert "names the column(s) ['actual'] more than once" in capsys.readouterr().err
    assert "live.status" not in client.get_model_version("student-score", "1").tags


@pytest.mark.parametrize("damage", ["null", "text", "beyond-a-double", "beyond-float32", "no-version",
                                    "request-id-a-list"])
def test_a_prediction_record_without_a_number_or_a_version_is_an_unreadable_line(
        tmp_path: Path, store, damage: str) -> None:
    # Given 150 labelled predictions of version 1, one of them damaged in the capture
    params_file, client = store
    frame = generate(150, 14)
    captures = capture_window(frame, version="1")
    damaged = captures[7]
    if damage == "no-version":
        del damaged["model_version"]
    elif damage == "request-id-a-list":
        damaged["request_id"] = [0]
    else:
        damaged["prediction"] = {"null": None, "text": "abc", "beyond-a-double": 10**400,
                                 "beyond-float32": 1.7e308}[damage]
    write_capture(tmp_path / "bucket", captures)
    # When the labels are joined, then the damaged record is counted as unreadable and the rest are scored
    assert run(params_file, tmp_path, labels_file(tmp_path, truth(captures, frame))) == 0
    summary = json.loads((tmp_path / "out" / "feedback.json").read_text())
    assert summary["matched"] == 149 and summary["versions"]["1"]["labels"] == 149
    assert summary["unreadable_lines"] == 1


def test_a_damaged_ledger_stops_append_before_anything_is_recorded(repo: Path, store, capsys) -> None:
    params_file, client = store
    (repo / "data" / "students.requests.csv").write_text("foo,bar\n1,2\n")
    table = repo / "data" / "students.csv"
    before = table.read_bytes()
    frame = generate(120, 15)
    captures = traffic(repo, frame, version="1")
    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") == 2
    assert "the ledger's header must be request_id,row" in capsys.readouterr().err
    assert table.read_bytes() == before
    assert "live.status" not in client.get_model_version("student-score", "1").tags, "no registry tag written"


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_ledger_that_is_not_a_file_stops_append_before_the_table_changes(repo: Path, store, capsys,
                                                                           kind: str) -> None:
    # A ledger taken for "none yet" let the rows in, then failed to record them: the next run appended them again
    params_file, client = store
    ledger = repo / "data" / "students.requests.csv"
    ledger.mkdir() if kind == "folder" else os.mkfifo(ledger)
    table = repo / "data" / "students.csv"
    before = table.read_bytes()
    frame = generate(120, 16)
    captures = traffic(repo, frame, version="1")
    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") == 2
    err = capsys.readouterr().err
    assert "the ledger is not a regular file" in err and err.count("\n") == 1
    assert table.read_bytes() == before
    assert "live.status" not in client.get_model_version("student-score", "1").tags, "no registry tag written"


@pytest.mark.parametrize("append", [False, True], ids=["feedback", "append"])
def test_a_labels_file_with_a_header_only_is_exit_2(tmp_path: Path, store, capsys, append: bool) -> None:
    params_file, _ = store
    (tmp_path / "bucket").mkdir()
    assert run(params_file, tmp_path, labels_file(tmp_path, []), *(["--append"] if append else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the labels CSV has a header but no labels" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_the_earlier_feedback_as_it_was(tmp_path: Path, store, capsys) -> None:
    # Given an earlier run's feedback.json, and a folder where this run's rejected labels would go
    params_file, client = store
    out = tmp_path / "out"
    out.mkdir()
    (out / "feedback.json").write_text("earlier\n")
    (out / "rejected_labels.csv").mkdir()
    frame = generate(20, 17)
    captures = traffic(tmp_path, frame, version="1")
    # When feedback cannot put its files there
    code = run(params_file, tmp_path, labels_file(tmp_path, truth(captures, frame)))
    # Then the earlier feedback.json is not replaced by one whose rejected labels were never written
    assert (out / "feedback.json").read_text() == "earlier\n"
    err = capsys.readouterr().err
    assert code == 2 and f"cannot write {out / 'rejected_labels.csv'}" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["feedback.json", "rejected_labels.csv"], "staging left"
    assert "live.status" not in client.get_model_version("student-score", "1").tags, "nothing recorded"


def test_append_where_no_record_fits_the_table_is_exit_2(repo: Path, store, capsys) -> None:
    # Given labelled records that all lack a column of the table (dropped at capture)
    params_file, client = store
    frame = generate(10, 18)
    captures = capture_window(frame, version="1")
    for c in captures:
        del c["record"]["Gender"]
    write_capture(repo / "bucket", captures)
    table = repo / "data" / "students.csv"
    before = table.read_bytes()
    # When they are appended, then nothing is, and the job says so instead of exiting 0
    assert run(params_file, repo, labels_file(repo, truth(captures, frame)), "--append") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: none of the 10 labelled records fits") and err.count("\n") == 1, err
    assert "missing ['Gender']" in err and "nothing appended, logged or tagged" in err
    assert table.read_bytes() == before
    # And nothing was recorded for a job that failed: a fixed re-run would log and tag the same labels again
    assert "live.status" not in client.get_model_version("student-score", "1").tags
    assert not [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
                if r.data.tags.get("mlflow.runName", "").startswith("feedback")], "no feedback run"
