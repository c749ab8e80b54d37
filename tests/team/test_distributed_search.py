"""One study searched by the training and two workers through PostgreSQL, one worker SIGKILLed mid-trial."""

from __future__ import annotations

import functools
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.params import load_params
from experiments import cv, search
from experiments import trials as tracking
from experiments.budget import OVER_BUDGET_ATTR
from experiments.data import prepare
from experiments.search import PARENT_RUN_ATTR, WORKER_ATTR, worker_of
from experiments.trials import RETRY_TAG
from tests.conftest import ROOT
from tests.team.conftest import client_env, finish, output, start, team_params, wait_until

pytestmark = pytest.mark.slow

STUDY = "team-distributed"


def _slow_space() -> dict:
    """The project's tree space at a learning rate so low that every fold boosts all ``max_rounds``."""
    space = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["search_space"]
    space["booster"] = {"choices": ["gbtree"]}
    space["gbtree"]["learning_rate"] = {"low": 0.002, "high": 0.004, "log": True}
    return space


# Trials long enough (a few seconds each, whatever params.yaml's own space is) that the workers, which take
# seconds to start, join a search in progress.
SEARCH = {"n_trials": 14, "cv_folds": 3, "max_rounds": 1200, "early_stopping_rounds": 20,
          "pruner_startup_trials": 3, "timeout_s": 600, "search_space": _slow_space()}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass(frozen=True)
class Outcome:
    study: optuna.Study
    parent_run_id: str
    killed_trial: int
    survivor_trials: int
    train_output: str
    params_file: Path


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    # One engine for all the polling below: a storage per call would open a connection pool per call.
    return optuna.storages.RDBStorage(url)


def _study(url: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=STUDY, storage=_storage(url))
    except KeyError:
        return None


def _trial_of(url: str, pid: int, space: Any) -> tuple[int] | None:
    """The number of the trial process ``pid`` is running with every parameter drawn, as a 1-tuple (trial 0 is
    falsy), or None. A trial names its worker before it samples, so the name alone may come before the draw."""
    running = _study(url).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    mine = [t.number for t in running if getattr(worker_of(t), "pid", None) == pid
            and "booster" in t.params and len(t.params) == 1 + len(getattr(space, t.params["booster"]))]
    return (mine[0],) if mine else None


@pytest.fixture(scope="module")
def outcome(team_stack, tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Outcome:
    """Given the training and two workers on one study, when one worker is SIGKILLed inside a trial, then..."""
    folder = tmp_path_factory.mktemp("distributed")
    params = str(team_params(folder, sample_csv, **SEARCH))
    env = client_env(team_stack, storage=True)
    url = team_stack.optuna_storage
    train = start("experiments.train", "--params", params, "--study-name", STUDY, cwd=folder, env=env,
                  log=folder / "train.log")
    wait_until(lambda: (s := _study(url)) is not None and PARENT_RUN_ATTR in s.user_attrs,
               "the training to create the study and its parent run")
    survivor = start("experiments.worker", "--params", params, "--study", STUDY, cwd=folder, env=env,
                     log=folder / "survivor.log")
    victim_log = folder / "victim.log"
    victim = start("experiments.worker", "--params", params, "--study", STUDY, cwd=folder, env=env, log=victim_log)
    # Killed the moment it is inside a trial with its parameters drawn.
    space = load_params(Path(params)).train.search_space
    found = wait_until(lambda: _trial_of(url, victim.pid, space) or victim.poll() is not None,
                       "the victim worker to start a trial")
    assert found is not True, f"the victim exited before starting a trial:\n{output(victim_log)}"
    (killed,) = found
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, f"the victim ended on its own:\n{output(victim_log)}"
    train_output = finish(train, folder / "train.log")
    survivor_output = finish(survivor, folder / "survivor.log")

    study = _study(url)
    failed = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
              if OVER_BUDGET_ATTR not in t.user_attrs]  # ended before training: another process took the last trial
    assert failed == [killed], f"exactly the victim's trial {killed} fails, got failed trials {failed}"
    done = re.search(r"worker finished (\d+) trial", survivor_output)
    assert done, survivor_output
    return Outcome(study=study, parent_run_id=study.user_attrs[PARENT_RUN_ATTR], killed_trial=failed[0],
                   survivor_trials=int(done.group(1)), train_output=train_output, params_file=Path(params))


