"""Owns the Optuna search: the study, the sampled XGBoost parameters and the cross-validated objective."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from sklearn.model_selection import KFold

from experiments.config import SearchSpace, TrainParams


@dataclass(frozen=True)
class CvResult:
    """Cross-validated RMSE of one parameter set, and the boosting rounds early stopping chose."""

    rmse: float
    rmse_std: float
    rounds: int


def make_storage(url: str) -> optuna.storages.BaseStorage | str:
    """``journal:PATH`` is Optuna's journal file (safe for several local processes); anything else is an RDB URL."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    return url


def make_study(*, name: str, storage: str, seed: int, startup_trials: int) -> optuna.Study:
    """Create or join the study ``name``: a seeded TPE sampler and a median pruner over CV folds."""
    return optuna.create_study(
        study_name=name,
        storage=make_storage(storage),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(startup_trials, 1)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1),
        load_if_exists=True,
    )


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample one booster and its own parameters (a conditional space: gblinear has no tree depth)."""
    booster = trial.suggest_categorical("booster", space.booster.choices)
    params: dict[str, Any] = {"booster": booster}
    for name, dim in getattr(space, booster).items():
        if dim.int:
            params[name] = trial.suggest_int(f"{booster}.{name}", int(dim.low), int(dim.high), log=dim.log)
        else:
            params[name] = trial.suggest_float(f"{booster}.{name}", dim.low, dim.high, log=dim.log)
    return params


def from_trial_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Undo the ``booster.name`` prefixes Optuna stores, giving XGBoost parameters."""
    return {k.split(".", 1)[-1]: v for k, v in flat.items()}


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
        nthread: int) -> xgb.Booster:
    """Fit a booster on all given rows with a fixed number of rounds."""
    dtrain = xgb.DMatrix(x, label=y, nthread=nthread)
    return xgb.train(xgb_params(params, seed=seed, nthread=nthread), dtrain, num_boost_round=rounds)


def cross_validate(x: np.ndarray, y: np.ndarray, params: dict[str, Any], cfg: TrainParams,
                   report: Callable[[int, float], None] | None = None) -> CvResult:
    """K-fold CV with early stopping inside each fold.

    ``report(fold, mean_rmse_so_far)`` is called after each fold so a pruner can stop the trial early.
    """
    folds = KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    scores, rounds = [], []
    full = xgb_params(params, seed=cfg.seed, nthread=cfg.nthread)
    for fold, (fit_idx, val_idx) in enumerate(folds.split(x)):
        dfit = xgb.DMatrix(x[fit_idx], label=y[fit_idx], nthread=cfg.nthread)
        dval = xgb.DMatrix(x[val_idx], label=y[val_idx], nthread=cfg.nthread)
        booster = xgb.train(full, dfit, num_boost_round=cfg.max_rounds, evals=[(dval, "val")],
                            early_stopping_rounds=cfg.early_stopping_rounds, verbose_eval=False)
        best = booster.best_iteration + 1
        pred = booster.predict(dval, iteration_range=(0, best))
        scores.append(math.sqrt(float(np.mean((pred - y[val_idx]) ** 2))))
        rounds.append(best)
        if report is not None:
            report(fold, float(np.mean(scores)))
    # The refit sees 1/(k-1) more rows than each fold did, so it gets proportionally more rounds.
    refit_rounds = max(1, round(float(np.mean(rounds)) * cfg.cv_folds / (cfg.cv_folds - 1)))
    return CvResult(rmse=float(np.mean(scores)), rmse_std=float(np.std(scores)), rounds=refit_rounds)
