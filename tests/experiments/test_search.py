"""The study's storage URL: where it comes from, and what is refused before anything is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import train as train_module
from tests.conftest import FAST_TRAIN, write_params


@pytest.mark.parametrize(("source", "url"), [
    ("OPTUNA_STORAGE", "journal:{folder}/optuna.journal\n"),  # a secret or env file's trailing newline
    ("OPTUNA_STORAGE", " postgresql+psycopg://team:s3cret@127.0.0.1:1/optuna"),
    ("--storage", "journal:{folder}/optuna.journal\r"),
])
def test_a_storage_url_with_a_trailing_newline_or_spaces_is_one_line_before_anything_is_made(
        workdir: Path, sample_csv: Path, capsys, monkeypatch, source: str, url: str) -> None:
    # Given a storage URL as an env file gives it: the journal "optuna.journal\n" was made beside the real one,
    # so the study never resumed
    params_file = write_params(workdir, sample_csv, train=FAST_TRAIN)
    url = url.format(folder=workdir)
    argv = ["--params", str(params_file)]
    if source == "OPTUNA_STORAGE":
        monkeypatch.setenv("OPTUNA_STORAGE", url)
    else:
        argv += ["--storage", url]

    assert train_module.main(argv) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"error: {source} ") and "a trailing newline?" in err and err.count("\n") == 1, err
    assert "s3cret" not in err
    assert sorted(p.name for p in workdir.iterdir()) == ["params.yaml"], "no journal, no MLflow store"
