"""``python -m team up|down`` while another is starting the stack in the same state folder: refused in one line,
the first one's stack left alone."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from core.cli import UserError
from team import postgres, stack
from team.__main__ import main


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
