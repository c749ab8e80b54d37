"""The typed JSON path (msgspec): clean big batches encode exactly as the row pass; anything else takes today's path."""

from __future__ import annotations

import gc
import json
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from serving import codecs
from serving.predictor import CATEGORICAL, NUMERIC, Feature, Predictor, Schema, SchemaError
from serving.typed_json import TypedRecords
from tests.serving.serving_helpers import BAD_ROW, fast_path_taken, general_answer, post_answer
from tests.serving.serving_helpers import BIG_ROWS as ROWS


@pytest.fixture(scope="module")
def typed(predictor: Predictor) -> TypedRecords:
    return TypedRecords(predictor.schema)


def _post(client: FlaskClient, body: bytes) -> tuple[int, dict[str, Any]]:
    return post_answer(client, body, codecs.JSON)


def _today(predictor: Predictor, body: bytes) -> tuple[int, dict[str, Any]]:
    """What the general path (orjson, then the record checks) answers for a JSON body."""
    return general_answer(predictor, body, codecs.JSON)


def test_the_server_takes_the_typed_path_for_a_clean_batch(client: FlaskClient, big_batch: list[dict[str, Any]],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    taken = fast_path_taken(monkeypatch, TypedRecords, "matrix")
    assert _post(client, json.dumps(big_batch[:500]).encode())[0] == 200
    assert taken == [True], "a clean JSON batch must be read by the typed path"


def test_a_10k_batch_through_the_typed_path_predicts_exactly_what_each_record_predicts_alone(
        predictor: Predictor, typed: TypedRecords, client: FlaskClient, big_batch: list[dict[str, Any]]) -> None:
    # Given 10,000 clean records as one JSON list; when the typed path encodes them
    body = json.dumps(big_batch).encode()
    matrix = typed.matrix(body)
    # Then it took them, wrote the row pass's matrix bit for bit, and the server answers each record's own prediction
    assert matrix is not None, "clean records must take the typed path"
    assert np.array_equal(matrix, predictor.schema._encode_rows(big_batch), equal_nan=True)
    one_by_one = np.concatenate([predictor.predict([r]) for r in big_batch])
    assert np.array_equal(predictor.predict_matrix(matrix), one_by_one)
    assert _post(client, body) == (200, {"predictions": one_by_one.tolist()})


def test_the_cyclic_collector_never_runs_while_a_batch_is_decoded_and_is_on_after(
        typed: TypedRecords, big_batch: list[dict[str, Any]]) -> None:
    passes: list[int] = []
    record = lambda phase, info: passes.append(info["generation"]) if phase == "start" else None  # noqa: E731
    clean, refused = json.dumps(big_batch).encode(), json.dumps([{"nope": 1}] * ROWS).encode()
    gc.collect()
    gc.callbacks.append(record)
    try:
        assert typed.matrix(clean) is not None
        assert typed.matrix(refused) is None
    finally:
        gc.callbacks.remove(record)
    # Left on, it walks 10,000 records ~25 times; off, at most one young pass per call catches up once it is back on.
    assert len(passes) <= 2, f"{len(passes)} collector passes for 2 decodes of nothing it could free"
    assert gc.isenabled()
    gc.disable()
    try:
        typed.matrix(clean)
        assert not gc.isenabled(), "a collector someone else turned off stays off"
    finally:
        gc.enable()


@pytest.mark.parametrize("wrapper", ["instances", "dataframe_records"])
def test_the_record_list_wrappers_take_the_typed_path_too(predictor: Predictor, typed: TypedRecords,
                                                          big_batch: list[dict[str, Any]], wrapper: str) -> None:
    matrix = typed.matrix(json.dumps({wrapper: big_batch[:100]}).encode())
    assert matrix is not None
    assert np.array_equal(matrix, predictor.schema._encode_rows(big_batch[:100]), equal_nan=True)


@pytest.mark.parametrize("body", [{"dataframe_split": "records"}, {"rows": "records"},
                                  {"instances": "records", "dataframe_records": "records"}, "few records"],
                         ids=["dataframe_split-holding-records", "unknown-wrapper", "two-wrappers", "7-records"])
def test_other_shapes_are_left_to_the_general_path(predictor: Predictor, typed: TypedRecords, client: FlaskClient,
                                                   big_batch: list[dict[str, Any]], body: Any) -> None:
    records = big_batch[:100]
    shape = {k: records for k in body} if isinstance(body, dict) else big_batch[:7]
    raw = json.dumps(shape).encode()
    assert typed.matrix(raw) is None
    assert _post(client, raw) == _today(predictor, raw)


def _good(predictor: Predictor, batch: list[dict[str, Any]]) -> dict[str, Any]:
    nullable = {f.name for f in predictor.schema.features if f.nullable}
    return next(r for r in batch if all(r[n] is not None for n in nullable))


DELETE = object()
BAD = [
    ("Hours_Studied", True), ("Hours_Studied", None), ("Hours_Studied", 1e40), ("Hours_Studied", 10**400),
    ("Hours_Studied", "7"), ("Hours_Studied", float("nan")), ("Hours_Studied", float("inf")),
    ("Hours_Studied", [7]), ("Hours_Studied", {"v": 7}), ("Hours_Studied", DELETE), ("Shoe_Size", 42),
    ("Gender", "Robot"), ("Gender", ["Male"]), ("Gender", None), ("Gender", True), ("Teacher_Quality", 2),
    ("Teacher_Quality", "Nope"), ("Gender", DELETE),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={'absent' if v is DELETE else repr(v)}"[:30]
                                                       for f, v in BAD])
