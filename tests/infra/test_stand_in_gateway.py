"""The stand-in's API Gateway checks bodies against the REST API's request model, as the deployed API does."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from infra.local.front_door import FrontDoorServer, start_front_door
from serving import contract
from tests.infra.runtime_stub import StubRuntime

RECORD = {"Hours_Studied": 23, "Gender": "Male"}


@pytest.fixture
def front(handler_env: StubRuntime) -> Iterator[FrontDoorServer]:
    server = start_front_door()
    real_invoke = server.invoke
    server.invoked = []  # type: ignore[attr-defined]

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        server.invoked.append(event)  # type: ignore[attr-defined]
        return real_invoke(event)

    server.invoke = invoke  # type: ignore[method-assign]
    yield server
    server.shutdown()


def _post(front: FrontDoorServer, body: bytes, content_type: str | None = "application/json") -> requests.Response:
    request = requests.Request("POST", front.url, data=body,
                               headers={} if content_type is None else {"Content-Type": content_type}).prepare()
    assert ("Content-Type" in request.headers) == (content_type is not None)  # requests adds none for bytes
    with requests.Session() as session:
        return session.send(request, timeout=10)


@pytest.mark.parametrize("body", [
    json.dumps({"instances": [RECORD]}),
    json.dumps({"dataframe_split": {"columns": ["Hours_Studied"], "data": [[23]]}}),
    json.dumps([RECORD] * (contract.MAX_RECORDS + 1)),
    json.dumps([]),
    json.dumps([RECORD, 3]),
    json.dumps("text"),
    json.dumps(42),
    '{"Hours_Studied": NaN}',
    '{"Hours_Studied": 23',
    " ",
    "[" * 5000,
], ids=["instances", "dataframe_split", "too-many", "empty-list", "not-a-record", "string", "number", "nan",
        "truncated", "blank", "deep"])
def test_a_body_the_api_model_refuses_never_reaches_the_handler(front: FrontDoorServer, handler_env: StubRuntime,
                                                                body: str) -> None:
    answer = _post(front, body.encode())

    assert answer.status_code == 400
    assert answer.json() == {"message": contract.bad_body_message()}, "the deployed API's BAD_REQUEST_BODY answer"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert front.invoked == [], "the Lambda never runs, so it neither answers nor captures the body"
    assert handler_env.requests == []


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8", None])
def test_a_body_declared_json_or_undeclared_is_checked(front: FrontDoorServer, handler_env: StubRuntime,
                                                       content_type: str | None) -> None:
    refused = _post(front, json.dumps({"instances": [RECORD]}).encode(), content_type)
    accepted = _post(front, json.dumps([RECORD, RECORD]).encode(), content_type)

    assert refused.status_code == 400 and "message" in refused.json()
    assert accepted.status_code == 200, accepted.text
    assert len(front.invoked) == 1
    assert len(handler_env.requests) == 1 and json.loads(handler_env.requests[0]["body"]) == [RECORD, RECORD]


def test_a_body_of_another_type_is_not_checked_and_the_handler_answers(front: FrontDoorServer,
                                                                       handler_env: StubRuntime) -> None:
    """No model for its content type, no validation: the Lambda refuses what it cannot take, in its own shape."""
    wrapped = _post(front, json.dumps({"instances": [RECORD]}).encode(), "text/plain")
    csv = _post(front, b"Hours_Studied\n23\n", "text/csv")

    assert wrapped.status_code == 400 and "error" in wrapped.json() and "message" not in wrapped.json()
    assert csv.status_code == 415 and "error" in csv.json()
    assert len(front.invoked) == 2
    assert handler_env.requests == []


def test_an_empty_body_passes_the_gateway_as_an_empty_record_and_the_lambda_refuses_it(
        front: FrontDoorServer, handler_env: StubRuntime) -> None:
    answer = _post(front, b"")

    assert answer.status_code == 400 and "error" in answer.json() and "message" not in answer.json()
    assert len(front.invoked) == 1
    assert handler_env.requests == []


def test_an_integer_too_long_for_python_to_convert_is_still_valid_json(front: FrontDoorServer,
                                                                      handler_env: StubRuntime) -> None:
    """The gateway checks shapes, not numbers: a record holding a 5,000-digit integer passes to the Lambda."""
    answer = _post(front, b'{"Hours_Studied": ' + b"9" * 5000 + b"}")

    assert "message" not in answer.json(), answer.text
    assert len(front.invoked) == 1


def test_a_chunked_body_reaches_the_handler_whole(front: FrontDoorServer, handler_env: StubRuntime) -> None:
    # A body of unknown length (curl -T -, a generator in requests) comes as Transfer-Encoding: chunked; the
    # front door read it as empty and answered for an empty record.
    text = json.dumps(RECORD).encode()
    pieces = iter([text[:10], text[10:25], text[25:]])
    answer = requests.post(front.url, data=pieces, headers={"Content-Type": "application/json"}, timeout=10)
    assert len(front.invoked) == 1, answer.text
    assert json.loads(front.invoked[0]["body"]) == RECORD


def test_a_chunked_body_past_the_limit_is_413(front: FrontDoorServer) -> None:
    from infra.local.front_door import MAX_BODY_BYTES

    pieces = iter([b" " * (1024 * 1024)] * (MAX_BODY_BYTES // (1024 * 1024) + 2))
    answer = requests.post(front.url, data=pieces, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413 and front.invoked == []


def test_head_gets_the_gateway_s_answer_without_a_body(front: FrontDoorServer) -> None:
    answer = requests.head(front.url, timeout=10)
    assert answer.status_code == 403 and answer.content == b""
    assert int(answer.headers["Content-Length"]) > 0  # the headers of the answer GET would get


@pytest.mark.parametrize("tail", [b"", b"0\r\n\r\n"], ids=["content-length", "chunked"])
def test_a_body_cut_short_by_the_client_never_reaches_the_handler(front: FrontDoorServer, tail: bytes) -> None:
    # Given a client that declares more body than it sends, then closes its side
    text = json.dumps(RECORD).encode()
    framing = (f"Content-Length: {len(text) + 50}\r\n\r\n".encode() + text if not tail
               else b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(text) + 50:x}\r\n".encode() + text)
    host, port = front.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"POST {urlsplit(front.url).path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     .encode() + framing)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    # Then the gateway answers 400 and the handler never sees the truncated record
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert front.invoked == []
