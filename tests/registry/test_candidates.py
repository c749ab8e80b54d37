"""Which version is the default candidate when some versions' training runs were deleted or did not finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import promote, release

pytestmark = pytest.mark.slow


def _best_good(store) -> str:
    client = store.client()
    return min(store.good, key=lambda v: float(client.get_model_version(store.name, v).tags["test_rmse"]))


def _version_of_a_run(store, end) -> str:
    """A version of a good version's files, on the current data with the best test RMSE of all, whose training
    run ``end`` then deletes or marks as not finished."""
    client = store.client()
    good = client.get_model_version(store.name, store.good[1])
    run = client.create_run(client.get_run(good.run_id).info.experiment_id)
    client.set_terminated(run.info.run_id, "FINISHED")
    version = client.create_model_version(store.name, client.get_model_version_download_uri(store.name, good.version),
                                          run_id=run.info.run_id,
                                          tags={"data_hash": store.data_hash, "test_rmse": "0.001"}).version
    end(client, run.info.run_id)
    return version


ENDINGS = {
    "deleted": lambda client, run_id: client.delete_run(run_id),
    "failed": lambda client, run_id: client.set_terminated(run_id, "FAILED"),
    "killed": lambda client, run_id: client.set_terminated(run_id, "KILLED"),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_version_whose_run_was_deleted_or_did_not_finish_is_never_the_default_candidate(
        store, tmp_path: Path, capsys, ending: str) -> None:
    # Given a version with the best score for the data, whose training run was deleted in the MLflow UI (how a
    # user withdraws a run) or ended FAILED/KILLED
    version = _version_of_a_run(store, ENDINGS[ending])
    try:
        # When the release gate picks the candidate itself, as the prod job does
        out = tmp_path / "candidate"
        code = release.main(store.args("--out", str(out)))
        # Then the candidate is the best version whose run finished, not the withdrawn one
        assert code == 0, capsys.readouterr().err
        assert out.read_text() == f"{_best_good(store)}\n", f"version {version} of a {ending} run was picked"
        # And promotion's own default agrees
        assert promote.main(store.args("--dry-run")) == 0
        assert f"version {_best_good(store)} " in capsys.readouterr().out
    finally:
        store.client().delete_model_version(store.name, version)  # the session's store is shared


def test_a_version_a_rollback_took_production_from_is_not_released_again_unasked(store, tmp_path: Path,
                                                                                  capsys) -> None:
    # Given the best version for the data promoted, then rolled back (an emergency: it misbehaved in production)
    other = next(v for v in store.good if v != _best_good(store))
    for version in (other, _best_good(store)):
        assert promote.main(store.args("--version", version, "--force", "--no-export")) == 0
    assert promote.main(store.args("--rollback", "--no-export")) == 0
    assert store.aliases() == {"production": other, "previous": _best_good(store)}
    # When the next release run picks its candidate itself (as the prod job does, with --refuse-older)
    out = tmp_path / "candidate"
    code = release.main(store.args("--refuse-older", "--out", str(out)))
    # Then the rolled-back version is not shipped again: production's own version is the best one left
    assert code == 0, capsys.readouterr().err
    assert out.read_text() == f"{other}\n", "the version production was rolled back from was picked again"
    # And once someone promotes it again by its number, it is an ordinary candidate again
    assert promote.main(store.args("--version", _best_good(store), "--force", "--no-export")) == 0
    assert release.main(store.args("--out", str(out))) == 0
    assert out.read_text() == f"{_best_good(store)}\n"
