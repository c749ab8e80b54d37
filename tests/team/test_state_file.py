"""``python -m team``: a state file that is not a stack's (cut off, edited, empty) is one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from team.__main__ import main


@pytest.mark.parametrize("content", ['{"pg_data": "/tmp/x", "pg_po', "{}", "[]", "\xff"],
                         ids=["cut-off", "empty-object", "a-list", "not-utf8"])
@pytest.mark.parametrize("command", ["env", "down", "up"])
def test_a_state_file_that_is_not_a_stacks_is_one_line(tmp_path: Path, capsys, content: str, command: str) -> None:
    (tmp_path / "stack.json").write_bytes(content.encode("latin-1"))
    assert main([command, "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is not a team stack's state" in err, err
