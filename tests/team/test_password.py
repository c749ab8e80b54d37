"""The stack's database password stays its owner's: never on a command line, which every user can read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ROOT


def _command_lines() -> dict[int, str]:
    """Every process's arguments, as ps shows them to any user (``/proc/PID/cmdline`` is world-readable)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def test_no_process_of_the_stack_shows_the_password_in_its_arguments(team_stack) -> None:
    # Given the running stack, whose password is in the storage URL clients get
    password = urlsplit(team_stack.optuna_storage).password
    assert password
    # When any user on the machine lists the processes
    shown = {pid: line for pid, line in _command_lines().items() if password in line}
    # Then none shows it: with it, anyone here could read and rewrite the registry and the studies
    assert not shown, f"the database password is on these command lines: {shown}"


def test_team_worker_passes_the_storage_in_the_environment_not_the_arguments(tmp_path: Path) -> None:
    # Given a storage URL with a password in the environment (as `eval "$(make -s team-env)"` leaves it)
    storage = "postgresql+psycopg://team:s3cret-pw@127.0.0.1:5432/optuna"
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\nprintf "arg:%s\\n" "$@"\necho "storage:$OPTUNA_STORAGE"\n')
    fake_python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE", "STUDY")} | {"OPTUNA_STORAGE": storage}
    # When a worker is started with `make team-worker`
    done = subprocess.run(["make", "--no-print-directory", "team-worker", f"PY={fake_python}", 'STUDY=it"s'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    # Then the worker gets the storage and the study name as given, and no command line (make's echo, ps) holds
    # the password
    assert done.returncode == 0, done.stderr
    assert f"storage:{storage}" in done.stdout.splitlines(), done.stdout
    assert [ln for ln in done.stdout.splitlines() if ln.startswith("arg:")] == \
        ["arg:-m", "arg:experiments.worker", "arg:--study", 'arg:it"s'], done.stdout
    printed = done.stdout.replace(f"storage:{storage}", "")
    assert "s3cret-pw" not in printed + done.stderr, f"make showed the password: {printed}"
