"""Shared fixtures: the project root, sample data and params files pointed at throwaway stores."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "student_performance.csv"


def write_params(folder: Path, csv: Path, **sections: dict) -> Path:
    """Copy params.yaml into ``folder`` with stores inside it; ``sections`` override keys per section."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = str(csv)
    params["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    params["train"]["storage"] = f"journal:{folder / 'optuna.journal'}"
    for section, values in sections.items():
        params[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def foreign_sqlite(path: Path, content: str) -> Path:
    """A SQLite file at ``path`` that is no MLflow store: ``zero-bytes`` (touched, or left by a failed copy) or
    ``other-tables`` (another program's database)."""
    path.touch()
    if content == "other-tables":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE notes (x)")
            conn.commit()
    return path


FAST_TRAIN = {"n_trials": 3, "cv_folds": 2, "max_rounds": 80, "early_stopping_rounds": 10,
              "pruner_startup_trials": 1}


@pytest.fixture(autouse=True, scope="session")
def _stand_in_captures_stay_out_of_the_work_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The stand-in (in-process or in a subprocess) captures into a temp folder, not params.yaml's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STAND_IN_CAPTURE_DIR", str(tmp_path_factory.mktemp("stand-in-captures")))
        yield


@pytest.fixture(autouse=True)
def _tracking_uri_does_not_leak() -> Iterator[None]:
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, which every later CLI would obey: undo it."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    _restore_tracking_uri(before)


@pytest.fixture(autouse=True)
def _model_code_paths_do_not_leak() -> Iterator[None]:
    """Loading an MLflow model from code puts its code path first on sys.path, where it stays. Modules already
    imported are unaffected, but a process spawned later (the stand-in's Lambda instances) inherits the path
    and would import ``serving`` from the model's copy, which holds only the predict path: undo it."""
    before = list(sys.path)
    yield
    if sys.path != before:
        sys.path[:] = before


def _restore_tracking_uri(value: str | None) -> None:
    if value is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = value


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder as the current directory (train writes model/, metrics.json, plots/ there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    """The DVC-tracked sample table (``make test`` runs ``dvc pull`` first)."""
    if not SAMPLE_CSV.is_file():
        pytest.fail(f"{SAMPLE_CSV} is missing: run `make data` (dvc pull) before the tests")
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def default_training(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path):
    """One training with the repository's default params on the sample data, shared by model tests."""
    from core.params import load_params
    from experiments.train import train

    folder = tmp_path_factory.mktemp("default-training")
    params = load_params(write_params(folder, sample_csv))
    old = Path.cwd()
    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(folder)
    try:
        result = train(params)
    finally:
        os.chdir(old)
        _restore_tracking_uri(saved_uri)
    return folder, params, result

