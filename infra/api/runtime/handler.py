"""Owns the predict Lambda: checks a request's shape and size, calls the SageMaker endpoint, maps its answers.

``POST /predict-student-score`` takes one record (a JSON object) or a non-empty list of records and
forwards the body unchanged to ``InvokeEndpoint``. The container does the full schema check; this
function only refuses what can never be a valid request, so that it is not paid for twice.

Environment variables (set by ``infra/api/infrastructure.py``):
- ``ENDPOINT_NAME``: the SageMaker endpoint to invoke (required).
- ``MAX_RECORDS``: most records one request may carry (default 100).
- ``MAX_BODY_BYTES``: largest body accepted (default 1 MiB; a serverless endpoint accepts at most 4 MB).
- ``CORS_ALLOW_ORIGIN``, ``CORS_EXTRA_ORIGINS``: the origin allowed by CORS (default ``*``) and, comma-separated,
  any others; a request from one of them gets its own ``Origin`` back, from any other no CORS header.
- ``SAGEMAKER_RUNTIME_ENDPOINT_URL``: optional ``endpoint_url`` of the sagemaker-runtime client; only the
  local stand-in (``infra/local``) sets it.
- ``SAGEMAKER_CONNECT_TIMEOUT_S``, ``SAGEMAKER_READ_TIMEOUT_S``, ``SAGEMAKER_MAX_ATTEMPTS``: the client's
  bounds (defaults 1 s, 10 s, 2 attempts: at most ~23 s in all, inside the 28 s Lambda timeout and API
  Gateway's 29 s integration timeout).
- ``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``: Powertools' own.
- Capture for monitoring: see ``capture.py`` beside this file (``CAPTURE_STREAM``, ``CAPTURE_DIR``,
  ``CAPTURE_SHARE``, ``CAPTURE_DROP_FIELDS``, ``CAPTURE_WAIT_MS``). Every 200 carries ``X-Request-Id``, the id
  its capture records and late labels (``python -m monitoring.feedback``) are joined on.

Model identity headers: ``InvokeEndpoint`` returns none of the container's own headers except
``X-Amzn-SageMaker-Custom-Attributes`` (boto3's ``CustomAttributes``). The container therefore reports
its model as custom attributes, and this function turns them back into the model headers
(``contract.headers_from_attributes``; the contract is ``serving/contract.py``).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

# The wire contract (serving/contract.py; runtime/contract.py links to it and ships in the asset). On Lambda
# this folder is the import root; the tests and the local stand-in import the handler as a package module.
if __package__:
    from . import capture, contract
    from .checks import check_body, check_content_type, request_text
else:
    import capture
    import contract
    from checks import check_body, check_content_type, request_text

ROUTE = contract.ROUTE
DEFAULT_MAX_RECORDS = contract.MAX_RECORDS
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_CONNECT_TIMEOUT_S = 1.0
# A serverless endpoint's cold start (image pull and model load) happens inside the first InvokeEndpoint, so
# the read timeout must outlast it; two attempts of 1 + 10 s plus backoff still end inside API Gateway's 29 s.
DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 2
# Botocore's standard retry mode waits at most random() * min(20, 2 ** (attempt - 1)) seconds between attempts.
MAX_BACKOFF_S = 20.0
RETRY_AFTER_S = "1"
# Error codes botocore's standard mode treats as throttling and that SageMaker Runtime sends.
THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException"}
UNAVAILABLE_CODES = {"ModelNotReadyException", "ServiceUnavailable"}
CAPTURE_FAILED = "CaptureFailed"  # capture records lost (the serving stack's capture alarm watches it)

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "StudentScore"))


def cors_config(environ: Mapping[str, str]) -> CORSConfig:
    """The CORS answer of every response, from ``CORS_ALLOW_ORIGIN`` and ``CORS_EXTRA_ORIGINS``."""
    extra = [origin for origin in environ.get("CORS_EXTRA_ORIGINS", "").split(",") if origin]
    return CORSConfig(allow_origin=environ.get("CORS_ALLOW_ORIGIN", "*"), extra_origins=extra or None,
                      expose_headers=[*contract.MODEL_HEADERS, contract.REQUEST_ID_HEADER], max_age=300)


app = APIGatewayRestResolver(cors=cors_config(os.environ))


def worst_case_seconds(*, connect_timeout: float, read_timeout: float, max_attempts: int) -> float:
    """The longest one ``InvokeEndpoint`` call can take with these client bounds, backoff included."""
    backoff = sum(min(MAX_BACKOFF_S, 2.0**attempt) for attempt in range(max_attempts - 1))
    return max_attempts * (connect_timeout + read_timeout) + backoff


def client_config() -> Config:
    """Botocore settings: standard retries with backoff on throttling and 5xx, bounded timeouts."""
    return Config(
        connect_timeout=float(os.environ.get("SAGEMAKER_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S)),
        read_timeout=float(os.environ.get("SAGEMAKER_READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S)),
        retries={
            "mode": "standard",
            "total_max_attempts": int(os.environ.get("SAGEMAKER_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)),
        },
    )


@functools.cache
def sagemaker_runtime() -> Any:
    """The sagemaker-runtime client, created on first use and reused while the Lambda instance lives."""
    return boto3.client(
        "sagemaker-runtime",
        config=client_config(),
        endpoint_url=os.environ.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None,
    )


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    body = {"error": message, "request_id": _request_id()}
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=headers or {},
    )


def _request_id() -> str:
    try:
        return app.current_event.request_context.request_id
    except (AttributeError, KeyError):  # no API Gateway context: fall back to the Lambda's id
        return getattr(getattr(app, "lambda_context", None), "aws_request_id", "")


def _model_error(error: ClientError) -> Response:
    """A ``ModelError`` is the container's own answer: its 4xx go back as they were, anything else is a 502."""
    status = int(error.response.get("OriginalStatusCode") or 0)
    original = error.response.get("OriginalMessage") or ""
    if not 400 <= status < 500:
        logger.error("model failed", extra={"original_status": status, "original_message": original[:2000]})
        return _error(502, "the model failed to answer")
    try:
        body = json.loads(original)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": original or f"the model refused the request ({status})"}
    body.setdefault("request_id", _request_id())
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _aws_error(error: ClientError) -> Response:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
    if code == "ModelError":
        return _model_error(error)
    if code in THROTTLING_CODES:
        metrics.add_metric(name="UpstreamThrottled", unit=MetricUnit.Count, value=1)
        logger.warning("endpoint throttled", extra={"code": code})
        return _error(429, "too many requests, try again shortly",
                      headers={contract.RETRY_AFTER_HEADER: RETRY_AFTER_S})
    # A missing endpoint comes back as a ValidationError "Endpoint ... not found".
    if code in UNAVAILABLE_CODES or (code == "ValidationError" and "not found" in message.lower()):
        logger.warning("endpoint unavailable", extra={"code": code, "aws_message": message})
        return _error(
            503,
            "the model endpoint is not available, try again later",
            headers={contract.RETRY_AFTER_HEADER: RETRY_AFTER_S},
        )
    logger.error("endpoint call failed", extra={"code": code, "aws_message": message})
    return _error(502, "the model endpoint failed to answer")


