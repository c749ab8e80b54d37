"""Owns the conversation with MLflow: where it is, whether it answers, and how trials and models are logged."""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from experiments.cli import UserError

TRIAL_STATE_TAG = "optuna.trial_state"
TRIAL_NUMBER_TAG = "optuna.trial_number"
PARENT_TAG = "mlflow.parentRunId"


def quiet_mlflow() -> None:
    """Keep command output to our own lines: MLflow's progress bars, hints and migrations are for notebooks."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)


def tracking_uri(default: str) -> str:
    """``MLFLOW_TRACKING_URI`` when set (a team server), else the params.yaml default (embedded SQLite)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer (MLflow itself would retry for minutes).

    Raises:
        UserError: an http(s) server whose /health does not answer, or a SQLite file in a missing folder.
    """
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as reply:  # noqa: S310
                if reply.status != 200:
                    raise UserError(f"MLflow tracking server {uri} answered /health with {reply.status}")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"MLflow tracking server {uri} is unreachable ({reason})") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UserError(f"MLflow tracking store {uri}: folder {folder} does not exist")


def use_experiment(uri: str, name: str) -> str:
    """Point the fluent API at ``uri`` and return the id of experiment ``name`` (created if new)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow also writes the URI into MLFLOW_TRACKING_URI for child processes; in this project that variable
    # is the user's override (a team server), so it goes back to what the user set, or to unset.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    experiment = mlflow.set_experiment(name)
    return experiment.experiment_id


def git_commit() -> str:
    """The commit being trained, with ``-dirty`` when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.strip() + ("-dirty" if dirty.strip() else "")


def log_trial(client: MlflowClient, *, experiment_id: str, parent_run_id: str, number: int,
              params: dict[str, Any], metrics: dict[str, float], state: str) -> str:
    """Record one Optuna trial as a nested child run of the training run, in three round trips."""
    run = client.create_run(experiment_id, run_name=f"trial-{number:03d}", tags={
        PARENT_TAG: parent_run_id, TRIAL_NUMBER_TAG: str(number), TRIAL_STATE_TAG: state})
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("booster", str(params.get("booster", "")))],
    )
    client.set_terminated(run.info.run_id, status="FAILED" if state == "FAIL" else "FINISHED")
    return run.info.run_id


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Child runs of a training run, oldest first."""
    return client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=5000)
