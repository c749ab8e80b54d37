"""Owns the DVC train stage: search, refit, evaluate, log to MLflow and register the best model.

The stage owns its study: it creates it (or resumes it) with its parent MLflow run, runs trials itself and,
when the storage is shared (an RDB URL), waits until workers (``python -m experiments.worker``) and it have
finished ``train.n_trials`` between them before refitting the best. Environment overrides, for a team:
``MLFLOW_TRACKING_URI`` (see core/tracking.py) and ``OPTUNA_STORAGE``, the study storage URL, which
replaces ``train.storage`` (a team database URL holds a password, so it does not belong in params.yaml).

Outputs (DVC's): ``model/`` (booster, schema and reference profile), ``metrics.json``, ``plots/predictions.csv`` and
``plots/trials.csv``, put in place once the training is recorded (``experiments.outputs``). The search is ``experiments.search``, the CV ``experiments.cv``, what the parent run
records ``experiments.parent_run``, the MLflow model ``experiments.packaging``.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import mlflow
import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline

from core import tracking
from core.cli import UserError, run_cli
from core.params import Params, load_params, params_option
from core.stopwatch import Stopwatch
from experiments import budget, cv, outputs, parent_run, search, trials
from experiments.data import Prepared, prepare
from serving.layout import CATEGORICAL
from serving.predictor import Predictor, save_model_dir
from serving.profile import build_profile, write_profile

# The parts of MLflow's seconds the stage counts itself; the parent run's own parts are parent_run's.
SET_UP = "set-up"  # connecting (MLflow imports its SQL store then), the experiment, starting or claiming the run
TRIAL_RUNS = "trial runs"  # a child run per trial, the heartbeat, trials a dead worker left


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None when trained with log=False
    version: str
    study_name: str
    metrics: dict[str, float]
    best_params: dict[str, Any]
    # Seconds in MLflow calls by part (``Stopwatch``): set-up (its SQL store's import too), trial runs, and the
    # parent run's own parts (``parent_run.RUN``, ``FIGURES``, ``MODEL``, ``REGISTRY``).
    mlflow_parts: dict[str, float] = field(default_factory=dict)

    @property
    def mlflow_s(self) -> float:
        """Every second spent in MLflow calls (0 when trained with log=False)."""
        return sum(self.mlflow_parts.values(), 0.0)


@dataclass(frozen=True)
class RunRef:
    """Where this training logs: a tracking client, its experiment and the parent run."""

    client: MlflowClient
    experiment_id: str
    run_id: str


@dataclass(frozen=True)
class Job:
    """One search to run and, when ``run`` is set, to log under that parent run."""

    params: Params
    data: Prepared
    study: optuna.Study
    heartbeat: bool
    run: RunRef | None
    baseline_pred: np.ndarray  # the linear baseline's test predictions (``baseline_predictions``)


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² of a set of predictions."""
    mse = float(mean_squared_error(actual, predicted))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(actual, predicted)),
            "r2": float(r2_score(actual, predicted))}


def baseline_predictions(data: Prepared, params: Params) -> np.ndarray:
    """The linear baseline's predictions on the test split, fit on the search's rows: on a big table a sample fits
    a linear model as well as the whole, without sklearn's float64 copies of every training row.

    Raises:
        UserError: the target's values are too large for the float32 it is fit in (sklearn's least squares
            overflowed: a traceback after the whole search, which no longer runs).
    """
    x, y = cv.search_rows(data.x_train, data.y_train, params.train)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is named below, not warned of
            predicted = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                                      LinearRegression()).fit(x, y).predict(data.x_test)
    except ValueError:  # "array must not contain infs or NaNs"
        predicted = np.array([np.nan])
    if not np.isfinite(predicted).all():
        raise UserError(f"{params.data.path}: target '{params.data.target}' is too large to fit in float32 (values "
                        f"up to {np.abs(data.y_train).max():.3g} overflowed the linear baseline); rescale it")
    return predicted


def train(params: Params, *, storage: str | None = None, name: str | None = None,
          log: bool = True) -> TrainResult:
    """Run the whole stage. Everything the user can get wrong is checked before anything is logged.

    ``log=False`` runs the same search, refit and outputs without touching MLflow at all (nothing is
    registered): the benchmark prices MLflow logging as the difference between the two.
    """
    # The imports live as long as the stage: frozen, the cyclic collector stops re-walking them at each full pass
    # (a third of MLflow's set-up, README "Scale"). Thawed after (tests call this in-process), unless the caller
    # had frozen objects itself: unfreezing thaws them all, so then the caller's freeze is left to stand alone.
    if gc.get_freeze_count():
        return _train(params, storage=storage, name=name, log=log, freeze=lambda: None)
    gc.freeze()
    try:
        return _train(params, storage=storage, name=name, log=log, freeze=gc.freeze)
    finally:
        gc.unfreeze()


