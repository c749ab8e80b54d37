"""Expectations on the versioned sample table: its schema, its ranges, its missing values, its origin."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.generate import COLUMNS, SPARSE_COLUMNS, generate, ground_truth, irreducible_rmse

LEVELS = {
    **{c: {"Low", "Medium", "High"} for c in ("Parental_Involvement", "Access_to_Resources", "Motivation_Level",
                                              "Family_Income", "Teacher_Quality")},
    **{c: {"Yes", "No"} for c in ("Extracurricular_Activities", "Internet_Access", "Learning_Disabilities")},
    "School_Type": {"Public", "Private"}, "Peer_Influence": {"Positive", "Neutral", "Negative"},
    "Parental_Education_Level": {"High School", "College", "Postgraduate"},
    "Distance_from_Home": {"Near", "Moderate", "Far"}, "Gender": {"Male", "Female"},
}
RANGES = {"Hours_Studied": (1, 44), "Attendance": (60, 100), "Sleep_Hours": (4, 10), "Previous_Scores": (50, 100),
          "Tutoring_Sessions": (0, 8), "Physical_Activity": (0, 6), "Exam_Score": (55, 100)}


@pytest.fixture(scope="module")
def table(sample_csv: Path) -> pd.DataFrame:
    return pd.read_csv(sample_csv)


def test_the_tracked_csv_is_exactly_what_the_generator_writes(sample_csv: Path, tmp_path: Path) -> None:
    generate().to_csv(tmp_path / "g.csv", index=False, lineterminator="\n")
    assert (tmp_path / "g.csv").read_bytes() == sample_csv.read_bytes()


def test_columns_rows_and_kinds(table: pd.DataFrame) -> None:
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 6607
    assert len(COLUMNS) - 1 == 19
    for column, (low, high) in RANGES.items():
        assert pd.api.types.is_integer_dtype(table[column]), column
        assert table[column].between(low, high).all(), column


def test_categorical_levels(table: pd.DataFrame) -> None:
    for column, levels in LEVELS.items():
        assert set(table[column].dropna()) == levels, column


def test_missing_values_only_where_the_original_had_them(table: pd.DataFrame) -> None:
    rates = table.isna().mean()
    for column in table.columns:
        if column in SPARSE_COLUMNS:
            assert 0.008 <= rates[column] <= 0.017, (column, rates[column])
        else:
            assert rates[column] == 0, column


def test_noise_floor_is_documented_value(table: pd.DataFrame) -> None:
    """A model that knew the ground truth would score RMSE ≈ 2.02; nothing can do better."""
    truth = ground_truth(table)
    rmse = math.sqrt(float(np.mean((np.clip(truth, 55, 100) - table["Exam_Score"]) ** 2)))
    assert irreducible_rmse() == pytest.approx(2.02, abs=0.005)
    assert rmse == pytest.approx(irreducible_rmse(), abs=0.06)


def test_generator_is_deterministic_and_seeded() -> None:
    assert generate(50, seed=3).equals(generate(50, seed=3))
    assert not generate(50, seed=3).equals(generate(50, seed=4))
