"""Owns scoring one parameter set: XGBoost's parameters, the CV folds, early stopping and the refit.

Folds train ``train.nthread`` at a time, on one thread each or, with fewer folds than threads, trees on
several (``hist`` gives the same trees on any count); they are reported in order, so a score never depends on
the thread count. Past ``train.holdout_above`` search rows the folds are one holdout split. The early-stopping loop is ``serving.xgb_capi``'s (XGBoost's C API, with a
parity test against ``xgb.train``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from scipy import sparse
from sklearn.model_selection import KFold

from core.params import TrainParams
from serving.xgb_capi import boost_with_early_stopping


@dataclass(frozen=True)
class CvResult:
    """Cross-validated RMSE of one parameter set, and the boosting rounds early stopping chose."""

    rmse: float
    rmse_std: float
    rounds: int


def xgb_params(params: dict[str, Any], *, seed: int, nthread: int) -> dict[str, Any]:
    """Full XGBoost training parameters for a sampled set."""
    full = {"objective": "reg:squarederror", "eval_metric": "rmse", "seed": seed, "nthread": nthread,
            "verbosity": 0, **params}
    if params["booster"] == "gbtree":
        full["tree_method"] = "hist"
    else:
        # Coordinate descent with a cyclic order is deterministic, unlike the default parallel "shotgun".
        full.update(updater="coord_descent", feature_selector="cyclic")
    return full


def fit(x: np.ndarray, y: np.ndarray, params: dict[str, Any], *, rounds: int, seed: int,
        nthread: int = 1) -> xgb.Booster:
    """Fit a booster on all given rows with a fixed number of rounds.

    Trees train on ``nthread`` threads from a quantised matrix (XGBoost's hist gives the same trees on any
    thread count and from either matrix; a test checks it), which holds one byte per cell instead of eight.
    The linear booster trains on one thread from a sparse matrix: coordinate descent skips absent cells,
    and a zero adds nothing to its sums, so dropping the one-hot zeros gives the same model three times
    faster.
    """
    if params["booster"] == "gbtree":
        matrix = xgb.QuantileDMatrix(x, label=y, nthread=nthread, max_bin=int(params.get("max_bin", 256)))
        return xgb.train(xgb_params(params, seed=seed, nthread=nthread), matrix, num_boost_round=rounds)
    return xgb.train(xgb_params(params, seed=seed, nthread=1), _sparse(x, y), num_boost_round=rounds)


def _sparse(x: np.ndarray, y: np.ndarray) -> xgb.DMatrix:
    """The rows as a sparse matrix: zeros dropped, missing values (NaN) kept as missing."""
    return xgb.DMatrix(sparse.csr_matrix(x), label=y, nthread=1, missing=np.nan)


def search_rows(x: np.ndarray, y: np.ndarray, cfg: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """The training rows the search scores trials on: all of them, or a seeded sample of ``train.search_rows``.

    A bigger table makes the refit better, not the choice between parameter sets: past a few hundred
    thousand rows, their ranking on a sample is the ranking on the whole.
    """
    if cfg.search_rows is None or len(y) <= cfg.search_rows:
        return x, y
    keep = np.sort(np.random.default_rng(cfg.seed).choice(len(y), size=cfg.search_rows, replace=False))
    return x[keep], y[keep]


class Fold:
    """One split of the search rows: XGBoost matrices to fit and to validate on, built on first use per kind."""

    def __init__(self, x: np.ndarray, y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray) -> None:
        self._x, self._y, self._fit_idx, self._val_idx = x, y, fit_idx, val_idx
        self.y_val = y[val_idx]
        self._matrices: dict[str, tuple[xgb.DMatrix, xgb.DMatrix]] = {}

    def matrices(self, booster: str) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        """(fit, val) for ``booster``: dense for trees (their histogram cuts are cached on it), sparse for linear.

        A fold is only ever trained on by one thread at a time, so building on first use needs no lock.
        """
        if booster not in self._matrices:
            x, y = self._x, self._y
            if booster == "gbtree":
                build = lambda idx: xgb.DMatrix(x[idx], label=y[idx], nthread=1)  # noqa: E731
            else:
                build = lambda idx: _sparse(x[idx], y[idx])  # noqa: E731
            self._matrices[booster] = (build(self._fit_idx), build(self._val_idx))
        return self._matrices[booster]


class Folds:
    """The folds trials are scored on, built once and shared by every trial of a study.

    K-fold CV on up to ``train.holdout_above`` search rows; above that, one holdout fold (the same share of
    rows a k-fold's validation part has), since a large validation set already scores a trial steadily.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, cfg: TrainParams) -> None:
        x, y = search_rows(x, y, cfg)
        splits = list(KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed).split(x))
        if cfg.holdout_above is not None and len(y) > cfg.holdout_above:
            splits = splits[:1]
        self.folds = tuple(Fold(x, y, fit_idx, val_idx) for fit_idx, val_idx in splits)
        self.rows = len(y)

    def __len__(self) -> int:
        return len(self.folds)


