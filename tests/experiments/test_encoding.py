"""The column-wise training encoder gives Schema.encode's matrix bit for bit, and refuses what it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.data import infer_schema
from experiments.encoding import encode_frame
from experiments.generate import generate
from serving.predictor import SchemaError, records_from_frame

TARGET = "Exam_Score"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    frame = generate(rows=3000, seed=11)
    # The loader's own types: text as pandas categoricals, numbers as int64 or float64 (float when missing).
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("category")
    frame.loc[5, "Hours_Studied"] = np.nan
    return frame


def test_the_frame_encoder_equals_the_record_encoder_bit_for_bit(table: pd.DataFrame) -> None:
    schema = infer_schema(table, TARGET, stats_from=table.iloc[:2000])
    features = table[schema.names]
    by_columns = encode_frame(schema, features)
    by_records = schema.encode(records_from_frame(features))
    assert by_columns.dtype == by_records.dtype == np.float32
    assert by_columns.tobytes() == by_records.tobytes(), "same bits, NaN payloads included"
    assert np.isnan(by_columns).any(), "the table has missing values, so the comparison covers them"


def test_object_columns_encode_like_categorical_ones(table: pd.DataFrame) -> None:
    schema = infer_schema(table, TARGET)
    as_objects = table[schema.names].astype({c: object for c in schema.names
                                             if isinstance(table[c].dtype, pd.CategoricalDtype)})
    as_objects = as_objects.where(as_objects.notna(), None)
    assert encode_frame(schema, as_objects).tobytes() == encode_frame(schema, table[schema.names]).tobytes()


@pytest.mark.parametrize(("column", "value", "message"), [
    ("Gender", "Other", "unknown category 'Other'"),
    ("Gender", None, "a value is required"),
    ("Sleep_Hours", np.nan, "a value is required"),
    ("Sleep_Hours", np.inf, "expected a finite number"),
])
def test_what_the_schema_refuses_names_the_field_and_row(table: pd.DataFrame, column: str, value, message: str
                                                         ) -> None:
    schema = infer_schema(table, TARGET)
    bad = table[schema.names].astype({column: object}).copy()
    bad.loc[17, column] = value
    with pytest.raises(SchemaError) as err:
        encode_frame(schema, bad)
    assert (err.value.field, err.value.row) == (column, 17)
    assert message in str(err.value)
    with pytest.raises(SchemaError) as by_records:
        schema.encode(records_from_frame(bad))
    assert (by_records.value.field, by_records.value.row) == (column, 17), "the record path names the same cell"
