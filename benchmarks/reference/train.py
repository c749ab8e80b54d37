"""Owns the reference design's training, copied faithfully as a baseline (NOT our code; see the package doc).

What the reference did: label-encode every text column with its own ``LabelEncoder`` (missing values as the
string ``"missing"``), run an Optuna search of sklearn's ``XGBRegressor`` (50 trials, 5-fold CV RMSE via
``cross_val_score``, no pruning), refit the best parameters on the training rows, and pickle
``final_model.pkl`` and ``label_encoders.pkl``. Only the split is ours (``experiments.data.split``) so that
both designs are scored on the same test rows.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import LabelEncoder
from xgboost import XGBRegressor

from experiments.data import split

MODEL_FILE = "final_model.pkl"
ENCODERS_FILE = "label_encoders.pkl"
MISSING = "missing"
N_TRIALS = 50
CV_FOLDS = 5


@dataclass(frozen=True)
class ReferenceResult:
    """Wall time of the whole training (encode, search, refit, pickle) and the test RMSE."""

    wall_s: float
    test_rmse: float
    cv_rmse: float
    n_trials: int
    best_params: dict


def encode(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, dict[str, LabelEncoder]]:
    """One ``LabelEncoder`` per text column, fitted on the whole table (as the reference did)."""
    encoded = frame.copy()
    encoders: dict[str, LabelEncoder] = {}
    for column in frame.columns:
        if column == target or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        encoder = LabelEncoder()
        encoded[column] = encoder.fit_transform(frame[column].fillna(MISSING).astype(str))
        encoders[column] = encoder
    return encoded, encoders


def objective(trial: optuna.Trial, x: pd.DataFrame, y: pd.Series, seed: int) -> float:
    """5-fold cross-validated RMSE of one sampled ``XGBRegressor`` (the reference's search space)."""
    params = {
        "n_estimators": trial.suggest_int("n_estimators", 100, 500),
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.6, 1.0),
        "min_child_weight": trial.suggest_int("min_child_weight", 1, 10),
    }
    model = XGBRegressor(**params, random_state=seed)
    scores = cross_val_score(model, x, y, cv=CV_FOLDS, scoring="neg_root_mean_squared_error")
    return float(-scores.mean())


def train(csv: Path, out_dir: Path, *, target: str, test_size: float, split_seed: int, seed: int = 42,
          n_trials: int = N_TRIALS) -> ReferenceResult:
    """Run the reference training on our split of ``csv``; writes the two pickles into ``out_dir``."""
    started = time.perf_counter()
    frame = pd.read_csv(csv)
    encoded, encoders = encode(frame, target)
    train_df, test_df = split(encoded, test_size=test_size, seed=split_seed, min_train_rows=CV_FOLDS * 2)
    x_train, y_train = train_df.drop(columns=[target]), train_df[target]
    x_test, y_test = test_df.drop(columns=[target]), test_df[target]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda trial: objective(trial, x_train, y_train, seed), n_trials=n_trials)

    model = XGBRegressor(**study.best_params, random_state=seed)
    model.fit(x_train, y_train)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / MODEL_FILE).open("wb") as handle:
        pickle.dump(model, handle)
    with (out_dir / ENCODERS_FILE).open("wb") as handle:
        pickle.dump(encoders, handle)
    wall = time.perf_counter() - started
    rmse = math.sqrt(float(mean_squared_error(y_test, model.predict(x_test))))
    return ReferenceResult(wall_s=wall, test_rmse=rmse, cv_rmse=float(study.best_value), n_trials=n_trials,
                           best_params=dict(study.best_params))

