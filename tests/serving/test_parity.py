"""One predict path: the container answers exactly what the registered MLflow model answers, row for row."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests

from experiments.data import load_table, split
from registry import export
from serving.predictor import records_from_frame
from tests.serving.serving_helpers import running

pytestmark = pytest.mark.slow


def test_container_matches_the_registered_pyfunc_on_every_test_row(default_training, tmp_path: Path) -> None:
    folder, params, result = default_training
    tarball = tmp_path / "model" / "model.tar.gz"
    assert export.main(["--params", str(folder / "params.yaml"), "--version", result.version,
                        "--out", str(tarball)]) == 0
    frame = load_table(params.data.path, params.data.target)
    _, test = split(frame, test_size=params.data.test_size, seed=params.data.split_seed,
                    min_train_rows=params.train.cv_folds * 2)
    features = test.drop(columns=[params.data.target])
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
