"""A worker and the training whose stack is taken down under them mid-search (``down --force``, or its MLflow
server alone dying) end in one line, never a traceback, and never hang."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

from experiments.search import PARENT_RUN_ATTR, worker_of
from team import stack
from team.__main__ import main
from team.state import read_state
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
    return any(getattr(worker_of(t), "pid", None) == pid for t in running)


def _ends_in_one_line(proc: subprocess.Popen, log: Path) -> str:
    """Wait for ``proc``; its last line, once it has ended non-zero with no traceback."""
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{log.name}: still running 120 s after its stack went:\n{output(log)[-3000:]}")
    said = output(log)
    assert code != 0 and "Traceback" not in said, f"{log.name}:\n{said}"
    last = said.strip().splitlines()[-1]
    assert last.startswith("error: "), f"{log.name}:\n{said}"
    return last


@contextmanager
def _searching(tmp_path: Path, sample_csv: Path) -> Iterator[tuple[Path, Path, Callable[[], None]]]:
    """A team stack, a training and a worker searching one study, the worker inside a trial. Yields the stack's
    state folder, the search folder and a function asserting both processes end in one line."""
    state_dir, folder = tmp_path / "state", tmp_path / "search"
    endpoints = stack.up(state_dir)
    train = worker = None
    try:
        params = str(team_params(folder, sample_csv, **SEARCH))
        # MLflow's client retries a server that stopped answering with back-off for minutes (its default 7 retries);
        # none here, so the test sees what each process says once its retries are spent.
        env = client_env(endpoints, storage=True) | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        storage = optuna.storages.RDBStorage(endpoints.optuna_storage)
        train = start("experiments.train", "--params", params, "--study-name", STUDY, cwd=folder, env=env,
                      log=folder / "train.log")
        wait_until(lambda: (s := _study(storage)) is not None and PARENT_RUN_ATTR in s.user_attrs,
                   "the training to create the study and its parent run")
        worker = start("experiments.worker", "--params", params, "--study", STUDY, cwd=folder, env=env,
                       log=folder / "worker.log")
        wait_until(lambda: _in_a_trial(storage, worker.pid) or worker.poll() is not None,
                   "the worker to start a trial")
        assert worker.poll() is None, f"the worker ended before starting a trial:\n{output(folder / 'worker.log')}"
        storage.engine.dispose()

        def both_end_in_one_line() -> None:
            for proc, log in ((worker, "worker.log"), (train, "train.log")):
                _ends_in_one_line(proc, folder / log)

        yield state_dir, folder, both_end_in_one_line
    finally:
        for proc in (train, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        stack.down(state_dir, force=True)


@pytest.mark.slow
def test_a_worker_and_training_whose_stack_is_taken_down_end_in_one_line(tmp_path, sample_csv, capsys) -> None:
    with _searching(tmp_path, sample_csv) as (state_dir, _folder, both_end_in_one_line):
        # When the stack is taken down under them (`down` stops the MLflow server first, so either store may be
        # the one a process finds gone)
        assert main(["down", "--force", "--state-dir", str(state_dir)]) == 0, capsys.readouterr().err
        # Then the worker and the training end with a non-zero exit and one line saying why
        both_end_in_one_line()


@pytest.mark.slow
def test_a_worker_whose_mlflow_server_dies_mid_search_ends_in_one_line_naming_it(tmp_path, sample_csv) -> None:
    with _searching(tmp_path, sample_csv) as (state_dir, folder, both_end_in_one_line):
        # When the MLflow server alone dies (the study's database still answers)
        os.killpg(read_state(state_dir).mlflow_pid, signal.SIGKILL)
        # Then both end in one line; the worker's names the tracking store and the trial it was logging
        both_end_in_one_line()
        worker_said = output(folder / "worker.log").strip().splitlines()[-1]
        assert worker_said.startswith("error: MLflow tracking store http://127.0.0.1:"), worker_said
        assert ": logging trial " in worker_said, worker_said
