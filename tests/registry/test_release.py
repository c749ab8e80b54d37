"""The release gate (a promotion dry run that names the candidate) against a real MLflow store."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from registry import promote, release

pytestmark = pytest.mark.slow


def _best_good(store) -> str:
    client = store.client()
    return min(store.good, key=lambda v: float(client.get_model_version(store.name, v).tags["test_rmse"]))


def test_the_best_version_for_the_data_is_the_candidate_and_nothing_moves(store, tmp_path: Path, capsys) -> None:
    out = tmp_path / "release" / "candidate"
    before = store.snapshot()
    code = release.main(store.args("--out", str(out)))
    assert code == 0, capsys.readouterr().err
    assert out.read_text() == f"{_best_good(store)}\n"
    assert store.snapshot() == before, "a dry run: no alias, gate tag or history entry"


def test_a_refused_candidate_leaves_no_candidate_file(store, tmp_path: Path, capsys) -> None:
    # Given a good production version, and a candidate file left by an earlier run
    assert promote.main(store.args("--version", _best_good(store), "--no-export")) == 0
    out = tmp_path / "candidate"
    out.write_text("1\n")
    before = store.snapshot()
    # When the gate runs on the weak version
    code = release.main(store.args("--version", store.weak, "--out", str(out)))
    # Then it fails in one line, no later step could pick up a candidate, and the registry is as it was
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: dry run: gate refused version {store.weak}: ") and err.count("\n") == 1
    assert not out.exists()
    assert store.snapshot() == before


def test_force_skips_the_gate_only_for_a_named_version(store, tmp_path: Path, capsys) -> None:
    assert promote.main(store.args("--version", _best_good(store), "--no-export")) == 0
    out = tmp_path / "candidate"
    assert release.main(store.args("--force", "--out", str(out))) == 1
    assert "error: --force needs --version" in capsys.readouterr().err
    assert release.main(store.args("--version", store.weak, "--force", "--out", str(out))) == 0
    assert out.read_text() == f"{store.weak}\n"
    assert store.aliases()["production"] == _best_good(store), "forcing the dry run moves nothing"


def test_an_unknown_version_is_one_line(store, tmp_path: Path, capsys) -> None:
    assert release.main(store.args("--version", "99", "--out", str(tmp_path / "candidate"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "99" in err and err.count("\n") == 1


def _sqlite_copy(store, path: Path) -> None:
    # Through SQLite, not shutil: closing another handle on the live store drops this process's locks on it.
    with contextlib.closing(sqlite3.connect(store.root / "mlflow.db")) as source, \
            contextlib.closing(sqlite3.connect(path)) as copy:
        source.backup(copy)


@pytest.mark.parametrize("name", ["mlflow.db", "params.yaml"])
def test_an_out_path_holding_another_file_is_refused_and_kept(store, tmp_path: Path, capsys, name) -> None:
    # Given --out naming a tracking store or a params file (copies of the real ones)
    out = tmp_path / name
    if name == "mlflow.db":
        _sqlite_copy(store, out)
    else:
        shutil.copyfile(store.params_file, out)
    content, before = out.read_bytes(), store.snapshot()
    # When the release gate runs, then it is refused in one line before anything, and the file is untouched
    assert release.main(store.args("--out", str(out))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}: it exists and is not a release candidate file") \
        and err.count("\n") == 1, err
    assert out.read_bytes() == content
    assert store.snapshot() == before


def test_an_out_path_that_is_a_symlink_is_refused_and_kept(store, tmp_path: Path, capsys) -> None:
    target = tmp_path / "shared-candidate"
    target.write_text("1\n")
    out = tmp_path / "candidate"
    out.symlink_to(target)
    assert release.main(store.args("--out", str(out))) == 1
    assert f"cannot write {out}: not a regular file" in capsys.readouterr().err
    assert out.is_symlink() and target.read_text() == "1\n"


def test_an_earlier_candidate_file_is_replaced(store, tmp_path: Path) -> None:
    out = tmp_path / "candidate"
    out.write_text(f"{store.weak}\n")
    assert release.main(store.args("--out", str(out))) == 0
    assert out.read_text() == f"{_best_good(store)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate"], "no temp file left beside it"


@pytest.mark.parametrize("suffix", ["/", "/.", "/.."])
def test_an_out_path_that_names_a_folder_is_a_usage_error_and_writes_nothing(store, tmp_path: Path, capsys,
                                                                            suffix: str) -> None:
    # Given --out release/ (pathlib drops the slash: the gate ran and wrote a file named "release")
    out = f"{tmp_path / 'release'}{suffix}"
    # When the release gate is asked to write there, then it is refused in one line before the gate runs
    assert release.main(store.args("--out", out)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: Invalid value for '--out': ") and "names a folder, not a file" in \
        captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.out == "", "the gate did not run"
    assert list(tmp_path.iterdir()) == []


def test_an_out_path_the_candidate_file_cannot_be_written_to_is_refused_before_the_gate(store, tmp_path: Path,
                                                                                       capsys) -> None:
    # Given a name that fits the file system but not the temp file written beside it ('.NAME.XXXXXXXX.tmp')
    out = tmp_path / ("v" * 250)
    before = store.snapshot()
    # When the release gate runs, then it stops in one line before the gate (which printed its verdict first)
    assert release.main(store.args("--out", str(out))) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: cannot write {out}: File name too long") and \
        captured.err.count("\n") == 1, captured.err
    assert captured.out == "", "the gate did not run"
    assert list(tmp_path.iterdir()) == [] and store.snapshot() == before


def test_refuse_older_refuses_a_candidate_numbered_below_production(store, tmp_path: Path, capsys) -> None:
    # Given production on the newer good version, and a release run whose candidate is the older one
    older, newer = sorted(store.good, key=int)
    assert promote.main(store.args("--version", newer, "--force", "--no-export")) == 0
    out = tmp_path / "candidate"
    out.write_text("1\n")
    before = store.snapshot()
    # When its gate runs as the prod job's does for a trained candidate
    code = release.main(store.args("--version", older, "--refuse-older", "--out", str(out)))
    # Then it is refused in one line naming both versions, and no later step can ship it
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: version {older} is older than @production version {newer}: ") and \
        err.count("\n") == 1, err
    assert not out.exists()
    assert store.snapshot() == before
    # And without the flag (a rollback that names its version) the order check does not apply
    release.main(store.args("--version", older, "--out", str(out)))
    assert "is older than" not in capsys.readouterr().err


def test_refuse_older_lets_a_newer_candidate_through(store, tmp_path: Path, capsys) -> None:
    older = min(store.good, key=int)
    assert int(store.weak) > int(older), "the weak version was registered last"
    assert promote.main(store.args("--version", older, "--force", "--no-export")) == 0
    out = tmp_path / "candidate"
    code = release.main(store.args("--version", store.weak, "--force", "--refuse-older", "--out", str(out)))
    assert code == 0, capsys.readouterr().err
    assert out.read_text() == f"{store.weak}\n"
