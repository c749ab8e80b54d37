"""Owns the standard MLflow idiom for an Optuna search, as a peer for what our logging costs (NOT our code path).

What most projects write (optuna-integration's documented callback plus MLflow's flavour API): an
``MLflowCallback`` logging each trial as a run, then ``mlflow.xgboost.log_model`` of the refitted booster and
``mlflow.register_model``. It searches with exactly our objective, folds, sampler and pruner on exactly our
data, so that with logging off it is our search, and the difference of the two walls is the idiom's price of
logging, measured the way ``benchmarks/training.py`` measures ours.
"""

from __future__ import annotations

import time
from typing import Any

import mlflow
import optuna
import xgboost as xgb

from core import tracking
from core.params import Params
from experiments import cv, search
from experiments.data import prepare
from experiments.train import regression_metrics


def train(params: Params, *, log: bool) -> dict[str, Any]:
    """One search, refit and (with ``log``) the idiom's logging and registration; wall time and test RMSE."""
    started = time.perf_counter()
    data = prepare(params)
    cfg = params.train
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed,
                                                                   n_startup_trials=max(cfg.pruner_startup_trials, 1)),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                                                   n_warmup_steps=1))
    callbacks = []
    if log:
        from optuna_integration.mlflow import MLflowCallback

        uri = tracking.tracking_uri(params.mlflow.tracking_uri)
        tracking.use_experiment(uri, f"{params.mlflow.experiment}-idiom")
        callbacks.append(MLflowCallback(tracking_uri=uri, metric_name="cv_rmse",
                                        mlflow_kwargs={"experiment_id": mlflow.get_experiment_by_name(
                                            f"{params.mlflow.experiment}-idiom").experiment_id}))
    study.optimize(search.make_objective(data.x_train, data.y_train, params), n_trials=cfg.n_trials,
                   callbacks=callbacks, gc_after_trial=False)
    best = search.from_trial_params(study.best_trial.params)
    booster = cv.fit(data.x_train, data.y_train, best, rounds=int(study.best_trial.user_attrs["rounds"]),
                     seed=cfg.seed, nthread=cfg.nthread)
    metrics = regression_metrics(data.y_test, booster.predict(xgb.DMatrix(data.x_test, nthread=1)))
    version = "unregistered"
    if log:
        with mlflow.start_run(run_name="idiom-final"):
            mlflow.log_params(best)
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            info = mlflow.xgboost.log_model(booster, name="model")
            version = mlflow.register_model(info.model_uri, f"{params.model.name}-idiom").version
    return {"wall_s": time.perf_counter() - started, "test_rmse": metrics["rmse"], "version": str(version)}
