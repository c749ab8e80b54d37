"""Owns the DVC train stage: search, refit, evaluate, log to MLflow and register the best model.

The stage owns its study: it creates it (or resumes it) with its parent MLflow run, runs trials itself and,
when the storage is shared (an RDB URL), waits until workers (``python -m experiments.worker``) and it have
finished ``train.n_trials`` between them before refitting the best. Environment overrides, for a team:
``MLFLOW_TRACKING_URI`` (see experiments/tracking.py) and ``OPTUNA_STORAGE``, the study storage URL, which
replaces ``train.storage`` (a team database URL holds a password, so it does not belong in params.yaml).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec
from mlflow.types import Schema as MlflowSchema
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline

from experiments import plots, search, tracking
from experiments.cli import UserError, run_cli
from experiments.config import Params, load_params
from experiments.data import dvc_data_hash, infer_schema, load_and_split
from serving.predictor import NUMERIC, Predictor, Schema, records_from_frame, save_model_dir

MODEL_DIR = Path("model")
METRICS_FILE = Path("metrics.json")
PLOTS_DIR = Path("plots")
PARENT_RUN_ATTR = "mlflow_parent_run_id"
DIGEST_ATTR = "search_digest"
RETRY_TAG = "optuna.retry_of"
WORKER_ATTR = "worker"
PYFUNC_FILE = Path(__file__).with_name("mlflow_model.py")


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None when trained with log=False
    version: str
    study_name: str
    metrics: dict[str, float]
    best_params: dict[str, Any]


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² of a set of predictions."""
    mse = float(mean_squared_error(actual, predicted))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(actual, predicted)),
            "r2": float(r2_score(actual, predicted))}


@dataclass(frozen=True)
class Prepared:
    """The training table split, encoded and described: what both the stage and a worker search over."""

    frame: pd.DataFrame
    schema: Schema
    x_train: np.ndarray
    y_train: np.ndarray
    test_records: list[dict[str, Any]]
    y_test: np.ndarray
    data_hash: str


def prepare(params: Params) -> Prepared:
    """Load, check, split and encode the table named by params."""
    target = params.data.target
    frame, train_df, test_df = load_and_split(params)
    schema = infer_schema(frame, target, stats_from=train_df)
    features = schema.names
    return Prepared(frame=frame, schema=schema, x_train=schema.encode(records_from_frame(train_df[features])),
                    y_train=train_df[target].to_numpy(dtype=np.float64),
                    test_records=records_from_frame(test_df[features]),
                    y_test=test_df[target].to_numpy(dtype=np.float64), data_hash=dvc_data_hash(params.data.path))


def storage_url(params: Params, storage: str | None = None) -> str:
    """``--storage``, else ``$OPTUNA_STORAGE`` (a team's shared database), else ``train.storage``."""
    return storage or os.environ.get("OPTUNA_STORAGE") or params.train.storage


def _search_settings(params: Params) -> str:
    return json.dumps({"data": params.data.model_dump(mode="json"),
                       "train": params.train.model_dump(mode="json", exclude={"storage", "timeout_s"})},
                      sort_keys=True)


def search_digest(params: Params, data_hash: str) -> str:
    """A digest of everything that makes two trials comparable: the data and the search settings."""
    return hashlib.sha256(f"{data_hash}:{_search_settings(params)}".encode()).hexdigest()[:10]


def study_name(params: Params, data_hash: str) -> str:
    """Same data and same search settings → same study, so an interrupted training resumes it."""
    digest = hashlib.sha256(_search_settings(params).encode()).hexdigest()[:10]
    return f"{params.model.name}-{data_hash[:10]}-{digest}"


