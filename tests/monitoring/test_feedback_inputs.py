"""``python -m monitoring.feedback`` given bad or racing input: two appends at once, an append that cannot
happen, a served value training would refuse, a mis-split labels line, and a test RMSE that is not a number."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.data import load_table
from experiments.generate import generate
from monitoring import append
from monitoring.labels import BAD_ROW, NOT_FINITE, join, read_labels
from tests.monitoring import test_feedback as base
from tests.monitoring.helpers import capture_window, write_capture

pytestmark = pytest.mark.slow  # a real MLflow store per test
store, repo = base.store, base.repo  # the fixtures: a registry with versions 1 and 2, a DVC project as the cwd
ROOT = Path(__file__).resolve().parents[2]


def feedback_process(repo: Path, params_file: Path, labels: Path, out: str) -> subprocess.Popen:
    """``python -m monitoring.feedback --append`` as its own process, in ``repo``."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "PATH": f"{base.BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "monitoring.feedback", "--params", str(params_file), "--labels",
                             str(labels), "--capture", str(repo / "bucket"), "--out", str(repo / out), "--append"],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ledger_keys(repo: Path) -> list[tuple[str, str]]:
    with (repo / "data" / "students.requests.csv").open(newline="") as handle:
        return [(r["request_id"], r["row"]) for r in csv.DictReader(handle)]


def test_two_appends_at_once_both_land_in_the_table_and_the_ledger(repo: Path, store) -> None:
    # Given 300 labelled records of version 1 and 300 of version 2, in two labels files
    params_file, _ = store
    table = repo / "data" / "students.csv"
    before = len(pd.read_csv(table))
    frame = generate(600, 21)
    first = base.traffic(repo, frame.iloc[:300], version="1")
    second = base.traffic(repo, frame.iloc[300:], version="2")
    la = base.labels_file(repo, base.truth(first, frame.iloc[:300]), "la.csv")
    lb = base.labels_file(repo, base.truth(second, frame.iloc[300:]), "lb.csv")
    # When both are appended by two processes at once
    jobs = [feedback_process(repo, params_file, la, "out-a"), feedback_process(repo, params_file, lb, "out-b")]
    results = [job.communicate(timeout=300) for job in jobs]
    # Then both succeed, and the table and the ledger hold all 600 records once
    for job, (out, err) in zip(jobs, results, strict=True):
        assert job.returncode == 0, err
        assert "appended 300 new rows" in out
    assert len(load_table(table, "Exam_Score")) == before + 600
    keys = ledger_keys(repo)
    assert len(keys) == len(set(keys)) == 600
    assert {c["request_id"] for c in first + second} == {k for k, _ in keys}


def test_an_append_waits_while_another_holds_the_table(repo: Path, store) -> None:
    # Given another append holding the table
    params_file, client = store
    table = repo / "data" / "students.csv"
    before = table.read_bytes()
    frame = generate(20, 22)
    labels = base.labels_file(repo, base.truth(base.traffic(repo, frame, version="1"), frame))
    with append.locked(table):
        # When the feedback job is asked to append, then it says it waits, and does not touch the table
        job = feedback_process(repo, params_file, labels, "out")
        assert job.stderr is not None
        line = next((line for line in job.stderr if line.startswith("waiting for another append to ")), "")
        assert line.rstrip().endswith(f"{table} to finish"), "the job went on without waiting"
        assert job.poll() is None and table.read_bytes() == before
    # Once it is released, the job goes on and appends
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert "appended 20 new rows" in out and len(ledger_keys(repo)) == 20


def _point_data_at(params_file: Path, path: str) -> None:
    raw = yaml.safe_load(params_file.read_text())
    raw["data"]["path"] = path
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.parametrize(("damage", "message"), [
    ("untracked", "no .dvc file in"), ("missing", "training table not found"),
    ("not-utf8", "the table is not UTF-8 text"), ("no-target", "no target column 'Exam_Score'")])
