"""``python -m team``: a state file that is not a stack's (cut off, edited, empty) is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core import liveness
from team import postgres
from team.__main__ import main


@pytest.mark.parametrize("content", ['{"pg_data": "/tmp/x", "pg_po', "{}", "[]", "\xff", "[" * 100_000],
                         ids=["cut-off", "empty-object", "a-list", "not-utf8", "nested-too-deep"])
@pytest.mark.parametrize("command", ["env", "down", "up"])
def test_a_state_file_that_is_not_a_stacks_is_one_line(tmp_path: Path, capsys, content: str, command: str) -> None:
    (tmp_path / "stack.json").write_bytes(content.encode("latin-1"))
    assert main([command, "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is not a team stack's state" in err, err


def _gone_pid() -> int:
    """The pid of a process that has exited and been reaped: signalling it reaches nobody."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


# Never a live pid here (pid 1's group is init's): a regression that signals anyway must hit nothing.
STATE = {"pg_data": "/nonexistent/team-test/pg", "pg_port": 5432, "pg_password": "x", "pg_owner": None,
         "pg_tmp_root": None, "moto_pid": _gone_pid(), "moto_port": 5000, "mlflow_pid": _gone_pid(),
         "mlflow_port": 5001}


@pytest.mark.parametrize(("field", "value"), [("moto_pid", "12"), ("mlflow_port", True), ("pg_port", -1),
                                              ("pg_data", 5), ("pg_owner", 3)])
