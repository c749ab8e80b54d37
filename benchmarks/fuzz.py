"""Owns the generated requests of the fuzzing suite: hypothesis strategies for ``/invocations`` and their checks.

``cases(schema)`` draws one request at a time from the model's own schema — valid bodies, bodies with one
fault at a known field and row, and bodies that are junk — as JSON (record, list, MLflow's and SageMaker's
wrappers, nesting thousands deep), CSV (header or not, quotes, embedded newlines, BOM, CRLF, extra and
missing cells), jsonlines, empty, gzip-encoded, under odd ``Content-Type`` and ``Accept`` headers. Each
case says what the answer must be: 200 with one prediction per record, a 4xx naming the field and row at
fault, or any 4xx in the API's JSON error shape; ``benchmarks.fuzz_checks`` holds the checks and the runner.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from serving.predictor import FLOAT32_MAX, NUMERIC, Feature, Schema

# Text a CSV cell can carry and the file still be UTF-8 a csv reader takes (no NUL, no lone surrogate), and no
# bare CR: the csv writer leaves it unquoted where "\r" is not in its line terminator, which makes it a line break.
CSV_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r")
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "Application/JSON")
CSV_TYPES = ("text/csv", "text/csv; charset=utf-8", "TEXT/CSV")
JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
ACCEPT_JSON = (None, "*/*", "application/json", "application/json; charset=utf-8", "application/*",
               "text/csv;q=0.5, application/json", "application/json;q=0.9;charset=utf-8")
ACCEPT_CSV = ("text/csv", "text/csv; charset=utf-8", "text/*", "application/json;q=0.1, text/csv")
BAD_ACCEPT = ("image/png", "application/xml", "text/html;q=1, image/*", "application/json;q=0, text/csv;q=0")
BAD_CONTENT_TYPES = ("", "text/plain", "application/xml", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x", "application/octet-stream", "json")


@dataclass(frozen=True)
class Case:
    """One request and what its answer must be: ``ok`` (``records`` predictions), ``field`` (a 400 naming
    ``field`` and ``row``), ``row`` (a 400 naming ``row``), ``status`` (exactly ``status``) or ``error``
    (any 4xx)."""

    kind: str
    body: bytes
    headers: dict[str, str]
    expect: str
    records: int = 0
    field: str | None = None
    row: int | None = None
    status: int | None = None
    answer_type: str = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Tally:
    """What a run tried and got: bodies by kind and expectation, answers by status."""

    tried: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_status: dict[int, int] = field(default_factory=dict)
    server_errors: int = 0

    def add(self, case: Case, answer: Answer) -> None:
        self.tried += 1
        self.by_kind[case.kind] = self.by_kind.get(case.kind, 0) + 1
        self.by_status[answer.status] = self.by_status.get(answer.status, 0) + 1
        self.server_errors += answer.status >= 500


# --- values and records -------------------------------------------------------------------------------------

def _good_value(feature: Feature) -> st.SearchStrategy:
    if feature.kind == NUMERIC:
        low, high = feature.minimum, feature.maximum
        value = st.integers(math.ceil(low), math.floor(high)) | st.floats(low, high, allow_nan=False)
    else:
        value = st.sampled_from(feature.levels)
    return value | st.none() if feature.nullable else value


_POOLS: dict[int, list[dict[str, Any]]] = {}


def _pool(schema: Schema, size: int = 256) -> list[dict[str, Any]]:
    """Valid records spread over every feature's range and levels (nulls where the feature may be missing)."""
    if id(schema) not in _POOLS:
        rng = random.Random(16)
        _POOLS[id(schema)] = [{f.name: None if f.nullable and rng.random() < 0.1 else
                               (rng.choice(f.levels) if f.kind != NUMERIC else
                                rng.choice([round, float])(rng.uniform(f.minimum, f.maximum)))
                               for f in schema.features} for _ in range(size)]
    return _POOLS[id(schema)]


