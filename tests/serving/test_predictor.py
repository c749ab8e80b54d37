"""The predict path's two encoders and its direct XGBoost call give exactly what the plain ways give."""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from serving.predictor import COLUMN_PASS_MIN_ROWS, Predictor, Schema, SchemaError
from tests.serving.serving_helpers import fast_path_taken, sample_records

BATCH = max(20, 2 * COLUMN_PASS_MIN_ROWS)
BAD_ROW = BATCH - 7


def _row_pass(predictor: Predictor, records: list[Any]) -> np.ndarray:
    return predictor.schema._encode_rows(records)


def test_a_batch_encodes_bit_for_bit_like_one_record_at_a_time(predictor: Predictor,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given records with missing values, as pandas gives them and as they arrive in JSON
    records, _ = sample_records(300)
    assert any(v is None for r in records for v in r.values()), "the sample needs missing values"
    taken = fast_path_taken(monkeypatch, Schema, "_encode_columns")
    for batch in (records, json.loads(json.dumps(records))):
        # When the batch is encoded (the column pass) and each record on its own (the row pass)
        taken.clear()
        together = predictor.schema.encode(batch)
        assert taken == [True], "encode must take the column pass for clean records"
        alone = np.vstack([predictor.schema.encode([r]) for r in batch])
        # Then the matrices are identical, NaN for NaN
        assert together.dtype == alone.dtype == np.float32
        assert np.array_equal(together, alone, equal_nan=True)


def test_records_that_are_not_plain_dicts_still_encode(predictor: Predictor) -> None:
    records, _ = sample_records(BATCH)
    proxies = [MappingProxyType(r) for r in records]
    assert np.array_equal(predictor.schema.encode(proxies), _row_pass(predictor, records), equal_nan=True)


def _good(predictor: Predictor) -> dict[str, Any]:
    records, _ = sample_records(50)
    nullable = {f.name for f in predictor.schema.features if f.nullable}
    return next(r for r in records if all(r[n] is not None for n in nullable))


BAD_VALUES = [
    ("Hours_Studied", "ten", "expected a number, got str"),
    ("Hours_Studied", True, "expected a number, got bool"),
    ("Hours_Studied", None, "a value is required"),
    ("Hours_Studied", math.nan, "a value is required"),
    ("Hours_Studied", math.inf, "expected a finite number"),
    ("Hours_Studied", 10**400, "expected a finite number"),
    ("Hours_Studied", [1], "expected a number, got list"),
    ("Gender", "Robot", "unknown category 'Robot'"),
    ("Gender", 1, "expected a string, got int"),
    ("Gender", None, "a value is required"),
    ("Gender", {"a": 1}, "expected a string, got dict"),
    ("Teacher_Quality", 1.5, "expected a string, got float"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES,
                         ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_VALUES])
def test_a_bad_value_deep_in_a_batch_is_named_like_in_a_single_record(predictor: Predictor, field: str,
                                                                      value: Any, message: str) -> None:
    # Given a batch large enough for the column pass, with one bad value late in it
    good = _good(predictor)
    batch = [dict(good) for _ in range(BATCH)]
    batch[BAD_ROW][field] = value
    # When it is encoded, then the error names that field and row, as the record alone would be told
    with pytest.raises(SchemaError) as err:
        predictor.schema.encode(batch)
    assert (err.value.field, err.value.row) == (field, BAD_ROW)
    assert message in err.value.message
    with pytest.raises(SchemaError) as alone:
        predictor.schema.encode([batch[BAD_ROW]])
    assert err.value.message == alone.value.message


@pytest.mark.parametrize("change", ["missing", "unknown", "not-an-object"])
def test_a_malformed_record_deep_in_a_batch_is_named(predictor: Predictor, change: str) -> None:
    good = _good(predictor)
    batch: list[Any] = [dict(good) for _ in range(BATCH)]
    if change == "missing":
        del batch[BAD_ROW]["Gender"]
        expected = ("Gender", "missing feature")
    elif change == "unknown":
        batch[BAD_ROW]["Shoe_Size"] = 42
        expected = ("Shoe_Size", "unknown feature")
    else:
        batch[BAD_ROW] = [1, 2, 3]
        expected = (None, "expected an object of feature values")
    with pytest.raises(SchemaError) as err:
        predictor.schema.encode(batch)
    assert (err.value.field, err.value.message, err.value.row) == (*expected, BAD_ROW)


def test_the_first_error_in_reading_order_is_the_one_reported(predictor: Predictor) -> None:
    # Given two bad values: a later column in an earlier row, an earlier column in a later row
    good = _good(predictor)
    batch = [dict(good) for _ in range(BATCH)]
    batch[3]["Gender"] = "Robot"
    batch[5]["Hours_Studied"] = "ten"
    with pytest.raises(SchemaError) as err:
        predictor.schema.encode(batch)
    assert (err.value.row, err.value.field) == (3, "Gender")


def test_each_prediction_is_its_own_copy(predictor: Predictor) -> None:
    # XGBoost reuses its output buffer; an earlier answer must not change when the next one is computed.
    records, _ = sample_records(10)
    first = predictor.predict(records[:5])
    kept = first.copy()
    predictor.predict(records[5:])
    assert np.array_equal(first, kept)


def test_threads_predicting_at_once_each_get_their_own_answers(predictor: Predictor) -> None:
    # MLflow's server calls the model from a thread pool: each thread must see only its own rows.
    from concurrent.futures import ThreadPoolExecutor

    records, _ = sample_records(120)
    batches = [records[i:i + 1 + i % 17] for i in range(0, 120, 6)]
    expected = [predictor.predict(batch) for batch in batches]

    def run(index: int) -> bool:
        return all(np.array_equal(predictor.predict(batches[index]), expected[index]) for _ in range(50))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(run, range(len(batches))))


def test_every_missing_number_is_the_same_nan_in_both_passes() -> None:
    # A CSV cell "-nan" parses to a NaN with its sign bit set; the row pass writes the one plain NaN.
    from serving.predictor import NUMERIC, Feature, Schema
    schema = Schema("t", (Feature("x", NUMERIC, nullable=True, center=1.0, scale=2.0),))
    records = [{"x": float("-nan")}, {"x": None}, {"x": 3}] * COLUMN_PASS_MIN_ROWS
    together, alone = schema.encode(records), schema._encode_rows(records)
    assert together.view(np.uint32).tolist() == alone.view(np.uint32).tolist()


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan])
def test_a_schema_file_with_an_unusable_scale_is_refused_at_load(scale: float) -> None:
    from serving.layout import ModelError
    from serving.predictor import Schema
    raw = {"format": 1, "target": "t", "features": [{"name": "x", "kind": "numeric", "nullable": False,
                                                      "center": 0.0, "scale": scale}]}
    with pytest.raises(ModelError, match="feature 'x' needs a finite center and a positive scale"):
        Schema.from_json(raw)
