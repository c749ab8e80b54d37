"""A training killed mid-search, or orphaned by a killed `dvc repro`: one registered version, nothing left RUNNING."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from benchmarks import faults, project_copy
from tests.conftest import FAST_TRAIN, write_params

pytestmark = pytest.mark.slow
# Enough trials that the training is still searching when the test acts on it.
LONG_SEARCH = FAST_TRAIN | {"n_trials": 400}


def _project(tmp_path: Path, sample_csv: Path, **train: object) -> Path:
    return write_params(tmp_path, sample_csv, train=FAST_TRAIN | train)


def test_a_killed_training_is_resumed_and_closes_what_it_left_running(tmp_path: Path, sample_csv: Path) -> None:
    params_file = _project(tmp_path, sample_csv, n_trials=12)
    first = faults.start_training(tmp_path, params_file, tmp_path / "first.log")
    faults.wait_for_trials(first, tmp_path / "first.log", 3)
    left_running = faults.kill_mid_trial(first, tmp_path / "optuna.journal")
    before = faults.run_states(f"sqlite:///{tmp_path / 'mlflow.db'}")["statuses"]
    assert left_running == 1 and before.get("RUNNING"), "the kill left a trial and the parent run open"

    second = faults.start_training(tmp_path, params_file, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-2000:]

    said = (tmp_path / "second.log").read_text()
    assert f"after pid {first.pid} on" in said and "which died" in said
    states = faults.run_states(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "RUNNING" not in states["statuses"], states
    assert states["versions"] == 1, "one training, one version"
    assert len(states["killed"]) >= left_running, "the trial the dead process was running is closed as KILLED"
    assert all(f"pid {first.pid}" in why for why in states["killed"].values()), states["killed"]


def test_a_second_training_refuses_while_the_first_lives(tmp_path: Path, sample_csv: Path) -> None:
    params_file = _project(tmp_path, sample_csv, n_trials=400)
    first = faults.start_training(tmp_path, params_file, tmp_path / "first.log")
    try:
        faults.wait_for_trials(first, tmp_path / "first.log", 2)
        second = faults.start_training(tmp_path, params_file, tmp_path / "second.log")
        assert second.wait(timeout=600) == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    said = (tmp_path / "second.log").read_text().strip().splitlines()
    assert said[-1].startswith("error: MLflow run ") and f"kill {first.pid}" in said[-1], said[-3:]
    assert faults.run_states(f"sqlite:///{tmp_path / 'mlflow.db'}")["versions"] == 0


def _clone(tmp_path: Path, sample_csv: Path) -> Path:
    """A git repo holding the project and the data, as `dvc repro` needs it (no remote: the data is there)."""
    return project_copy.make(tmp_path, leave_out=("infra/", "benchmarks/", "team/"), train=LONG_SEARCH,
                             csv=sample_csv)


def test_killing_only_dvc_leaves_one_owner_and_one_version(tmp_path: Path, sample_csv: Path) -> None:
    clone = _clone(tmp_path / "clone", sample_csv)
    dvc = faults.start_training(clone, clone / "params.yaml", tmp_path / "dvc1.log", command=["dvc", "repro"])
    faults.wait_for_trials(dvc, tmp_path / "dvc1.log", 2)
    orphans = [pid for pid in faults.children(dvc.pid)
               if b"experiments.train" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(dvc.pid, signal.SIGKILL)  # only dvc: its training goes on, orphaned
    dvc.wait()
    assert orphans, "dvc ran the training in a child process"
    try:
        second = faults.start_training(clone, clone / "params.yaml", tmp_path / "dvc2.log", command=["dvc", "repro"])
        assert second.wait(timeout=600) != 0, "a second dvc repro must not resume a run that is being trained"
        assert f"kill {orphans[-1]}" in (tmp_path / "dvc2.log").read_text()
    finally:
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
    assert faults.run_states(f"sqlite:///{clone / 'mlflow.db'}")["versions"] == 0
