"""Owns a search worker: a process that joins a running training's study and runs some of its trials.

Usage: ``python -m experiments.worker --study NAME [--storage URL] [--params params.yaml]``. Start the
training first (``dvc repro`` or ``python -m experiments.train``): it creates the study and its parent MLflow
run, and it alone refits and registers the best model once the study has ``train.n_trials`` finished trials.
Any number of workers, on this machine or others, join it through the shared storage (``--storage``, else
``$OPTUNA_STORAGE``, else ``train.storage``; a PostgreSQL URL for a team) and log each trial they finish as a
child run of the training's parent run (``MLFLOW_TRACKING_URI`` overrides ``mlflow.tracking_uri``).

A worker needs the same params.yaml search settings and the same data (``dvc pull``) as the training; it
refuses to join otherwise, since its trials would not be comparable. It exits when the study needs no more
trials. Killed mid-trial, it loses only that trial: the heartbeat lets another process fail and retry it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import mlflow
import optuna
from mlflow.tracking import MlflowClient

from core import tracking
from core.cli import UserError, first_line, run_cli
from core.params import Params, load_params, params_option
from experiments import budget, search, trials
from experiments.data import prepare


def _parent_run(study: optuna.Study, client: MlflowClient, uri: str) -> tuple[str, str]:
    parent_id = study.user_attrs.get(search.PARENT_RUN_ATTR)
    if not parent_id:
        raise UserError(f"study {study.study_name} has no parent MLflow run; it was not created by the train "
                        f"stage (run dvc repro or python -m experiments.train first)")
    try:
        parent = client.get_run(parent_id)
    except mlflow.exceptions.MlflowException:
        raise UserError(f"study {study.study_name}: its parent run {parent_id} is not in {tracking.shown_uri(uri)}; set "
                        f"MLFLOW_TRACKING_URI to the training's tracking server") from None
    return parent_id, parent.info.experiment_id


@contextlib.contextmanager
def _storage_lost(url: str) -> Iterator[None]:
    """Name in one line a study database that stops answering mid-search (stopped, or deleted by
    ``team down --force``), instead of Optuna's traceback.

    Optuna re-raises the driver's error as another (``StorageInternalError``, or an ``UnboundLocalError`` from its
    own clean-up in 4.x), so the whole chain of causes is searched for SQLAlchemy's ``OperationalError``.
    """
    try:
        yield
    except Exception as err:
        exc = sys.modules.get("sqlalchemy.exc")  # not imported: the storage is a journal, never a database
        lost, seen = err, set()
        while lost is not None and id(lost) not in seen and not (exc and isinstance(lost, exc.OperationalError)):
            seen.add(id(lost))
            lost = lost.__cause__ or lost.__context__
        if lost is None or id(lost) in seen:
            raise
        reason = first_line(getattr(lost, "orig", None) or lost)
        raise UserError(f"Optuna storage {tracking.shown_uri(url)} stopped answering mid-search ({reason}); its "
                        f"database was stopped or deleted, so this worker's running trial is lost") from None


def work(params: Params, *, study_name: str, storage: str | None = None) -> int:
    """Run trials of ``study_name`` until it needs no more; returns how many trials this worker finished.

    Raises:
        UserError: the study does not exist, was not created by the train stage, or has other data or
            settings; the tracking server is unreachable; the study's database stops answering mid-search.
    """
    url = search.storage_url(params, storage)
    data = prepare(params)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = search.join_study(name=study_name, storage=url, startup_trials=params.train.pruner_startup_trials)
    if study is None:
        raise UserError(f"no study named {study_name!r} in the storage; start the training first (dvc repro), "
                        f"which creates it")
    expected, ours = study.user_attrs.get(search.DIGEST_ATTR), search.search_digest(params, data.data_hash)
    if expected != ours:
        raise UserError(f"study {study_name} was created with other data or search settings (digest "
                        f"{expected}, this worker's {ours}); check out the same params.yaml and dvc pull")
    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    tracking.check_reachable(uri)
    client = MlflowClient(uri)
    parent_id, experiment_id = _parent_run(study, client, uri)

    finished = []
    progress = search.Progress(params.train.n_trials)
    with _storage_lost(url):
        budget.run_trials(study, search.make_objective(data.x_train, data.y_train, params),
                          n_trials=params.train.n_trials, timeout_s=params.train.timeout_s,
                          heartbeat=budget.has_heartbeat(url), wait_for_others=False,
                          callbacks=[trials.TrialLogger(client, experiment_id, parent_id), progress.update,
                                     lambda _study, trial: finished.append(trial.number)])
    progress.close()
    return len(finished)


@click.command(help="Join a training's Optuna study and run some of its trials, logged under its MLflow run.")
@click.option("--study", "study_name", required=True, help="Name of the study the training created.")
@click.option("--storage", default=None,
              help="Optuna storage URL (default: $OPTUNA_STORAGE, else train.storage in params.yaml).")
@params_option
def cli(study_name: str, storage: str | None, params_file: Path) -> None:
    tracking.quiet_mlflow()
    done = work(load_params(params_file), study_name=study_name, storage=storage)
    click.echo(f"worker finished {done} trial(s) of study {study_name}")


def main(argv: list[str] | None = None) -> int:
    """Run a worker and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
