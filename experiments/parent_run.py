"""Owns the training's parent MLflow run: whether a study's run can be resumed, and what it records at the end.

At the end of a training the parent run holds the best parameters, the test and baseline metrics, lineage
tags, the table as a dataset input, four plots, ``metrics.json``, the reference profile and the pyfunc model, which is then
registered as a new version carrying the same lineage tags.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import xgboost as xgb
from mlflow.tracking import MlflowClient

from core.params import Params
from experiments import packaging, plots
from experiments.data import Prepared
from serving.predictor import Schema
from serving.profile import PROFILE_FILE


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


def registered_version(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The version of ``name`` registered from training run ``run_id``, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def record(outcome: Outcome, *, model_dir: Path, metrics_file: Path) -> str:
    """Log the outcome to the active run, register its model and return the new version number."""
    params, schema, data = outcome.params, outcome.schema, outcome.data
    mlflow.log_params({f"best.{k}": v for k, v in outcome.best_params.items()} | {
        "best.rounds": outcome.rounds, "n_trials": params.train.n_trials, "cv_folds": params.train.cv_folds,
        "seed": params.train.seed, "test_size": params.data.test_size})
    mlflow.log_metrics(outcome.metrics)
    mlflow.set_tags(outcome.lineage | {"target": schema.target})
    dataset = mlflow.data.from_pandas(data.frame, source=str(params.data.path), targets=schema.target,
                                      name=f"{params.data.path.name}@{data.data_hash[:8]}")
    mlflow.log_input(dataset, context="training")
    _log_plots(outcome)
    mlflow.log_artifact(str(metrics_file))
    mlflow.log_artifact(str(model_dir / PROFILE_FILE))  # the reference profile, readable without the model

    info = packaging.log_pyfunc(model_dir, schema, data.frame[schema.names])
    metrics = outcome.metrics
    tags = outcome.lineage | {"run_id": mlflow.active_run().info.run_id, "test_rmse": f"{metrics['test_rmse']:.6f}",
                              "baseline_rmse": f"{metrics['baseline_rmse']:.6f}",
                              "booster": outcome.best_params["booster"]}
    registered = mlflow.register_model(info.model_uri, params.model.name, tags=tags)
    return str(registered.version)


def _log_plots(outcome: Outcome) -> None:
    actual, predicted = outcome.data.y_test, outcome.test_pred
    values = outcome.completed_values()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(actual, predicted, folder / "predicted_vs_actual.png")
        plots.residuals(actual, predicted, folder / "residuals.png")
        plots.feature_importance(*plots.importance(outcome.booster, outcome.schema, outcome.best_params["booster"]),
                                 folder / "feature_importance.png")
        plots.optimisation_history(values, list(np.minimum.accumulate(values)), folder / "optimisation_history.png")
        mlflow.log_artifacts(tmp, artifact_path="plots")
