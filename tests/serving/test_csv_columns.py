"""The CSV fast path: clean big batches encode exactly as the general path; anything else takes the general path."""

from __future__ import annotations

import csv
import gc
import io
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import codecs
from serving.csv_columns import CsvColumns
from serving.predictor import CATEGORICAL, NUMERIC, Feature, Predictor, Schema
from tests.serving.serving_helpers import BAD_ROW, fast_path_taken, general_answer, post_answer
from tests.serving.serving_helpers import BIG_ROWS as ROWS


@pytest.fixture(scope="module")
def fast(predictor: Predictor) -> CsvColumns:
    return CsvColumns(predictor.schema)


def _csv(records: list[dict[str, Any]], names: list[str], *, header: bool = False, end: str = "\n") -> bytes:
    """Records as CSV lines in ``names`` order, a missing value as an empty cell (the csv module writes None so)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=end)
    if header:
        writer.writerow(names)
    writer.writerows([[r.get(n) for n in names] for r in records])
    return out.getvalue().encode()


def _post(client: FlaskClient, body: bytes) -> tuple[int, dict[str, Any]]:
    return post_answer(client, body, codecs.CSV)


def _general(predictor: Predictor, body: bytes) -> tuple[int, dict[str, Any]]:
    """What the general path (``decode_csv``, then the record checks) answers for a CSV body."""
    return general_answer(predictor, body, codecs.CSV)


def _general_matrix(predictor: Predictor, body: bytes) -> np.ndarray:
    return predictor.schema._encode_rows(codecs.decode(codecs.CSV, body, predictor.schema))


def test_the_server_takes_the_fast_path_for_a_clean_csv_batch(client: FlaskClient, predictor: Predictor,
                                                              big_batch: list[dict[str, Any]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    taken = fast_path_taken(monkeypatch, CsvColumns, "matrix")
    body = _csv(big_batch[:300], predictor.schema.names)
    one_by_one = np.concatenate([predictor.predict([r]) for r in big_batch[:300]])
    assert _post(client, body) == (200, {"predictions": one_by_one.tolist()})
    assert taken == [True], "a clean CSV batch must be read by the fast path"


@pytest.mark.parametrize("shape", ["schema-order", "header-in-another-order", "crlf-and-a-bom", "quoted-cells"])
def test_a_10k_csv_batch_through_the_fast_path_is_the_general_paths_matrix_bit_for_bit(
        predictor: Predictor, fast: CsvColumns, client: FlaskClient, big_batch: list[dict[str, Any]],
        shape: str) -> None:
    # Given 10,000 records as CSV (empty cells for missing values), in one of the shapes decode_csv reads
    names = predictor.schema.names
    if shape == "header-in-another-order":
        body = _csv(big_batch, names[::-1], header=True)
    elif shape == "crlf-and-a-bom":
        body = b"\xef\xbb\xbf" + _csv(big_batch, names, end="\r\n")
    elif shape == "quoted-cells":
        body = _csv(big_batch, names).replace(b",High School,", b',"High School",')
        assert b'"High School"' in body
    else:
        body = _csv(big_batch, names)
    # When the fast path reads it, then it took it and wrote the general path's matrix bit for bit
    matrix = fast.matrix(body)
    assert matrix is not None, "clean rows must take the fast path"
    assert np.array_equal(matrix, _general_matrix(predictor, body), equal_nan=True)
    assert np.array_equal(matrix, predictor.schema._encode_rows(big_batch), equal_nan=True)
    # And the server answers what the general path answers
    assert _post(client, body) == _general(predictor, body)


def test_the_cyclic_collector_never_runs_while_a_csv_batch_is_read_and_is_on_after(
        predictor: Predictor, fast: CsvColumns, big_batch: list[dict[str, Any]]) -> None:
    passes: list[int] = []
    record = lambda phase, info: passes.append(info["generation"]) if phase == "start" else None  # noqa: E731
    body = _csv(big_batch, predictor.schema.names)
    gc.collect()
    gc.callbacks.append(record)
    try:
        assert fast.matrix(body) is not None
        assert fast.matrix(body.replace(b"\n", b",x\n", 1)) is None
    finally:
        gc.callbacks.remove(record)
    assert len(passes) <= 2, f"{len(passes)} collector passes for 2 reads of nothing it could free"
    assert gc.isenabled()


def _good(predictor: Predictor, batch: list[dict[str, Any]]) -> dict[str, Any]:
    nullable = {f.name for f in predictor.schema.features if f.nullable}
    return next(r for r in batch if all(r[n] is not None for n in nullable))


# Cells the fast path must not vouch for: each is read by the general path, which takes or refuses it.
CELLS = [
    ("Hours_Studied", ""), ("Hours_Studied", "seven"), ("Hours_Studied", "7_3"), ("Hours_Studied", "\uff17"),
    ("Hours_Studied", "1e400"), ("Hours_Studied", "inf"), ("Hours_Studied", "nan"), ("Hours_Studied", "0x10"),
    ("Hours_Studied", " 7 "), ("Hours_Studied", "7\u00a0"), ("Hours_Studied", "1" + "0" * 30),
    ("Gender", "Robot"), ("Gender", ""), ("Gender", " Male"), ("Gender", "male"),
    ("Teacher_Quality", ""), ("Teacher_Quality", "High "), ("Teacher_Quality", "Nope"),
]

TAKEN = {("Teacher_Quality", ""), ("Hours_Studied", " 7 ")}


@pytest.mark.parametrize(("field", "cell"), CELLS, ids=[f"{f}={c!r}"[:30] for f, c in CELLS])
def test_a_cell_the_fast_path_cannot_vouch_for_is_read_as_the_general_path_reads_it(
        predictor: Predictor, fast: CsvColumns, client: FlaskClient, big_batch: list[dict[str, Any]],
        field: str, cell: str) -> None:
    # Given 10,000 clean rows with one cell near the end written as given
    names = predictor.schema.names
    good = _good(predictor, big_batch)
    rows = [[str(good[n]) for n in names] for _ in range(ROWS)]
    rows[BAD_ROW][names.index(field)] = cell
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    body = out.getvalue().encode()
    # When it is read, then the fast path matrix (if it took it) is the general path's, and the answer is its
    matrix = fast.matrix(body)
    general = _general(predictor, body)
    if matrix is None:
        assert _post(client, body) == general
    else:
        assert general[0] == 200, general
        assert np.array_equal(matrix, _general_matrix(predictor, body), equal_nan=True)
    # It takes a missing categorical cell (a missing value) and a number with ASCII spaces around it (float
    # ignores them as decode_csv strips them); the others it leaves
    assert (matrix is not None) == ((field, cell) in TAKEN), f"{field}={cell!r}"


def _shapes(names: list[str], lines: list[str]) -> dict[str, str]:
    header = ",".join(names)
    return {
        "a-blank-line": "\n".join([*lines[:50], "", *lines[50:]]) + "\n",
        "a-short-row": "\n".join([*lines[:-1], lines[-1].rsplit(",", 1)[0]]) + "\n",
        "a-long-row": "\n".join([*lines[:-1], lines[-1] + ",1"]) + "\n",
        "a-header-twice": "\n".join([header, *lines[:50], header, *lines[50:]]) + "\n",
        "a-header-with-spaces": "\n".join([header.replace(",", ", "), *lines]) + "\n",
        "an-unclosed-quote": "\n".join([*lines[:-1], '"' + lines[-1]]),
        "a-stray-quote": "\n".join([*lines[:-1], lines[-1].replace(",", ',x"y', 1)]) + "\n",
        "too-few-rows": "\n".join(lines[:7]) + "\n",
        "a-header-only": header + "\n",
        "not-utf-8": "\n".join(lines) + "\n\udcff",
    }


@pytest.mark.parametrize("shape", list(_shapes(["a"], ["1"])))
def test_shapes_the_fast_path_cannot_vouch_for_are_left_to_the_general_path(
        predictor: Predictor, fast: CsvColumns, client: FlaskClient, big_batch: list[dict[str, Any]],
        shape: str) -> None:
    names = predictor.schema.names
    lines = _csv(big_batch[:100], names).decode().splitlines()
    body = _shapes(names, lines)[shape].encode("utf-8", "surrogateescape")
    assert fast.matrix(body) is None
    assert _post(client, body) == _general(predictor, body)


def test_a_one_feature_schema_is_left_to_the_general_path_whose_blank_lines_are_skipped() -> None:
    # A quoted empty line is one empty cell: decode_csv skips it as a blank line, so it must not become a record
    schema = Schema("t", (Feature("c", CATEGORICAL, nullable=True, levels=("a", "b")),))
    body = ("\n".join(["a", "b"] * 10 + ['""']) + "\n").encode()
    assert CsvColumns(schema).matrix(body) is None
    assert len(codecs.decode(codecs.CSV, body, schema)) == 20


def test_a_missing_number_where_missing_is_allowed_is_left_to_the_general_path_which_takes_it() -> None:
    schema = Schema("t", (Feature("n", NUMERIC, nullable=True, center=1.0, scale=2.0), Feature("m", NUMERIC)))
    body = "".join(f"{'' if i % 4 == 0 else i - 0.25},{i}\n" for i in range(40)).encode()
    assert CsvColumns(schema).matrix(body) is None
    matrix = schema.encode(codecs.decode(codecs.CSV, body, schema))
    assert np.isnan(matrix[::4, 0]).all()


NUMBER_CELLS = ["7", "7.0", " 7", "7 ", "\t7", "+7", "-0", "1e2", ".5", "5.", "", " ", "nan", "NaN", "-nan", "inf",
                "-Infinity", "7_0", "\u0667", "0x1", "1e400", "1e39", "7\x0c", "\x1c7", "7\u00a0", "1" + "0" * 22,
                '"7"', '" 7"', "seven", "7,"]


def _category_cells(levels: tuple[str, ...]) -> list[str]:
    return [*levels, "", " ", f" {levels[0]}", f"{levels[0]} ", levels[0].lower(), levels[0].upper(), f'"{levels[0]}"',
            '""', "\x00", "Nope"]


@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_the_cells_the_fast_path_gives_the_general_paths_matrix_or_none(predictor: Predictor,
                                                                                   data: st.DataObject) -> None:
    # Given a small CSV body, each cell a clean value or one of the spellings the two paths might read apart
    schema = predictor.schema
    good = {f.name: (["3", "12.5", "-4", "0"] if f.kind == NUMERIC else list(f.levels)) for f in schema.features}
    odd = {f.name: NUMBER_CELLS if f.kind == NUMERIC else _category_cells(f.levels) for f in schema.features}
    names = data.draw(st.permutations(schema.names)) if data.draw(st.booleans()) else None
    order = names or schema.names
    rows = [[data.draw(st.sampled_from(good[n])) for n in order] for _ in range(data.draw(st.integers(8, 12)))]
    for _ in range(data.draw(st.integers(1, 2))):  # one or two odd cells: more, and one would hide the other
        row, column = data.draw(st.integers(0, len(rows) - 1)), data.draw(st.integers(0, len(order) - 1))
        rows[row][column] = data.draw(st.sampled_from(odd[order[column]]))
    end = data.draw(st.sampled_from(["\n", "\r\n"]))
    body = end.join(",".join(row) for row in ([names] if names else []) + rows) + end
    raw = body.encode("utf-8")
    # When the fast path reads it: then either it leaves it, or the general path takes it too, bit for bit
    matrix = CsvColumns(schema).matrix(raw)
    if matrix is not None:
        records = codecs.decode(codecs.CSV, raw, schema)  # a SchemaError here: the fast path took a bad body
        assert np.array_equal(matrix, schema.encode(records), equal_nan=True), body
