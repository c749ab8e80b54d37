"""Owns the training's parent MLflow run: who owns it, whether it can be resumed, and what it records at the end.

A run is owned by the process training under it (tag ``training.owner``, ``host:pid:start``, see
``core.liveness``), which also leaves a sign of life (``training.heartbeat``) at least every
``HEARTBEAT_S``. Resuming an unfinished study takes its run over only once that owner is dead: killing
``dvc`` alone leaves the training it started running, and a second ``dvc repro`` would otherwise resume the
same run and both would register a version. Another host's owner is taken for dead after ``STALE_AFTER_S``
without a sign of life. The owner checks it still owns the run before it registers.

At the end of a training the parent run holds the best parameters, the test and baseline metrics, lineage
tags, the table as a dataset input, four plots, ``metrics.json``, the reference profile and the pyfunc model, which is then
registered as a new version carrying the same lineage tags.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.tracking import MlflowClient
from mlflow.types import Schema as MlflowSchema

from core import liveness
from core.cli import UserError, first_line
from core.params import Params
from experiments import packaging, plots
from experiments.data import Prepared
from serving.predictor import Schema
from serving.profile import PROFILE_FILE

# What the parent run plots of a big test split: a sample for the scatter plots.
PLOT_POINTS = 5000
# The steps ``record`` times (with the stage's set-up and trial runs, the parts of what MLflow costs it).
RUN = "parent run"  # params, metrics, tags, the dataset input, metrics.json and the profile; ending the run
FIGURES = "figures"
MODEL = "model"  # the pyfunc model: MLflow checks its requirements and its input example as it logs it
REGISTRY = "registry"


@dataclass(frozen=True)
class Outcome:
    """Everything one finished search produced: what the stage writes and the parent run records."""

    params: Params
    data: Prepared
    study: optuna.Study
    schema: Schema  # with its self-test record and prediction
    booster: xgb.Booster
    best_params: dict[str, Any]
    rounds: int
    metrics: dict[str, float]
    test_pred: np.ndarray
    lineage: dict[str, str]

    def completed_values(self) -> list[float]:
        """The CV RMSE of every complete trial, in trial order."""
        return [t.value for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def live_run(client: MlflowClient, run_id: str | None) -> str | None:
    """``run_id`` if that run still exists in this tracking store, else None."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run_id


OWNER_TAG = "training.owner"
HEARTBEAT_TAG = "training.heartbeat"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


def claim(client: MlflowClient, run_id: str) -> str | None:
    """Check that nobody alive is training under ``run_id`` before this process resumes it.

    Returns:
        Who owned the run and died (to be recorded), or None when the run was not left running.

    Raises:
        UserError: the run's owner is alive, or on another host showed life less than ``STALE_AFTER_S`` ago.
    """
    run = client.get_run(run_id)
    if run.info.status != "RUNNING":
        return None
    owner = liveness.parse(run.data.tags.get(OWNER_TAG))
    if owner is None:
        return "an earlier training that stopped without finishing"
    living = liveness.alive(owner)
    if living is None:
        age = time.time() - float(run.data.tags.get(HEARTBEAT_TAG) or 0)
        if age < STALE_AFTER_S:
            raise UserError(f"MLflow run {run_id} of this study is being trained by {owner.describe()} (last sign "
                            f"of life {age:.0f} s ago; taken for dead after {STALE_AFTER_S:.0f} s without one); "
                            f"wait for it, or stop it there")
    elif living:
        raise UserError(f"MLflow run {run_id} of this study is being trained by {owner.describe()}; wait for it to "
                        f"finish (it registers the model), or stop it (kill {owner.pid}) and run again")
    return f"{owner.describe()}, which died"


def own(client: MlflowClient, run_id: str) -> None:
    """Record this process as the run's owner, with a first sign of life."""
    client.set_tag(run_id, OWNER_TAG, str(liveness.me()))
    client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")


