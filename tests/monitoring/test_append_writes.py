"""How ``monitoring.append`` writes: the table and its ledger change together or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import UserError
from monitoring import append

HEADER = b"Hours_Studied,Gender,Exam_Score\n12,Male,70\n"


def test_a_ledger_that_cannot_be_written_leaves_the_table_as_it_was(tmp_path: Path) -> None:
    # Given a tracked table whose ledger cannot be written: a name with room for the table's temporary file
    # (".NAME.XXXXXXXX.tmp", 251 characters) but not for the ledger's, 9 characters longer than the 255 allowed
    (tmp_path / "data").mkdir()
    table = tmp_path / "data" / ("t" * 233 + ".csv")
    table.write_bytes(HEADER)
    (tmp_path / "data.dvc").write_text("outs:\n- path: data\n")
    labelled = [({"request_id": "req-1", "row": 0, "record": {"Hours_Studied": 20, "Gender": "Female"}}, 81.0)]
    # When a labelled record is appended
    with pytest.raises(UserError, match="nothing appended") as raised:
        append.append(table, "Exam_Score", labelled, root=tmp_path)
    # Then neither the table nor the ledger changed, and no temporary file is left beside them: a table holding the
    # row without its ledger entry would take the row again on the next append
    assert "\n" not in str(raised.value)
    assert table.read_bytes() == HEADER, "the table changed though its ledger could not record the row"
    assert sorted(p.name for p in table.parent.iterdir()) == [table.name]
