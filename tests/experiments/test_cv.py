"""Scoring a parameter set at any size: the budget by size changes what is computed, never what it gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from core.params import load_params
from experiments import cv
from experiments.data import prepare
from tests.conftest import FAST_TRAIN, write_params

TREES = {"booster": "gbtree", "max_depth": 3, "learning_rate": 0.3, "subsample": 0.8, "colsample_bytree": 0.7}
LINEAR = {"booster": "gblinear", "learning_rate": 0.5, "reg_lambda": 0.01, "reg_alpha": 0.01}


@pytest.fixture(scope="module")
def data(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cv")
    return prepare(load_params(write_params(folder, sample_csv, train=FAST_TRAIN)))


def _cfg(data, tmp_path: Path, sample_csv: Path, **train):
    return load_params(write_params(tmp_path, sample_csv, train=FAST_TRAIN | train)).train


def test_a_holdout_fold_scores_the_same_on_any_thread_count(data, tmp_path: Path, sample_csv: Path) -> None:
    results = {}
    for threads in (1, 2, 3):
        cfg = _cfg(data, tmp_path, sample_csv, cv_folds=4, holdout_above=1000, nthread=threads)
        folds = cv.Folds(data.x_train, data.y_train, cfg)
        assert len(folds) == 1, "past holdout_above rows, one fold"
        assert cv.threads_per_fold(folds, "gbtree", cfg) == threads
        results[threads] = (cv.cross_validate(folds, TREES, cfg), cv.cross_validate(folds, LINEAR, cfg))
    assert results[1] == results[2] == results[3]


def test_below_the_threshold_it_is_k_fold(data, tmp_path: Path, sample_csv: Path) -> None:
    cfg = _cfg(data, tmp_path, sample_csv, cv_folds=3, holdout_above=len(data.y_train))
    assert len(cv.Folds(data.x_train, data.y_train, cfg)) == 3


def test_the_search_sample_is_seeded_and_bounded(data, tmp_path: Path, sample_csv: Path) -> None:
    cfg = _cfg(data, tmp_path, sample_csv, search_rows=1000)
    first, again = cv.search_rows(data.x_train, data.y_train, cfg), cv.search_rows(data.x_train, data.y_train, cfg)
    assert first[0].shape == (1000, data.x_train.shape[1])
    assert np.array_equal(first[0], again[0], equal_nan=True) and np.array_equal(first[1], again[1])
    assert cv.Folds(data.x_train, data.y_train, cfg).rows == 1000
    # A sample from the whole table, drawn by the seed: not its first rows, and another seed draws others
    assert not np.array_equal(first[1], data.y_train[:1000])
    other = cv.search_rows(data.x_train, data.y_train, _cfg(data, tmp_path, sample_csv, search_rows=1000, seed=7))
    assert not np.array_equal(first[1], other[1])
    everything = _cfg(data, tmp_path, sample_csv, search_rows=None)
    assert cv.search_rows(data.x_train, data.y_train, everything)[0] is data.x_train


def test_the_tree_refit_from_a_quantised_matrix_is_the_plain_refit(data) -> None:
    full = cv.xgb_params(TREES, seed=3, nthread=1)
    plain = xgb.train(full, xgb.DMatrix(data.x_train, label=data.y_train, nthread=1), num_boost_round=40)
    ours = cv.fit(data.x_train, data.y_train, TREES, rounds=40, seed=3, nthread=2)
    probe = xgb.DMatrix(data.x_test)
    assert np.array_equal(ours.predict(probe), plain.predict(probe))


def test_the_linear_refit_from_a_sparse_matrix_is_the_dense_refit(data) -> None:
    full = cv.xgb_params(LINEAR, seed=3, nthread=1)
    dense = xgb.train(full, xgb.DMatrix(data.x_train, label=data.y_train, nthread=1), num_boost_round=40)
    ours = cv.fit(data.x_train, data.y_train, LINEAR, rounds=40, seed=3, nthread=2)
    probe = xgb.DMatrix(data.x_test)
    assert np.array_equal(ours.predict(probe), dense.predict(probe))