def _train(params: Params, *, storage: str | None, name: str | None, log: bool,
           freeze: Callable[[], None]) -> TrainResult:
    data = prepare(params)
    baseline_pred = baseline_predictions(data, params)  # before the search, which a table it cannot fit would waste
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sname = name or search.study_name(params, data.data_hash)
    url = search.storage_url(params, storage)
    if not log:
        # A study of its own: a logged training must never resume trials that no MLflow run recorded.
        study = search.make_study(name=f"{sname}-unlogged", storage=url, seed=params.train.seed,
                                  startup_trials=params.train.pruner_startup_trials)
        return _search_and_log(Job(params, data, study, budget.has_heartbeat(url), None, baseline_pred), Stopwatch())

    # The study first: a storage that cannot be used (or a journal Optuna cannot replay) stops the stage before
    # MLflow records anything.
    study = search.make_study(name=sname, storage=url, seed=params.train.seed,
                              startup_trials=params.train.pruner_startup_trials)
    # Everything MLflow costs is on this clock, setting up included: MLflow imports its SQL store on first use.
    clock = Stopwatch()
    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    with clock.part(SET_UP):
        tracking.check_reachable(uri)
        try:
            experiment_id = tracking.use_experiment(uri, params.mlflow.experiment)
        except mlflow.exceptions.MlflowException as err:
            raise UserError(f"MLflow tracking store {tracking.shown_uri(uri)}: {str(err).splitlines()[0]}") from None
        client = MlflowClient(uri)
        freeze()  # MLflow's SQL store, imported just now, lives as long as the stage too
    with clock.part(SET_UP):
        parent_id = parent_run.live_run(client, study.user_attrs.get(search.PARENT_RUN_ATTR))
        done = parent_run.registered_version(client, params.model.name, parent_id) if parent_id else None
    if done is not None:
        # Same data, same settings, a finished study whose best model is registered: rewrite the stage's
        # outputs (DVC may have asked for them) but register nothing twice.
        print(f"study {sname} is finished and registered as {params.model.name} version {done}; "
              f"rewriting outputs only", flush=True)
        result = _search_and_log(Job(params, data, study, False, None, baseline_pred), clock)
        return replace(result, run_id=parent_id, version=done)
    # An unfinished study resumes under its own parent run; a fresh one (or one whose run is gone, e.g. a
    # different tracking server) gets a new parent run. The run ends FAILED if anything below raises.
    with clock.part(SET_UP):
        died = parent_run.claim(client, parent_id) if parent_id else None
        started = mlflow.start_run(run_id=parent_id) if parent_id else mlflow.start_run(run_name=f"train-{sname}")
    try:
        with started as run:
            with clock.part(SET_UP):
                parent_run.own(client, run.info.run_id)
                if died:
                    closed = trials.close_dead(study, client, experiment_id, run.info.run_id, died)
                    print(f"resuming study {sname} after {died}; closed {closed} trial(s) it left running", flush=True)
            # Workers read both attributes: which run to log under, and whether their data and settings match.
            study.set_user_attr(search.DIGEST_ATTR, search.search_digest(params, data.data_hash))
            study.set_user_attr(search.PARENT_RUN_ATTR, run.info.run_id)
            if budget.has_heartbeat(url):
                print(f"study {sname}: more workers can join it with python -m experiments.worker --study {sname}",
                      flush=True)
            job = Job(params, data, study, budget.has_heartbeat(url), RunRef(client, experiment_id, run.info.run_id),
                      baseline_pred)
            result = _search_and_log(job, clock)
            with clock.part(parent_run.RUN):
                mlflow.end_run()
    except mlflow.exceptions.MlflowException as err:
        # Ending the run FAILED fails too when the store is what failed: name the first failure, not the second.
        first: BaseException | None = err.__context__
        while first is not None and not isinstance(first, UserError):
            first = first.__context__
        raise first or tracking.store_failed(uri, "the training run", err) from None
    return replace(result, mlflow_parts=dict(clock.parts))


