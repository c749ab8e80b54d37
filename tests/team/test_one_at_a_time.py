"""``python -m team up|down`` while another is starting the stack in the same state folder: refused in one line,
the first one's stack left alone; and an ``up`` stopped by SIGTERM stops what it had started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli import UserError
from team import postgres, stack
from team.__main__ import main
from tests.conftest import ROOT
from tests.team.test_up_refusals import _running, _started_by


@pytest.fixture
def first_up_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An `up` in ``tmp_path`` (in a thread) still starting PostgreSQL; yields the list of every PostgreSQL start."""
    starting, release, starts = threading.Event(), threading.Event(), []

    def slow_start(*args: object) -> None:
        starts.append(args)
        if len(starts) == 1:  # the first `up`: busy until the test is done
            starting.set()
            release.wait(60)
        raise UserError("stopped by the test")

    def first_up() -> None:
        with contextlib.suppress(UserError):
            stack.up(tmp_path)

    monkeypatch.setattr(postgres, "start", slow_start)
    first = threading.Thread(target=first_up, daemon=True)
    first.start()
    assert starting.wait(30), "the first up never started PostgreSQL"
    try:
        yield starts
    finally:
        release.set()
        first.join(60)


@pytest.mark.parametrize("command", ["up", "down"])
def test_a_second_command_while_up_is_starting_is_one_line(tmp_path: Path, capsys, first_up_starting,
                                                          command: str) -> None:
    # Given an `up` still starting the stack (nothing recorded yet)
    # When a second `up` or a `down` is run on the same state folder
    code = main([command, "--state-dir", str(tmp_path)])
    # Then it is refused in one line and starts nothing: two `up`s would both pass the "already running" check,
    # and the second would record over the first, whose processes nothing would ever stop; a `down` would
    # report "no team stack was running" while one was about to be
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "another `python -m team` command is starting or stopping the stack" in err, err
    assert len(first_up_starting) == 1, "a second PostgreSQL was started"


@contextlib.contextmanager
def _up_part_way(state_dir: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`up` part-way through starting the stack (PostgreSQL and moto up, mlflow server starting), and the mark its
    processes carry; whatever it left running is killed on the way out."""
    mark = f"TEAM_TEST_UP={uuid.uuid4().hex}"  # inherited by every process `up` starts, and by nothing else
    env = os.environ | {"PYTHONPATH": str(ROOT), mark.split("=")[0]: mark.split("=")[1]}
    env.pop("MLFLOW_TRACKING_URI", None)
    up = subprocess.Popen([sys.executable, "-m", "team", "up", "--state-dir", str(state_dir)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (state_dir / "logs" / "mlflow.log").exists() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.poll() is None, f"up ended before the test could stop it: {up.communicate()}"
        yield up, mark
    finally:
        if up.poll() is None:
            up.kill()
        for pid in _started_by(mark):  # only on a regression: what this test's `up` left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _left_running(mark: str) -> set[int]:
    """What `up` started and is still running, after the moment a server's forked workers take after their leader."""
    deadline = time.monotonic() + 15
    while (left := {pid for pid in _started_by(mark) if _running(pid)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_up_stopped_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    # Given `up` part-way through starting the stack (PostgreSQL and moto up, mlflow server starting)
    with _up_part_way(tmp_path) as (up, mark):
        # When it is sent SIGTERM (a `kill`, a CI job's timeout; SIGHUP, a closed terminal, is handled the same)
        up.send_signal(signal.SIGTERM)
        _, err = up.communicate(timeout=120)
        # Then it says so in one line, and nothing it started is left running (nor recorded, to be stopped later)
        assert up.returncode == 1 and err.count("\n") == 1 and "stopped by SIGTERM" in err, err
        left = _left_running(mark)
        assert not left, f"left running: {left}"
        assert not (tmp_path / "stack.json").exists()


@pytest.mark.slow
def test_a_second_ctrl_c_while_up_cleans_up_does_not_cut_the_clean_up_short(tmp_path: Path) -> None:
    # Given `up` part-way through starting the stack
    with _up_part_way(tmp_path) as (up, mark):
        # When Ctrl-C is pressed, and pressed again while it stops what it started (servers take a moment)
        up.send_signal(signal.SIGINT)
        time.sleep(0.3)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=120)
        # Then it still stops everything it started, and says it was aborted in one line
        assert up.returncode == 130 and err.strip().endswith("error: aborted"), err
        left = _left_running(mark)
        assert not left, f"left running: {left}"
