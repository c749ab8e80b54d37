"""Tests for the predict Lambda: body checks, error mapping, retries, CORS, model headers.

The handler runs for real with its real boto3 client, which reaches a canned InvokeEndpoint server on
loopback through ``SAGEMAKER_RUNTIME_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.api.runtime import handler
from infra.local.events import LambdaContext, proxy_event
from tests.infra.runtime_stub import Canned, StubRuntime, aws_error

RECORD = {"Hours_Studied": 23, "Attendance": 84, "Gender": "Male"}
ORIGIN = "https://example.org"


def call(body: Any, *, method: str = "POST", path: str = handler.ROUTE,
         content_type: str = "application/json", origin: str = ORIGIN) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event = proxy_event(
        method=method,
        path=path,
        query="",
        body=raw,
        source_ip="127.0.0.1",
        headers={"Content-Type": content_type, "Origin": origin},
    )
    result = handler.lambda_handler(event, LambdaContext())
    result["json"] = json.loads(result["body"]) if result.get("body") else None
    result["all_headers"] = {
        **result.get("headers", {}),
        **{k: ",".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()},
    }
    return result


def assert_cors(result: dict[str, Any]) -> None:
    assert result["all_headers"].get("Access-Control-Allow-Origin") == "*", f"no CORS header: {result}"


def test_a_record_is_forwarded_unchanged_and_predictions_come_back(handler_env: StubRuntime) -> None:
    # Given the endpoint answers with one prediction
    # When one record is posted
    result = call(RECORD)
    # Then the answer is the endpoint's body and the request was InvokeEndpoint with JSON both ways
    assert result["statusCode"] == 200
    assert result["json"] == {"predictions": [67.5]}
    sent = handler_env.requests[0]
    assert sent["path"] == "/endpoints/student-score-test/invocations"
    assert json.loads(sent["body"]) == RECORD
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["Accept"] == "application/json"
    assert_cors(result)


def test_a_list_of_records_is_accepted(handler_env: StubRuntime) -> None:
    result = call([RECORD, RECORD])
    assert result["statusCode"] == 200
    assert json.loads(handler_env.requests[0]["body"]) == [RECORD, RECORD]


def test_custom_attributes_become_model_headers(handler_env: StubRuntime) -> None:
    # Given the container set SageMaker's custom attributes (the only header InvokeEndpoint passes)
    handler_env.answers = [
        Canned(
            headers={
                "X-Amzn-SageMaker-Custom-Attributes": "model-name=student-score,model-version=7;data-hash=abc123"
            }
        )
    ]
    result = call(RECORD)
    headers = result["all_headers"]
    assert headers["X-Model-Name"] == "student-score"
    assert headers["X-Model-Version"] == "7"
    assert headers["X-Data-Hash"] == "abc123"
    assert "X-Model-Version" in headers["Access-Control-Expose-Headers"], "browsers could not read it"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "JSON object"),
        ([], 400, "non-empty list"),
        ("a string", 400, "JSON object"),
        ([RECORD, 3], 400, "row 1"),
        ([RECORD] * (handler.DEFAULT_MAX_RECORDS + 1), 413, "at most 100 records"),
        ({"instances": [RECORD] * 500}, 400, "not a 'instances' wrapper"),
        ({"dataframe_records": [RECORD] * 500}, 400, "not a 'dataframe_records' wrapper"),
        (b'{"Hours_Studied": 1' + b"0" * 4300 + b"}", 400, "a number of more than 4300 digits"),
    ],
    ids=["malformed", "empty", "empty-list", "string", "list-with-non-object", "too-many-records",
         "instances-wrapper", "dataframe-wrapper", "integer-past-python-s-digit-limit"],
)
def test_bodies_that_can_never_be_valid_are_refused_before_the_endpoint(
    handler_env: StubRuntime, body: Any, status: int, fragment: str
) -> None:
    result = call(body)
    assert result["statusCode"] == status
    assert fragment in result["json"]["error"]
    assert result["json"]["request_id"]
    assert handler_env.requests == [], "a refused body must not reach the endpoint"
    assert_cors(result)


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/csv", b"23,84,Male\n"), ("Text/CSV; charset=utf-8", b"23,84,Male\n"),
    ("application/jsonlines", b'{"Hours_Studied": 23}\n{"Hours_Studied": 9}\n'),
    ("text/csv", json.dumps(RECORD).encode()),
])
def test_a_body_declared_as_a_format_only_the_container_reads_is_refused_with_415(
    handler_env: StubRuntime, content_type: str, body: bytes
) -> None:
    # Given a body declared as CSV or JSON Lines (formats the container reads, the API does not)
    result = call(body, content_type=content_type)
    # Then it is refused by type, not misread as JSON, and never reaches the endpoint
    assert result["statusCode"] == 415
    assert content_type.split(";")[0].lower() in result["json"]["error"] and "application/json" in result["json"]["error"]
    assert handler_env.requests == []
    assert_cors(result)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/plain",
                                          "application/x-www-form-urlencoded", ""])
def test_a_json_body_under_any_other_type_is_read_as_json(handler_env: StubRuntime, content_type: str) -> None:
    # curl -d sends a form type, and the body is the API's contract
    result = call(RECORD, content_type=content_type)
    assert result["statusCode"] == 200, result["json"]
    assert len(handler_env.requests) == 1


def test_an_oversize_body_is_refused_with_413(
    handler_env: StubRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "1000")
    result = call([{"Hours_Studied": 1, "padding": "x" * 2000}])
    assert result["statusCode"] == 413
    assert handler_env.requests == []


def test_the_record_bound_is_configurable(handler_env: StubRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RECORDS", "2")
    assert call([RECORD] * 3)["statusCode"] == 413
    assert call([RECORD] * 2)["statusCode"] == 200


def test_throttling_is_retried_then_answered_429_with_retry_after(handler_env: StubRuntime) -> None:
    # Given the endpoint throttles every call
    handler_env.answers = [aws_error(400, "ThrottlingException", "Rate exceeded")]
    result = call(RECORD)
    # Then botocore tried the configured number of times and the caller is told when to come back
    assert len(handler_env.requests) == handler.DEFAULT_MAX_ATTEMPTS
    assert result["statusCode"] == 429
    assert result["all_headers"]["Retry-After"] == handler.RETRY_AFTER_S
    assert_cors(result)


def test_a_throttle_that_clears_is_invisible_to_the_caller(handler_env: StubRuntime) -> None:
    handler_env.answers = [aws_error(400, "ThrottlingException", "Rate exceeded"), Canned()]
    result = call(RECORD)
    assert result["statusCode"] == 200
    assert len(handler_env.requests) == 2


@pytest.mark.parametrize(
    "answer",
    [
        aws_error(429, "ModelNotReadyException", "still provisioning"),
        aws_error(503, "ServiceUnavailable", "try again"),
        aws_error(400, "ValidationError", "Endpoint student-score-test of account 123456789012 not found."),
    ],
    ids=["model-not-ready", "service-unavailable", "endpoint-not-found"],
)
def test_an_endpoint_that_is_not_available_answers_503(handler_env: StubRuntime, answer: Canned) -> None:
    handler_env.answers = [answer]
    result = call(RECORD)
    assert result["statusCode"] == 503
    assert result["all_headers"]["Retry-After"]
    assert_cors(result)


def test_a_container_4xx_comes_back_with_the_containers_message(handler_env: StubRuntime) -> None:
    # Given the container refused a record: SageMaker wraps it in a 424 ModelError
    original = {"error": "row 0, field 'Gender': unknown category 'X'", "field": "Gender", "row": 0}
    handler_env.answers = [
        aws_error(
            424,
            "ModelError",
            "Received client error (400) from primary ...",
            OriginalStatusCode=400,
            OriginalMessage=json.dumps(original),
        )
    ]
    result = call(RECORD)
    assert result["statusCode"] == 400
    assert result["json"]["error"] == original["error"]
    assert (result["json"]["field"], result["json"]["row"]) == ("Gender", 0)
    assert_cors(result)


def test_a_container_413_stays_413(handler_env: StubRuntime) -> None:
    handler_env.answers = [
        aws_error(424, "ModelError", "...", OriginalStatusCode=413, OriginalMessage="payload too large")
    ]
    result = call(RECORD)
    assert result["statusCode"] == 413
    assert result["json"]["error"] == "payload too large"


def test_a_container_5xx_is_a_502_without_its_details(handler_env: StubRuntime) -> None:
    handler_env.answers = [
        aws_error(
            424,
            "ModelError",
            "...",
            OriginalStatusCode=500,
            OriginalMessage="Traceback (most recent call last): secret",
        )
    ]
    result = call(RECORD)
    assert result["statusCode"] == 502
    assert "Traceback" not in result["body"]


@pytest.mark.parametrize(
    "answer",
    [
        aws_error(500, "InternalFailure", "boom"),
        aws_error(530, "InternalDependencyException", "dep"),
        aws_error(400, "ValidationError", "1 validation error detected"),
        aws_error(403, "AccessDeniedException", "not authorized to perform sagemaker:InvokeEndpoint"),
    ],
    ids=["internal-failure", "internal-dependency", "validation", "access-denied"],
)
def test_any_other_aws_error_is_a_502_with_a_request_id_and_no_trace(
    handler_env: StubRuntime, answer: Canned
) -> None:
    handler_env.answers = [answer]
    result = call(RECORD)
    assert result["statusCode"] == 502
    assert set(result["json"]) == {"error", "request_id"}
    assert result["json"]["request_id"]
    assert "Traceback" not in result["body"]
    assert answer.body["message"] not in result["body"], "AWS's own message is for the logs only"
    assert_cors(result)


def test_a_read_timeout_is_a_504(handler_env: StubRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an endpoint slower than the client's read timeout, with no retry to keep the test short
    monkeypatch.setenv("SAGEMAKER_READ_TIMEOUT_S", "0.3")
    monkeypatch.setenv("SAGEMAKER_MAX_ATTEMPTS", "1")
    handler_env.answers = [Canned(delay_s=5)]
    result = call(RECORD)
    assert result["statusCode"] == 504
    assert_cors(result)


def test_an_unknown_route_is_404_with_cors(handler_env: StubRuntime) -> None:
    result = call(RECORD, path="/elsewhere")
    assert result["statusCode"] == 404
    assert_cors(result)


def test_several_allowed_origins_each_get_their_own_origin_back_and_no_other_origin_does(
        handler_env: StubRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the API built with two origins (the construct's environment for cors_origins=[A, B]); with several,
    # the Lambda answered "*" to every origin while the gateway's preflight allowed only the two
    both = "https://app.example.org", "https://admin.example.org"
    monkeypatch.setattr(handler.app, "_cors", handler.cors_config({"CORS_ALLOW_ORIGIN": both[0],
                                                                   "CORS_EXTRA_ORIGINS": both[1]}))
    # When each allowed origin and another one post a record
    for origin in both:
        result = call(RECORD, origin=origin)
        # Then an allowed origin gets itself back
        assert result["statusCode"] == 200 and result["all_headers"].get("Access-Control-Allow-Origin") == origin
    other = call(RECORD, origin="https://elsewhere.example.com")
    # And another origin gets its answer with no CORS header, so its browser does not read it
    assert other["statusCode"] == 200 and "Access-Control-Allow-Origin" not in other["all_headers"], other


def test_the_default_client_bounds_end_well_inside_the_gateway_timeout() -> None:
    worst = handler.worst_case_seconds(
        connect_timeout=handler.DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout=handler.DEFAULT_READ_TIMEOUT_S,
        max_attempts=handler.DEFAULT_MAX_ATTEMPTS,
    )
    assert worst <= 25, f"worst case {worst} s leaves no margin under the 28 s Lambda and 29 s API timeouts"


def test_the_client_uses_standard_retries_with_bounded_timeouts() -> None:
    config = handler.client_config()
    assert config.retries == {"mode": "standard", "total_max_attempts": handler.DEFAULT_MAX_ATTEMPTS}
    assert config.read_timeout == handler.DEFAULT_READ_TIMEOUT_S
    assert config.connect_timeout == handler.DEFAULT_CONNECT_TIMEOUT_S


@pytest.mark.parametrize("event", [{}, [], {"httpMethod": "POST", "path": handler.ROUTE, "requestContext": None},
                                   {"path": handler.ROUTE, "requestContext": {}}, {"source": "aws.events"},
                                   {"httpMethod": "POST", "path": handler.ROUTE, "requestContext": {}, "headers": "x"},
                                   {"httpMethod": "POST", "path": handler.ROUTE, "requestContext": {},
                                    "multiValueHeaders": ["a"]},
                                   {"httpMethod": "POST", "path": handler.ROUTE, "requestContext": {}, "body": "{}",
                                    "isBase64Encoded": "false"}],
                         ids=["empty", "a-list", "null-context", "no-method", "scheduled-ping", "headers-not-a-map",
                              "multi-value-headers-not-a-map", "base64-flag-a-string"])
def test_an_event_that_is_not_from_api_gateway_is_a_400_not_a_function_error(
        handler_env: StubRuntime, event: Any) -> None:
    result = handler.lambda_handler(event, LambdaContext())
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["error"] == "not an API Gateway REST proxy event"
    assert handler_env.requests == []
