"""Tests for telling where an answer came from: the gateway, the Lambda, the endpoint or the container."""

from __future__ import annotations

import json

import pytest

from capacity import classify as c
from infra.api.runtime import handler
from infra.local.events import LambdaContext, proxy_event
from tests.infra.conftest import handler_env, stub_runtime  # noqa: F401 - fixtures used below
from tests.infra.runtime_stub import StubRuntime, aws_error

RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}


@pytest.mark.parametrize(
    ("status", "body", "origin"),
    [
        (200, {"predictions": [61.0]}, c.OK),
        (429, {"message": "Too Many Requests"}, c.GATEWAY_THROTTLE),
        (403, {"message": "Forbidden"}, c.GATEWAY_4XX),
        (502, {"message": "Internal server error"}, c.LAMBDA_ERROR),
        (504, {"message": "Endpoint request timed out"}, c.TIMEOUT),
        (429, {"error": "too many requests, try again shortly", "request_id": "r"}, c.ENDPOINT_THROTTLE),
        (400, {"error": "row 0, field 'Gender': unknown", "field": "Gender", "row": 0, "request_id": "r"},
         c.CONTAINER_4XX),
        (413, {"error": "at most 100 records per request, got 101", "request_id": "r"}, c.LAMBDA_4XX),
        (502, {"error": c.CONTAINER_FAILED, "request_id": "r"}, c.CONTAINER_5XX),
        (503, {"error": "the model endpoint is not available, try again later", "request_id": "r"},
         c.ENDPOINT_ERROR),
        (500, {"error": "internal error", "request_id": "r"}, c.LAMBDA_ERROR),
        (504, {"error": "the model endpoint did not answer in time", "request_id": "r"}, c.TIMEOUT),
    ],
)
def test_each_answer_is_told_apart_by_status_and_body_shape(status: int, body: dict, origin: str) -> None:
    assert c.classify(status, json.dumps(body)) == origin


@pytest.mark.parametrize("text", ["<html>It works!</html>", "", "{}", '{"predictions": []}', '{"predictions": "61"}',
                                  '{"predictions": [true]}', '{"predictions": [null]}', "[61.0]"],
                         ids=["html", "empty", "no-predictions", "none-predicted", "text", "boolean", "null", "list"])
def test_a_2xx_that_is_not_a_predict_answer_is_not_counted_as_served(text: str) -> None:
    # A proxy page or a wrong URL answering 200 is not capacity: it is its own kind of error
    assert c.classify(200, text) == c.BAD_ANSWER
    assert c.BAD_ANSWER in c.ERRORS


def test_a_predict_answer_of_whole_numbers_is_served() -> None:
    assert c.classify(200, '{"predictions": [61, 70.5]}') == c.OK


def test_no_answer_is_a_timeout_or_a_connection_error() -> None:
    assert c.classify(None, timed_out=True) == c.TIMEOUT
    assert c.classify(None) == c.CONNECTION


def test_a_body_that_is_not_json_is_still_classified() -> None:
    assert c.classify(502, "<html>bad gateway</html>") == c.LAMBDA_ERROR
    assert c.classify(429, "[1, 2]") == c.GATEWAY_THROTTLE


@pytest.mark.parametrize(
    ("answer", "origin"),
    [
        (aws_error(424, "ModelError", "boom", OriginalStatusCode=500, OriginalMessage="boom"), c.CONTAINER_5XX),
        (aws_error(400, "ThrottlingException", ""), c.ENDPOINT_THROTTLE),
        (aws_error(503, "ServiceUnavailable", "try again"), c.ENDPOINT_ERROR),
    ],
    ids=["container-5xx", "throttled", "unavailable"],
)
def test_the_real_handlers_answers_land_in_their_origin(handler_env: StubRuntime, answer, origin: str) -> None:  # noqa: F811
    # Given the endpoint answers so (every attempt), when the real handler maps it
    handler_env.answers = [answer]
    event = proxy_event(method="POST", path=handler.ROUTE, query="", headers={"Content-Type": "application/json"},
                        body=json.dumps(RECORD).encode(), source_ip="127.0.0.1")
    result = handler.lambda_handler(event, LambdaContext())
    # Then the load test files it where it came from
    assert c.classify(result["statusCode"], result["body"]) == origin, result
