"""The train stage's outputs: put in place only once the training is recorded, never from a failed one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments import outputs
from experiments import train as train_module
from tests.conftest import FAST_TRAIN, write_params

OLD = {"metrics.json": '{"test": {"rmse": 1.0}}\n', "model/booster.ubj": "old booster",
       "plots/predictions.csv": "actual,predicted\n1,1\n", "plots/trials.csv": "trial,cv_rmse,best_cv_rmse\n"}


def _write_old_outputs(folder: Path) -> None:
    for name, text in OLD.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(text)


def _contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` but the staging folder's."""
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*")
            if p.is_file() and not p.relative_to(folder).parts[0].startswith(outputs.STAGING_PREFIX)}


def test_outputs_replace_the_old_ones_all_together_and_leave_no_staging_folder(workdir: Path) -> None:
    _write_old_outputs(workdir)
    (workdir / "model" / "stale.json").write_text("{}")  # a file the new model does not have goes with the old one

    with outputs.staged() as out:
        out.model_dir.mkdir()
        (out.model_dir / "booster.ubj").write_text("new booster")
        out.metrics_file.write_text("{}\n")
        out.plots_dir.mkdir()
        for name in outputs.PLOT_FILES:
            (out.plots_dir / name).write_text("new\n")
        assert _contents(workdir) == OLD | {"model/stale.json": "{}"}, "nothing in place before the block ends"

    assert not list(workdir.glob(f"{outputs.STAGING_PREFIX}*"))
    assert _contents(workdir) == {"metrics.json": "{}\n", "model/booster.ubj": "new booster",
                                  "plots/predictions.csv": "new\n", "plots/trials.csv": "new\n"}


@pytest.mark.slow
def test_a_training_mlflow_cannot_record_leaves_the_old_outputs_and_one_line(workdir: Path, sample_csv: Path,
                                                                              capsys) -> None:
    # Given the outputs of an earlier training, and an experiment whose artifact folder cannot be made (a file
    # stands where it should be): the run and its trials log, the first artifact does not
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN | {"n_trials": 1})
    _write_old_outputs(workdir)
    (workdir / "blocker").write_text("a file")
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    MlflowClient(store).create_experiment("student-score", artifact_location=(workdir / "blocker" / "a").as_uri())
    capsys.readouterr()  # MLflow's own lines as it made the store

    # When the training runs, then it fails in one line (it was a NotADirectoryError traceback) ...
    assert train_module.main(["--params", str(params_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: MLflow tracking store ") and "recording the training failed" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err

    # ... the outputs are the earlier training's (they were overwritten with the unregistered model's), no
    # staging folder is left, nothing is registered and the run is FAILED, not RUNNING
    assert {name: (workdir / name).read_text() for name in OLD} == OLD
    assert [p.name for p in (workdir / "model").iterdir()] == ["booster.ubj"], "no new schema or profile beside it"
    assert not list(workdir.glob(f"{outputs.STAGING_PREFIX}*"))
    with sqlite3.connect(workdir / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM model_versions").fetchone() == (0,)
        statuses = dict(db.execute("SELECT name, status FROM runs"))
    assert [status for name, status in statuses.items() if name.startswith("train-")] == ["FAILED"], statuses

