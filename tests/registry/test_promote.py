"""Promotion through the gate against a real MLflow store: accept, refuse, force, dry run, default candidate."""

from __future__ import annotations

import pytest

from registry import gate, promote

# Every test here uses the session's real training and MLflow store.
pytestmark = pytest.mark.slow


def _tags(store, version: str) -> dict[str, str]:
    return store.client().get_model_version(store.name, version).tags


def _best_good(store) -> str:
    return min(store.good, key=lambda v: float(_tags(store, v)["test_rmse"]))


def _worst_good(store) -> str:
    return max(store.good, key=lambda v: float(_tags(store, v)["test_rmse"]))


def test_default_candidate_is_lowest_test_rmse_for_current_data(store, capsys):
    # Given no production version, when promote runs without --version
    code = promote.main(store.args("--no-export"))
    # Then the version with the lowest logged test RMSE on this data hash holds production
    assert code == 0, capsys.readouterr().err
    assert store.aliases() == {"production": _best_good(store)}


def test_first_promotion_records_gate_tags(store):
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    tags = _tags(store, store.good[0])
    assert tags["gate.decision"] == "accepted"
    assert tags["gate.production_rmse"] == "none", "no production version existed to compare with"
    assert float(tags["gate.candidate_rmse"]) > 0
    assert tags["gate.data_hash"] == store.data_hash
    assert tags["gate.at"].endswith("Z")


def test_gate_accepts_a_better_version_and_keeps_the_old_one_as_previous(store, capsys):
    worse, better = _worst_good(store), _best_good(store)
    assert promote.main(store.args("--version", worse, "--no-export")) == 0
    # When a better version is promoted
    code = promote.main(store.args("--version", better, "--no-export"))
    # Then it is production, the replaced one is previous, and both scores are on the candidate
    out = capsys.readouterr().out
    assert code == 0
    assert store.aliases() == {"production": better, "previous": worse}
    tags = _tags(store, better)
    assert tags["gate.decision"] == "accepted"
    assert float(tags["gate.candidate_rmse"]) < float(tags["gate.production_rmse"])
    assert "gate accepted" in out


def test_gate_refuses_a_clearly_worse_version(store, capsys):
    # Given a good version in production
    good = _best_good(store)
    assert promote.main(store.args("--version", good, "--no-export")) == 0
    capsys.readouterr()
    # When the weak version is offered
    code = promote.main(store.args("--version", store.weak))
    # Then it is refused in one line naming both scores and the tolerance, and production did not move
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: gate refused"), err
    assert "RMSE" in err and "tolerance 0.0200" in err
    assert store.aliases() == {"production": good}
    tags = _tags(store, store.weak)
    assert tags["gate.decision"] == "refused"
    assert float(tags["gate.candidate_rmse"]) > float(tags["gate.production_rmse"]) + 0.02
    assert not (store.root / "dist").exists(), "a refused promotion must not export"


def test_force_overrides_the_gate(store):
    good = _best_good(store)
    assert promote.main(store.args("--version", good, "--no-export")) == 0
    code = promote.main(store.args("--version", store.weak, "--force", "--no-export", "--reason", "drill"))
    assert code == 0
    assert store.aliases() == {"production": store.weak, "previous": good}
    assert _tags(store, store.weak)["gate.decision"] == "forced"


def test_dry_run_changes_nothing(store, capsys):
    assert promote.main(store.args("--version", _worst_good(store), "--no-export")) == 0
    before = store.snapshot()
    code = promote.main(store.args("--version", _best_good(store), "--dry-run"))
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: would move @production" in out
    assert store.snapshot() == before
    assert not (store.root / "dist").exists()


def test_dry_run_of_a_refused_version_exits_1_and_records_nothing(store, capsys):
    assert promote.main(store.args("--version", _best_good(store), "--no-export")) == 0
    before = store.snapshot()
    code = promote.main(store.args("--version", store.weak, "--dry-run"))
    assert code == 1
    assert capsys.readouterr().err.startswith("error: dry run: gate refused")
    assert store.snapshot() == before


def test_promoting_the_production_version_again_is_a_no_op(store, capsys):
    assert promote.main(store.args("--version", store.good[0])) == 0
    tarball = store.params.export.path
    before, written = store.snapshot(), (tarball.read_bytes(), tarball.stat().st_mtime_ns)
    capsys.readouterr()
    assert promote.main(store.args("--version", store.good[0])) == 0
    assert capsys.readouterr().out.strip().endswith(f"version {store.good[0]} already holds @production; nothing to do")
    assert store.snapshot() == before
    assert (tarball.read_bytes(), tarball.stat().st_mtime_ns) == written, "the tarball was not rewritten"


def test_promoting_the_production_version_again_writes_only_a_missing_export(store, capsys):
    assert promote.main(store.args("--version", store.good[0], "--no-export")) == 0
    before = store.snapshot()
    capsys.readouterr()
    assert promote.main(store.args("--version", store.good[0])) == 0
    assert "nothing to do but the export" in capsys.readouterr().out
    assert store.snapshot() == before
    assert store.params.export.path.is_file()


def test_no_version_for_the_current_data_is_an_error(store, capsys):
    # Given data whose DVC hash no version was trained on
    (store.root / "data.dvc").write_text("outs:\n- md5: ffffffffffffffffffffffffffffffff.dir\n  path: data\n")
    try:
        code = promote.main(store.args())
    finally:
        (store.root / "data.dvc").write_text(f"outs:\n- md5: {store.data_hash}\n  path: data\n")
    assert code == 1
    assert "no version of" in capsys.readouterr().err
    assert store.aliases() == {}


@pytest.mark.parametrize(("candidate", "production", "accepted"), [
    (2.0, 2.0, True),       # equal is accepted
    (2.02, 2.0, True),      # worse by exactly the tolerance is accepted
    (2.0201, 2.0, False),   # worse by more is refused
    (5.0, None, True),      # nothing to compare with
])
def test_decide_tolerance_boundary(candidate, production, accepted):
    assert gate.decide(candidate, production, 0.02).accepted is accepted
