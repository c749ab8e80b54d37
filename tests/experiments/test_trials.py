"""Trials in MLflow: a finished trial no process could log is logged once, and only once its process cannot."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from core import liveness
from experiments import search, trials

State = optuna.trial.TrialState


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def _store(tmp_path: Path) -> tuple[MlflowClient, str, str, optuna.Study]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("trials", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id).info.run_id
    study = search.make_study(name="trials", storage=f"sqlite:///{tmp_path}/optuna.db", seed=0, startup_trials=1)
    return client, experiment_id, parent, study


def _complete(study: optuna.Study, pid: int, *, ago_s: float = 0.0, worker: str | None = None) -> None:
    """A complete trial that process ``pid`` of this host ran (named as the search names it, unless ``worker``
    is given), finished ``ago_s`` seconds ago."""
    done = dt.datetime.now() - dt.timedelta(seconds=ago_s)
    study.add_trial(optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=State.COMPLETE, value=2.5, values=None, datetime_start=done - dt.timedelta(seconds=3),
        datetime_complete=done, params={"booster": "gbtree"},
        distributions={"booster": optuna.distributions.CategoricalDistribution(["gbtree", "gblinear"])},
        user_attrs={search.WORKER_ATTR: worker or str(liveness.of(pid)), "cv_rmse_std": 0.1},
        system_attrs={}, intermediate_values={}))


def _runs(client: MlflowClient, experiment_id: str, parent: str) -> list[tuple[str, str]]:
    return [(r.data.tags[trials.TRIAL_NUMBER_TAG], r.info.status)
            for r in trials.trial_runs(client, experiment_id, parent)]


def test_a_complete_trial_whose_process_died_before_logging_it_is_logged(tmp_path: Path, dead_pid: int) -> None:
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, dead_pid)

    assert trials.log_lost_trials(study, client, experiment_id, parent) == 1

    assert _runs(client, experiment_id, parent) == [("0", "FINISHED")]
    (run,) = trials.trial_runs(client, experiment_id, parent)
    assert run.data.tags[trials.TRIAL_STATE_TAG] == "COMPLETE" and run.data.metrics == {"cv_rmse_std": 0.1}
    assert trials.log_lost_trials(study, client, experiment_id, parent) == 0, "logged once, not at every call"


def test_a_live_processs_trial_finished_just_now_is_its_own_to_log_until_it_is_old(tmp_path: Path) -> None:
    # Given a trial a live process (this one) finished a moment ago, its logging perhaps under way
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, os.getpid())
    # Then the owner's sweep leaves it to that process: logging it too would record it twice
    assert trials.log_lost_trials(study, client, experiment_id, parent) == 0
    # But one finished longer ago than any logging takes was lost (its store failed under a live process)
    _, _, _, old = _store(tmp_path / "old")
    _complete(old, os.getpid(), ago_s=trials.LOGGING_S + 5)
    assert trials.log_lost_trials(old, client, experiment_id, parent) == 1


def test_a_half_made_run_of_a_finished_trial_is_replaced_by_one_whole_run(tmp_path: Path, dead_pid: int) -> None:
    # Given a complete trial whose dead process created its run and stopped before finishing it (params, metrics
    # and status never written)
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, dead_pid)
    client.create_run(experiment_id, run_name="trial-000", tags={
        trials.PARENT_TAG: parent, trials.TRIAL_NUMBER_TAG: "0", trials.TRIAL_STATE_TAG: "COMPLETE",
        trials.LOGGER_TAG: str(liveness.Owner(socket.gethostname(), dead_pid, "1"))})

    # When the next training resumes (closing what the dead process left) and ends its search
    closed = trials.close_dead(study, client, experiment_id, parent, f"pid {dead_pid}, which died")
    logged = trials.log_lost_trials(study, client, experiment_id, parent)

    # Then the trial is one FINISHED run holding its metrics, not a KILLED husk beside it
    assert (closed, logged) == (1, 1)
    assert _runs(client, experiment_id, parent) == [("0", "FINISHED")]
    assert trials.trial_runs(client, experiment_id, parent)[0].data.metrics == {"cv_rmse_std": 0.1}


def test_a_training_that_logged_every_trial_itself_asks_mlflow_nothing(tmp_path: Path, dead_pid: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given trials this process logged itself (a dead pid stands in for any process: the record is what counts)
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, dead_pid, ago_s=trials.LOGGING_S + 5)
    searches: list[object] = []
    real_search = client.search_runs
    monkeypatch.setattr(client, "search_runs", lambda *a, **k: searches.append(a) or real_search(*a, **k))
    # When the end-of-search sweep runs, then it logs nothing and makes no MLflow call (the release role may not)
    assert trials.log_lost_trials(study, client, experiment_id, parent, logged_here={0}) == 0
    assert searches == []


def test_a_trial_its_live_process_logs_only_after_the_sweep_did_is_one_run(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a trial a live worker finished long ago and is logging only now (MLflow's client retried a store for
    # minutes), which the training's sweep (another process) meanwhile took for lost and logged
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, os.getpid(), ago_s=trials.LOGGING_S + 5)
    with monkeypatch.context() as training:
        training.setattr(liveness, "me", lambda: liveness.Owner("training-host", 1, "1"))
        assert trials.log_lost_trials(study, client, experiment_id, parent) == 1
    (sweeps,) = trials.trial_runs(client, experiment_id, parent)
    # When the worker's own logging lands
    logger = trials.TrialLogger(client, experiment_id, parent)
    logger(study, study.trials[0])
    # Then the trial is still one run, the sweep's, whole
    (run,) = trials.trial_runs(client, experiment_id, parent)
    assert run.info.run_id == sweeps.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics == {"cv_rmse_std": 0.1}


def test_a_trial_logged_late_that_nobody_else_logged_keeps_its_run(tmp_path: Path) -> None:
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, os.getpid(), ago_s=trials.LOGGING_S + 5)
    trials.TrialLogger(client, experiment_id, parent)(study, study.trials[0])
    assert _runs(client, experiment_id, parent) == [("0", "FINISHED")]


def test_a_trial_whose_process_pid_was_given_to_another_process_is_logged(tmp_path: Path) -> None:
    # Given a trial named by a process of this host with this process's pid but another start time: the
    # kernel gave the dead worker's pid to another process (here: this one)
    client, experiment_id, parent, study = _store(tmp_path)
    me = liveness.me()
    _complete(study, me.pid, worker=str(liveness.Owner(me.host, me.pid, me.start + "0")))
    # Then it is known dead, and its trial is logged at once, not left to the 120 s age rule
    assert trials.log_lost_trials(study, client, experiment_id, parent) == 1


def test_a_study_from_before_start_times_still_names_its_workers(tmp_path: Path, dead_pid: int) -> None:
    # Given a study whose trials name their process as host:pid (no start time), one dead, one alive
    _, _, _, study = _store(tmp_path)
    _complete(study, dead_pid, worker=f"{socket.gethostname()}:{dead_pid}")
    (trial,) = study.trials
    assert search.worker_of(trial) == liveness.Owner(socket.gethostname(), dead_pid, "")
    client, experiment_id, parent, _ = _store(tmp_path / "store")
    assert trials.log_lost_trials(study, client, experiment_id, parent) == 1
    _, _, _, alive = _store(tmp_path / "alive")
    _complete(alive, os.getpid(), worker=f"{socket.gethostname()}:{os.getpid()}")
    assert trials.log_lost_trials(alive, client, experiment_id, parent) == 0


def test_a_late_logging_keeps_its_run_beside_a_husk_of_its_own(tmp_path: Path) -> None:
    # Given a late logging whose process also left a RUNNING husk of the trial (MLflow's client retried a
    # create_run whose first answer was lost)
    client, experiment_id, parent, study = _store(tmp_path)
    _complete(study, os.getpid(), ago_s=trials.LOGGING_S + 5)
    client.create_run(experiment_id, run_name="trial-000", tags={
        trials.PARENT_TAG: parent, trials.TRIAL_NUMBER_TAG: "0", trials.LOGGER_TAG: str(liveness.me())})
    trials.TrialLogger(client, experiment_id, parent)(study, study.trials[0])
    # Then the whole run stays (the husk is close_dead's once this process is gone)
    assert sorted(_runs(client, experiment_id, parent)) == [("0", "FINISHED"), ("0", "RUNNING")]
