"""Owns the train stage's DVC outputs (``model/``, ``metrics.json``, ``plots/*.csv``): built aside, put in place together.

They are written into a hidden folder beside them first, recorded in MLflow from there, and moved into place only
once the training has been recorded and registered. A training that fails on the way (an MLflow store that refuses
an artifact, another training that took the run over, a model that fails its self-test) leaves the outputs of the
last good training as they were, never a ``metrics.json`` describing a model that no registry holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from core.cli import UserError
from experiments.parent_run import PLOT_POINTS, sample_points

MODEL_DIR = Path("model")
METRICS_FILE = Path("metrics.json")
PLOTS_DIR = Path("plots")
PLOT_FILES = ("predictions.csv", "trials.csv")
STAGING_PREFIX = ".train-outputs."


@dataclass(frozen=True)
class Staged:
    """Where the outputs are written before they are put in place."""

    folder: Path

    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL_DIR.name

    @property
    def metrics_file(self) -> Path:
        return self.folder / METRICS_FILE.name

    @property
    def plots_dir(self) -> Path:
        return self.folder / PLOTS_DIR.name


@contextlib.contextmanager
def staged() -> Iterator[Staged]:
    """A folder to write the outputs into; they replace the real ones only when the block ends without an error.

    The folder is made beside the outputs, so that each is put in place by a rename.

    Raises:
        UserError: the folder cannot be made, or the outputs cannot be moved into place.
    """
    try:
        folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=MODEL_DIR.parent))
    except OSError as err:
        raise UserError(f"cannot write the stage's outputs in {MODEL_DIR.parent.resolve()}: "
                        f"{err.strerror or err}") from None
    try:
        yield Staged(folder)
        try:
            _put_in_place(Staged(folder))
        except OSError as err:
            raise UserError(f"cannot put the stage's outputs in place ({err.filename or Path.cwd()}: "
                            f"{err.strerror or err})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _put_in_place(out: Staged) -> None:
    """Each file by a rename; the model folder by renaming the old one aside first (a folder cannot be renamed
    over another that holds files)."""
    PLOTS_DIR.mkdir(exist_ok=True)
    for name in PLOT_FILES:
        os.replace(out.plots_dir / name, PLOTS_DIR / name)
    if MODEL_DIR.is_symlink() or MODEL_DIR.is_file():
        MODEL_DIR.unlink()
    elif MODEL_DIR.exists():
        MODEL_DIR.rename(out.folder / "previous-model")  # removed with the staging folder
    out.model_dir.rename(MODEL_DIR)
    os.replace(out.metrics_file, METRICS_FILE)  # last: DVC's metrics name the model now in place


def write_dvc_files(out: Staged, study: optuna.Study, actual: np.ndarray, predicted: np.ndarray,
                    metrics: dict[str, float]) -> None:
    """The plots DVC shows (test predictions, CV RMSE per trial) and ``metrics.json``, into the staging folder."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    values = [t.value for t in complete]
    out.plots_dir.mkdir(exist_ok=True)
    # Committed to git for `dvc plots`: a sample of a big test split, every row of a small one.
    shown = sample_points(len(actual), PLOT_POINTS, seed=0)
    pd.DataFrame({"actual": actual[shown], "predicted": np.round(predicted[shown], 4)}).to_csv(
        out.plots_dir / "predictions.csv", index=False)
    pd.DataFrame({"trial": [t.number for t in complete], "cv_rmse": np.round(values, 5),
                  "best_cv_rmse": np.round(np.minimum.accumulate(values), 5) if values else []}).to_csv(
        out.plots_dir / "trials.csv", index=False)
    nested = {"test": {k.removeprefix("test_"): round(v, 5) for k, v in metrics.items() if k.startswith("test_")},
              "baseline": {k.removeprefix("baseline_"): round(v, 5) for k, v in metrics.items()
                           if k.startswith("baseline_")},
              "cv_rmse": round(metrics["cv_rmse"], 5),
              "trials": {"complete": len(complete),
                         "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}}
    out.metrics_file.write_text(json.dumps(nested, indent=2) + "\n", encoding="utf-8")
