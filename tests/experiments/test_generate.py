"""The sample-table generator: bad options are one line, and the table it replaces is never left cut off."""

from __future__ import annotations

import hashlib
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import generate

REPO = Path(__file__).resolve().parents[2]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_a_negative_seed_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert generate.main(["--seed", "-1", "--out", str(tmp_path / "t.csv")]) == 2
    assert "--seed" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "t.csv").exists()


def test_an_out_path_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("x")
    assert generate.main(["--rows", "10", "--out", str(tmp_path / "a-file" / "t.csv")]) == 1
    assert "cannot write" in _one_line(capsys.readouterr().err)


def test_an_out_path_that_names_a_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # pathlib drops the slash of "data/": the table was written as a file named "data"
    assert generate.main(["--rows", "10", "--out", f"{tmp_path / 'data'}/"]) == 2
    assert "names a folder" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "data").exists()


def _limit_file_size() -> None:
    # Past the limit a write fails with EFBIG instead of the process being killed by SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_a_write_that_fails_part_way_leaves_the_old_table_whole(tmp_path: Path) -> None:
    # Given a table written before, and a process that may not write files over 100 kB
    table = tmp_path / "students.csv"
    assert generate.main(["--rows", "200", "--out", str(table)]) == 0
    before = hashlib.sha256(table.read_bytes()).hexdigest()
    # When the generator writes a table too big for that limit over it
    done = subprocess.run([sys.executable, "-m", "experiments.generate", "--rows", "5000", "--out", str(table)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=_limit_file_size)
    # Then it fails in one line, the old table is intact and no temp file is left beside it
    assert done.returncode == 1, done.stderr
    assert "cannot write" in _one_line(done.stderr)
    assert hashlib.sha256(table.read_bytes()).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["students.csv"]


def test_more_rows_than_the_generator_makes_is_a_usage_error_at_once(tmp_path: Path, capsys) -> None:
    # 10**12 rows died in a MemoryError traceback after allocating for a while
    assert generate.main(["--rows", str(10**12), "--out", str(tmp_path / "t.csv")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "--rows" in err and "1<=x<=10000000" in err, err
    assert not (tmp_path / "t.csv").exists()


def test_the_function_refuses_what_the_option_refuses() -> None:
    with pytest.raises(ValueError, match="rows must be 1 to 10,000,000, got 10,000,001"):
        generate.generate(generate.MAX_ROWS + 1)
