"""One predict path: the container answers exactly what the registered MLflow model answers, row for row."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from experiments.data import load_and_split, load_table
from registry import export
from serving.predictor import records_from_frame
from tests.serving.serving_helpers import running

pytestmark = pytest.mark.slow


def as_strings(frame):
    """Text columns as Python strings, as ``pd.read_csv`` gives them: the loader keeps them as pandas categoricals
    (one object per distinct value), which MLflow's schema enforcement refuses for a ``string`` column."""
    return frame.astype({name: object for name in frame.select_dtypes("category").columns})


def test_container_matches_the_registered_pyfunc_on_every_test_row(default_training, tmp_path: Path) -> None:
    folder, params, result = default_training
    tarball = tmp_path / "model" / "model.tar.gz"
    assert export.main(["--params", str(folder / "params.yaml"), "--version", result.version,
                        "--out", str(tarball)]) == 0
    _, _, test = load_and_split(params)
    features = as_strings(test.drop(columns=[params.data.target]))
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{params.model.name}/{result.version}")

    expected = np.asarray(pyfunc.predict(features), dtype=float)
    with running(tarball.parent, tmp_path / "server.log") as server:
        reply = requests.post(f"{server.url}/invocations", json=records_from_frame(features), timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Model-Version"] == result.version
    served = np.asarray(reply.json()["predictions"], dtype=float)

    assert len(served) == len(test) == len(expected)
    worst = float(np.max(np.abs(served - expected)))
    assert worst <= 1e-6, f"container and MLflow model differ by up to {worst}"


def test_a_linear_booster_goes_the_same_path_end_to_end(tmp_path: Path, sample_csv: Path, monkeypatch) -> None:
    """gblinear cannot predict in place; training, export, the container and the pyfunc must still agree."""
    from core.params import load_params
    from experiments.train import train
    from tests.conftest import FAST_TRAIN, write_params

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    linear_only = FAST_TRAIN | {"search_space": {"booster": {"choices": ["gblinear"]},
                                                 "gblinear": {"learning_rate": {"low": 0.5, "high": 1.0}}}}
    params_file = write_params(tmp_path, sample_csv, train=linear_only)
    params = load_params(params_file)
    result = train(params)
    assert result.best_params["booster"] == "gblinear"
    tarball = tmp_path / "served" / "model.tar.gz"
    assert export.main(["--params", str(params_file), "--version", result.version, "--out", str(tarball)]) == 0
    rows = as_strings(load_table(params.data.path, params.data.target).drop(columns=[params.data.target]).head(50))
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{params.model.name}/{result.version}").predict(rows))

    with running(tarball.parent, tmp_path / "server.log") as server:
        reply = requests.post(f"{server.url}/invocations", json=records_from_frame(rows), timeout=60)

    assert reply.status_code == 200, reply.text
    assert np.max(np.abs(np.asarray(reply.json()["predictions"]) - expected)) <= 1e-6
