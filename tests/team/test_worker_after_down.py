"""A worker and the training whose stack is taken down with ``down --force`` mid-search end in one line, never a
traceback."""

from __future__ import annotations

import optuna
import pytest

from experiments.search import PARENT_RUN_ATTR, WORKER_ATTR
from team import stack
from team.__main__ import main
from tests.team.conftest import client_env, output, start, team_params, wait_until
from tests.team.test_distributed_search import SEARCH

STUDY = "team-taken-down"


def _study(storage: optuna.storages.RDBStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=STUDY, storage=storage)
    except KeyError:
        return None


def _in_a_trial(storage: optuna.storages.RDBStorage, pid: int) -> bool:
    running = _study(storage).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return any(t.user_attrs.get(WORKER_ATTR, "").endswith(f":{pid}") for t in running)


@pytest.mark.slow
def test_a_worker_and_training_whose_stack_is_taken_down_end_in_one_line(tmp_path, sample_csv, capsys) -> None:
    state_dir, folder = tmp_path / "state", tmp_path / "search"
    endpoints = stack.up(state_dir)
    train = worker = None
    try:
        # Given a training and a worker searching one study, the worker inside a trial
        params = str(team_params(folder, sample_csv, **SEARCH))
        env = client_env(endpoints, storage=True)
        storage = optuna.storages.RDBStorage(endpoints.optuna_storage)
        # MLflow's client retries a server that stopped answering with back-off for minutes (its default 7 retries);
        # none here, so the test sees what the training says once its retries are spent.
        train = start("experiments.train", "--params", params, "--study-name", STUDY, cwd=folder,
                      env=env | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
                      log=folder / "train.log")
        wait_until(lambda: (s := _study(storage)) is not None and PARENT_RUN_ATTR in s.user_attrs,
                   "the training to create the study and its parent run")
        worker = start("experiments.worker", "--params", params, "--study", STUDY, cwd=folder, env=env,
                       log=folder / "worker.log")
        wait_until(lambda: _in_a_trial(storage, worker.pid) or worker.poll() is not None,
                   "the worker to start a trial")
        assert worker.poll() is None, f"the worker ended before starting a trial:\n{output(folder / 'worker.log')}"
        storage.engine.dispose()
        # When the stack is taken down under it
        assert main(["down", "--force", "--state-dir", str(state_dir)]) == 0, capsys.readouterr().err
        # Then the worker and the training end with a non-zero exit and one line saying why
        for proc, log in ((worker, "worker.log"), (train, "train.log")):
            code = proc.wait(timeout=120)
            said = output(folder / log)
            assert code != 0 and "Traceback" not in said, f"{log}:\n{said}"
            last = said.strip().splitlines()[-1]
            assert last.startswith("error: "), f"{log}:\n{said}"
    finally:
        for proc in (train, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        stack.down(state_dir, force=True)