class Progress:
    """One line on a terminal (rewritten in place), or a line per trial in a log."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()

    def update(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # One read of the trials, not three: with a shared database every read is a round trip per trial.
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state.is_finished() for t in trials)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            top = min(complete, key=lambda t: t.value)
            best = f"best CV RMSE {top.value:.4f} (trial {top.number})"
        else:
            best = "no complete trial yet"
        line = f"trial {min(done, self.total)}/{self.total}  {trial.state.name.lower():8s}  {best}"
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.tty:
            print(flush=True)


def trial_logger(client: MlflowClient, experiment_id: str, parent_run_id: str):
    """An Optuna callback logging each trial this process finishes as a child run of ``parent_run_id``."""
    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _log_trial(client, experiment_id, parent_run_id, trial)
    return log


def _log_trial(client: MlflowClient, experiment_id: str, parent_run_id: str, trial: optuna.trial.FrozenTrial) -> None:
    metrics = {k: v for k, v in trial.user_attrs.items() if isinstance(v, float)}
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        last = max(trial.intermediate_values)
        metrics["cv_rmse_partial"] = trial.intermediate_values[last]
        metrics["folds_done"] = float(last + 1)
    run_id = tracking.log_trial(client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                                number=trial.number, params=search.from_trial_params(trial.params),
                                metrics=metrics, state=trial.state.name)
    history = trial.system_attrs.get("retry_history")
    if history:
        # Links the re-run to the trial whose worker died, so the pair reads as one trial in `mlflow ui`.
        client.set_tag(run_id, RETRY_TAG, str(history[-1]))


def log_lost_trials(study: optuna.Study, client: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """Log, as FAILED child runs, the failed trials no process logged: those whose worker died mid-trial.

    The heartbeat check marks such a trial failed from another process, where no callback sees it. Returns
    how many were logged.
    """
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if not failed:
        return 0
    logged = {r.data.tags.get(tracking.TRIAL_NUMBER_TAG) for r in tracking.trial_runs(client, experiment_id,
                                                                                      parent_run_id)}
    lost = [t for t in failed if str(t.number) not in logged]
    for trial in lost:
        _log_trial(client, experiment_id, parent_run_id, trial)
    return len(lost)


def make_objective(x: np.ndarray, y: np.ndarray, params: Params):
    """The Optuna objective: cross-validated RMSE of one sampled parameter set, reported fold by fold."""
    cfg = params.train
    folds = search.Folds(x, y, cfg)

    def objective(trial: optuna.Trial) -> float:
        sampled = search.suggest(trial, cfg.search_space)
        # Which machine and process ran a trial, for a team reading a shared study (and a test killing one).
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")

        def report(fold: int, rmse: float) -> None:
            trial.report(rmse, fold)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = search.cross_validate(folds, sampled, cfg, report)
        trial.set_user_attr("cv_rmse", result.rmse)
        trial.set_user_attr("cv_rmse_std", result.rmse_std)
        trial.set_user_attr("rounds", float(result.rounds))
        return result.rmse
    return objective


def _signature(schema: Schema, frame: pd.DataFrame) -> ModelSignature:
    # MLflow refuses int64 -> float64 as unsafe, so integer columns are declared "long" (the container
    # itself accepts any JSON number for a numeric feature).
    def kind(name: str) -> str:
        if schema_kinds[name] != NUMERIC:
            return "string"
        return "long" if pd.api.types.is_integer_dtype(frame[name]) else "double"

    schema_kinds = {f.name: f.kind for f in schema.features}
    inputs = MlflowSchema([ColSpec(kind(f.name), f.name, required=not f.nullable) for f in schema.features])
    return ModelSignature(inputs=inputs, outputs=MlflowSchema([ColSpec("double")]))


def _input_example(frame: pd.DataFrame) -> pd.DataFrame:
    # Raw records, including one with a missing value when the data has any, so users see that null is allowed.
    has_missing = frame[frame.isna().any(axis=1)].head(1)
    return pd.concat([frame.head(2), has_missing]).reset_index(drop=True)


def _importance(booster, schema: Schema, booster_kind: str) -> tuple[list[str], list[float]]:
    """Importance per feature, summing a categorical's one-hot columns.

    Trees report total gain; the linear booster only has coefficients, whose magnitude is comparable
    because numeric inputs are standardised.
    """
    if booster_kind == "gblinear":
        scores = {k: abs(v) for k, v in booster.get_score(importance_type="weight").items()}
    else:
        scores = booster.get_score(importance_type="total_gain")
    per_column = {column: float(scores.get(f"f{i}", 0.0)) for i, column in enumerate(schema.columns)}
    names = schema.names
    gains = [sum(v for c, v in per_column.items() if c == n or c.startswith(f"{n}=")) for n in names]
    return names, gains


def train(params: Params, *, storage: str | None = None, name: str | None = None,
          log: bool = True) -> TrainResult:
    """Run the whole stage. Everything the user can get wrong is checked before anything is logged.

    ``log=False`` runs the same search, refit and outputs without touching MLflow at all (nothing is
    registered): the benchmark prices MLflow logging as the difference between the two.
    """
    data = prepare(params)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sname = name or study_name(params, data.data_hash)
    url = storage_url(params, storage)
    if not log:
        # A study of its own: a logged training must never resume trials that no MLflow run recorded.
        study = search.make_study(name=f"{sname}-unlogged", storage=url, seed=params.train.seed,
                                  startup_trials=params.train.pruner_startup_trials)
        return _search_and_log(params, study, None, None, None, data, search.has_heartbeat(url), log=False)

    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    tracking.check_reachable(uri)
    try:
        experiment_id = tracking.use_experiment(uri, params.mlflow.experiment)
    except mlflow.exceptions.MlflowException as err:
        raise UserError(f"MLflow tracking store {uri}: {str(err).splitlines()[0]}") from None
    client = MlflowClient(uri)
    study = search.make_study(name=sname, storage=url, seed=params.train.seed,
                              startup_trials=params.train.pruner_startup_trials)
    parent_id = _live_parent_run(client, study.user_attrs.get(PARENT_RUN_ATTR))
    done = _registered_version(client, params.model.name, parent_id) if parent_id else None
    if done is not None:
        # Same data, same settings, a finished study whose best model is registered: rewrite the stage's
        # outputs (DVC may have asked for them) but register nothing twice.
        print(f"study {sname} is finished and registered as {params.model.name} version {done}; "
              f"rewriting outputs only", flush=True)
        result = _search_and_log(params, study, client, experiment_id, parent_id, data, False, log=False)
        return replace(result, version=done)
    # An unfinished study resumes under its own parent run; a fresh one (or one whose run is gone, e.g. a
    # different tracking server) gets a new parent run.
    run = mlflow.start_run(run_id=parent_id) if parent_id else mlflow.start_run(run_name=f"train-{sname}")
    # Workers read both attributes: which run to log under, and whether their data and settings match.
    study.set_user_attr(DIGEST_ATTR, search_digest(params, data.data_hash))
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    if search.has_heartbeat(url):
        print(f"study {sname}: more workers can join it with python -m experiments.worker --study {sname}",
              flush=True)
    try:
        result = _search_and_log(params, study, client, experiment_id, run.info.run_id, data,
                                 search.has_heartbeat(url), log)
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")
    return result


def _live_parent_run(client: MlflowClient, run_id: str | None) -> str | None:
    """``run_id`` if that run still exists in this tracking store, else None."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run_id


