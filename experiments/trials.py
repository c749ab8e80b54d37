"""Owns how Optuna trials are recorded in MLflow: one nested child run per trial under the training's run.

The train stage and every worker log the trials they finish through ``TrialLogger``; the stage also logs
the finished trials no process logged (``log_lost_trials``): those whose worker died mid-trial, which no
callback saw, and those whose process could not log them (its MLflow store failed, or it died between telling
Optuna and logging). A training that resumes after its predecessor died closes what that process left open
(``close_dead``): its Optuna trials still RUNNING become FAIL and are logged as KILLED child runs, and child
runs left RUNNING mid-log become KILLED, each with a ``killed_reason`` tag, unless their trial had finished:
such a half-made run is deleted, and the trial is logged whole at the end of the search. A process whose
logging lands so late that the sweep may have logged the trial too deletes its own run if another exists.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import optuna
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core import liveness, tracking
from experiments.budget import OVER_BUDGET_ATTR
from experiments.search import WORKER_ATTR, from_trial_params, worker_of

TRIAL_STATE_TAG = "optuna.trial_state"
TRIAL_NUMBER_TAG = "optuna.trial_number"
PARENT_TAG = "mlflow.parentRunId"
RETRY_TAG = "optuna.retry_of"
KILLED_TAG = "killed_reason"
# The process logging a trial (``host:pid:start``): a child run it left RUNNING is closed once it is dead.
LOGGER_TAG = "logged_by"
# Logging a trial takes milliseconds: another host's child run RUNNING for longer was left by a dead process.
LOGGING_S = 120.0
# A trial names its process as its first step: one still unnamed this long after it started was orphaned.
UNNAMED_S = 5.0
_ENDED_WELL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def log_trial(client: MlflowClient, *, experiment_id: str, parent_run_id: str, number: int,
              params: dict[str, Any], metrics: dict[str, float], state: str, status: str | None = None) -> str:
    """Record one Optuna trial as a nested child run of the training run, in three round trips.

    Every tag goes with the run's creation: a tag in ``log_batch`` costs the SQL store a session of its own.
    """
    run = client.create_run(experiment_id, run_name=f"trial-{number:03d}", tags={
        PARENT_TAG: parent_run_id, TRIAL_NUMBER_TAG: str(number), TRIAL_STATE_TAG: state,
        LOGGER_TAG: str(liveness.me()), "booster": str(params.get("booster", ""))})
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id, status=status or ("FAILED" if state == "FAIL" else "FINISHED"))
    return run.info.run_id


def trial_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, *,
               number: int | None = None) -> list[Any]:
    """Child runs of a training run (those of trial ``number`` only, if given), oldest first."""
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if number is not None:
        query += f" AND tags.`{TRIAL_NUMBER_TAG}` = '{number}'"
    return client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time ASC"],
                              max_results=5000)


class TrialLogger:
    """An Optuna callback logging each trial this process finishes as a child run of ``parent_run_id``;
    ``logged`` holds the numbers of those it logged (``log_lost_trials`` need not look for them)."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str) -> None:
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.logged: set[int] = set()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            run_id = log_finished_trial(self.client, self.experiment_id, self.parent_run_id, trial)
            if trial.datetime_complete is not None and time.time() - trial.datetime_complete.timestamp() > LOGGING_S:
                # Logged so late (MLflow's client retried a store for minutes) that the training's end-of-search
                # sweep may have taken the trial for lost and logged it too: the sweep's run stays, this one goes.
                # Only another process's run counts: a husk of this one's (a retried create_run whose first answer
                # was lost) is no record of the trial.
                me = str(liveness.me())
                if any(r.data.tags.get(LOGGER_TAG) != me for r in trial_runs(
                        self.client, self.experiment_id, self.parent_run_id, number=trial.number)):
                    self.client.delete_run(run_id)
        except MlflowException as err:  # a store gone or locked mid-search: stop the search, in one line
            raise tracking.store_failed(self.client.tracking_uri, f"logging trial {trial.number}", err) from None
        self.logged.add(trial.number)