def _bad_value(feature: Feature) -> st.SearchStrategy:
    """A value that is wrong for the feature whatever the rest of the record holds."""
    text = st.text(max_size=12)
    if feature.kind == NUMERIC:
        beyond = st.floats(FLOAT32_MAX * 1e3, 1e300).map(lambda v: v * max(feature.scale, 1.0))
        wrong = (text | st.booleans() | st.lists(st.integers(), max_size=2) | st.just({"a": 1})
                 | st.sampled_from([math.inf, -math.inf, 10**400]) | beyond | beyond.map(lambda v: -v))
        return wrong | st.sampled_from([None, math.nan]) if not feature.nullable else wrong
    unknown = text.filter(lambda s: s not in feature.levels) | st.sampled_from(["a\nnew\r\nline", '"quoted"'])
    wrong = (unknown | st.integers() | st.floats(allow_nan=False) | st.booleans()
             | st.lists(st.text(max_size=2), max_size=2))
    return wrong | st.none() if not feature.nullable else wrong


@st.composite
def records(draw: Any, schema: Schema, *, csv_safe: bool = False) -> tuple[list[dict[str, Any]], str | None, int | None]:
    """A batch of records, and the field and row of the one fault drawn into it (None, None when valid)."""
    # Mostly records from a pool drawn once (cheap to pick), now and then one drawn value by value (the edges of
    # each range, nulls): generating the valid part must not cost more than the request it is part of.
    drawn = st.fixed_dictionaries({f.name: _good_value(f) for f in schema.features})
    base = draw(st.lists(st.sampled_from(_pool(schema)) | drawn, min_size=1, max_size=2))
    size = draw(st.sampled_from([1, 1, 1, 2, 3, 8, 20, 100]))
    batch = [dict(base[i % len(base)]) for i in range(size)]
    if not draw(st.booleans()):
        return batch, None, None
    row = draw(st.integers(0, size - 1))
    feature = draw(st.sampled_from(schema.features))
    fault = draw(st.sampled_from(["value", "missing", "unknown"] if not csv_safe else ["value"]))
    if fault == "missing":
        del batch[row][feature.name]
        return batch, feature.name, row
    if fault == "unknown":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in schema.names))
        batch[row][name] = draw(st.integers() | st.text(max_size=5))
        return batch, name, row
    bad = _bad_value(feature)
    if csv_safe:  # a CSV cell is text: only text that cannot be the feature is a fault there
        bad = (st.text(CSV_TEXT, max_size=8) | st.sampled_from(["x\ny", 'say "hi"', "1e41", "a,b", "", "nan"])
               ).filter(lambda s: _csv_wrong(feature, s))
    batch[row][feature.name] = draw(bad)
    return batch, feature.name, row


def _csv_wrong(feature: Feature, cell: str) -> bool:
    text = cell.strip()
    if not text:
        return not feature.nullable
    if feature.kind != NUMERIC:
        return text not in feature.levels
    try:
        number = float(text)
    except ValueError:
        return True
    if math.isnan(number):  # read as a missing value
        return not feature.nullable
    return not math.isfinite(number) or abs((number - feature.center) / feature.scale) > FLOAT32_MAX


# --- bodies -------------------------------------------------------------------------------------------------

def _json_body(draw: Any, schema: Schema) -> tuple[bytes, int, str | None, int | None]:
    batch, name, row = draw(records(schema))
    shape = draw(st.sampled_from(["list", "object", "instances", "dataframe_records", "dataframe_split"]))
    if shape == "dataframe_split" and name is not None and any(set(r) != set(schema.names) for r in batch):
        shape = "list"  # a missing or unknown key has no place in a table of fixed columns
    if shape == "object":
        batch, row = (batch[:1], None) if row is None else ([batch[row]], 0)
        payload: Any = batch[0]
    elif shape == "dataframe_split":
        payload = {"dataframe_split": {"columns": schema.names,
                                       "data": [[r[n] for n in schema.names] for r in batch]}}
    else:
        payload = batch if shape == "list" else {shape: batch}
    return json.dumps(payload).encode(), len(batch), name, row