def _registered_version(client: MlflowClient, name: str, run_id: str) -> str | None:
    """The version of ``name`` registered from training run ``run_id``, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return None
    return str(max(int(v.version) for v in versions)) if versions else None


def _search_and_log(params: Params, study: optuna.Study, client: MlflowClient | None, experiment_id: str | None,
                    run_id: str | None, data: Prepared, heartbeat: bool, log: bool) -> TrainResult:
    cfg = params.train
    frame, schema, x_train, y_train = data.frame, data.schema, data.x_train, data.y_train
    test_records, y_test, data_hash = data.test_records, data.y_test, data.data_hash
    started = time.monotonic()
    progress = Progress(cfg.n_trials)
    callbacks = [trial_logger(client, experiment_id, run_id)] if log else []
    search.run_trials(study, make_objective(x_train, y_train, params), n_trials=cfg.n_trials,
                      timeout_s=cfg.timeout_s, callbacks=[*callbacks, progress.update], heartbeat=heartbeat,
                      wait_for_others=True)
    progress.close()
    if log:
        log_lost_trials(study, client, experiment_id, run_id)
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(f"study {study.study_name}: no trial completed within {cfg.timeout_s}s") from None
    best_params = search.from_trial_params(best.params)
    rounds = int(best.user_attrs["rounds"])
    booster = search.fit(x_train, y_train, best_params, rounds=rounds, seed=cfg.seed)

    predictor = Predictor(booster, schema)
    test_pred = predictor.predict(test_records)
    metrics = {f"test_{k}": v for k, v in regression_metrics(y_test, test_pred).items()}
    x_test = schema.encode(test_records)
    baseline = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                             LinearRegression()).fit(x_train, y_train)
    metrics |= {f"baseline_{k}": v for k, v in regression_metrics(y_test, baseline.predict(x_test)).items()}
    metrics["cv_rmse"] = float(best.value)
    metrics["search_seconds"] = time.monotonic() - started

    example = test_records[0]
    schema = replace(schema, example=example, expected=float(predictor.predict([example])[0]))
    save_model_dir(MODEL_DIR, booster, schema)
    Predictor.from_dir(MODEL_DIR).self_test()
    _write_dvc_outputs(study, y_test, test_pred, metrics)

    lineage = {"data_hash": data_hash, "git_commit": tracking.git_commit(), "study": study.study_name}
    version = "unregistered"
    if log:
        version = _log_parent(params, frame, schema, best_params, rounds, metrics, lineage, study, booster,
                              y_test, test_pred)
    return TrainResult(run_id=run_id, version=version, study_name=study.study_name, metrics=metrics,
                       best_params=best_params)


def _write_dvc_outputs(study: optuna.Study, actual: np.ndarray, predicted: np.ndarray,
                       metrics: dict[str, float]) -> None:
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    values = [t.value for t in trials]
    PLOTS_DIR.mkdir(exist_ok=True)
    pd.DataFrame({"actual": actual, "predicted": np.round(predicted, 4)}).to_csv(
        PLOTS_DIR / "predictions.csv", index=False)
    pd.DataFrame({"trial": [t.number for t in trials], "cv_rmse": np.round(values, 5),
                  "best_cv_rmse": np.round(np.minimum.accumulate(values), 5) if values else []}).to_csv(
        PLOTS_DIR / "trials.csv", index=False)
    nested = {"test": {k.removeprefix("test_"): round(v, 5) for k, v in metrics.items() if k.startswith("test_")},
              "baseline": {k.removeprefix("baseline_"): round(v, 5) for k, v in metrics.items()
                           if k.startswith("baseline_")},
              "cv_rmse": round(metrics["cv_rmse"], 5),
              "trials": {"complete": len(trials),
                         "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}}
    METRICS_FILE.write_text(json.dumps(nested, indent=2) + "\n", encoding="utf-8")


def _log_parent(params: Params, frame: pd.DataFrame, schema: Schema, best_params: dict[str, Any], rounds: int,
                metrics: dict[str, float], lineage: dict[str, str], study: optuna.Study, booster,
                y_test: np.ndarray, test_pred: np.ndarray) -> str:
    mlflow.log_params({f"best.{k}": v for k, v in best_params.items()} | {"best.rounds": rounds,
                      "n_trials": params.train.n_trials, "cv_folds": params.train.cv_folds,
                      "seed": params.train.seed, "test_size": params.data.test_size})
    mlflow.log_metrics(metrics)
    mlflow.set_tags(lineage | {"target": schema.target})
    dataset = mlflow.data.from_pandas(frame, source=str(params.data.path), targets=schema.target,
                                      name=f"{params.data.path.name}@{lineage['data_hash'][:8]}")
    mlflow.log_input(dataset, context="training")
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.predicted_vs_actual(y_test, test_pred, folder / "predicted_vs_actual.png")
        plots.residuals(y_test, test_pred, folder / "residuals.png")
        plots.feature_importance(*_importance(booster, schema, best_params["booster"]), folder / "feature_importance.png")
        plots.optimisation_history(values, list(np.minimum.accumulate(values)), folder / "optimisation_history.png")
        mlflow.log_artifacts(tmp, artifact_path="plots")
    mlflow.log_artifact(str(METRICS_FILE))

    features = frame[schema.names]
    with tempfile.TemporaryDirectory() as code:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={"booster": str(MODEL_DIR / "booster.ubj"), "schema": str(MODEL_DIR / "schema.json")},
            code_paths=[str(_predict_package(Path(code)))],
            signature=_signature(schema, features),
            input_example=_input_example(features),
            pip_requirements=_requirements(),
        )
    tags = lineage | {"run_id": mlflow.active_run().info.run_id, "test_rmse": f"{metrics['test_rmse']:.6f}",
                      "baseline_rmse": f"{metrics['baseline_rmse']:.6f}", "booster": best_params["booster"]}
    registered = mlflow.register_model(info.model_uri, params.model.name, tags=tags)
    return str(registered.version)


def _predict_package(folder: Path) -> Path:
    """A copy of the ``serving`` package holding only the predict path, to travel with the MLflow model.

    The model needs ``serving.predictor`` and nothing else of the container (app, launcher, Dockerfile).
    """
    package = folder / "serving"
    package.mkdir()
    source = Path(__file__).resolve().parent.parent / "serving"
    for name in ("__init__.py", "predictor.py"):
        shutil.copy2(source / name, package / name)
    return package


def _requirements() -> list[str]:
    # Stated rather than inferred: inference re-imports the model in a subprocess, which costs seconds.
    from importlib.metadata import version
    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "xgboost-cpu", "numpy", "pandas")]


@click.command(help="Search XGBoost hyper-parameters with Optuna, log to MLflow, register the best model.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("params.yaml"), show_default=True)
@click.option("--storage", default=None,
              help="Optuna storage URL (default: $OPTUNA_STORAGE, else train.storage in params.yaml).")
@click.option("--study-name", default=None, help="Join or create this study (default: derived from data+params).")
def cli(params_file: Path, storage: str | None, study_name: str | None) -> None:
    tracking.quiet_mlflow()
    params = load_params(params_file)
    result = train(params, storage=storage, name=study_name)
    m = result.metrics
    click.echo(f"best {result.best_params['booster']}: test RMSE {m['test_rmse']:.3f} (linear baseline "
               f"{m['baseline_rmse']:.3f}), MAE {m['test_mae']:.3f}, R² {m['test_r2']:.3f}")
    click.echo(f"registered {params.model.name} version {result.version} (run {result.run_id})")
    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    click.echo(f"browse: {uri}" if uri.startswith(("http://", "https://")) else
               f"browse: mlflow ui --backend-store-uri {uri}")


def main(argv: list[str] | None = None) -> int:
    """Run the train stage and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
