"""Owns turning a table into the model matrix a column at a time, for training-sized tables.

``Schema.encode`` (serving/predictor.py) takes records, one dict per row: right for a request, ruinous for a
million training rows (each row a dict of Python objects before it is encoded). ``encode_frame`` reads the
DataFrame's columns directly and writes the same float32 matrix bit for bit (tests/experiments/test_encoding.py
checks it against ``Schema.encode`` on the same rows), with the same refusals naming the field and the row.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from serving.predictor import NUMERIC, Feature, Schema, SchemaError

_UNKNOWN, _MISSING = -1, -2


def encode_frame(schema: Schema, frame: pd.DataFrame) -> np.ndarray:
    """The float32 model matrix of ``frame``'s rows (row ``i`` is the frame's ``i``-th row).

    Raises:
        SchemaError: a feature column is absent, or a cell is a category the schema does not know, a missing
            value where training had none, or a non-finite number; names the first such row (0-based).
    """
    matrix = np.zeros((len(frame), len(schema.columns)), dtype=np.float32)
    offset = 0
    for feature in schema.features:
        if feature.name not in frame.columns:
            raise SchemaError("missing feature", field=feature.name, row=0)
        column = frame[feature.name]
        if feature.kind == NUMERIC:
            matrix[:, offset] = _numeric(feature, column)
        else:
            _one_hot(feature, column, matrix[:, offset:offset + feature.width])
        offset += feature.width
    return matrix


def _numeric(feature: Feature, column: pd.Series) -> np.ndarray:
    try:
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise SchemaError("expected a number", field=feature.name, row=0) from None
    missing = np.isnan(values)
    _refuse_missing(feature, missing)
    if np.isinf(values).any():
        raise SchemaError("expected a finite number", field=feature.name, row=_first(np.isinf(values)))
    scaled = (values - feature.center) / feature.scale
    scaled[missing] = math.nan  # one plain NaN for every missing value, as the record path writes
    return scaled


def _positions(feature: Feature, column: pd.Series) -> np.ndarray:
    """Each cell's level position, ``_MISSING`` for a missing cell, ``_UNKNOWN`` for a level not in the schema."""
    index = {level: i for i, level in enumerate(feature.levels)}
    if isinstance(column.dtype, pd.CategoricalDtype):
        by_code = np.array([index.get(c, _UNKNOWN) if isinstance(c, str) else _UNKNOWN
                            for c in column.cat.categories] + [_MISSING], dtype=np.intp)
        return by_code[column.cat.codes.to_numpy()]  # code -1 (missing) picks the last entry
    return np.fromiter((index.get(v, _UNKNOWN) if isinstance(v, str)
                        else _MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else _UNKNOWN
                        for v in column.to_numpy(dtype=object)), dtype=np.intp, count=len(column))


def _one_hot(feature: Feature, column: pd.Series, span: np.ndarray) -> None:
    positions = _positions(feature, column)
    unknown = positions == _UNKNOWN
    if unknown.any():
        row = _first(unknown)
        raise SchemaError(f"unknown category '{column.iloc[row]}'; expected one of {list(feature.levels)}",
                          field=feature.name, row=row)
    missing = positions == _MISSING
    _refuse_missing(feature, missing)
    present = np.flatnonzero(~missing)
    span[present, positions[present]] = 1.0
    span[missing] = math.nan


def _refuse_missing(feature: Feature, missing: np.ndarray) -> None:
    if not feature.nullable and missing.any():
        raise SchemaError("a value is required (no missing values were seen in training)", field=feature.name,
                          row=_first(missing))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])
