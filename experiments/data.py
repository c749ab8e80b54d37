"""Owns the training table once read (experiments/table.py reads it): schema inference, the split and its encoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.model_selection import train_test_split

from core.cli import UserError
from core.lineage import dvc_data_hash
from experiments.encoding import encode_frame
from experiments.table import load_table

if TYPE_CHECKING:
    from core.params import Params

from serving.predictor import CATEGORICAL, NUMERIC, Feature, Schema, records_from_frame

MIN_TEST_ROWS = 2


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
            # A column whose few values all fell into the test split has no mean here (NaN, which the model
            # refuses): no training row has a value, so any centring is the same to the model.
            center, std = float(stats[column].mean()), float(stats[column].std(ddof=0))
            features.append(Feature(name=str(column), kind=NUMERIC, nullable=nullable,
                                    minimum=float(values.min()), maximum=float(values.max()),
                                    center=center if math.isfinite(center) else 0.0,
                                    scale=std if std > 0 else 1.0))
        else:
            levels = tuple(sorted({str(v) for v in pd.unique(values.dropna())}))
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
        needed = max(MIN_TEST_ROWS / test_size, min_train_rows / (1 - test_size))  # inf for a share of 5e-324
        if needed < 1e15:
            raise UserError(f"too few rows to split: {len(frame)} rows, need at least {math.ceil(needed)}")
        raise UserError(f"too few rows to split: {len(frame)} rows; data.test_size {test_size:g} would need over "
                        f"1e15 rows for {MIN_TEST_ROWS} test rows and {min_train_rows} training rows")
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, shuffle=True)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def load_and_split(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The table params.yaml names, and its train and test splits exactly as the train stage makes them.

    Training, the promotion gate, the benchmarks and the tests all score "the test split" through this one
    function, so they can never disagree about which rows it holds.
    """
    frame = load_table(params.data.path, params.data.target, ignore=params.data.ignore,
                       max_categories=params.data.max_categories)
    train, test = split(frame, test_size=params.data.test_size, seed=params.data.split_seed,
                        min_train_rows=params.train.cv_folds * 2)
    return frame, train, test


@dataclass(frozen=True)
class Prepared:
    """The training table split, encoded and described: what both the stage and a worker search over."""

    frame: pd.DataFrame
    schema: Schema
    train_frame: pd.DataFrame  # the training split as read (its reference profile is built from it)
    x_train: np.ndarray
    y_train: np.ndarray
    test_frame: pd.DataFrame  # the test split's feature columns, as loaded
    x_test: np.ndarray
    y_test: np.ndarray
    data_hash: str

    def example(self) -> dict[str, Any]:
        """The test split's first row as a raw record (what a request carries): the model's self-test."""
        return records_from_frame(self.test_frame.head(1))[0]


def prepare(params: Params) -> Prepared:
    """Load, check, split and encode the table named by params (column-wise: no per-row objects)."""
    target = params.data.target
    frame, train_df, test_df = load_and_split(params)
    schema = infer_schema(frame, target, stats_from=train_df)
    features = schema.names
    return Prepared(frame=frame, schema=schema, train_frame=train_df,
                    x_train=encode_frame(schema, train_df[features]),
                    y_train=train_df[target].to_numpy(dtype=np.float64), test_frame=test_df[features],
                    x_test=encode_frame(schema, test_df[features]),
                    y_test=test_df[target].to_numpy(dtype=np.float64), data_hash=dvc_data_hash(params.data.path))