def test_an_append_that_cannot_happen_stops_before_the_registry_or_mlflow_record_anything(
        repo: Path, store, capsys: pytest.CaptureFixture[str], damage: str, message: str) -> None:
    # Given labelled records, and a table that cannot take them
    params_file, client = store
    table = repo / "data" / "students.csv"
    if damage == "untracked":
        (repo / "t.csv").write_bytes(table.read_bytes())
        _point_data_at(params_file, "t.csv")
    elif damage == "missing":
        _point_data_at(params_file, "data/none.csv")
    elif damage == "not-utf8":
        table.write_bytes(table.read_bytes().replace(b"Male", b"M\xe4le", 1))
    else:
        table.write_bytes(table.read_bytes().replace(b"Exam_Score", b"Score", 1))
    frame = generate(120, 23)
    labels = base.labels_file(repo, base.truth(base.traffic(repo, frame, version="1"), frame))
    # When they are to be appended, then the job stops in one line, before anything is recorded
    assert base.run(params_file, repo, labels, "--append") == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not any(k.startswith("live.") for k in client.get_model_version("student-score", "1").tags)
    assert client.get_experiment_by_name("student-score-monitoring") is None, "no monitoring run was logged"


def test_a_served_value_beyond_float32_is_not_appended(repo: Path, store,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Given a captured record whose Hours_Studied is 1e300 (a double, but beyond the float32 training reads)
    params_file, _ = store
    table = repo / "data" / "students.csv"
    before = len(pd.read_csv(table))
    frame = generate(10, 24)
    captures = capture_window(frame, version="1")
    captures[2]["record"]["Hours_Studied"] = 1e300
    write_capture(repo / "bucket", captures)
    # When the labels are appended
    assert base.run(params_file, repo, base.labels_file(repo, base.truth(captures, frame)), "--append") == 0
    # Then that record is named and left out, and training still loads the table
    out = capsys.readouterr().out
    assert f"not appended {captures[2]['request_id']}#{captures[2]['row']}: 'Hours_Studied'" in out
    assert "appended 9 new rows" in out
    assert len(load_table(table, "Exam_Score")) == before + 9


def test_a_labels_line_with_more_fields_than_the_header_or_an_underscore_is_rejected(tmp_path: Path) -> None:
    # Given a decimal comma splitting one label in two, and a number written with an underscore
    path = tmp_path / "labels.csv"
    path.write_text("request_id,row,actual\nreq-a,0,72,5\nreq-b,0,7_2\nreq-c,0,72\n")
    predictions = [{"request_id": rid, "row": 0, "model_name": "student-score", "prediction": 70.0}
                   for rid in ("req-a", "req-b", "req-c")]
    # When the labels are read and joined
    joined = join(read_labels(path), predictions, [], model="student-score")
    # Then only the clean line joins; the others are rejected, with their lines
    assert [actual for _, actual in joined.matched] == [72.0]
    assert [(label.line, reason) for label, reason in joined.rejected] == [(2, BAD_ROW), (3, NOT_FINITE)]


@pytest.mark.parametrize("test_rmse", ["nan", "inf", "-inf", "0", "-2.1"])
def test_a_test_rmse_that_is_not_a_finite_positive_number_is_exit_2(
        tmp_path: Path, store, capsys: pytest.CaptureFixture[str], test_rmse: str) -> None:
    # Given version 1 tagged with a test RMSE nothing can be compared with
    params_file, client = store
    client.set_model_version_tag("student-score", "1", "test_rmse", test_rmse)
    frame = generate(150, 25)
    captures = base.traffic(tmp_path, frame, version="1", bias=5.0)
    # When its live accuracy is scored, then the job says so for that version, and records nothing
    assert base.run(params_file, tmp_path, base.labels_file(tmp_path, base.truth(captures, frame))) == 2
    err = capsys.readouterr().err
    assert f"version 1 of 'student-score' has test_rmse {test_rmse!r}" in err, err
    assert "live.status" not in client.get_model_version("student-score", "1").tags
