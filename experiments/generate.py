"""Owns the deterministic synthetic "Student Performance Factors" table used as sample data.

The ground truth is mostly additive, with three non-linear effects a linear model cannot fit:
diminishing returns of study hours, an inverted U in sleep, and motivation scaling the hours effect.
Gaussian noise of standard deviation ``NOISE_SD`` is added before rounding to an integer score, so the
best achievable RMSE is sqrt(NOISE_SD**2 + 1/12) ~= 2.02 (rounding adds a uniform error of variance 1/12).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
import pandas as pd

from core.cli import OutputFile, UserError, run_cli
from core.files import replace_atomically

NOISE_SD = 2.0
DEFAULT_ROWS = 6607
# The largest table made: 7.6x the 1,321,400 rows of the scale benchmark (make bench-scale), about 5 GB of memory
# while it is built (measured: 850 MB peak for 1.32M rows) and a 1 GB CSV. More died in a MemoryError traceback.
MAX_ROWS = 10_000_000
LMH = ("Low", "Medium", "High")
YES_NO = ("Yes", "No")
# Columns that carry about 1-1.5% missing values, as in the original table.
SPARSE_COLUMNS = ("Teacher_Quality", "Parental_Education_Level", "Distance_from_Home")
COLUMNS = (
    "Hours_Studied", "Attendance", "Parental_Involvement", "Access_to_Resources",
    "Extracurricular_Activities", "Sleep_Hours", "Previous_Scores", "Motivation_Level",
    "Internet_Access", "Tutoring_Sessions", "Family_Income", "Teacher_Quality", "School_Type",
    "Peer_Influence", "Physical_Activity", "Learning_Disabilities", "Parental_Education_Level",
    "Distance_from_Home", "Gender", "Exam_Score",
)


def _pick(rng: np.random.Generator, levels: tuple[str, ...], probs: tuple[float, ...], n: int) -> np.ndarray:
    return rng.choice(np.array(levels, dtype=object), size=n, p=probs)


def _effect(values: np.ndarray, table: dict[str, float]) -> np.ndarray:
    # A missing category contributes nothing: the score does not depend on what was not recorded.
    return np.array([table.get(v, 0.0) if isinstance(v, str) else 0.0 for v in values])


def generate(rows: int = DEFAULT_ROWS, seed: int = 42) -> pd.DataFrame:
    """Return ``rows`` synthetic students with the 19 features and the integer ``Exam_Score``."""
    if not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be 1 to {MAX_ROWS:,}, got {rows:,}")
    rng = np.random.default_rng(seed)
    n = rows
    hours = np.clip(np.rint(rng.normal(20, 6, n)), 1, 44)
    attendance = rng.integers(60, 101, n).astype(float)
    sleep = rng.integers(4, 11, n).astype(float)
    previous = rng.integers(50, 101, n).astype(float)
    tutoring = np.clip(rng.poisson(1.5, n), 0, 8).astype(float)
    activity = np.clip(rng.poisson(3.0, n), 0, 6).astype(float)
    df = pd.DataFrame({
        "Hours_Studied": hours.astype(int),
        "Attendance": attendance.astype(int),
        "Parental_Involvement": _pick(rng, LMH, (0.2, 0.5, 0.3), n),
        "Access_to_Resources": _pick(rng, LMH, (0.2, 0.5, 0.3), n),
        "Extracurricular_Activities": _pick(rng, YES_NO, (0.6, 0.4), n),
        "Sleep_Hours": sleep.astype(int),
        "Previous_Scores": previous.astype(int),
        "Motivation_Level": _pick(rng, LMH, (0.3, 0.5, 0.2), n),
        "Internet_Access": _pick(rng, YES_NO, (0.92, 0.08), n),
        "Tutoring_Sessions": tutoring.astype(int),
        "Family_Income": _pick(rng, LMH, (0.4, 0.4, 0.2), n),
        "Teacher_Quality": _pick(rng, LMH, (0.1, 0.6, 0.3), n),
        "School_Type": _pick(rng, ("Public", "Private"), (0.7, 0.3), n),
        "Peer_Influence": _pick(rng, ("Positive", "Neutral", "Negative"), (0.4, 0.4, 0.2), n),
        "Physical_Activity": activity.astype(int),
        "Learning_Disabilities": _pick(rng, YES_NO, (0.1, 0.9), n),
        "Parental_Education_Level": _pick(rng, ("High School", "College", "Postgraduate"), (0.5, 0.3, 0.2), n),
        "Distance_from_Home": _pick(rng, ("Near", "Moderate", "Far"), (0.6, 0.3, 0.1), n),
        "Gender": _pick(rng, ("Male", "Female"), (0.58, 0.42), n),
    })
    for column in SPARSE_COLUMNS:
        missing = rng.random(n) < rng.uniform(0.010, 0.015)
        df.loc[missing, column] = None

    noisy = ground_truth(df) + rng.normal(0.0, NOISE_SD, n)
    df["Exam_Score"] = np.clip(np.rint(noisy), 55, 100).astype(int)
    return df


def ground_truth(df: pd.DataFrame) -> np.ndarray:
    """The expected score of each student before noise and rounding: what a perfect model would predict."""
    hours = df["Hours_Studied"].to_numpy(dtype=float)
    sleep = df["Sleep_Hours"].to_numpy(dtype=float)
    attendance = df["Attendance"].to_numpy(dtype=float)
    previous = df["Previous_Scores"].to_numpy(dtype=float)
    tutoring = df["Tutoring_Sessions"].to_numpy(dtype=float)
    activity = df["Physical_Activity"].to_numpy(dtype=float)
    motivation = _effect(df["Motivation_Level"].to_numpy(), {"Low": 0.7, "Medium": 1.0, "High": 1.3})
    return (
        50.0
        + motivation * 9.0 * np.log1p(hours / 6.0)      # diminishing returns, scaled by motivation
        - 0.55 * (sleep - 7.0) ** 2                       # inverted U, best at 7 hours
        + 0.20 * (attendance - 60.0)
        + 0.04 * (previous - 50.0)
        + 0.50 * tutoring
        + 0.15 * activity
        + _effect(df["Parental_Involvement"].to_numpy(), {"Low": -1.0, "High": 1.0})
        + _effect(df["Access_to_Resources"].to_numpy(), {"Low": -1.0, "High": 1.0})
        + _effect(df["Extracurricular_Activities"].to_numpy(), {"Yes": 0.5})
        + _effect(df["Internet_Access"].to_numpy(), {"No": -0.8})
        + _effect(df["Family_Income"].to_numpy(), {"Low": -0.5, "High": 0.5})
        + _effect(df["Teacher_Quality"].to_numpy(), {"Low": -0.6, "High": 0.6})
        + _effect(df["School_Type"].to_numpy(), {"Private": 0.2})
        + _effect(df["Peer_Influence"].to_numpy(), {"Positive": 1.0, "Negative": -1.0})
        + _effect(df["Learning_Disabilities"].to_numpy(), {"Yes": -1.0})
        + _effect(df["Parental_Education_Level"].to_numpy(), {"College": 0.4, "Postgraduate": 0.8})
        + _effect(df["Distance_from_Home"].to_numpy(), {"Moderate": -0.4, "Far": -1.0})
    )


def irreducible_rmse() -> float:
    """The RMSE of a model that knows the ground truth exactly: noise plus rounding."""
    return math.sqrt(NOISE_SD**2 + 1.0 / 12.0)


@click.command(help="Write the synthetic sample table as CSV.")
@click.option("--rows", type=click.IntRange(1, MAX_ROWS), default=DEFAULT_ROWS, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=42, show_default=True)
@click.option("--out", type=OutputFile(),
              default=Path("data/student_performance.csv"), show_default=True)
def cli(rows: int, seed: int, out: Path) -> None:
    frame = generate(rows, seed)
    try:
        # All at once: the default --out is the DVC-tracked table, never to be left cut off mid-row.
        replace_atomically(out, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    click.echo(f"wrote {len(frame)} rows to {out}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    return run_cli(cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