def heartbeat(client: MlflowClient, run_id: str):
    """An Optuna callback refreshing the run's sign of life, at most once per ``HEARTBEAT_S``."""
    last = [time.monotonic()]

    def beat(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() - last[0] >= HEARTBEAT_S:
            client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
            last[0] = time.monotonic()
    return beat


def check_still_owner(client: MlflowClient, run_id: str) -> None:
    """Raise ``UserError`` if another training took this run over (it took this process for dead)."""
    owner = client.get_run(run_id).data.tags.get(OWNER_TAG)
    if owner != str(liveness.me()):
        raise UserError(f"MLflow run {run_id} was taken over by another training ({owner}); not registering "
                        f"a second version from it")


def registered_version(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The version of ``name`` registered from training run ``run_id``, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def record(outcome: Outcome, *, model_dir: Path, metrics_file: Path,
           part: Callable[[str], AbstractContextManager[Any]]) -> str:
    """Log the outcome to the active run, register its model and return the new version number.

    ``part(name)`` wraps each step (``RUN``, ``FIGURES``, ``MODEL``, ``REGISTRY``): the stage times them.
    """
    params, schema, data = outcome.params, outcome.schema, outcome.data
    with part(RUN):
        check_still_owner(mlflow.tracking.MlflowClient(), mlflow.active_run().info.run_id)
        mlflow.log_params({f"best.{k}": v for k, v in outcome.best_params.items()} | {
            "best.rounds": outcome.rounds, "n_trials": params.train.n_trials, "cv_folds": params.train.cv_folds,
            "seed": params.train.seed, "test_size": params.data.test_size})
        mlflow.log_metrics(outcome.metrics)
        mlflow.set_tags(outcome.lineage | {"target": schema.target})
        mlflow.log_input(_dataset(outcome), context="training")
        mlflow.log_artifact(str(metrics_file))
        mlflow.log_artifact(str(model_dir / PROFILE_FILE))  # the reference profile, readable without the model
    with part(FIGURES):
        _log_plots(outcome)
    with part(MODEL):
        info = packaging.log_pyfunc(model_dir, schema, data.frame[schema.names])
    metrics = outcome.metrics
    tags = outcome.lineage | {"run_id": mlflow.active_run().info.run_id, "test_rmse": f"{metrics['test_rmse']:.6f}",
                              "baseline_rmse": f"{metrics['baseline_rmse']:.6f}",
                              "booster": outcome.best_params["booster"]}
    with part(REGISTRY):
        registered = mlflow.register_model(info.model_uri, params.model.name, tags=tags)
    return str(registered.version)


def withdraw(client: MlflowClient, name: str, version: str, why: UserError) -> UserError:
    """Delete version ``version`` of ``name``, just registered by a training that then failed (its outputs could not
    be put in place): the registry never offers a model whose run is FAILED. Returns ``why`` saying what was done."""
    try:
        client.delete_model_version(name, version)
    except mlflow.exceptions.MlflowException as err:
        return UserError(f"{why}; version {version} of {name} could not be withdrawn ({first_line(err)}): delete it by "
                         f"hand")
    return UserError(f"{why}; version {version} of {name}, registered just before, withdrawn")


class TrainingTable(PandasDataset):
    """A training table as an MLflow dataset input: its digest, size and columns, declared rather than computed.

    MLflow would otherwise hash every row and infer the columns from them: seconds and gigabytes on a big
    table, for a digest DVC has already computed (the data hash) and columns the model signature declares.
    """

    def __init__(self, table: pd.DataFrame, *, columns: MlflowSchema, **kwargs: Any) -> None:
        super().__init__(df=table.head(0), **kwargs)  # the rows themselves are never logged
        self._columns, self._rows, self._elements = columns, len(table), int(table.size)

    @property
    def schema(self) -> MlflowSchema:
        return self._columns

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows, "num_elements": self._elements}


def _dataset(outcome: Outcome) -> TrainingTable:
    params, data = outcome.params, outcome.data
    return TrainingTable(data.frame, columns=packaging.table_schema(outcome.schema, data.frame),
                         source=resolve_dataset_source(str(params.data.path)),
                         targets=outcome.schema.target, name=f"{params.data.path.name}@{data.data_hash[:8]}",
                         digest=data.data_hash[:20])


def sample_points(count: int, limit: int, seed: int) -> np.ndarray:
    """Indexes of at most ``limit`` of ``count`` points (all of them when fewer), seeded, in order."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def _log_plots(outcome: Outcome) -> None:
    # A scatter of a few thousand points says all a scatter can; a million would take longer than training.
    shown = sample_points(len(outcome.test_pred), PLOT_POINTS, outcome.params.data.split_seed)
    actual, predicted = outcome.data.y_test[shown], outcome.test_pred[shown]
    values = outcome.completed_values()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(actual, predicted, folder / "predicted_vs_actual.png")
        plots.residuals(actual, predicted, folder / "residuals.png")
        plots.feature_importance(*plots.importance(outcome.booster, outcome.schema, outcome.best_params["booster"]),
                                 folder / "feature_importance.png")
        plots.optimisation_history(values, list(np.minimum.accumulate(values)), folder / "optimisation_history.png")
        mlflow.log_artifacts(tmp, artifact_path="plots")
