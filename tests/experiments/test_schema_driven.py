"""Any CSV of numeric and text columns with a numeric target trains without code changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from core.params import load_params
from experiments.train import train
from serving.predictor import Predictor
from tests.conftest import FAST_TRAIN, write_params

pytestmark = pytest.mark.slow


def test_a_differently_shaped_table_trains_registers_and_predicts(workdir: Path) -> None:
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame({
        "rooms": rng.integers(1, 8, n), "area_m2": rng.normal(80, 20, n).round(1),
        "city": rng.choice(["Oslo", "Bergen", "Trondheim"], n), "garden": rng.choice([True, False], n),
        "energy": rng.choice(["A", "B", None], n),
    })
    frame["price_k"] = (500 + 40 * frame["rooms"] + 9 * frame["area_m2"] + (frame["city"] == "Oslo") * 300
                        + rng.normal(0, 30, n))
    frame.to_csv(workdir / "houses.csv", index=False)
    params = load_params(write_params(workdir, workdir / "houses.csv", train=FAST_TRAIN,
                                      data={"target": "price_k"}, model={"name": "house-price"}))

    result = train(params)

    predictor = Predictor.from_dir(workdir / "model")
    assert predictor.schema.names == ["rooms", "area_m2", "city", "garden", "energy"]
    assert [f.kind for f in predictor.schema.features] == ["numeric", "numeric", "categorical", "categorical",
                                                            "categorical"]
    record = {"rooms": 3, "area_m2": 75.0, "city": "Oslo", "garden": "True", "energy": None}
    assert 900 < predictor.predict([record])[0] < 2500
    assert result.metrics["test_rmse"] < frame["price_k"].std(), "learns something about prices"
    versions = MlflowClient(params.mlflow.tracking_uri).search_model_versions("name = 'house-price'")
    assert [str(v.version) for v in versions] == [result.version]
