"""Owns scoring one parameter set: XGBoost's parameters, the CV folds, early stopping and the refit.

Folds train ``train.nthread`` at a time on one thread each and are reported in order, so a score never
depends on the thread count. The early-stopping loop is ``serving.xgb_capi``'s (XGBoost's C API, with a
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


def fit(x: np.ndarray, y: np.ndarray, params: dict[str, Any], *, rounds: int, seed: int) -> xgb.Booster:
    """Fit a booster on all given rows with a fixed number of rounds (one thread, like every CV fold)."""
    dtrain = xgb.DMatrix(x, label=y, nthread=1)
    return xgb.train(xgb_params(params, seed=seed, nthread=1), dtrain, num_boost_round=rounds)


@dataclass(frozen=True)
class Fold:
    fit: xgb.DMatrix
    val: xgb.DMatrix
    y_val: np.ndarray


class Folds:
    """The k CV folds of the training rows as XGBoost matrices, built once and shared by every trial.

    Reusing the matrices also reuses the histogram cuts XGBoost computes on a matrix's first use. A fold is
    only ever trained on by one thread at a time (``cross_validate`` waits for all it started).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, cfg: TrainParams) -> None:
        splits = KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed).split(x)
        self.folds = tuple(Fold(fit=xgb.DMatrix(x[fit_idx], label=y[fit_idx], nthread=1),
                                val=xgb.DMatrix(x[val_idx], label=y[val_idx], nthread=1), y_val=y[val_idx])
                           for fit_idx, val_idx in splits)

    def __len__(self) -> int:
        return len(self.folds)


def _fit_fold(fold: Fold, full: dict[str, Any], cfg: TrainParams) -> tuple[float, int]:
    """Train on one fold until its validation RMSE has not improved for ``early_stopping_rounds`` rounds.

    Returns the fold's validation RMSE at the best round, and that round count.
    """
    booster = xgb.Booster(full, [fold.fit, fold.val])
    rounds = boost_with_early_stopping(booster, fold.fit, fold.val, max_rounds=cfg.max_rounds,
                                       early_stopping_rounds=cfg.early_stopping_rounds)
    pred = booster.predict(fold.val, iteration_range=(0, rounds))
    return math.sqrt(float(np.mean((pred - fold.y_val) ** 2))), rounds


def cross_validate(folds: Folds, params: dict[str, Any], cfg: TrainParams,
                   report: Callable[[int, float], None] | None = None) -> CvResult:
    """K-fold CV with early stopping inside each fold, ``cfg.nthread`` folds at a time.

    Each fold trains on one thread, so the scores do not depend on ``nthread``, and folds are reported in
    order: ``report(fold, mean_rmse_so_far)`` after each, so a pruner stops the trial exactly where it would
    have stopped it with the folds run one after another (a fold already started alongside is wasted).
    """
    full = xgb_params(params, seed=cfg.seed, nthread=1)
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
