"""Behaviour of the model trained with the default params on the sample data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.data import load_and_split
from serving.predictor import Predictor, records_from_frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(default_training) -> Predictor:
    folder, _, _ = default_training
    return Predictor.from_dir(folder / "model")


@pytest.fixture(scope="module")
def test_rows(default_training) -> pd.DataFrame:
    _, params, _ = default_training
    _, _, test = load_and_split(params)
    return test


def test_quality_targets_on_the_sample_data(default_training) -> None:
    """Default params: test RMSE ≤ 2.2 (floor ≈ 2.02) and at least 10% below the linear baseline."""
    _, _, result = default_training
    rmse, baseline = result.metrics["test_rmse"], result.metrics["baseline_rmse"]
    assert rmse <= 2.2, rmse
    assert rmse <= 0.9 * baseline, (rmse, baseline)


def _sweep(predictor: Predictor, rows: pd.DataFrame, column: str, values: list[int]) -> np.ndarray:
    records = records_from_frame(rows.drop(columns=["Exam_Score"]))
    grid = [[r | {column: v} for r in records] for v in values]
    return np.stack([predictor.predict(g) for g in grid], axis=1)  # rows x values


def test_more_study_hours_does_not_lower_the_score(predictor: Predictor, test_rows: pd.DataFrame) -> None:
    preds = _sweep(predictor, test_rows.head(300), "Hours_Studied", [5, 15, 25, 35])
    steps = np.diff(preds, axis=1)
    assert steps.min() > -0.3, f"ten more hours lowered a prediction by {-steps.min():.2f} points"
    assert (preds[:, -1] - preds[:, 0]).mean() > 5, "hours studied barely moves the score"


def test_sleep_has_an_inverted_u(predictor: Predictor, test_rows: pd.DataFrame) -> None:
    preds = _sweep(predictor, test_rows.head(300), "Sleep_Hours", [4, 7, 10]).mean(axis=0)
    assert preds[1] > preds[0] + 1 and preds[1] > preds[2] + 1, preds


def test_predictions_are_deterministic(default_training, predictor: Predictor, test_rows: pd.DataFrame) -> None:
    # The same records through a second, separately loaded copy of the model files, one at a time and as a batch
    folder, _, _ = default_training
    again = Predictor.from_dir(folder / "model")
    records = records_from_frame(test_rows.drop(columns=["Exam_Score"]).head(100))
    first = predictor.predict(records).copy()  # a copy: a reused output buffer must not make the two equal
    assert np.array_equal(first, again.predict(records))
    assert np.array_equal(first, np.concatenate([again.predict([r]) for r in records]))