def _search_and_log(job: Job, clock: Stopwatch) -> TrainResult:
    params, data, study, ref = job.params, job.data, job.study, job.run
    cfg = params.train
    started = time.monotonic()
    progress = search.Progress(cfg.n_trials)
    logger = trials.TrialLogger(ref.client, ref.experiment_id, ref.run_id) if ref else None
    loggers = [clock.timed(TRIAL_RUNS, logger),
               clock.timed(TRIAL_RUNS, parent_run.heartbeat(ref.client, ref.run_id))] if ref else []
    budget.run_trials(study, search.make_objective(data.x_train, data.y_train, params), n_trials=cfg.n_trials,
                      timeout_s=cfg.timeout_s, callbacks=[*loggers, progress.update], heartbeat=job.heartbeat,
                      wait_for_others=True)
    progress.close()
    if ref:
        with clock.part(TRIAL_RUNS):
            trials.log_lost_trials(study, ref.client, ref.experiment_id, ref.run_id, logged_here=logger.logged)
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(f"study {study.study_name}: no trial completed within {cfg.timeout_s}s") from None
    best_params = search.from_trial_params(best.params)
    rounds = int(best.user_attrs["rounds"])
    booster = cv.fit(data.x_train, data.y_train, best_params, rounds=rounds, seed=cfg.seed, nthread=cfg.nthread)

    predictor = Predictor(booster, data.schema)
    test_pred = predictor.predict_matrix(data.x_test)
    metrics = {f"test_{k}": v for k, v in regression_metrics(data.y_test, test_pred).items()}
    metrics |= {f"baseline_{k}": v for k, v in regression_metrics(data.y_test, job.baseline_pred).items()}
    metrics["cv_rmse"] = float(best.value)
    metrics["search_seconds"] = time.monotonic() - started

    example = data.example()
    schema = replace(data.schema, example=example, expected=float(predictor.predict([example])[0]))
    lineage = {"data_hash": data.data_hash, "git_commit": tracking.git_commit(), "study": study.study_name}
    version = "unregistered"
    try:
        with outputs.staged() as out:  # in place only once recorded: never the outputs of a failed training
            save_model_dir(out.model_dir, booster, schema)
            Predictor.from_dir(out.model_dir).self_test()
            # What the monitoring jobs compare live traffic with; it travels with the model (serving/profile.py).
            write_profile(out.model_dir, build_profile(schema, _profile_columns(data), test_pred))
            outputs.write_dvc_files(out, study, data.y_test, test_pred, metrics)
            if ref:
                outcome = parent_run.Outcome(params=params, data=data, study=study, schema=schema, booster=booster,
                                             best_params=best_params, rounds=rounds, metrics=metrics,
                                             test_pred=test_pred, lineage=lineage)
                version = _record(outcome, out, params, clock)
    except UserError as err:
        if ref and version != "unregistered":  # registered, then the outputs could not be put in place
            raise parent_run.withdraw(ref.client, params.model.name, version, err) from None
        raise
    return TrainResult(run_id=ref.run_id if ref else None, version=version, study_name=study.study_name,
                       metrics=metrics, best_params=best_params, mlflow_parts=dict(clock.parts))


def _profile_columns(data: Prepared) -> dict[str, Any]:
    """The training split's columns as the profile counts them: floats, or categoricals counted by their codes."""
    frame = data.train_frame
    return {f.name: frame[f.name].array if f.kind == CATEGORICAL else
            frame[f.name].to_numpy(dtype=np.float64, na_value=np.nan) for f in data.schema.features}


def _record(outcome: parent_run.Outcome, out: outputs.Staged, params: Params, clock: Stopwatch) -> str:
    """``parent_run.record``, with a store that refuses an artifact or a call named in one line (the run ends FAILED)."""
    try:
        return parent_run.record(outcome, model_dir=out.model_dir, metrics_file=out.metrics_file, part=clock.part)
    except (OSError, mlflow.exceptions.MlflowException) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"MLflow tracking store {tracking.shown_uri(tracking.tracking_uri(params.mlflow.tracking_uri))}: "
                        f"recording the training failed ({type(err).__name__}: {detail}); nothing registered, the "
                        f"stage's outputs left as they were") from None


@click.command(help="Search XGBoost hyper-parameters with Optuna, log to MLflow, register the best model.")
@params_option
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
    click.echo(tracking.browse_hint(tracking.tracking_uri(params.mlflow.tracking_uri)))


def main(argv: list[str] | None = None) -> int:
    """Run the train stage and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
