"""The train stage when its MLflow store fails part-way: one line, nothing half-written, no version left behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments import outputs
from experiments import train as train_module
from tests.conftest import FAST_TRAIN, ROOT, write_params

OUTPUTS = ("model", "metrics.json", "plots")


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


@contextmanager
def _locked_after_first_trial(db: Path) -> Iterator[threading.Event]:
    """Another process's write lock on the store (a real ``database is locked``), taken once trial 0 is logged."""
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        while not done.is_set():
            try:
                if _rows(db, "SELECT count(*) FROM runs WHERE name = 'trial-000' AND status = 'FINISHED'")[0][0]:
                    break
            except sqlite3.OperationalError:  # the store's tables are not made yet
                pass
            time.sleep(0.05)
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        done.wait()
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield locked
    finally:
        done.set()
        thread.join()


@pytest.mark.slow
def test_a_store_that_fails_while_trials_are_logged_is_one_line_and_writes_nothing(workdir: Path, sample_csv: Path,
                                                                                   capsys) -> None:
    # Given a fresh project whose MLflow store another process locks once the first trial is logged
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN | {"n_trials": 4})
    db = workdir / "mlflow.db"

    # When the training runs
    with _locked_after_first_trial(db) as locked:
        code = train_module.main(["--params", str(params_file)])
        assert locked.is_set(), "the lock was never taken: the search ended before trial 0 was logged"

    # Then it fails in one line naming the store and what failed (it was a sqlalchemy traceback) ...
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith(f"error: MLflow tracking store sqlite:///{db}: logging trial ") and "locked" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    # ... no output was written, no staging folder is left and nothing is registered
    assert not [name for name in OUTPUTS if (workdir / name).exists()]
    assert not list(workdir.glob(f"{outputs.STAGING_PREFIX}*"))
    assert _rows(db, "SELECT count(*) FROM model_versions") == [(0,)]


@pytest.mark.slow
def test_outputs_that_cannot_be_put_in_place_withdraw_the_version_just_registered(workdir: Path, sample_csv: Path,
                                                                                   capsys) -> None:
    # Given a project where a file stands where the plots folder goes: the training records and registers its
    # model, then cannot put its outputs in place
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN | {"n_trials": 1})
    (workdir / "plots").write_text("not a folder")

    # When the training runs
    code = train_module.main(["--params", str(params_file)])

    # Then it fails in one line saying the outputs could not be put in place and the version was withdrawn ...
    err = capsys.readouterr().err  # after MLflow's own "Created version '1'" lines
    assert code == 1, err
    last = err.splitlines()[-1]
    assert last.startswith("error: cannot put the stage's outputs in place") and "withdrawn" in last, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    # ... the registry offers no version of a FAILED run (it left version 1 behind), and the run is FAILED
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.search_model_versions("name = 'student-score'") == []
    runs = dict(_rows(workdir / "mlflow.db", "SELECT name, status FROM runs"))
    assert [status for name, status in runs.items() if name.startswith("train-")] == ["FAILED"], runs
    assert not (workdir / "model").exists() and not (workdir / "metrics.json").exists()


@pytest.mark.slow
def test_the_next_training_after_a_store_failure_resumes_and_every_trial_is_one_run(workdir: Path,
                                                                                  sample_csv: Path) -> None:
    # Given a training stopped by its store locked once trial 0 was logged
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN | {"n_trials": 4})
    db = workdir / "mlflow.db"
    def train() -> subprocess.CompletedProcess:  # a process of its own each time, as dvc repro runs it
        return subprocess.run([sys.executable, "-m", "experiments.train", "--params", str(params_file)], cwd=workdir,
                              env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)

    with _locked_after_first_trial(db) as locked:
        first = train()
    assert locked.is_set() and first.returncode == 1 and "locked" in first.stderr, first.stderr

    # When it is run again with the store free
    again = train()

    # Then it finishes, and the study's every trial is one child run in the state it ended in, under one parent
    out = again.stdout
    assert again.returncode == 0, again.stderr
    runs = _rows(db, "SELECT r.name, r.status, t.value FROM runs r LEFT JOIN tags t ON t.run_uuid = r.run_uuid "
                     "AND t.key = 'mlflow.parentRunId' ORDER BY r.start_time")
    parents = [(name, status) for name, status, parent in runs if parent is None]
    trials = [(name, status) for name, status, parent in runs if parent is not None]
    assert [status for _, status in parents] == ["FINISHED"], (parents, out)
    # (the trial whose logging the lock stopped was complete in the study, and went unlogged)
    assert sorted(name for name, _ in trials) == [f"trial-{i:03d}" for i in range(len(trials))], (trials, out)
    assert len(trials) >= 4 and all(status == "FINISHED" for _, status in trials), trials
    assert _rows(db, "SELECT count(*) FROM model_versions") == [(1,)]
