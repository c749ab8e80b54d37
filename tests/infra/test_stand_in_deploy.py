"""Tests for `make stand-in-deploy`'s bad input: it refuses before stopping what is served, in one line.

Deploying, rolling back and serving for real are exercised by tests/workflows/test_release_flow.py, which
runs the release workflow's steps against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import deploy


def test_an_unreadable_model_is_refused_before_anything_changes(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"not a tarball")

    code = deploy.main(["--state-dir", str(state), "--model-tarball", str(bad),
                        "--outputs-file", str(tmp_path / "outputs.json")])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: deploy failed before anything changed: ") and err.count("\n") == 1
    assert not (tmp_path / "outputs.json").exists()
    assert not state.exists(), "no port, pid or model recorded for a deploy that never started"


def test_stop_without_a_running_stand_in_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["--state-dir", str(tmp_path), "--stop"]) == 0
    assert capsys.readouterr().out == "no stand-in was running\n"


def test_a_recorded_pid_that_is_not_a_stand_in_is_never_signalled(tmp_path: Path) -> None:
    # Given a pid file naming this very test process (alive, but not `python -m infra.local`)
    import os

    (tmp_path / deploy.PID).write_text(str(os.getpid()))
    # When the stand-in is stopped, nothing is signalled (this test would die) and the stale file goes
    assert deploy.stop(tmp_path) is False
    assert not (tmp_path / deploy.PID).exists()


def test_deploy_needs_a_model_and_an_outputs_file(tmp_path: Path) -> None:
    assert deploy.main(["--state-dir", str(tmp_path)]) == 2