def _capture(build: capture.Build) -> None:
    failed = capture.submit(_request_id(), build)
    if failed:
        metrics.add_metric(name=CAPTURE_FAILED, unit=MetricUnit.Count, value=failed)


def _capture_refusal(response: Response, records: int | None) -> None:
    def build(drop: list[str]) -> list[dict[str, Any]]:
        try:
            error = str(json.loads(response.body).get("error", ""))
        except (ValueError, AttributeError, TypeError):
            error = ""
        return [contract.refusal_record(request_id=_request_id(), status=response.status_code, error=error,
                                        records=records, now=time.time())]
    _capture(build)


@app.post(ROUTE)
def predict() -> Response:
    """Forward one record or a list of records to the endpoint and answer with its predictions."""
    event = app.current_event.raw_event
    raw = check_content_type(event) or request_text(event)
    checked = raw if isinstance(raw, tuple) else check_body(
        raw,
        max_records=int(os.environ.get("MAX_RECORDS", DEFAULT_MAX_RECORDS)),
        max_bytes=int(os.environ.get("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
    )
    if isinstance(checked, tuple):
        metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
        refused = _error(*checked)
        _capture_refusal(refused, records=None)
        return refused
    metrics.add_metric(name="PredictedRecords", unit=MetricUnit.Count, value=checked)
    started = time.perf_counter()
    try:
        answer = sagemaker_runtime().invoke_endpoint(
            EndpointName=os.environ["ENDPOINT_NAME"],
            Body=raw.encode("utf-8"),
            ContentType="application/json",
            Accept="application/json",
        )
        body = answer["Body"].read().decode("utf-8")  # read here: a body cut off is the endpoint's failure too
    except ClientError as error:
        failed = _aws_error(error)
        if error.response.get("Error", {}).get("Code") == "ModelError" and 400 <= failed.status_code < 500:
            _capture_refusal(failed, records=checked)  # the container refused the records (bad values)
        return failed
    except (ReadTimeoutError, ConnectTimeoutError):
        logger.warning("endpoint timed out")
        return _error(504, "the model endpoint did not answer in time")
    except EndpointConnectionError:
        logger.error("endpoint unreachable")
        return _error(502, "the model endpoint could not be reached")
    except (HTTPClientError, BotocoreConnectionError) as error:  # closed without an answer, cut off, TLS
        logger.error("endpoint connection failed", extra={"error": type(error).__name__})
        return _error(502, "the model endpoint failed to answer")
    latency_ms = (time.perf_counter() - started) * 1000
    headers = contract.headers_from_attributes(answer.get("CustomAttributes"))
    logger.info("predicted", extra={"records": checked, **headers})

    def build(drop: list[str]) -> list[dict[str, Any]]:
        payload = json.loads(app.current_event.decoded_body)
        return contract.prediction_records(
            request_id=_request_id(), records=payload if isinstance(payload, list) else [payload],
            predictions=json.loads(body)["predictions"], headers=headers, latency_ms=latency_ms,
            now=time.time(), drop_fields=drop)

    _capture(build)
    return Response(
        status_code=200,
        content_type=answer.get("ContentType") or content_types.APPLICATION_JSON,
        body=body,
        headers={**headers, contract.REQUEST_ID_HEADER: _request_id()},
    )


@app.not_found
def not_found(error: Exception) -> Response:
    """Only ``POST /predict-student-score`` exists (a registered 404, or the catch-all below would take it)."""
    metrics.add_metric(name="NotFound", unit=MetricUnit.Count, value=1)
    return _error(404, "not found")


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    """A bug here must still answer in JSON, with CORS, a request id and no stack trace."""
    logger.exception("unexpected error")
    return _error(500, "internal error")


def _proxy_event(event: Any) -> bool:
    """Whether an event has the shape of API Gateway's REST proxy input: the fields this function and Powertools
    read, of the types API Gateway sends (``isBase64Encoded`` is a JSON boolean; a string "false" is truthy).

    https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
    ("Input format of a Lambda function for proxy integration").
    """
    if not (isinstance(event, dict) and isinstance(event.get("httpMethod"), str)
            and isinstance(event.get("requestContext"), dict) and isinstance(event.get("path"), str)):
        return False
    maps = ("headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters",
            "pathParameters", "stageVariables")
    return (all(isinstance(event.get(key), dict | None) for key in maps)
            and isinstance(event.get("isBase64Encoded", False), bool | None))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``handler.lambda_handler``).

    Only API Gateway's REST proxy events are requests; anything else (a console test event, a keep-warm
    ping) is answered 400 instead of raising, which would count as a function error and page someone.
    """
    if not _proxy_event(event):
        logger.warning("not an API Gateway proxy event", extra={"event_type": type(event).__name__})
        return {"statusCode": 400, "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "body": json.dumps({"error": "not an API Gateway REST proxy event", "request_id": ""})}
    return app.resolve(event, context)
