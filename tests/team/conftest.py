"""Fixtures for the team-mode tests: one real stack (PostgreSQL, moto server, mlflow server) per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from core.cli import UserError
from team import postgres, stack
from tests.conftest import FAST_TRAIN, ROOT, write_params

MODEL = "student-score"


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory):
    """The stack started with `python -m team up`'s own code, and stopped (database deleted) afterwards."""
    try:
        postgres.pg_binary("initdb")
    except UserError as err:
        pytest.fail(f"{err} (the team tests need a real PostgreSQL server)")
    state = tmp_path_factory.mktemp("team-stack")
    endpoints = stack.up(state)
    try:
        yield endpoints
    finally:
        stack.down(state, force=True)  # the tests' own processes may still hold a study open


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if `up` starts PostgreSQL or a server: for refusals that must come before anything starts."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("up started a component before refusing")

    monkeypatch.setattr(postgres, "start", refuse)
    monkeypatch.setattr(stack, "_spawn", refuse)


def client_env(endpoints: stack.Endpoints, *, storage: bool = False) -> dict[str, str]:
    """A client's environment: only the tracking URI (and the study storage when asked), no bucket keys."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MLFLOW_", "OPTUNA_"))}
    env |= {"MLFLOW_TRACKING_URI": endpoints.tracking_uri, "PYTHONPATH": str(ROOT)}
    if storage:
        env["OPTUNA_STORAGE"] = endpoints.optuna_storage
    return env


def team_params(folder: Path, csv: Path, **train: object) -> Path:
    """params.yaml in ``folder`` with a fast search; the tracking URI in it is overridden by the environment."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_params(folder, csv, train=FAST_TRAIN | {"nthread": 1} | train)


def start(module: str, *args: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``python -m module args`` with its output in ``log`` (read it back with ``output``)."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def output(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


def finish(proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> str:
    """Wait for ``proc``; fail the test with its output unless it exited 0."""
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{proc.args} did not finish within {timeout_s}s:\n{output(log)[-3000:]}")
    assert code == 0, f"{proc.args} exited {code}:\n{output(log)[-3000:]}"
    return output(log)


def wait_until(condition, what: str, timeout_s: float = 180, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def read_params(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def without_override(why: str) -> list[str]:
    """The command prefix that runs a child without the capabilities that let root ignore file permissions
    (``setpriv``); none when not root. Skips the test, saying ``why`` root would not be refused, without setpriv."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(f"util-linux setpriv is not installed ({why})")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
