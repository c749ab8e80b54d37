"""API Gateway events the predict Lambda must refuse with a 400 (it answered 500), and the stand-in's answer."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import pytest
import requests

from infra.api.runtime import handler
from infra.local.events import LambdaContext, proxy_event
from infra.local.front_door import start_front_door
from tests.infra.runtime_stub import StubRuntime


def _event(**changes: Any) -> dict[str, Any]:
    event = proxy_event(method="POST", path=handler.ROUTE, query="", body=b"{}", source_ip="127.0.0.1",
                        headers={"Content-Type": "application/json"})
    event.update(changes)
    return {k: v for k, v in event.items() if v is not _ABSENT}


_ABSENT = object()


@pytest.mark.parametrize(("changes", "reason"), [
    ({"body": "!!not base64!!", "isBase64Encoded": True}, "not UTF-8"),
    ({"body": base64.b64encode(b"\xff\xfe{}").decode(), "isBase64Encoded": True}, "not UTF-8"),
    ({"body": base64.b64encode(b'{"a": 1}').decode()[:-2], "isBase64Encoded": True}, "not UTF-8"),
    ({"body": _ABSENT}, "must be a JSON object"),
    ({"body": _ABSENT, "isBase64Encoded": True}, "must be a JSON object"),
    ({"body": None, "isBase64Encoded": True}, "must be a JSON object"),
    ({"body": "[" * 5000}, "nested too deeply"),
    ({"body": '{"a": [' + "[" * 5000 + "]}"}, "nested too deeply"),
    ({"body": '{"Gender": "\ud800"}'}, "not UTF-8"),
    ({"body": 42}, "must be text"),
], ids=["invalid-base64", "base64-of-non-utf8", "truncated-base64", "no-body", "no-body-base64", "null-body-base64",
        "deep", "deep-in-a-field", "lone-surrogate", "not-text"])
def test_a_malformed_event_body_is_a_400_not_a_500(handler_env: StubRuntime, changes: dict, reason: str) -> None:
    result = handler.lambda_handler(_event(**changes), LambdaContext())

    assert result["statusCode"] == 400, result
    assert reason in json.loads(result["body"])["error"]
    assert handler_env.requests == [], "nothing that cannot be a request reaches the endpoint"


def test_a_base64_body_of_a_record_is_forwarded(handler_env: StubRuntime) -> None:
    record = {"Hours_Studied": 23}
    event = _event(body=base64.b64encode(json.dumps(record).encode()).decode(), isBase64Encoded=True)

    assert handler.lambda_handler(event, LambdaContext())["statusCode"] == 200
    assert json.loads(handler_env.requests[0]["body"]) == record


def test_the_stand_in_answers_a_body_that_is_not_utf8(handler_env: StubRuntime) -> None:
    front = start_front_door()
    try:
        answer = requests.post(front.url, data=b'{"Gender": "\xff\xfe"}', timeout=10,
                               headers={"Content-Type": "application/json"})
        with socket.create_connection(front.server_address[:2], timeout=10) as sock:
            sock.sendall(b"POST /score/predict-student-score HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n{}")
            bad_length = sock.recv(4096)
    finally:
        front.shutdown()

    assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]
    assert bad_length.startswith(b"HTTP/1.1 400 ")
