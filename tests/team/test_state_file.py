"""``python -m team``: a state file that is not a stack's (cut off, edited, empty) is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core import liveness
from team.__main__ import main


@pytest.mark.parametrize("content", ['{"pg_data": "/tmp/x", "pg_po', "{}", "[]", "\xff"],
                         ids=["cut-off", "empty-object", "a-list", "not-utf8"])
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