def test_a_bad_value_in_a_10k_batch_gets_todays_error(predictor: Predictor, typed: TypedRecords, client: FlaskClient,
                                                      big_batch: list[dict[str, Any]], field: str, value: Any) -> None:
    # Given 10,000 clean records with one bad value near the end (NaN and Infinity as Python's json writes them)
    batch = [dict(_good(predictor, big_batch)) for _ in range(ROWS)]
    if value is DELETE:
        del batch[BAD_ROW][field]
    else:
        batch[BAD_ROW][field] = value
    body = json.dumps(batch).encode()
    # When it is posted, then the typed path declines it and the answer is today's, word for word
    assert typed.matrix(body) is None
    status, answer = _post(client, body)
    assert (status, answer) == _today(predictor, body)
    assert (status, answer["row"], answer["field"]) == (400, BAD_ROW, field)


@pytest.mark.parametrize("value", [10**25, 2**64 - 1, -(2**63), 2**63, 123456789012345678901234567890],
                         ids=["1e25", "2^64-1", "-2^63", "2^63", "30-digits"])
def test_huge_integers_are_read_by_the_general_path(predictor: Predictor, typed: TypedRecords, client: FlaskClient,
                                                    big_batch: list[dict[str, Any]], value: int) -> None:
    # msgspec and orjson round some integers beyond 64 bits to different doubles: orjson's reading stands.
    batch = [dict(r) for r in big_batch[:100]]
    batch[50]["Hours_Studied"] = value
    body = json.dumps(batch).encode()
    assert typed.matrix(body) is None
    assert _post(client, body) == _today(predictor, body)


def test_feature_names_that_are_not_identifiers_decode_by_their_json_names() -> None:
    schema = Schema("t", (Feature("x y", NUMERIC, center=2.0, scale=3.0), Feature("class", NUMERIC),
                          Feature("f0", CATEGORICAL, nullable=True, levels=("a", "b"))))
    records = [{"x y": i * 0.5, "class": -i, "f0": None if i % 3 == 0 else "ab"[i % 2]} for i in range(50)]
    matrix = TypedRecords(schema).matrix(json.dumps(records).encode())
    assert matrix is not None
    assert np.array_equal(matrix, schema._encode_rows(records), equal_nan=True)


def test_a_missing_number_where_missing_is_allowed_takes_the_typed_path_as_nan() -> None:
    # Given a numeric feature that may be missing, and another that may not
    schema = Schema("t", (Feature("n", NUMERIC, nullable=True, center=1.0, scale=2.0), Feature("m", NUMERIC)))
    records = [{"n": None if i % 4 == 0 else i - 0.25, "m": i} for i in range(40)]
    typed = TypedRecords(schema)
    # When the batch is decoded, then the nulls are NaN (the row pass's missing value), bit for bit
    matrix = typed.matrix(json.dumps(records).encode())
    assert matrix is not None
    assert np.isnan(matrix[::4, 0]).all()
    assert np.array_equal(matrix, schema._encode_rows(records), equal_nan=True)
    # And a null where missing is not allowed leaves the batch to the general path, which names it
    records[7]["m"] = None
    assert typed.matrix(json.dumps(records).encode()) is None
    with pytest.raises(SchemaError) as err:
        schema.encode(records)
    assert (err.value.row, err.value.field) == (7, "m")


def _split(batch: list[dict[str, Any]], columns: list[str], **extra: Any) -> bytes:
    return json.dumps({"dataframe_split": {**extra, "columns": columns,
                                           "data": [[r.get(c) for c in columns] for r in batch]}}).encode()