def test_the_training_and_a_worker_complete_one_study_together(outcome: Outcome) -> None:
    finished = outcome.study.get_trials(deepcopy=False, states=FINISHED)

    assert len(finished) == SEARCH["n_trials"], "three processes and a retry finish exactly the budget"
    assert outcome.survivor_trials >= 1, "the surviving worker ran trials of the shared study"
    workers = {t.user_attrs[WORKER_ATTR] for t in finished}
    assert len(workers) >= 2, f"finished trials came from the training and a worker, got {workers}"
    assert re.search(r"registered student-score version \d+", outcome.train_output)


def test_the_killed_trial_is_retried_with_the_same_parameters(outcome: Outcome) -> None:
    killed = outcome.study.trials[outcome.killed_trial]

    retries = [t for t in outcome.study.trials if outcome.killed_trial in t.system_attrs.get("retry_history", [])]

    assert len(retries) == 1, "one retry, not zero and not several"
    (retry,) = retries
    assert retry.state in FINISHED
    assert retry.params == killed.params


def test_the_retry_scores_what_an_uninterrupted_trial_would(outcome: Outcome) -> None:
    retry = next(t for t in outcome.study.trials if outcome.killed_trial in t.system_attrs.get("retry_history", []))
    params = load_params(outcome.params_file)
    data = prepare(params)
    folds: dict[int, float] = {}

    cv.cross_validate(cv.Folds(data.x_train, data.y_train, params.train),
                          search.from_trial_params(retry.params), params.train,
                          report=folds.__setitem__)

    # Fold by fold, so that the comparison holds whether the median rule pruned the retry or not.
    assert retry.intermediate_values, "the retry reported its folds"
    for fold, rmse in retry.intermediate_values.items():
        assert rmse == pytest.approx(folds[fold], abs=1e-9), f"fold {fold}"


def test_every_trial_is_one_child_run_in_mlflow_including_the_killed_one(team_stack, outcome: Outcome) -> None:
    client = MlflowClient(team_stack.tracking_uri)
    experiment_id = client.get_run(outcome.parent_run_id).info.experiment_id
    # A trial ended over budget (another process took the last trial at the same moment) ran nothing and is
    # logged nowhere, by design (experiments/budget.py): it is in the study as FAIL but has no run.
    expected = {t.number: t.state.name for t in outcome.study.trials
                if t.state.is_finished() and OVER_BUDGET_ATTR not in t.user_attrs}

    runs = tracking.trial_runs(client, experiment_id, outcome.parent_run_id)

    numbers = [int(r.data.tags[tracking.TRIAL_NUMBER_TAG]) for r in runs]
    assert sorted(numbers) == sorted(expected), "each finished or failed trial exactly once, none missing"
    by_number = {int(r.data.tags[tracking.TRIAL_NUMBER_TAG]): r for r in runs}
    assert by_number[outcome.killed_trial].info.status == "FAILED"
    assert by_number[outcome.killed_trial].data.tags[tracking.TRIAL_STATE_TAG] == "FAIL"
    retried = [r for r in runs if r.data.tags.get(RETRY_TAG) == str(outcome.killed_trial)]
    assert len(retried) == 1, "the retry's child run names the trial it re-runs"


def test_the_registered_model_is_the_best_of_every_trial(team_stack, outcome: Outcome) -> None:
    client = MlflowClient(team_stack.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)

    best = min(t.value for t in outcome.study.trials if t.state == optuna.trial.TrialState.COMPLETE)

    assert parent.data.metrics["cv_rmse"] == pytest.approx(best, abs=1e-12)
    assert parent.info.status == "FINISHED"
