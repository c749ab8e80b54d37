"""Owns reading the training table: checks at the boundary, schema inference and the train/test split."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml
from pandas.api import types as ptypes
from sklearn.model_selection import train_test_split

from experiments.cli import UserError
from serving.predictor import CATEGORICAL, NUMERIC, Feature, Schema

MIN_TEST_ROWS = 2


def load_table(path: Path, target: str) -> pd.DataFrame:
    """Read a CSV and check it can train a regressor on ``target``.

    Raises:
        UserError: missing or empty file, missing or non-numeric target, an all-empty or mixed-type column.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: data file not found (run `dvc pull`, or set data.path in params.yaml)")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the CSV is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    if frame.empty:
        raise UserError(f"{path}: the CSV has a header but no rows")
    if target not in frame.columns:
        raise UserError(f"{path}: target column '{target}' not found; columns are {list(frame.columns)}")
    if len(frame.columns) < 2:
        raise UserError(f"{path}: no feature columns besides the target '{target}'")
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise UserError(f"{path}: duplicate column name(s) {duplicated}")
    _check_target(frame[target], path, target)
    for column in frame.columns:
        if column != target:
            _check_feature(frame[column], path)
            if ptypes.is_bool_dtype(frame[column]):
                # pandas reads True/False as booleans; as a feature they are two categories, sent as text.
                frame[column] = frame[column].map({True: "True", False: "False"})
    return frame


def _first_bad_row(mask: pd.Series) -> int:
    # +2: one for the header line, one because CSV line numbers start at 1.
    return int(mask.to_numpy().nonzero()[0][0]) + 2


def _check_target(values: pd.Series, path: Path, target: str) -> None:
    if values.isna().any():
        raise UserError(f"{path}: target '{target}' is missing on line {_first_bad_row(values.isna())}")
    if not ptypes.is_numeric_dtype(values) or ptypes.is_bool_dtype(values):
        bad = pd.to_numeric(values, errors="coerce").isna()
        raise UserError(f"{path}: target '{target}' must be numeric; line {_first_bad_row(bad)} has "
                        f"'{values[bad].iloc[0]}'")


def _check_feature(values: pd.Series, path: Path) -> None:
    name = values.name
    present = values.notna()
    if not present.any():
        raise UserError(f"{path}: feature '{name}' is entirely empty")
    if ptypes.is_numeric_dtype(values) or ptypes.is_bool_dtype(values):
        return
    as_numbers = pd.to_numeric(values.where(present), errors="coerce")
    numeric_like = as_numbers.notna()
    if numeric_like.any():
        text = present & ~numeric_like
        raise UserError(f"{path}: feature '{name}' mixes numbers and text (line {_first_bad_row(numeric_like)} "
                        f"is numeric, line {_first_bad_row(text)} is '{values[text].iloc[0]}')")


def infer_schema(frame: pd.DataFrame, target: str, stats_from: pd.DataFrame | None = None) -> Schema:
    """Infer each feature's kind, nullability and (for categoricals) levels from the table.

    Levels and nullability come from the whole table (so a rare level that fell into the test split is not
    refused there); the numeric centring and scaling come from ``stats_from``, the training split, when given.
    """
    stats = frame if stats_from is None else stats_from
    features = []
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column]
        nullable = bool(values.isna().any())
        if ptypes.is_numeric_dtype(values) and not ptypes.is_bool_dtype(values):
            std = float(stats[column].std(ddof=0))
            features.append(Feature(name=str(column), kind=NUMERIC, nullable=nullable,
                                    minimum=float(values.min()), maximum=float(values.max()),
                                    center=float(stats[column].mean()), scale=std if std > 0 else 1.0))
        else:
            levels = tuple(sorted({str(v) for v in values.dropna()}))
            features.append(Feature(name=str(column), kind=CATEGORICAL, nullable=nullable, levels=levels))
    return Schema(target=target, features=tuple(features))


def split(frame: pd.DataFrame, *, test_size: float, seed: int, min_train_rows: int) -> tuple[pd.DataFrame,
                                                                                               pd.DataFrame]:
    """Deterministic train/test split.

    Raises:
        UserError: too few rows for a test set of at least two rows and a training set for cross-validation.
    """
    n_test = math.ceil(len(frame) * test_size)
    n_train = len(frame) - n_test
    if n_test < MIN_TEST_ROWS or n_train < min_train_rows:
        needed = max(math.ceil(MIN_TEST_ROWS / test_size), math.ceil(min_train_rows / (1 - test_size)))
        raise UserError(f"too few rows to split: {len(frame)} rows, need at least {needed}")
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, shuffle=True)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def dvc_data_hash(dvc_file: Path = Path("data.dvc")) -> str:
    """The md5 that DVC recorded for the data folder, or "untracked" when there is no .dvc file."""
    try:
        meta = yaml.safe_load(Path(dvc_file).read_text(encoding="utf-8"))
        return str(meta["outs"][0]["md5"])
    except (FileNotFoundError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "untracked"
