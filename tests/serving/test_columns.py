"""The column pass on big batches: 10,000 records encode and predict exactly as one at a time, errors name the row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from serving import columns
from serving.predictor import CATEGORICAL, NUMERIC, Feature, Predictor, Schema, SchemaError
from tests.serving.serving_helpers import BAD_ROW
from tests.serving.serving_helpers import BIG_ROWS as ROWS


def test_a_10k_batch_predicts_exactly_what_each_record_predicts_alone(predictor: Predictor,
                                                                      big_batch: list[dict[str, Any]]) -> None:
    # Given 10,000 records; when they are encoded together (the column pass) and one at a time (the row pass)
    together = predictor.schema._encode_columns(big_batch)
    assert together is not None, "clean records must take the column pass"
    alone = predictor.schema._encode_rows(big_batch)
    # Then the matrices and the predictions are bit for bit the same
    assert np.array_equal(together, alone, equal_nan=True)
    one_by_one = np.concatenate([predictor.predict([r]) for r in big_batch[:500]])
    assert np.array_equal(predictor.predict(big_batch)[:500], one_by_one)


def _good(predictor: Predictor, batch: list[dict[str, Any]]) -> dict[str, Any]:
    nullable = {f.name for f in predictor.schema.features if f.nullable}
    return next(r for r in batch if all(r[n] is not None for n in nullable))


BAD = [
    ("Hours_Studied", True, "expected a number, got bool"),
    ("Hours_Studied", None, "a value is required"),
    ("Hours_Studied", 1e40, "beyond the model's float32 range"),
    ("Hours_Studied", 10**400, "expected a finite number"),
    ("Hours_Studied", "7", "expected a number, got str"),
    ("Gender", "Robot", "unknown category 'Robot'"),
    ("Gender", ["Male"], "expected a string, got list"),
    ("Gender", None, "a value is required"),
    ("Teacher_Quality", 2, "expected a string, got int"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v!r}"[:30] for f, v, _ in BAD])
def test_a_bad_value_in_a_10k_batch_names_its_row_and_field(predictor: Predictor, big_batch: list[dict[str, Any]],
                                                            field: str, value: Any, message: str) -> None:
    # Given 10,000 clean records with one bad value near the end
    good = _good(predictor, big_batch)
    batch = [dict(good) for _ in range(ROWS)]
    batch[BAD_ROW][field] = value
    # When they are predicted, then the error names that row and field, as the record alone would be told
    with pytest.raises(SchemaError) as err:
        predictor.predict(batch)
    assert (err.value.row, err.value.field) == (BAD_ROW, field)
    assert message in err.value.message
    with pytest.raises(SchemaError) as alone:
        predictor.predict([batch[BAD_ROW]])
    assert alone.value.message == err.value.message


@pytest.mark.parametrize("change", ["missing", "unknown", "renamed"])
def test_a_malformed_record_in_a_10k_batch_is_named(predictor: Predictor, big_batch: list[dict[str, Any]],
                                                    change: str) -> None:
    batch = [dict(r) for r in big_batch]
    if change == "missing":
        del batch[BAD_ROW]["Gender"]
    elif change == "unknown":
        batch[BAD_ROW]["Shoe_Size"] = 42
    else:  # the same number of keys, one of them not the schema's
        batch[BAD_ROW]["Gender_"] = batch[BAD_ROW].pop("Gender")
    with pytest.raises(SchemaError) as err:
        predictor.predict(batch)
    assert err.value.row == BAD_ROW
    assert err.value.field == {"missing": "Gender", "unknown": "Shoe_Size", "renamed": "Gender"}[change]


def test_a_category_with_more_levels_than_a_byte_holds_encodes_like_the_row_pass() -> None:
    # Level codes are bytes up to 254 levels; a wider category takes numpy's integer path.
    levels = tuple(f"level-{i:03d}" for i in range(300))
    schema = Schema("t", (Feature("x", NUMERIC, center=2.0, scale=3.0),
                          Feature("c", CATEGORICAL, nullable=True, levels=levels)))
    records = [{"x": i % 7, "c": None if i % 11 == 0 else levels[(i * 37) % 300]} for i in range(2_000)]
    together = schema._encode_columns(records)
    assert together is not None
    assert np.array_equal(together, schema._encode_rows(records), equal_nan=True)
    records[1_234]["c"] = "level-300"
    with pytest.raises(SchemaError) as err:
        schema.encode(records)
    assert (err.value.row, err.value.field) == (1_234, "c")


def test_a_schema_of_one_feature_takes_the_column_pass() -> None:
    schema = Schema("t", (Feature("x", NUMERIC, center=0.5, scale=4.0),))
    records = [{"x": i * 0.25} for i in range(100)]
    assert np.array_equal(schema._encode_columns(records), schema._encode_rows(records))


def test_a_category_without_levels_leaves_the_batch_to_the_row_pass() -> None:
    plan = Schema("t", (Feature("c", CATEGORICAL, nullable=True, levels=()),))._columns
    assert not plan.usable
    assert columns.encode(plan, [{"c": None}] * 20) is None
