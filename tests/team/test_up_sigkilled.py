"""An ``up`` killed by SIGKILL (which no handler sees) while starting: ``down`` stops what it started."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from team.__main__ import main
from tests.team.test_one_at_a_time import _left_running, _up_part_way
from tests.team.test_up_refusals import _started_by


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _cluster_folders(mark: str) -> set[Path]:
    """The folders of the clusters whose server this test's `up` started (``postgres -D FOLDER/data``)."""
    return {Path(args[args.index("-D") + 1]).parent for pid in _started_by(mark)
            if "-D" in (args := _cmdline(pid))[:-1] and Path(args[0]).name == "postgres"}


def _mlflow_started(mark: str) -> bool:
    return any("mlflow" in args and "server" in args for args in map(_cmdline, _started_by(mark)))


@pytest.mark.slow
def test_down_after_up_was_sigkilled_stops_and_deletes_what_it_started(tmp_path: Path, capsys) -> None:
    folders: set[Path] = set()
    try:
        with _up_part_way(tmp_path) as (up, mark):
            # Given `up` killed by SIGKILL part-way (PostgreSQL and moto up, mlflow server started)
            deadline = time.monotonic() + 60
            while not _mlflow_started(mark) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # past the moment `up` notes the server it has just started
            folders = _cluster_folders(mark)
            assert folders, "no PostgreSQL of this test's `up` runs"
            up.send_signal(signal.SIGKILL)
            up.wait(timeout=30)
            # When the stack is taken down
            code = main(["down", "--state-dir", str(tmp_path)])
            # Then what `up` started is stopped, its cluster folder deleted, and nothing is left recorded
            assert code == 0, capsys.readouterr().err
            left = _left_running(mark)
            assert not left, f"left running: {left}"
            assert not [f for f in folders if f.exists()], f"cluster folders left: {folders}"
            assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    finally:
        for folder in folders:  # only on a regression: the clusters of this test's `up`, their servers killed
            shutil.rmtree(folder, ignore_errors=True)


def test_up_after_an_up_killed_while_starting_is_one_line(tmp_path: Path, capsys, nothing_starts) -> None:
    # Given what an `up` killed while starting recorded (its cluster folder, since gone)
    (tmp_path / "starting.json").write_text('{"pg_data": "/nonexistent/team-test/pg/data", "pg_owner": null}')
    # When the stack is started there again
    code = main(["up", "--state-dir", str(tmp_path)])
    # Then it is refused in one line naming `down`, which clears it
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "team down" in err, err
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert not (tmp_path / "starting.json").exists()
