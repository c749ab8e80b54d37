"""``python -m team down`` while a training or worker holds the shared study: refused in one line, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from team import stack
from team.__main__ import main
from tests.conftest import ROOT

# What a training or worker does to the study database: open the study, and hold it while it runs trials.
HOLD_THE_STUDY = """
import os, sys, optuna
optuna.create_study(study_name="running", storage=os.environ["OPTUNA_STORAGE"])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_down_while_a_worker_holds_the_study_is_refused_and_the_study_kept(tmp_path: Path, capsys) -> None:
    endpoints = stack.up(tmp_path)
    worker = None
    try:
        # Given a process connected to the stack's study database, as a running training or worker is
        worker = subprocess.Popen([sys.executable, "-c", HOLD_THE_STUDY], cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env=os.environ | {"OPTUNA_STORAGE": endpoints.optuna_storage})
        assert worker.stdout.readline().strip() == "ready"
        capsys.readouterr()
        # When the stack is taken down
        code = main(["down", "--state-dir", str(tmp_path)])
        # Then it is refused in one line naming the way past it, and the stack and its study are still there
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "a training or worker is running" in err, err
        assert "--force" in err, err
        assert (tmp_path / "stack.json").exists()
        storage = optuna.storages.RDBStorage(endpoints.optuna_storage)
        assert optuna.study.get_all_study_names(storage) == ["running"]
        storage.engine.dispose()  # this test's own session on the study database, closed
        # and once the worker has finished, `down` stops the stack
        worker.communicate("", timeout=60)
        assert main(["down", "--state-dir", str(tmp_path)]) == 0
        assert not (tmp_path / "stack.json").exists()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        stack.down(tmp_path, force=True)
