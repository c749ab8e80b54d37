"""Owns the diagnostic figures logged with each training run, and the feature importance they show."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from serving.predictor import Schema

# Figures are built with matplotlib's object API, never pyplot: no global backend or figure registry, so
# importing this module changes nothing and it works headless (CI, servers).


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(actual, predicted, s=6, alpha=0.4)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Test split: predicted vs actual")
    return _save(fig, path)


def residuals(actual: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    fig = Figure(figsize=(9, 4))
    left, right = fig.subplots(1, 2)
    res = actual - predicted
    left.scatter(predicted, res, s=6, alpha=0.4)
    left.axhline(0, color="black", linewidth=1)
    left.set(xlabel="predicted", ylabel="residual", title="Residuals vs predicted")
    right.hist(res, bins=40)
    right.set(xlabel="residual", title="Residual distribution")
    return _save(fig, path)


def feature_importance(names: Sequence[str], gains: Sequence[float], path: Path) -> Path:
    order = np.argsort(gains)
    fig = Figure(figsize=(6, max(3, 0.28 * len(names))))
    ax = fig.subplots()
    ax.barh([names[i] for i in order], [gains[i] for i in order])
    ax.set(xlabel="importance", title="Feature importance (one-hot columns summed)")
    return _save(fig, path)


def optimisation_history(values: Sequence[float], best: Sequence[float], path: Path) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(range(len(values)), values, s=10, label="trial CV RMSE")
    ax.plot(range(len(best)), best, color="black", label="best so far")
    ax.set(xlabel="trial", ylabel="CV RMSE", title="Optimisation history")
    ax.legend()
    return _save(fig, path)


def importance(booster, schema: Schema, booster_kind: str) -> tuple[list[str], list[float]]:
    """Importance per feature, summing a categorical's one-hot columns.

    Trees report total gain; the linear booster only has coefficients, whose magnitude is comparable
    because numeric inputs are standardised.
    """
    if booster_kind == "gblinear":
        scores = {k: abs(v) for k, v in booster.get_score(importance_type="weight").items()}
    else:
        scores = booster.get_score(importance_type="total_gain")
    per_column = {column: float(scores.get(f"f{i}", 0.0)) for i, column in enumerate(schema.columns)}
    names = schema.names
    gains = [sum(v for c, v in per_column.items() if c == n or c.startswith(f"{n}=")) for n in names]
    return names, gains
