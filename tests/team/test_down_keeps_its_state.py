"""``python -m team down`` where the state file cannot be deleted: one line, and the stack still recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core import liveness
from tests.conftest import ROOT
from tests.team.conftest import without_override


def test_down_in_a_folder_it_cannot_delete_the_state_from_is_one_line_and_stops_nothing(tmp_path: Path) -> None:
    # Given a recorded stack (one process of it running) in a folder `down` may not delete its state from
    # (root: without the capability that overrides permissions)
    ours = subprocess.Popen(["sleep", "60"], start_new_session=True)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    try:
        start = liveness.of(ours.pid).start
        state = {"pg_data": "/nonexistent/team-test/pg/data", "pg_port": 5432, "pg_password": "x", "pg_owner": None,
                 "pg_tmp_root": None, "moto_pid": ours.pid, "moto_port": 5000, "mlflow_pid": ours.pid,
                 "mlflow_port": 5001, "moto_start": start, "mlflow_start": start}
        (state_dir / "stack.json").write_text(json.dumps(state))
        state_dir.chmod(0o555)
        prefix = without_override("root deletes in any folder")
        # When the stack is taken down
        done = subprocess.run([*prefix, sys.executable, "-m", "team", "down", "--state-dir", str(state_dir)],
                              cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=120, check=False)
        # Then it is refused in one line before anything stops, and the state still records the stack
        assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, \
            done.stderr
        assert "stack.json" in done.stderr, done.stderr
        assert ours.poll() is None, "down stopped a process of a stack it could not then forget"
        assert json.loads((state_dir / "stack.json").read_text()) == state
    finally:
        state_dir.chmod(0o755)
        ours.kill()
        ours.wait()
