"""The container against the one wire contract (serving/contract.py) that the Lambda, API and stand-in share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving import contract
from serving.app import create_app
from serving.predictor import Predictor
from tests.serving.serving_helpers import ROOT, sample_records

METADATA = {"registered_name": "student-score", "version": "7", "data_hash": "abc123.dir"}


@pytest.fixture(scope="module")
def client(predictor: Predictor):
    return create_app(predictor, METADATA, max_body_bytes=1024 * 1024).test_client()


def _records(count: int) -> list[dict[str, Any]]:
    return sample_records(count)[0]


def test_every_answer_names_the_model_in_the_contract_s_headers(client) -> None:
    for response in (client.get("/ping"), client.post("/invocations", json=_records(1)),
                     client.post("/invocations", json={"nope": 1})):
        assert {h: response.headers[h] for h in contract.MODEL_HEADERS} == {
            "X-Model-Name": "student-score", "X-Model-Version": "7", "X-Data-Hash": "abc123.dir"}


def test_the_custom_attributes_decode_back_into_the_same_headers(client) -> None:
    # What the Lambda does with the one header InvokeEndpoint passes on.
    response = client.post("/invocations", json=_records(1))
    decoded = contract.headers_from_attributes(response.headers[contract.CUSTOM_ATTRIBUTES])
    assert decoded == {h: response.headers[h] for h in contract.MODEL_HEADERS}


@pytest.mark.parametrize("wrapper", [w for w in contract.BATCH_WRAPPERS if w != "dataframe_split"])
def test_the_container_takes_every_record_list_wrapper_of_the_contract(client, wrapper: str) -> None:
    records = _records(3)
    plain = client.post("/invocations", json=records).get_json()
    wrapped = client.post("/invocations", json={wrapper: records})
    assert wrapped.status_code == 200, wrapped.get_json()
    assert wrapped.get_json() == plain


def test_the_container_takes_the_split_wrapper_of_the_contract(client) -> None:
    assert "dataframe_split" in contract.BATCH_WRAPPERS
    records = _records(2)
    columns = list(records[0])
    split = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}
    answer = client.post("/invocations", json=split)
    assert answer.status_code == 200
    assert answer.get_json() == client.post("/invocations", json=records).get_json()


def test_a_wrapper_the_contract_does_not_name_is_refused_by_name(client) -> None:
    # The Lambda passes it on as one record (below); the container names it rather than a missing feature.
    answer = client.post("/invocations", json={"inputs": _records(2)})
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "inputs" and "tensor input" in answer.get_json()["error"]


def test_the_lambda_refuses_exactly_the_contract_s_wrappers() -> None:
    from infra.api.runtime import handler

    for wrapper in contract.BATCH_WRAPPERS:
        assert handler.check_body(json.dumps({wrapper: []}), max_records=100, max_bytes=10_000)[0] == 400
    assert handler.check_body(json.dumps({"inputs": 1}), max_records=100, max_bytes=10_000) == 1


def test_the_lambda_s_contract_file_is_the_container_s() -> None:
    runtime = ROOT / "infra" / "api" / "runtime" / "contract.py"
    assert runtime.read_bytes() == (ROOT / "serving" / "contract.py").read_bytes()


def test_the_handler_imports_the_way_lambda_imports_it(tmp_path: Path) -> None:
    # On Lambda the function's folder is the import root and handler.py a top-level module.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import handler, contract; "
            "assert handler.contract is contract and handler.ROUTE == contract.ROUTE")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT / "infra" / "api" / "runtime")], cwd=tmp_path,
                          capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin",
                                                                            "AWS_DEFAULT_REGION": "us-east-1"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("application/json", "application/json"),
    ("Application/JSON; charset=UTF-8", "application/json"),
    (" text/csv ;header=present", "text/csv"),
    ("", ""),
    (None, ""),
    (";charset=utf-8", ""),
])
def test_a_content_type_reads_as_its_media_type_alone(value: str | None, expected: str) -> None:
    # The Lambda's 415 check and the stand-in's gateway both read a Content-Type through this one function.
    assert contract.media_type(value) == expected
