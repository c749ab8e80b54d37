"""The XGBoost C-API shortcuts (serving/xgb_capi.py) give exactly what the plain XGBoost calls give.

Both parity tests live here, so an XGBoost upgrade has one module and one test file to check.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from core.params import load_params
from experiments import cv
from experiments.data import prepare
from serving.predictor import Predictor
from tests.conftest import FAST_TRAIN, write_params
from tests.serving.serving_helpers import sample_records


def test_the_direct_xgboost_call_equals_inplace_predict(predictor: Predictor) -> None:
    records, _ = sample_records(300)
    for rows in (records[:1], records[:2], records):
        matrix = predictor.schema.encode(rows)
        expected = predictor.booster.inplace_predict(matrix).astype(np.float64)
        got = predictor.predict(rows)
        assert got.dtype == np.float64 and got.shape == (len(rows),)
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("booster", ["gbtree", "gblinear"])
def test_early_stopping_through_the_c_api_matches_xgboost_train(sample_csv: Path, tmp_path: Path,
                                                                 booster: str) -> None:
    params = load_params(write_params(tmp_path, sample_csv, train=FAST_TRAIN | {"max_rounds": 400,
                                                                                "early_stopping_rounds": 5}))
    data = prepare(params)
    fold = cv.Folds(data.x_train, data.y_train, params.train).folds[0]
    sampled = {"booster": booster, "learning_rate": 0.3} | ({"max_depth": 4} if booster == "gbtree" else {})
    full = cv.xgb_params(sampled, seed=params.train.seed, nthread=1)

    rmse, rounds = cv._fit_fold(fold, full, params.train)

    fit, val = fold.matrices(booster)
    reference = xgb.train(full, fit, num_boost_round=400, evals=[(val, "val")],
                          early_stopping_rounds=5, verbose_eval=False)
    assert rounds == reference.best_iteration + 1 < 400, "early stopping must have stopped before the cap"
    pred = reference.predict(val, iteration_range=(0, rounds))
    assert rmse == math.sqrt(float(np.mean((pred - fold.y_val) ** 2)))