def _csv_body(draw: Any, schema: Schema) -> tuple[bytes, int, str | None, int | None]:
    batch, name, row = draw(records(schema, csv_safe=True))
    names = list(schema.names)
    header = draw(st.booleans())
    if header:
        names = draw(st.permutations(names))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
                        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    if header:
        writer.writerow(names)
    for record in batch:
        writer.writerow(["" if record[n] is None else record[n] for n in names])
    if name is None and draw(st.booleans()):  # one line with a cell too many or too few
        row = draw(st.integers(0, len(batch) - 1))
        lines = out.getvalue().splitlines(keepends=True)
        line = lines[row + header].rstrip("\r\n")
        lines[row + header] = (line + ",extra" if draw(st.booleans()) else line.rsplit(",", 1)[0]) + "\n"
        return "".join(lines).encode(), len(batch), "", row
    prefix = "\ufeff" if draw(st.booleans()) else ""
    return (prefix + out.getvalue()).encode(), len(batch), name, row


def _jsonlines_body(draw: Any, schema: Schema) -> tuple[bytes, int, str | None, int | None]:
    batch, name, row = draw(records(schema))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [json.dumps(r) for r in batch]
    if name is None and draw(st.booleans()):
        row = draw(st.integers(0, len(batch) - 1))
        lines[row] = draw(st.sampled_from(["{", "[" * 3000, '{"a": }', "nope"]))
        return newline.join(lines).encode(), len(batch), "", row
    return (newline.join(lines) + draw(st.sampled_from(["", newline, newline * 3]))).encode(), len(batch), name, row


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=4), max_leaves=12)


@st.composite
def cases(draw: Any, schema: Schema) -> Case:
    """One request to ``/invocations`` and what its answer must be."""
    kind = draw(st.sampled_from(["json", "json", "json", "csv", "csv", "jsonlines", "junk", "nested", "empty"]))
    if kind in ("json", "csv", "jsonlines"):
        body, count, name, row = {"json": _json_body, "csv": _csv_body, "jsonlines": _jsonlines_body}[kind](
            draw, schema)
        content_type = draw(st.sampled_from({"json": JSON_TYPES, "csv": CSV_TYPES,
                                             "jsonlines": JSONLINES_TYPES}[kind]))
        expect = "ok" if name is None else "field" if name else "row"
        case = Case(kind, body, {"Content-Type": content_type}, expect, records=count, field=name or None, row=row)
    elif kind == "junk":
        body = draw(st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
                    | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")))
        content_type = draw(st.sampled_from(JSON_TYPES + CSV_TYPES + JSONLINES_TYPES))
        case = Case(kind, body, {"Content-Type": content_type}, "error")
    elif kind == "nested":
        depth = draw(st.integers(1025, 20000))
        body = draw(st.sampled_from([b"[" * depth, b"[" * depth + b"]" * depth,
                                     b'{"' + schema.names[0].encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"]))
        case = Case(kind, body, {"Content-Type": draw(st.sampled_from(JSON_TYPES + JSONLINES_TYPES))}, "error")
    else:
        case = Case(kind, b"", {"Content-Type": draw(st.sampled_from(JSON_TYPES + CSV_TYPES + JSONLINES_TYPES))},
                    "error")
    return _with_headers(draw, case)


def _with_headers(draw: Any, case: Case) -> Case:
    """Odd but valid Accept headers, and now and then one that makes the answer a 406, 415 or compressed."""
    headers, expect, status, answer_type = dict(case.headers), case.expect, None, "application/json"
    accept = draw(st.sampled_from(ACCEPT_JSON + ACCEPT_CSV))
    if accept is not None:
        headers["Accept"] = accept
    if accept in ACCEPT_CSV:
        answer_type = "text/csv"
    twist = draw(st.sampled_from(["none"] * 6 + ["accept", "content-type", "gzip"]))
    body = case.body
    if twist == "accept":
        headers["Accept"], expect, status = draw(st.sampled_from(BAD_ACCEPT)), "status", 406
    elif twist == "content-type":
        headers["Content-Type"], expect, status = draw(st.sampled_from(BAD_CONTENT_TYPES)), "status", 415
    elif twist == "gzip":
        headers["Content-Encoding"], body, expect, status = "gzip", gzip.compress(body), "status", 415
    return Case(case.kind, body, headers, expect, case.records, case.field, case.row, status, answer_type)
