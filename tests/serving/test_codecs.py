"""A JSON body means the same whichever parser reads it: orjson first, the standard library where it refuses."""

from __future__ import annotations

import json
import math

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
