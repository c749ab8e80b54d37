"""Owns how Optuna trials are recorded in MLflow: one nested child run per trial under the training's run.

The train stage and every worker log the trials they finish through ``trial_logger``; the stage also logs
the trials whose worker died (``log_lost_trials``), which no callback saw.
"""

from __future__ import annotations

from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from experiments.search import from_trial_params

TRIAL_STATE_TAG = "optuna.trial_state"
TRIAL_NUMBER_TAG = "optuna.trial_number"
PARENT_TAG = "mlflow.parentRunId"
RETRY_TAG = "optuna.retry_of"


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


def trial_logger(client: MlflowClient, experiment_id: str, parent_run_id: str):
    """An Optuna callback logging each trial this process finishes as a child run of ``parent_run_id``."""
    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log_finished_trial(client, experiment_id, parent_run_id, trial)
    return log


def log_finished_trial(client: MlflowClient, experiment_id: str, parent_run_id: str,
                       trial: optuna.trial.FrozenTrial) -> None:
    """One finished Optuna trial as a child run: its parameters, CV metrics (partial ones if pruned) and state."""
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


def log_lost_trials(study: optuna.Study, client: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """Log, as FAILED child runs, the failed trials no process logged: those whose worker died mid-trial.

    The heartbeat check marks such a trial failed from another process, where no callback sees it. Returns
    how many were logged.
    """
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if not failed:
        return 0
    logged = {r.data.tags.get(TRIAL_NUMBER_TAG) for r in trial_runs(client, experiment_id,
                                                                                      parent_run_id)}
    lost = [t for t in failed if str(t.number) not in logged]
    for trial in lost:
        log_finished_trial(client, experiment_id, parent_run_id, trial)
    return len(lost)
