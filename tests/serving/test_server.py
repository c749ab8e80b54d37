"""The HTTP contract of the container, through a real gunicorn on a loopback port."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from serving.predictor import CATEGORICAL, NUMERIC, Predictor
from tests.serving.serving_helpers import METADATA, Server, sample_records

pytestmark = pytest.mark.slow

TRACE = {"X-Model-Name": METADATA["registered_name"], "X-Model-Version": METADATA["version"],
         "X-Data-Hash": METADATA["data_hash"]}


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return sample_records(rows=40, seed=3)[0]


def _post(server: Server, body: bytes | str | Iterator[bytes], content_type: str | None = "application/json",
          accept: str | None = None) -> requests.Response:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    return requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=30)


def _post_json(server: Server, payload: Any, **kwargs: Any) -> requests.Response:
    return _post(server, json.dumps(payload), **kwargs)


def _expected(predictor: Predictor, records: list[dict[str, Any]]) -> list[float]:
    return predictor.predict(records).tolist()


def _predictions(response: requests.Response) -> list[float]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["predictions"]


def _csv_rows(predictor: Predictor, records: list[dict[str, Any]], header: list[str] | None = None) -> str:
    names = header or predictor.schema.names
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(header)
    for record in records:
        writer.writerow(["" if record[n] is None else record[n] for n in names])
    return out.getvalue()


def _error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "field", "row"}
    return body


def _feature(predictor: Predictor, kind: str, nullable: bool) -> str:
    names = [f.name for f in predictor.schema.features if f.kind == kind and f.nullable == nullable]
    assert names, f"the sample model needs a {'nullable' if nullable else 'required'} {kind} feature"
    return names[0]


# --- health -----------------------------------------------------------------------------------------------

def test_ping_answers_200_fast_with_trace_headers(server: Server) -> None:
    response = requests.get(f"{server.url}/ping", timeout=2)

    assert response.status_code == 200
    assert response.elapsed.total_seconds() < 0.5, "SageMaker times pings out at 2 s"
    assert {k: response.headers[k] for k in TRACE} == TRACE


# --- request shapes ---------------------------------------------------------------------------------------

def test_json_list_of_records(server: Server, predictor: Predictor, records: list[dict[str, Any]]) -> None:
    assert _predictions(_post_json(server, records)) == pytest.approx(_expected(predictor, records), abs=1e-6)


def test_json_single_record_object(server: Server, predictor: Predictor, records: list[dict[str, Any]]) -> None:
    got = _predictions(_post_json(server, records[0]))

    assert got == pytest.approx(_expected(predictor, records[:1]), abs=1e-6)


@pytest.mark.parametrize("wrap", ["instances", "dataframe_records"])
def test_json_wrapped_records(server: Server, predictor: Predictor, records: list[dict[str, Any]],
                              wrap: str) -> None:
    got = _predictions(_post_json(server, {wrap: records[:5]}))

    assert got == pytest.approx(_expected(predictor, records[:5]), abs=1e-6)


def test_json_mlflow_dataframe_split(server: Server, predictor: Predictor, records: list[dict[str, Any]]) -> None:
    columns = list(reversed(predictor.schema.names))  # column order is the caller's choice
    payload = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records[:5]]}}

    got = _predictions(_post_json(server, payload))

    assert got == pytest.approx(_expected(predictor, records[:5]), abs=1e-6)


def test_csv_without_header_in_schema_order(server: Server, predictor: Predictor,
                                            records: list[dict[str, Any]]) -> None:
    got = _predictions(_post(server, _csv_rows(predictor, records), "text/csv"))

    assert got == pytest.approx(_expected(predictor, records), abs=1e-6)


@pytest.mark.parametrize("order", ["schema", "shuffled"])
def test_csv_with_header_row(server: Server, predictor: Predictor, records: list[dict[str, Any]],
                             order: str) -> None:
    names = predictor.schema.names
    header = names if order == "schema" else names[1::2] + names[0::2]

    got = _predictions(_post(server, _csv_rows(predictor, records[:7], header), "text/csv; charset=utf-8"))

    assert got == pytest.approx(_expected(predictor, records[:7]), abs=1e-6)


def test_csv_empty_cell_is_a_missing_value(server: Server, predictor: Predictor,
                                           records: list[dict[str, Any]]) -> None:
    record = {**records[0], _feature(predictor, CATEGORICAL, nullable=True): None}

    got = _predictions(_post(server, _csv_rows(predictor, [record]), "text/csv"))

    assert got == pytest.approx(_expected(predictor, [record]), abs=1e-6)


@pytest.mark.parametrize("content_type", ["application/jsonlines", "application/jsonl"])
def test_jsonlines(server: Server, predictor: Predictor, records: list[dict[str, Any]], content_type: str) -> None:
    body = "\n".join(json.dumps(r) for r in records[:6]) + "\n"

    got = _predictions(_post(server, body, content_type))

    assert got == pytest.approx(_expected(predictor, records[:6]), abs=1e-6)


# --- Accept -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*",
                                    "text/csv;q=0.5, application/json"])
def test_accept_json_variants_answer_json(server: Server, records: list[dict[str, Any]], accept: str | None) -> None:
    assert len(_predictions(_post_json(server, records[:3], accept=accept))) == 3


def test_accept_csv_answers_one_prediction_per_line(server: Server, predictor: Predictor,
                                                    records: list[dict[str, Any]]) -> None:
    response = _post_json(server, records[:4], accept="text/csv")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert [float(v) for v in lines] == pytest.approx(_expected(predictor, records[:4]), abs=1e-6)


def test_unsupported_accept_is_406(server: Server, records: list[dict[str, Any]]) -> None:
    body = _error(_post_json(server, records[:1], accept="application/xml"), 406)

    assert "application/xml" in body["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_unsupported_content_type_is_415(server: Server, records: list[dict[str, Any]],
                                         content_type: str | None) -> None:
    body = _error(_post(server, json.dumps(records[:1]), content_type), 415)

    assert "application/json" in body["error"], "the error should list the supported types"


# --- bad records: 400 naming the field and the row ---------------------------------------------------------

def _bad_json(server: Server, records: list[dict[str, Any]], row: int, change: dict[str, Any],
              drop: str | None = None) -> dict[str, Any]:
    batch = [dict(r) for r in records[:3]]
    batch[row].update(change)
    if drop:
        del batch[row][drop]
    return _error(_post_json(server, batch), 400)


def test_missing_feature(server: Server, records: list[dict[str, Any]]) -> None:
    body = _bad_json(server, records, 2, {}, drop="Attendance")

    assert (body["field"], body["row"]) == ("Attendance", 2)
    assert "missing" in body["error"]


def test_unknown_feature(server: Server, records: list[dict[str, Any]]) -> None:
    body = _bad_json(server, records, 1, {"Hours_Studeid": 3})

    assert (body["field"], body["row"]) == ("Hours_Studeid", 1)
    assert "unknown feature" in body["error"]


@pytest.mark.parametrize("value", ["12", True, [1]], ids=["string", "bool", "list"])
def test_wrong_type_for_a_numeric_feature(server: Server, predictor: Predictor, records: list[dict[str, Any]],
                                          value: Any) -> None:
    name = _feature(predictor, NUMERIC, nullable=False)

    body = _bad_json(server, records, 0, {name: value})

    assert (body["field"], body["row"]) == (name, 0)
    assert "expected a number" in body["error"]


def test_wrong_type_for_a_categorical_feature(server: Server, records: list[dict[str, Any]]) -> None:
    body = _bad_json(server, records, 1, {"Gender": 1})

    assert (body["field"], body["row"]) == ("Gender", 1)
    assert "expected a string" in body["error"]


def test_out_of_vocabulary_category_is_refused(server: Server, records: list[dict[str, Any]]) -> None:
    body = _bad_json(server, records, 2, {"Motivation_Level": "Extreme"})

    assert (body["field"], body["row"]) == ("Motivation_Level", 2)
    assert "unknown category 'Extreme'" in body["error"]
    assert "High" in body["error"], "the error should name the allowed levels"


def test_null_where_not_allowed(server: Server, predictor: Predictor, records: list[dict[str, Any]]) -> None:
    name = _feature(predictor, CATEGORICAL, nullable=False)

    body = _bad_json(server, records, 1, {name: None})

    assert (body["field"], body["row"]) == (name, 1)


def test_null_where_allowed_is_predicted(server: Server, predictor: Predictor,
                                         records: list[dict[str, Any]]) -> None:
    record = {**records[0], _feature(predictor, CATEGORICAL, nullable=True): None}

    assert _predictions(_post_json(server, [record])) == pytest.approx(_expected(predictor, [record]), abs=1e-6)


@pytest.mark.parametrize(("literal", "message"), [("NaN", "a value is required"),
                                                  ("Infinity", "finite")])
def test_non_finite_json_numbers(server: Server, predictor: Predictor, records: list[dict[str, Any]],
                                 literal: str, message: str) -> None:
    name = _feature(predictor, NUMERIC, nullable=False)
    body = json.dumps([records[0], {**records[1], name: "__X__"}]).replace('"__X__"', literal)

    error = _error(_post(server, body), 400)

    assert (error["field"], error["row"]) == (name, 1)
    assert message in error["error"]


@pytest.mark.parametrize("body", ['{"Hours_Studied": 3,', "[1, 2", "", "\xff"], ids=["truncated-object",
                                                                                     "truncated-list", "empty",
                                                                                     "not-utf8"])
def test_malformed_json(server: Server, body: str) -> None:
    error = _error(_post(server, body.encode("latin-1")), 400)

    assert "malformed JSON" in error["error"]


@pytest.mark.parametrize("payload", [[], {"instances": []}, 42, "text", {"instances": {"a": 1}}, [1, 2]],
                         ids=["empty-list", "empty-instances", "number", "string", "instances-object",
                              "list-of-numbers"])
def test_json_that_holds_no_records(server: Server, payload: Any) -> None:
    _error(_post_json(server, payload), 400)


def test_dataframe_split_with_a_short_row(server: Server, predictor: Predictor) -> None:
    payload = {"dataframe_split": {"columns": predictor.schema.names, "data": [[1, 2]]}}

    assert _error(_post_json(server, payload), 400)["row"] == 0


def test_csv_text_in_a_numeric_column(server: Server, predictor: Predictor, records: list[dict[str, Any]]) -> None:
    rows = _csv_rows(predictor, records[:3]).splitlines()
    cells = next(csv.reader([rows[1]]))
    position = predictor.schema.names.index("Attendance")
    cells[position] = "ninety"
    rows[1] = ",".join(f'"{c}"' for c in cells)

    error = _error(_post(server, "\n".join(rows), "text/csv"), 400)

    assert (error["field"], error["row"]) == ("Attendance", 1)
    assert "ninety" in error["error"]


@pytest.mark.parametrize(("body", "row"), [("1,2,3\n", 0), ('"unterminated\n', 0)], ids=["short-row", "quote"])
def test_malformed_csv(server: Server, body: str, row: int) -> None:
    assert _error(_post(server, body, "text/csv"), 400)["row"] == row


def test_csv_without_rows(server: Server, predictor: Predictor) -> None:
    _error(_post(server, ",".join(predictor.schema.names) + "\n", "text/csv"), 400)


def test_malformed_jsonlines_names_the_line(server: Server, records: list[dict[str, Any]]) -> None:
    body = json.dumps(records[0]) + "\n{not json\n"

    error = _error(_post(server, body, "application/jsonlines"), 400)

    assert error["row"] == 1
    assert "malformed JSON line" in error["error"]


# --- limits, methods, paths --------------------------------------------------------------------------------

def test_body_over_six_megabytes_is_413(server: Server) -> None:
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"

    _error(_post(server, body), 413)


def test_body_just_under_the_limit_is_read(server: Server) -> None:
    body = b"[" + b" " * (6 * 1024 * 1024 - 3) + b"]"

    assert "no records" in _error(_post(server, body), 400)["error"], "must be parsed, not refused for size"


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    # A generator body makes requests send Transfer-Encoding: chunked, with no Content-Length.
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    body = b"[" + b" " * (6 * 1024 * 1024) + b"]"

    _error(_post(server, _chunks(body)), 413)


def test_chunked_body_under_the_limit_is_predicted(server: Server, predictor: Predictor,
                                                   records: list[dict[str, Any]]) -> None:
    body = json.dumps(records).encode()

    got = _predictions(_post(server, _chunks(body, size=100)))

    assert got == pytest.approx(_expected(predictor, records), abs=1e-6)


def test_get_on_invocations_is_405(server: Server) -> None:
    response = requests.get(f"{server.url}/invocations", timeout=5)

    _error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_404(server: Server) -> None:
    _error(requests.get(f"{server.url}/predict", timeout=5), 404)


@pytest.mark.parametrize("request_kind", ["ok", "400", "404", "405", "406", "413", "415"])
def test_every_response_carries_trace_headers(server: Server, records: list[dict[str, Any]],
                                              request_kind: str) -> None:
    url = f"{server.url}/invocations"
    send = {
        "ok": lambda: _post_json(server, records[:1]),
        "400": lambda: _post_json(server, [{}]),
        "404": lambda: requests.get(f"{server.url}/nope", timeout=5),
        "405": lambda: requests.put(url, timeout=5),
        "406": lambda: _post_json(server, records[:1], accept="image/png"),
        "413": lambda: _post(server, b" " * (7 * 1024 * 1024)),
        "415": lambda: _post(server, b"x", "text/plain"),
    }[request_kind]

    response = send()

    assert str(response.status_code) == (request_kind if request_kind != "ok" else "200")
    assert {k: response.headers.get(k) for k in TRACE} == TRACE
    attributes = dict(pair.split("=", 1) for pair in response.headers["X-Amzn-SageMaker-Custom-Attributes"].split(","))
    assert attributes == {"model-name": TRACE["X-Model-Name"], "model-version": TRACE["X-Model-Version"],
                          "data-hash": TRACE["X-Data-Hash"]}, "the only header InvokeEndpoint passes on"


# --- load -------------------------------------------------------------------------------------------------

def test_200_concurrent_requests_all_succeed(server: Server, predictor: Predictor) -> None:
    batch = sample_records(rows=200, seed=11)[0]
    expected = _expected(predictor, batch)

    def call(record: dict[str, Any]) -> tuple[int, list[float] | str]:
        response = requests.post(f"{server.url}/invocations", json=record, timeout=60)
        return response.status_code, (response.json()["predictions"] if response.ok else response.text)

    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(call, batch))

    failures = [(i, r) for i, r in enumerate(results) if r[0] != 200]
    assert not failures, f"{len(failures)} of 200 failed, e.g. {failures[:3]}"
    got = [r[1][0] for r in results]
    assert all(math.isclose(g, e, abs_tol=1e-6) for g, e in zip(got, expected, strict=True))


def test_a_json_integer_too_big_for_a_float_is_400_not_500(server: Server, predictor: Predictor) -> None:
    name = _feature(predictor, NUMERIC, nullable=False)
    record = dict(predictor.schema.example)
    body = json.dumps([record]).replace(f'"{name}": {json.dumps(record[name])}', f'"{name}": {"9" * 400}', 1)

    error = _error(_post(server, body.encode()), 400)

    assert (error["field"], error["row"]) == (name, 0)
    assert "finite" in error["error"]


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines"])
def test_a_json_integer_of_more_digits_than_python_reads_is_400_not_500(server: Server, predictor: Predictor,
                                                                         content_type: str) -> None:
    # Python refuses to turn more than 4,300 digits into an int (sys.get_int_max_str_digits): a ValueError
    # that was no JSON error and reached the client as a 500. Even in a field the model does not know.
    record = dict(predictor.schema.example) | {"unknown": 0}
    body = json.dumps(record).replace('"unknown": 0', f'"unknown": {"9" * 4301}')
    error = _error(_post(server, body.encode(), content_type), 400)
    assert "a number of more than 4300 digits" in error["error"], error