def test_a_state_field_of_the_wrong_type_is_one_line_and_signals_nothing(tmp_path: Path, capsys, field: str,
                                                                          value: object) -> None:
    (tmp_path / "stack.json").write_text(json.dumps(STATE | {field: value}))
    assert main(["down", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and f"TypeError: {field} is" in err, err


def test_down_leaves_alone_a_process_that_took_a_recorded_pid_later(tmp_path: Path, capsys) -> None:
    # Given a state whose pids now belong to another process (after a reboot): its start time differs
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state = STATE | {"moto_pid": other.pid, "mlflow_pid": other.pid, "moto_start": "1", "mlflow_start": "1"}
        (tmp_path / "stack.json").write_text(json.dumps(state))
        # When the stack is taken down
        assert main(["down", "--state-dir", str(tmp_path)]) == 0
        # Then that process still runs (it was never the stack's), and the state is gone
        assert other.poll() is None
        assert not (tmp_path / "stack.json").exists()
    finally:
        other.kill()
        other.wait()


def test_down_stops_the_process_a_state_records_with_its_start_time(tmp_path: Path) -> None:
    ours = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        start = liveness.of(ours.pid).start
        state = STATE | {"moto_pid": ours.pid, "mlflow_pid": ours.pid, "moto_start": start, "mlflow_start": start}
        (tmp_path / "stack.json").write_text(json.dumps(state))
        assert main(["down", "--state-dir", str(tmp_path)]) == 0
        assert ours.wait(timeout=20) is not None
    finally:
        ours.kill()
        ours.wait()


@pytest.mark.parametrize("command", ["env", "down", "up"])
def test_a_state_file_that_is_a_folder_is_one_line(tmp_path: Path, capsys, nothing_starts, command: str) -> None:
    (tmp_path / "stack.json").mkdir()
    assert main([command, "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not a regular file" in err, err


def test_down_with_a_relative_cluster_folder_deletes_nothing_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # Given a state recording the cluster relative to where `up` ran (`--state-dir team/run`, not root)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "stack.json").write_text(json.dumps(STATE | {"pg_data": "team/run/postgres/data"}))
    # and `down` run from another directory holding a folder of that name
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "team/run/postgres/data").mkdir(parents=True)
    (elsewhere / "team/run/postgres/data/keep.txt").write_text("mine")
    monkeypatch.chdir(elsewhere)
    # When the stack is taken down
    code = main(["down", "--state-dir", str(state_dir)])
    # Then that folder is untouched, and the state is refused in one line
    assert (elsewhere / "team/run/postgres/data/keep.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "not an absolute path" in err, err


@pytest.mark.parametrize("field", ["pg_data", "pg_tmp_root"])
def test_down_deletes_no_folder_the_stack_did_not_make(tmp_path: Path, capsys, field: str) -> None:
    # Given a state naming a folder outside the state dir, or one without the marker the stack writes
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / "keep.txt").write_text("mine")
    recorded = {"pg_data": str(other / "data")} | ({"pg_tmp_root": str(other)} if field == "pg_tmp_root" else {})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "stack.json").write_text(json.dumps(STATE | recorded))
    # When the stack is taken down
    assert main(["down", "--state-dir", str(tmp_path / "state")]) == 0
    # Then the folder is left alone, and `down` says so in one line
    assert (other / "data" / "keep.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"left {other} alone" in err, err
    assert not (tmp_path / "state" / "stack.json").exists()


def test_down_deletes_the_cluster_folder_the_stack_made(tmp_path: Path, capsys) -> None:
    cluster = tmp_path / "postgres"
    (cluster / "data").mkdir(parents=True)
    (cluster / postgres.MARKER).touch()
    (tmp_path / "stack.json").write_text(json.dumps(STATE | {"pg_data": str(cluster / "data")}))
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert not cluster.exists()
    assert capsys.readouterr().err == ""


def test_down_does_not_signal_a_pid_whose_start_time_was_not_recorded(tmp_path: Path, capsys) -> None:
    # Given a state without start times (written by an older version), naming a live process group leader
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state = STATE | {"moto_pid": other.pid, "mlflow_pid": other.pid}
        (tmp_path / "stack.json").write_text(json.dumps(state))
        # When the stack is taken down
        assert main(["down", "--state-dir", str(tmp_path)]) == 0
        # Then that process still runs (the pid may be anyone's by now), and each pid left alone is one line
        assert other.poll() is None, "a pid whose start time cannot be checked was signalled"
        err = capsys.readouterr().err
        assert err.count("\n") == 2 and err.count(f"(pid {other.pid}) not signalled") == 2, err
        assert not (tmp_path / "stack.json").exists()
    finally:
        other.kill()
        other.wait()


def test_the_state_is_written_whole_for_its_owner_alone_and_read_back(tmp_path: Path) -> None:
    from team.state import State, read_state, write_state

    (tmp_path / "stack.json").write_text("an earlier state")
    (tmp_path / "stack.json").chmod(0o644)
    state = State(**STATE)
    write_state(tmp_path, state)
    # The password it holds is its owner's alone, whatever mode the file it replaced had
    assert (tmp_path / "stack.json").stat().st_mode & 0o777 == 0o600
    assert read_state(tmp_path) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.json"], "no temp file left"


@pytest.mark.parametrize("command", ["env", "up"])
def test_a_recorded_stack_that_has_exited_is_one_line_saying_so(tmp_path: Path, capsys, nothing_starts,
                                                                command: str) -> None:
    # Given a state whose mlflow server has exited (a reboot, a crash, a kill)
    state = STATE | {"mlflow_start": "1", "moto_start": "1"}
    (tmp_path / "stack.json").write_text(json.dumps(state))
    # When its exports are asked for (or the stack is started again)
    code = main([command, "--state-dir", str(tmp_path)])
    # Then it says in one line that the stack is not running and how to clear it, rather than handing out
    # the URLs of a dead server (or calling it "already running")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"mlflow server, pid {state['mlflow_pid']}, has exited" in err and "python -m team down" in err, err


def test_env_of_a_recorded_stack_that_runs_prints_its_exports(tmp_path: Path, capsys) -> None:
    # Given a state whose mlflow server and PostgreSQL (their pids: a process started here) still run
    running = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "postmaster.pid").write_text(f"{running.pid}\n{tmp_path / 'data'}\n")
        state = STATE | {"pg_data": str(tmp_path / "data"), "mlflow_pid": running.pid,
                         "mlflow_start": liveness.of(running.pid).start}
        (tmp_path / "stack.json").write_text(json.dumps(state))
        # When its exports are asked for
        assert main(["env", "--state-dir", str(tmp_path)]) == 0
        # Then they are printed
        assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5001" in capsys.readouterr().out
    finally:
        running.kill()
        running.wait()