def test_a_10k_dataframe_split_in_any_column_order_takes_the_typed_path_bit_for_bit(
        predictor: Predictor, typed: TypedRecords, client: FlaskClient, big_batch: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MLflow's split form of 10,000 records, columns out of schema order and pandas' index beside them
    columns = list(reversed(predictor.schema.names))
    body = _split(big_batch, columns, index=list(range(ROWS)))
    # When the typed path reads it, then it writes the row pass's matrix bit for bit
    matrix = typed.matrix(body)
    assert matrix is not None, "a clean split must take the typed path"
    assert np.array_equal(matrix, predictor.schema._encode_rows(big_batch), equal_nan=True)
    # And the server answers what each record predicts alone, through the typed path
    taken = fast_path_taken(monkeypatch, TypedRecords, "matrix")
    one_by_one = np.concatenate([predictor.predict([r]) for r in big_batch[:300]])
    assert _post(client, _split(big_batch[:300], columns)) == (200, {"predictions": one_by_one.tolist()})
    assert taken == [True]


def test_each_column_order_gets_its_own_row_decoder_and_only_a_few_are_kept(
        predictor: Predictor, big_batch: list[dict[str, Any]]) -> None:
    typed, names = TypedRecords(predictor.schema), predictor.schema.names
    expected = predictor.schema._encode_rows(big_batch[:100])
    for shift in range(len(names)):
        columns = names[shift:] + names[:shift]
        matrix = typed.matrix(_split(big_batch[:100], columns))
        assert matrix is not None and np.array_equal(matrix, expected, equal_nan=True), f"order shifted by {shift}"
    assert len(typed._rows) <= 8, "one decoder per order ever seen would let a caller grow the worker's memory"


SPLIT_BAD = [(f, v) for f, v in BAD if v is not DELETE]


@pytest.mark.parametrize(("field", "value"), SPLIT_BAD, ids=[f"{f}={v!r}"[:30] for f, v in SPLIT_BAD])
def test_a_bad_value_in_a_10k_split_gets_todays_error(predictor: Predictor, typed: TypedRecords, client: FlaskClient,
                                                      big_batch: list[dict[str, Any]], field: str, value: Any) -> None:
    batch = [dict(_good(predictor, big_batch)) for _ in range(ROWS)]
    batch[BAD_ROW][field] = value
    columns = sorted(predictor.schema.names) + (["Shoe_Size"] if field == "Shoe_Size" else [])
    body = _split(batch, columns)
    assert typed.matrix(body) is None
    status, answer = _post(client, body)
    assert (status, answer) == _today(predictor, body)
    assert status == 400


def _split_shapes(names: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "a-column-missing": {"dataframe_split": {"columns": names[1:], "data": [r[1:] for r in rows]}},
        "an-unknown-column": {"dataframe_split": {"columns": [*names, "x"], "data": [[*r, 1] for r in rows]}},
        "a-column-twice": {"dataframe_split": {"columns": [*names[:-1], names[0]], "data": rows}},
        "a-short-row": {"dataframe_split": {"columns": names, "data": [*rows[:-1], rows[-1][:-1]]}},
        "a-long-row": {"dataframe_split": {"columns": names, "data": [*rows[:-1], [*rows[-1], 1]]}},
        "a-row-object": {"dataframe_split": {"columns": names, "data": [*rows[:-1], dict(zip(names, rows[-1], strict=True))]}},
        "no-columns": {"dataframe_split": {"data": rows}},
        "columns-not-names": {"dataframe_split": {"columns": [*names[:-1], 7], "data": rows}},
        "data-not-a-list": {"dataframe_split": {"columns": names, "data": {"0": rows[0]}}},
        "params-beside": {"dataframe_split": {"columns": names, "data": rows}, "params": {}},
        "split-of-a-list": {"dataframe_split": [names, *rows]},
        "too-few-rows": {"dataframe_split": {"columns": names, "data": rows[:7]}},
    }


@pytest.mark.parametrize("shape", list(_split_shapes(["a"], [[1]])))
def test_split_shapes_the_typed_path_cannot_vouch_for_are_left_to_the_general_path(
        predictor: Predictor, typed: TypedRecords, client: FlaskClient, big_batch: list[dict[str, Any]],
        shape: str) -> None:
    names = predictor.schema.names
    raw = json.dumps(_split_shapes(names, [[r[n] for n in names] for r in big_batch[:100]])[shape]).encode()
    assert typed.matrix(raw) is None
    assert _post(client, raw) == _today(predictor, raw)


def test_a_repeated_key_in_a_split_is_read_as_the_general_path_reads_it(
        predictor: Predictor, typed: TypedRecords, client: FlaskClient, big_batch: list[dict[str, Any]]) -> None:
    # orjson keeps the last of a repeated key; the typed path must not read the first
    names = predictor.schema.names
    first = json.dumps({"columns": names[::-1], "data": [[r[n] for n in names[::-1]] for r in big_batch[:50]]})
    last = json.dumps({"columns": names, "data": [[r[n] for n in names] for r in big_batch[50:100]]})
    raw = ('{"dataframe_split": {' + first[1:-1] + ", " + last[1:-1] + "}}").encode()
    matrix = typed.matrix(raw)
    assert matrix is not None
    assert np.array_equal(matrix, predictor.schema._encode_rows(big_batch[50:100]), equal_nan=True)
    assert _post(client, raw) == _today(predictor, raw)
