"""Owns where an answer of the predict API came from: gateway, Lambda, endpoint or container, by its shape.

How each hop answers (what this reads):
- API Gateway's own answers (gateway responses, "Gateway response types for API Gateway",
  https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html) have
  the default body ``{"message": ...}`` and no ``request_id``: THROTTLED / QUOTA_EXCEEDED 429, INTEGRATION_TIMEOUT
  504, a Lambda that crashed or timed out 502 "Internal server error", a missing key 403, a bad body 400.
- The predict Lambda (``infra/api/runtime/handler.py``) answers every error as ``{"error", "request_id"}``:
  429 + Retry-After when the endpoint throttled, 504 when the endpoint did not answer in time, 502 "the model
  failed to answer" for a container 5xx, other 502/503 for the endpoint itself, 500 for its own bug.
- The container's 4xx (``serving/app.py``) come back through the Lambda with their ``field`` and ``row``.
- No answer at all within the client's timeout is a client-side timeout.
- A 2xx counts as served only when its body is the predict contract's answer, ``{"predictions": [numbers]}``
  (``serving/codecs.py``, passed through by the Lambda): a proxy's HTML page or a wrong URL that answers 200
  would otherwise be counted as capacity.
"""

from __future__ import annotations

import json
from typing import Any

OK = "ok"
BAD_ANSWER = "bad_answer"  # a 2xx whose body is not a predict answer
GATEWAY_THROTTLE = "gateway_throttle"
GATEWAY_4XX = "gateway_4xx"
LAMBDA_ERROR = "lambda_error"
LAMBDA_4XX = "lambda_4xx"
ENDPOINT_THROTTLE = "endpoint_throttle"
ENDPOINT_ERROR = "endpoint_error"
CONTAINER_4XX = "container_4xx"
CONTAINER_5XX = "container_5xx"
TIMEOUT = "timeout"
CONNECTION = "connection_error"
ORIGINS = (OK, BAD_ANSWER, GATEWAY_THROTTLE, GATEWAY_4XX, LAMBDA_ERROR, LAMBDA_4XX, ENDPOINT_THROTTLE, ENDPOINT_ERROR,
           CONTAINER_4XX, CONTAINER_5XX, TIMEOUT, CONNECTION)
ERRORS = tuple(origin for origin in ORIGINS if origin != OK)
# The Lambda's answer for a container 5xx (handler.py, _model_error); tests/capacity checks it against the handler.
CONTAINER_FAILED = "the model failed to answer"


def _json(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _is_answer(text: str) -> bool:
    predictions = (_json(text) or {}).get("predictions")
    return isinstance(predictions, list) and bool(predictions) and all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in predictions)


def classify(status: int | None, text: str = "", *, timed_out: bool = False) -> str:
    """The origin of one answer; ``status`` None means none came (a timeout, or a failed connection)."""
    if status is None:
        return TIMEOUT if timed_out else CONNECTION
    if 200 <= status < 300:
        return OK if _is_answer(text) else BAD_ANSWER
    body = _json(text) or {}
    from_lambda = "request_id" in body
    if status == 504:
        return TIMEOUT
    if not from_lambda:
        if status == 429:
            return GATEWAY_THROTTLE
        return GATEWAY_4XX if status < 500 else LAMBDA_ERROR
    if status == 429:
        return ENDPOINT_THROTTLE
    if status < 500:
        return CONTAINER_4XX if "field" in body else LAMBDA_4XX
    if status == 500:
        return LAMBDA_ERROR
    return CONTAINER_5XX if body.get("error") == CONTAINER_FAILED else ENDPOINT_ERROR
