"""The trial budget across processes: exactly ``n_trials`` start, even when two processes start one together."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from experiments import budget, search, trials

State = optuna.trial.TrialState


def _study(url: str) -> optuna.Study:
    return search.make_study(name="budget", storage=url, seed=0, startup_trials=1)


def _objective(calls: list[int]):
    def objective(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        return 1.0
    return objective


def _another_process_starts_a_trial_before(study: optuna.Study, monkeypatch: pytest.MonkeyPatch,
                                           *, nth: int) -> None:
    """The race: another process creates a trial after this one checked the budget and before it creates its
    own (its ``nth`` trial): the moment no check made before creating a trial can see."""
    create, made = study._storage.create_new_trial, []

    def create_after_another(study_id: int, template_trial=None) -> int:
        made.append(1)
        if len(made) == nth:
            create(study_id)  # the other process's trial, RUNNING
        return create(study_id, template_trial)
    monkeypatch.setattr(study._storage, "create_new_trial", create_after_another)


def test_a_trial_started_when_another_process_took_the_last_one_ends_before_it_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    study = _study(f"sqlite:///{tmp_path}/optuna.db")
    _another_process_starts_a_trial_before(study, monkeypatch, nth=2)
    calls: list[int] = []
    level = optuna.logging.get_verbosity()

    budget.run_trials(study, _objective(calls), n_trials=2, timeout_s=60, callbacks=[], heartbeat=True,
                      wait_for_others=False)

    assert calls == [0], "only this process's first trial trained"
    assert [t.state for t in study.trials] == [State.COMPLETE, State.RUNNING, State.FAIL]
    assert study.trials[2].user_attrs == {budget.OVER_BUDGET_ATTR: True}
    out, err = capfd.readouterr()
    assert "trial 2 not run: another process started the last trial of the 2 at the same moment" in out
    assert "Trial 2" not in err and "Traceback" not in err, "Optuna's failed-trial warnings are not shown"
    assert not [r for r in caplog.records if r.name.startswith("optuna") and "Trial 2" in r.getMessage()]
    assert optuna.logging.get_verbosity() == level, "Optuna's own level is back"


def test_a_queued_retry_counts_towards_the_budget_and_runs_before_a_trial_created_after_it(tmp_path: Path) -> None:
    study = _study(f"sqlite:///{tmp_path}/optuna.db")
    study.add_trial(optuna.trial.create_trial(value=1.0, state=State.COMPLETE))
    study.add_trial(optuna.trial.create_trial(state=State.FAIL))  # a worker died in it
    study.enqueue_trial({})  # its retry, trial 2
    late = optuna.Trial(study, study._storage.create_new_trial(study._study_id))
    retry = optuna.Trial(study, study.trials[2]._trial_id)
    rule = budget.TrialBudget(2, count_running=True)

    assert (rule.ahead_of(retry), rule.ahead_of(late)) == (1, 2)
    with pytest.raises(budget.OverBudget):
        rule.within(_objective([]))(late)
    assert rule.within(lambda trial: 7.0)(retry) == 7.0


def test_without_heartbeats_a_dead_process_s_running_trial_does_not_take_the_budget(tmp_path: Path) -> None:
    url = f"journal:{tmp_path}/optuna.journal"
    study = _study(url)
    study.ask()  # a process that died in its trial: a journal cannot tell it from a live one
    calls: list[int] = []

    budget.run_trials(study, _objective(calls), n_trials=1, timeout_s=60, callbacks=[],
                      heartbeat=budget.has_heartbeat(url), wait_for_others=True)

    assert calls == [1]


def test_an_over_budget_trial_is_not_logged_as_a_lost_one(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("budget", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment_id).info.run_id
    study = _study(f"sqlite:///{tmp_path}/optuna.db")
    study.add_trial(optuna.trial.create_trial(state=State.FAIL))  # a worker died in it
    study.add_trial(optuna.trial.create_trial(state=State.FAIL, user_attrs={budget.OVER_BUDGET_ATTR: True}))

    assert trials.log_lost_trials(study, client, experiment_id, parent) == 1
    logged = [r.data.tags[trials.TRIAL_NUMBER_TAG] for r in trials.trial_runs(client, experiment_id, parent)]
    assert logged == ["0"]
