"""Hostile and unusual requests against the app in-process: each is a 4xx in the JSON error shape, never a 500."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from serving import codecs, wsgi
from serving.predictor import FLOAT32_MAX, NUMERIC, Predictor
from tests.serving.serving_helpers import MAX_BODY, build_model_dir, sample_records


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    return sample_records(rows=1, seed=5)[0][0]


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.data
    assert response.mimetype == codecs.JSON
    body = response.get_json()
    assert set(body) == {"error", "field", "row"}
    return body


def _numeric(predictor: Predictor) -> str:
    return next(f.name for f in predictor.schema.features if f.kind == NUMERIC and not f.nullable)


DEEP = 5000


@pytest.mark.parametrize(("body", "content_type", "row"), [
    (b"[" * DEEP, codecs.JSON, None),
    (b'{"Hours_Studied": ' + b"[" * DEEP + b"]" * DEEP + b"}", codecs.JSON, None),
    (b"{}\n" + b"[" * DEEP, codecs.JSONLINES, 1),
    # Deeper than the interpreter's recursion limit but within orjson's, and with a NaN orjson refuses:
    (b"[" * 1020 + b"NaN" + b"]" * 1020, codecs.JSON, None),
], ids=["top-level", "inside-a-field", "a-jsonlines-line", "nan-below-orjson-limit"])
def test_deeply_nested_json_is_a_400(client: FlaskClient, body: bytes, content_type: str, row: int | None) -> None:
    error = _error(client.post("/invocations", data=body, content_type=content_type), 400)

    assert "nested deeper than" in error["error"] or "expected" in error["error"], error
    assert error["row"] == row


@pytest.mark.parametrize("accept", ["application/json; charset=utf-8", "application/json;charset=UTF-8;q=0.9",
                                    "text/csv; charset=utf-8;q=0.1, application/json; charset=utf-8",
                                    'application/json; profile="a,b"', 'text/csv;x="a,b";q=0.1, application/json'])
def test_accept_with_media_type_parameters_answers_json(client: FlaskClient, record: dict, accept: str) -> None:
    response = client.post("/invocations", json=record, headers={"Accept": accept})

    assert response.status_code == 200, response.data
    assert response.mimetype == codecs.JSON


@pytest.mark.parametrize("accept", ['text/csv;format="x;q=0"', 'text/csv;a="x,y;q=0", application/json;q=0.5',
                                    "text/csv;Q=1, application/json;q=0.5"])
def test_a_q_value_inside_a_quoted_parameter_is_no_q_value(client: FlaskClient, record: dict, accept: str) -> None:
    response = client.post("/invocations", json=record, headers={"Accept": accept})

    assert response.status_code == 200 and response.mimetype == codecs.CSV, response.data


def test_accept_csv_with_a_charset_answers_csv(client: FlaskClient, record: dict) -> None:
    response = client.post("/invocations", json=record, headers={"Accept": "text/csv; charset=utf-8"})

    assert response.status_code == 200 and response.mimetype == codecs.CSV


def test_accept_that_excludes_everything_is_still_406(client: FlaskClient, record: dict) -> None:
    _error(client.post("/invocations", json=record, headers={"Accept": "application/json;q=0, text/csv;q=0"}), 406)


def test_a_gzipped_body_is_refused_as_an_unsupported_encoding(client: FlaskClient, record: dict) -> None:
    response = client.post("/invocations", data=gzip.compress(json.dumps(record).encode()),
                           content_type=codecs.JSON, headers={"Content-Encoding": "gzip"})

    assert "Content-Encoding 'gzip'" in _error(response, 415)["error"]


@pytest.mark.parametrize("value", [1e39, -3.5e38 * 1e3, FLOAT32_MAX * 1e4])
def test_a_number_beyond_float32_is_a_400_naming_the_field(client: FlaskClient, predictor: Predictor,
                                                           record: dict, value: float) -> None:
    field = _numeric(predictor)
    scale = next(f.scale for f in predictor.schema.features if f.name == field)
    value = value * max(scale, 1.0) * 10  # beyond float32 after the feature's scaling too

    for body in ([record | {field: value}], [record] * 9 + [record | {field: value}]):  # both encoders
        error = _error(client.post("/invocations", json=body), 400)
        assert error["field"] == field and error["row"] == len(body) - 1
        assert "float32" in error["error"]


@pytest.fixture(scope="module")
def linear_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[FlaskClient, Predictor]:
    folder = build_model_dir(tmp_path_factory.mktemp("linear") / "model", booster="gblinear")
    return wsgi.create(str(folder), MAX_BODY).test_client(), Predictor.from_dir(folder)


def test_the_linear_booster_never_answers_an_overflowed_prediction(linear_client: tuple, record: dict) -> None:
    client, predictor = linear_client
    field = _numeric(predictor)
    # Finite in float32 after scaling, yet weight x value overflows: the answer was null or absurd.
    feature = next(f for f in predictor.schema.features if f.name == field)
    value = feature.center + feature.scale * FLOAT32_MAX * 0.99

    error = _error(client.post("/invocations", json=[record, record | {field: value}]), 400)

    assert error["row"] == 1 and "not a finite number" in error["error"]
    assert client.post("/invocations", json=[record]).status_code == 200
