"""Owns the diagnostic figures logged with each training run, and the feature importance they show."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from serving.predictor import Schema

# Figures are built with matplotlib's object API, never pyplot: no global backend or figure registry, so
# importing this module changes nothing and it works headless (CI, servers).


# Margins in inches, set rather than computed: ``tight_layout`` lays every text out once more before the save
# draws it, a third of what the figures cost. The text is ours and short; only the importance figure's left
# margin depends on data (the feature names) and is measured from them.
LEFT_IN, RIGHT_IN, BOTTOM_IN, TOP_IN, GAP_IN = 0.8, 0.25, 0.6, 0.4, 0.9
LABEL_PAD_IN = 0.3
BARS_IN = 3.5


def _save(fig: Figure, path: Path, *, left_in: float = LEFT_IN) -> Path:
    width, height = fig.get_size_inches()
    columns = len(fig.axes)
    fig.subplots_adjust(left=left_in / width, right=1 - RIGHT_IN / width, bottom=BOTTOM_IN / height,
                        top=1 - TOP_IN / height, wspace=GAP_IN / (width / columns))
    fig.savefig(path, dpi=110)
    return path


def _label_width_in(fig: Figure, labels: Sequence[str]) -> float:
    """Width in inches of the widest of ``labels`` as a y tick label, measured by the figure's own renderer."""
    renderer = FigureCanvasAgg(fig).get_renderer()  # the canvas a PNG is drawn on
    font = FontProperties(size=rcParams["ytick.labelsize"])
    return max(renderer.get_text_width_height_descent(label, font, ismath=False)[0] for label in labels) / fig.dpi


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
    ax.set(xlabel="importance")
    ax.set_title("Feature importance (one-hot columns summed)", loc="right")  # over the labels, not past the edge
    left_in = _label_width_in(fig, names) + LABEL_PAD_IN
    fig.set_figwidth(max(6.0, left_in + BARS_IN))  # however long the names, the bars keep their room
    return _save(fig, path, left_in=left_in)


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
