"""A JSON body means the same whichever parser reads it: orjson first, the standard library where it refuses."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving import codecs
from serving.predictor import Predictor, SchemaError
from tests.serving.serving_helpers import sample_records

BODIES = [
    b'[{"a": 1, "b": "x"}, {"a": 2.5, "b": null}]',
    b'{"instances": [{"a": -0, "b": "\\u00e9"}]}',
    b'[{"a": NaN}, {"a": Infinity}, {"a": -Infinity}]',  # not JSON, but what Python clients send
    b'[{"a": "\\ud800"}]',                                  # a lone surrogate
    b'{"a": 1, "a": 2}',                                    # duplicate keys: the last one wins
]


def _same(left: object, right: object) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True) and type(left) is type(right)


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_json_bodies_decode_as_the_standard_library_reads_them(predictor: Predictor, body: bytes) -> None:
    expected = json.loads(body)
    expected = expected if isinstance(expected, list) else expected.get("instances", [expected])
    assert _same(codecs.decode(codecs.JSON, body, predictor.schema), expected)


def test_an_integer_beyond_64_bits_arrives_as_the_double_the_model_would_see(predictor: Predictor) -> None:
    decoded = codecs.decode(codecs.JSON, b'[{"a": 100000000000000000000000000000}]', predictor.schema)
    assert decoded == [{"a": float(10**29)}]
    # Beyond a double it is the standard library's integer, which the schema check refuses by name.
    decoded = codecs.decode(codecs.JSON, b'[{"a": 1' + b"0" * 400 + b"}]", predictor.schema)
    assert decoded == [{"a": 10**400}]


def test_a_nan_literal_is_a_missing_value_deep_in_a_batch(predictor: Predictor) -> None:
    # Given a batch big enough for the column pass, with NaN for a feature that may be missing
    records, _ = sample_records(30)
    nullable = next(f.name for f in predictor.schema.features if f.nullable)
    records[17][nullable] = "__NAN__"
    body = json.dumps(records).replace('"__NAN__"', "NaN").encode()
    # When it is decoded and predicted, then the NaN reads as a missing value and predicts like null
    decoded = codecs.decode(codecs.JSON, body, predictor.schema)
    assert math.isnan(decoded[17][nullable])
    records[17][nullable] = None
    assert list(predictor.predict(decoded)) == list(predictor.predict(records))


def test_malformed_json_and_bad_utf8_are_decode_errors(predictor: Predictor) -> None:
    for body in (b'[{"a": 1', b'\xff\xfe[1]x', b"[1,]"):
        with pytest.raises(SchemaError, match="malformed JSON"):
            codecs.decode(codecs.JSON, body, predictor.schema)


def test_json_answers_parse_back_to_the_exact_predictions() -> None:
    predictions = [64.20693969726562, 1e-05, 1e16, -0.0, 71.5]
    assert json.loads(codecs.encode(codecs.JSON, predictions)) == {"predictions": predictions}


@pytest.mark.parametrize("cell", ["7_3", "\uff17\uff13", "\u0667\u0663", "1_000.5"],
                         ids=["underscore", "full-width", "arabic-indic", "grouped"])
def test_a_csv_number_is_ascii_digits_not_whatever_python_float_reads(predictor: Predictor, cell: str) -> None:
    # Given one CSV row in schema order whose Attendance is something Python's float() would read as a number
    record = sample_records(rows=1, seed=3)[0][0]
    names = predictor.schema.names
    cells = ["" if record[n] is None else str(record[n]) for n in names]
    assert codecs.decode_csv(",".join(cells).encode(), predictor.schema)[0]["Attendance"] == float(record["Attendance"])
    cells[names.index("Attendance")] = cell
    # When it is decoded, then the cell is refused by name, as a JSON string would be
    with pytest.raises(SchemaError) as err:
        codecs.decode_csv(",".join(cells).encode(), predictor.schema)
    assert (err.value.field, err.value.row) == ("Attendance", 0) and "expected a number" in str(err.value)


@pytest.mark.parametrize(("decode", "prefix"), [(codecs.decode_json, "malformed JSON: "),
                                                (codecs.decode_jsonlines, "malformed JSON line: ")])
def test_a_body_that_is_not_utf8_is_named_so_not_a_digit_limit(predictor: Predictor, decode, prefix: str) -> None:
    # orjson refuses it, then the standard library's UnicodeDecodeError (a ValueError) was read as the digit limit
    body = b'{"Gender": "Fem\xffale"}'
    with pytest.raises(codecs.DecodeError) as raised:
        decode(body, predictor.schema)
    assert str(raised.value.message).startswith(f"{prefix}not UTF-8 (invalid start byte at byte ")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_a_json_body_in_another_unicode_encoding_is_refused_as_the_lambda_refuses_it(predictor: Predictor,
                                                                                     encoding: str) -> None:
    # json.loads guesses UTF-16 and UTF-32 from bytes (and skips a UTF-8 byte order mark); orjson, the Lambda
    # and RFC 8259 take UTF-8 only, so the same body must not be a prediction here and a 400 through the API.
    record = sample_records(rows=1, seed=3)[0][0]
    with pytest.raises(codecs.DecodeError, match="^malformed JSON: "):
        codecs.decode_json(json.dumps([record]).encode(encoding), predictor.schema)


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"dataframe_records": "RECORDS", "params": {}}, "dataframe_records", "only key, not with ['params']"),
    ({"instances": "RECORDS", "params": {"a": 1}}, "instances", "only key"),
    ({"inputs": "RECORDS"}, "inputs", "tensor input"),
], ids=["dataframe-records-with-params", "instances-with-params", "tensor-inputs"])
def test_mlflow_request_shapes_we_do_not_take_are_named(predictor: Predictor, body: dict, field: str,
                                                         words: str) -> None:
    # Read as one record, these were answered "missing feature" for the schema's first feature
    records = sample_records(rows=2, seed=3)[0]
    body = {key: records if value == "RECORDS" else value for key, value in body.items()}
    with pytest.raises(codecs.DecodeError) as raised:
        codecs.decode_json(json.dumps(body).encode(), predictor.schema)
    assert raised.value.field == field and words in raised.value.message


def _split_body(columns: list[str], rows: list[list[object]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


@pytest.mark.parametrize("change", ["drop-first", "drop-last", "add-unknown"])
def test_split_columns_that_are_not_the_schema_get_the_first_records_error(predictor: Predictor,
                                                                            change: str) -> None:
    # Given a split whose columns miss a feature or add one, every row otherwise well formed
    records, _ = sample_records(40)
    names = predictor.schema.names
    columns = {"drop-first": names[1:], "drop-last": names[:-1], "add-unknown": [*names, "Zodiac", "Age"]}[change]
    body = _split_body(columns, [[r.get(c, 1) for c in columns] for r in records])
    # When it is read, then the error is what the record check says of the first row's dict
    with pytest.raises(SchemaError) as early:
        predictor.predict(codecs.decode(codecs.JSON, body, predictor.schema))
    with pytest.raises(SchemaError) as record_check:
        predictor.predict([{c: r.get(c, 1) for c in columns} for r in records])
    assert (str(early.value), early.value.field, early.value.row) == (
        str(record_check.value), record_check.value.field, record_check.value.row)
    assert isinstance(early.value, codecs.DecodeError), "the columns must be refused before a dict is built per row"


def test_split_columns_are_checked_before_the_rows(predictor: Predictor) -> None:
    # A split missing a column whose later row is also short: the columns are wrong for every row, so they speak
    names = predictor.schema.names
    body = _split_body(names[1:], [[1] * (len(names) - 1)] * 5 + [[1]])
    with pytest.raises(SchemaError) as err:
        codecs.decode(codecs.JSON, body, predictor.schema)
    assert (err.value.field, err.value.row, str(err.value).endswith("missing feature")) == (names[0], 0, True)


_BIG_SPLIT = """
import resource, sys
from serving import codecs
from serving.predictor import Predictor, SchemaError
predictor = Predictor.from_dir(sys.argv[1])
if sys.argv[2] == "one-value-rows":  # 6 MB: 1.5M rows of one column, a column the schema lacks
    body = b'{"dataframe_split":{"columns":["x"],"data":[' + b",".join([b"[1]"] * 1_500_000) + b"]}}"