def log_finished_trial(client: MlflowClient, experiment_id: str, parent_run_id: str,
                       trial: optuna.trial.FrozenTrial) -> str:
    """One finished Optuna trial as a child run: its parameters, CV metrics (partial ones if pruned) and state;
    returns the run's id."""
    metrics = {k: v for k, v in trial.user_attrs.items() if isinstance(v, float)}
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        last = max(trial.intermediate_values)
        metrics["cv_rmse_partial"] = trial.intermediate_values[last]
        metrics["folds_done"] = float(last + 1)
    run_id = log_trial(client, experiment_id=experiment_id, parent_run_id=parent_run_id,
                                number=trial.number, params=from_trial_params(trial.params),
                                metrics=metrics, state=trial.state.name)
    history = trial.system_attrs.get("retry_history")
    if history:
        # Links the re-run to the trial whose worker died, so the pair reads as one trial in `mlflow ui`.
        client.set_tag(run_id, RETRY_TAG, str(history[-1]))
    return run_id


def log_lost_trials(study: optuna.Study, client: MlflowClient, experiment_id: str, parent_run_id: str, *,
                    logged_here: Collection[int] = ()) -> int:
    """Log the finished trials that no child run records; returns how many were logged. ``logged_here``: the
    trials this process logged itself (``TrialLogger.logged``), known recorded without asking MLflow.

    - A failed trial: its worker died mid-trial, and the heartbeat check marked it failed from another process,
      where no callback sees it (not one ended as over budget before it started, which ran nothing).
    - A complete or pruned trial whose process could not log it: its MLflow store failed (locked, or a server
      gone) or it died between telling Optuna and logging. Only once that process is known gone (it ran on this
      host) or the trial finished more than ``LOGGING_S`` ago: a live process's trial finished just now is its own
      to log, and logging it here too would record it twice.

    MLflow is searched only when some trial may be lost: a training that logged every trial itself makes no call.
    """
    cutoff = time.time() - LOGGING_S

    def may_be_lost(trial: optuna.trial.FrozenTrial) -> bool:
        if trial.number in logged_here:
            return False
        if trial.state == optuna.trial.TrialState.FAIL:
            return OVER_BUDGET_ATTR not in trial.user_attrs
        return _died_here(trial) or (trial.datetime_complete is not None
                                     and trial.datetime_complete.timestamp() < cutoff)

    candidates = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL, *_ENDED_WELL))
                  if may_be_lost(t)]
    if not candidates:
        return 0
    logged = {r.data.tags.get(TRIAL_NUMBER_TAG) for r in trial_runs(client, experiment_id, parent_run_id)}
    missing = [t for t in candidates if str(t.number) not in logged]
    for trial in missing:
        log_finished_trial(client, experiment_id, parent_run_id, trial)
    return len(missing)


def _died_here(trial: optuna.trial.FrozenTrial) -> bool:
    if WORKER_ATTR not in trial.user_attrs:
        # Killed between creating the trial and naming its process, which takes milliseconds.
        return trial.datetime_start is not None and time.time() - trial.datetime_start.timestamp() > UNNAMED_S
    worker = worker_of(trial)
    return worker is not None and liveness.alive(worker) is False


def close_dead(study: optuna.Study, client: MlflowClient, experiment_id: str, parent_run_id: str,
               reason: str) -> int:
    """Close what a dead process left open under ``parent_run_id``; returns how many trials and runs were closed.

    Only trials whose process ran on this host and is gone are closed: another host's are its heartbeat's
    business (``experiments.search``), and a journal storage has none, so nobody else would ever close them.
    """
    why = f"its process died ({reason}); closed when the training resumed at {time.strftime('%Y-%m-%dT%H:%M:%S')}"
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not _died_here(trial):
            continue
        # Optuna has no public call to end another process's trial; the storage's own is what heartbeats use.
        study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        run_id = log_trial(client, experiment_id=experiment_id, parent_run_id=parent_run_id, number=trial.number,
                           params=from_trial_params(trial.params), metrics={}, state="FAIL", status="KILLED")
        client.set_tag(run_id, KILLED_TAG, why)
        closed += 1
    cutoff_ms = (time.time() - LOGGING_S) * 1000
    ended_well = {str(t.number) for t in study.get_trials(deepcopy=False, states=_ENDED_WELL)}
    for run in trial_runs(client, experiment_id, parent_run_id):
        if run.info.status != "RUNNING":
            continue
        logger = liveness.parse(run.data.tags.get(LOGGER_TAG))
        living = liveness.alive(logger) if logger is not None else None
        if living is False or (living is None and run.info.start_time < cutoff_ms):
            if run.data.tags.get(TRIAL_NUMBER_TAG) in ended_well:
                # Its trial finished and the logging broke off: log_lost_trials records it whole at the end.
                client.delete_run(run.info.run_id)
                closed += 1
                continue
            client.set_terminated(run.info.run_id, status="KILLED")
            client.set_tag(run.info.run_id, KILLED_TAG, why)
            closed += 1
    return closed