def _fit_fold(fold: Fold, full: dict[str, Any], cfg: TrainParams) -> tuple[float, int]:
    """Train on one fold until its validation RMSE has not improved for ``early_stopping_rounds`` rounds.

    Returns the fold's validation RMSE at the best round, and that round count.
    """
    fit_matrix, val_matrix = fold.matrices(full["booster"])
    booster = xgb.Booster(full, [fit_matrix, val_matrix])
    rounds = boost_with_early_stopping(booster, fit_matrix, val_matrix, max_rounds=cfg.max_rounds,
                                       early_stopping_rounds=cfg.early_stopping_rounds)
    pred = booster.predict(val_matrix, iteration_range=(0, rounds))
    return math.sqrt(float(np.mean((pred - fold.y_val) ** 2))), rounds


def threads_per_fold(folds: Folds, booster: str, cfg: TrainParams) -> int:
    """XGBoost threads each fold gets: the cores the folds leave idle, for trees (whose results do not depend
    on it); always one for the linear booster, whose coordinate descent sums in thread order."""
    if booster != "gbtree":
        return 1
    return max(1, cfg.nthread // len(folds))


def cross_validate(folds: Folds, params: dict[str, Any], cfg: TrainParams,
                   report: Callable[[int, float], None] | None = None) -> CvResult:
    """K-fold CV (or one holdout fold) with early stopping inside each fold, ``cfg.nthread`` folds at a time.

    The scores do not depend on ``nthread``: each fold trains on one thread, or, with fewer folds than
    threads, trees on several (their results do not change with it). Folds are reported in order:
    ``report(fold, mean_rmse_so_far)`` after each, so a pruner stops the trial exactly where it would have
    stopped it with the folds run one after another (a fold already started alongside is wasted).
    """
    full = xgb_params(params, seed=cfg.seed, nthread=threads_per_fold(folds, params["booster"], cfg))
    scores, rounds = [], []
    with ThreadPoolExecutor(max_workers=cfg.nthread, thread_name_prefix="cv-fold") as pool:
        for start in range(0, len(folds), cfg.nthread):
            wave = [pool.submit(_fit_fold, fold, full, cfg) for fold in folds.folds[start:start + cfg.nthread]]
            for fold, outcome in enumerate((f.result() for f in wave), start=start):
                scores.append(outcome[0])
                rounds.append(outcome[1])
                if report is not None:
                    report(fold, float(np.mean(scores)))
    # The refit sees 1/(k-1) more rows than each fold did, so it gets proportionally more rounds.
    refit_rounds = max(1, round(float(np.mean(rounds)) * cfg.cv_folds / (cfg.cv_folds - 1)))
    return CvResult(rmse=float(np.mean(scores)), rmse_std=float(np.std(scores)), rounds=refit_rounds)