else:  # 5.9 MB: 600,000 column names, the last one twice
    names = [f"c{i}" for i in range(600_000)]
    body = ('{"dataframe_split":{"columns":[' + ",".join(f'"{n}"' for n in [*names, names[-1]])
            + '],"data":[[1]]}}').encode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    predictor.predict(codecs.decode(codecs.JSON, body, predictor.schema))
except SchemaError as err:
    print(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("body", ["one-value-rows", "a-late-duplicate-among-600k-columns"])
def test_a_hostile_6mb_split_is_refused_without_a_dict_per_row_or_a_quadratic_scan(
        model_dir: Path, body: str) -> None:
    # Run apart, so the peak memory is this request's: a worker serves one request at a time
    # Before: the one-value rows built 1.5M dicts (+290 MB) before the refusal; the duplicate was found by
    # counting each name in the list, ≈ 1.8e11 comparisons (hours). The timeout only catches a hang.
    run = subprocess.run([sys.executable, "-c", _BIG_SPLIT, str(model_dir), body], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parents[2], env={**os.environ, "PYTHONPATH": "."})
    assert run.returncode == 0, run.stderr[-2000:]
    message, grown_mb = run.stdout.splitlines()
    expected = "missing feature" if body == "one-value-rows" else "duplicate column in dataframe_split.columns"
    assert message.endswith(expected)
    assert int(grown_mb) < 150, f"the refusal grew the process by {grown_mb} MB"
