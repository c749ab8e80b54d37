"""The release gate (a promotion dry run that names the candidate) against a real MLflow store."""

from __future__ import annotations

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
