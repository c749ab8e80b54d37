"""``python -m team up``: what would stop it from running or recording the stack is refused in one line, before
anything starts; a failure after something started stops it again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from core.cli import UserError
from team import stack
from team.__main__ import main
from tests.conftest import ROOT
from tests.team.conftest import without_override


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_state_dir_under_a_file_is_one_line(capsys, nothing_starts) -> None:
    assert main(["up", "--state-dir", "/dev/null/x"]) == 1
    assert "Not a directory" in _one_error_line(capsys)


def test_a_logs_file_where_the_logs_folder_goes_is_one_line(tmp_path: Path, capsys, nothing_starts) -> None:
    (tmp_path / "logs").write_text("")
    assert main(["up", "--state-dir", str(tmp_path)]) == 1
    assert f"{tmp_path / 'logs'}" in _one_error_line(capsys)


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path, capsys, nothing_starts) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["up", "--state-dir", str(tmp_path), "--port", str(port)]) == 1
    assert f"127.0.0.1:{port}" in _one_error_line(capsys)


GUARDED_UP = """
import sys
import tempfile
from team import postgres, stack
from team.__main__ import main

def refuse(*args, **kwargs):
    raise AssertionError("up started a component before refusing")

postgres.start = stack._spawn = refuse
sys.exit(main(sys.argv[1:]))
"""


def test_a_state_dir_it_cannot_write_in_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    # Given a state folder `up` may not write in (root: without the capability that overrides permissions)
    state_dir = tmp_path / "state"
    (state_dir / "logs").mkdir(parents=True)
    state_dir.chmod(0o555)
    prefix = without_override("root writes in any folder")
    # When the stack is started there
    done = subprocess.run([*prefix, sys.executable, "-c", GUARDED_UP, "up", "--state-dir", str(state_dir)],
                          cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, check=False)
    # Then it is refused in one line, and nothing started
    assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "cannot write in the state folder" in done.stderr


def _started_by(mark: str) -> set[int]:
    """Pids of this user's processes whose environment holds ``mark``: what this test's `up` started, nothing else."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _running(pid: int) -> bool:
    """Not exited (an exited child not yet reaped is a zombie, Z)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_state_file_it_cannot_write_after_starting_stops_everything(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a `stack.json` that turns into a folder while the stack starts (after the check before starting)
    mark = f"TEAM_TEST_UP={uuid.uuid4().hex}"  # inherited by every process `up` starts, and by nothing else
    monkeypatch.setenv(*mark.split("=", 1))
    blocked = threading.Event()

    def block_state_file() -> None:
        deadline = time.monotonic() + 120
        while not (tmp_path / "logs" / "mlflow.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "stack.json").mkdir()
        blocked.set()

    blocker = threading.Thread(target=block_state_file, daemon=True)
    blocker.start()
    try:
        # When the stack is started
        with pytest.raises(UserError, match="cannot write .*stack.json"):
            stack.up(tmp_path)
        # Then nothing it started is left running
        assert blocked.is_set(), "mlflow server never started"
        deadline = time.monotonic() + 15  # a server's forked workers may take a moment after its leader
        while (left := {pid for pid in _started_by(mark) if _running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"left running: {left}"
    finally:
        blocker.join(timeout=130)
        for pid in _started_by(mark):  # only on a regression: what this test's `up` left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_initdb_that_dies_without_a_word_is_one_line_and_leaves_nothing(tmp_path: Path, capsys,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an initdb that is killed before it says anything (the OOM killer), found first on PATH; in a folder
    # the `postgres` user can read, since as root initdb runs as that user
    bin_dir = Path(tempfile.mkdtemp(prefix="team-test-bin-"))
    try:
        bin_dir.chmod(0o755)
        (bin_dir / "initdb").write_text("#!/bin/sh\nkill -9 $$\n")
        (bin_dir / "initdb").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setattr(tempfile, "tempdir", str(bin_dir))  # where `up` run as root makes its cluster folder
        # When the stack is started
        code = main(["up", "--state-dir", str(tmp_path / "state")])
        left = list(bin_dir.glob("team-pg-*"))
    finally:
        shutil.rmtree(bin_dir)
    # Then it fails in one line saying how initdb ended, and leaves no cluster folder behind
    err = _one_error_line(capsys)
    assert code == 1 and "initdb failed with exit code -9" in err, err
    assert not left, left
    assert not (tmp_path / "state" / "postgres").exists() and not (tmp_path / "state" / "stack.json").exists()


class _NotInstalled:
    """A module finder for which psycopg is not installed (an environment without the train group)."""

    @staticmethod
    def find_spec(name: str, *_args: object) -> None:
        if name == "psycopg":
            raise ModuleNotFoundError(name)


@pytest.mark.parametrize("missing", ["moto[server]", "psycopg[binary]"])
def test_a_missing_package_is_one_line_before_anything_starts(tmp_path: Path, capsys, nothing_starts,
                                                              monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    # Given an environment without moto's server (the dev group) or psycopg (the train group)
    if missing == "moto[server]":
        (tmp_path / "venv" / "bin").mkdir(parents=True)
        monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    else:
        monkeypatch.delitem(sys.modules, "psycopg", raising=False)
        monkeypatch.setattr(sys, "meta_path", [_NotInstalled(), *sys.meta_path])
    # When the stack is started
    code = main(["up", "--state-dir", str(tmp_path / "state")])
    # Then it names what is missing in one line, before starting anything (PostgreSQL would be left to clean up)
    err = _one_error_line(capsys)
    assert code == 1 and f"the team stack needs {missing}" in err and "make setup" in err, err
