"""Owns the request and response media types: request bodies to raw records, predictions to bytes.

Decoders only turn bytes into a list of records (dicts of feature name to value); checking the values
against the schema stays in ``serving.predictor``. Errors are ``DecodeError`` (a ``SchemaError``), so they
carry the field and the row (the 0-based index of the record in the request, header lines not counted).

Request types:
- ``application/json``: one record object, a list of records, ``{"instances": [...]}``, or MLflow's
  ``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` / ``{"dataframe_records": [...]}``. A wrapper
  is the body's only key (MLflow's ``params`` beside it are refused by name, as is its tensor ``inputs``).
- ``text/csv``: one record per line in schema order without a header (SageMaker's convention), or with a
  header line when the first line is exactly the feature names (in any order). Empty cells are missing
  values; cells of numeric features must parse as numbers; surrounding spaces are ignored.
- ``application/jsonlines`` (also ``application/jsonl``, ``application/x-jsonlines``): one object a line.

An empty request (no records) is refused: a caller sending nothing has made a mistake we should report.

JSON is parsed with orjson, more than twice as fast as the standard library on record lists. What orjson
refuses but the standard library reads (``NaN`` and ``Infinity`` literals, numbers beyond a double, lone
surrogates) is read by the standard library, whose verdict stands. The one difference left: an integer
beyond 64 bits arrives as a float, the same double the model would be given. Nesting is bounded by
orjson's depth limit (``MAX_DEPTH``): a deeper body is a 400 naming the limit, and never reaches the
standard library's recursive parser.

A compressed body (``Content-Encoding`` other than ``identity``) is refused by the app with 415: SageMaker
passes no content coding on, and inflating a body would need a second size limit after the first.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from serving import contract
from serving.predictor import NUMERIC, Schema, SchemaError

JSON, CSV, JSONLINES = contract.JSON, contract.CSV, contract.JSONLINES
REQUEST_TYPES = contract.REQUEST_TYPES
# orjson refuses JSON nested deeper than this (its own limit, not configurable), with "depth limit exceeded".
MAX_DEPTH = 1024
# UTF-8, a byte-order mark before the first line skipped (spreadsheets write one).
CSV_ENCODING = "utf-8-sig"
# Offered in this order, so "*/*" and "application/*" pick JSON.
RESPONSE_TYPES = (JSON, CSV)


class DecodeError(SchemaError):
    """The body cannot be read as records of the declared media type."""


def _records(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"{where} must be a list of records, got {type(value).__name__}")
    return value


def _from_split(split: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    if not isinstance(split, Mapping):
        raise DecodeError("dataframe_split must be an object with 'columns' and 'data'")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise DecodeError("dataframe_split.columns must be a list of feature names")
    present = set(columns)
    if len(present) != len(columns):
        seen: set[str] = set()  # not columns.count per column: quadratic in a body of a million names
        duplicate = next(c for c in columns if c in seen or seen.add(c))
        raise DecodeError("duplicate column in dataframe_split.columns", field=duplicate)
    rows = _records(data, "dataframe_split.data")
    if rows and present != set(names):
        # Every row would hold these keys, so this is the record check's answer for the first row, given before
        # a dict is built per row: a 6 MB split of one-value rows made 1.5M dicts (≈ 240 MB) only to be refused.
        missing = [name for name in names if name not in present]
        if missing:
            raise DecodeError("missing feature", field=missing[0], row=0)
        raise DecodeError("unknown feature", field=min(present.difference(names)), row=0)
    out = []
    for row, values in enumerate(rows):
        if not isinstance(values, list) or len(values) != len(columns):
            raise DecodeError(f"expected a list of {len(columns)} values, one per column", row=row)
        out.append(dict(zip(columns, values, strict=True)))
    return out


def _loads(text: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        if "depth" in str(err):
            raise DecodeError(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    try:
        # Decoded here, not by json.loads: given bytes it guesses UTF-16 and UTF-32 too, which orjson, the
        # Lambda and RFC 8259 (section 8.1: UTF-8) all refuse.
        return json.loads(text.decode("utf-8"))
    except RecursionError:  # below orjson's limit but above the interpreter's: still only too deep
        raise DecodeError(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError as err:  # a ValueError too: not the digit limit below
        raise DecodeError(f"malformed JSON: not UTF-8 ({err.reason} at byte {err.start})") from None
    except ValueError:  # Python refuses to read an integer of more digits than this (a guard against slow parsing)
        raise DecodeError(f"malformed JSON: a number of more than {sys.get_int_max_str_digits()} digits") from None


def decode_json(body: bytes, schema: Schema) -> list[Any]:
    try:
        payload = _loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DecodeError(f"malformed JSON: {err}") from None
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict):
        raise DecodeError(f"expected a record object or a list of records, got {type(payload).__name__}")
    if len(payload) == 1:
        (key, value), = payload.items()
        if key == "dataframe_split":
            return _from_split(value, schema.names)
        if key in contract.BATCH_WRAPPERS:
            return _records(value, key)
    # MLflow's scoring server also takes "params" beside a wrapper, and tensors as "inputs"; read as one record
    # they were answered "missing feature" for the first feature, which hid what was wrong.
    mlflow_keys = sorted(set(payload).intersection((*contract.BATCH_WRAPPERS, "inputs")).difference(schema.names))
    if mlflow_keys:
        key = mlflow_keys[0]
        if key == "inputs":
            raise DecodeError("MLflow's tensor input 'inputs' is not taken; send records (a list of objects, "
                              "'dataframe_records', 'dataframe_split' or 'instances')", field=key)
        others = sorted(k for k in payload if k != key)
        raise DecodeError(f"'{key}' must be the body's only key, not with {others[:3]} (MLflow's 'params' "
                          f"are not taken)", field=key)
    return [payload]


def decode_jsonlines(body: bytes, schema: Schema) -> list[Any]:
    records = []
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            records.append(_loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DecodeError(f"malformed JSON line: {err}", row=len(records)) from None
        except DecodeError as err:
            raise DecodeError(err.message.replace("JSON", "JSON line", 1), row=len(records)) from None
    return records


def csv_rows(text: str) -> Iterator[list[str]]:
    """The rows of a CSV text as the csv module reads them (also the CSV fast path's, ``serving.csv_columns``).

    Raises:
        csv.Error: a malformed quote, or a field beyond the module's size limit.
    """
    # newline="" lets the csv module see quoted line breaks inside a field as part of that field.
    return csv.reader(io.StringIO(text, newline=""), strict=True)


def decode_csv(body: bytes, schema: Schema) -> list[dict[str, Any]]:
    try:
        text = body.decode(CSV_ENCODING)
    except UnicodeDecodeError as err:
        raise DecodeError(f"malformed CSV: not UTF-8 ({err.reason} at byte {err.start})") from None
    lines = csv_rows(text)
    names = schema.names
    kinds = [f.kind == NUMERIC for f in schema.features]
    records: list[dict[str, Any]] = []
    columns = names
    try:
        for cells in lines:
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            cells = [c.strip() for c in cells]
            if not records and columns is names and sorted(cells) == sorted(names):
                # A header line: a data line can never equal it, numeric features never hold a name.
                columns = cells
                kinds = [schema.features[names.index(c)].kind == NUMERIC for c in columns]
                continue
            row = len(records)
            if len(cells) != len(columns):
                raise DecodeError(f"expected {len(columns)} values in schema order "
                                  f"({', '.join(columns)}), got {len(cells)}", row=row)
            record = {}
            for name, numeric, cell in zip(columns, kinds, cells, strict=True):
                if cell == "":
                    record[name] = None
                elif numeric:
                    try:
                        # Python's float() also reads "7_3" and non-ASCII digits ("７３") as 73: not numbers here.
                        if not cell.isascii() or "_" in cell:
                            raise ValueError(cell)
                        record[name] = float(cell)
                    except ValueError:
                        raise DecodeError(f"expected a number, got '{cell}'", field=name, row=row) from None
                else:
                    record[name] = cell
            records.append(record)
    except csv.Error as err:
        raise DecodeError(f"malformed CSV: {err}", row=len(records)) from None
    return records


DECODERS: dict[str, Callable[[bytes, Schema], list[Any]]] = {
    JSON: decode_json, CSV: decode_csv, JSONLINES: decode_jsonlines,
}


def decode(media_type: str, body: bytes, schema: Schema) -> list[Any]:
    """Records from a request body of a supported media type (a key of ``REQUEST_TYPES``).

    Raises:
        DecodeError: the body is malformed or holds no records.
    """
    records = DECODERS[REQUEST_TYPES[media_type]](body, schema)
    if not records:
        raise DecodeError("no records in the request")
    return records


def encode(media_type: str, predictions: Sequence[float]) -> bytes:
    """Predictions as ``{"predictions": [...]}`` (JSON) or one number a line (CSV)."""
    if media_type == CSV:
        return "".join(f"{p!r}\n" for p in predictions).encode("ascii")
    return orjson.dumps({"predictions": list(predictions)})
