"""Owns what the stand-in hands the predict handler: API Gateway's REST proxy event and Lambda's context object,
shaped as the real ones are ("Input format of a Lambda function for proxy integration", API Gateway developer
guide, https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html).
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from serving import contract

STAGE = contract.STAGE
RESOURCE = contract.ROUTE


class LambdaContext:
    """The few attributes of Lambda's context object that Powertools reads."""

    def __init__(self, *, timeout_s: float = 28.0) -> None:
        self.function_name = "predict-stand-in"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:predict-stand-in"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def proxy_event(
    *, method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``path`` (already stripped of the stage) as the real one looks.

    A body that is not UTF-8 goes base64-encoded with ``isBase64Encoded``, the shape API Gateway gives a
    payload it takes for binary (the deployed API declares no binary media types, and AWS does not say
    what it does with invalid UTF-8 in a text payload); the handler refuses both with a 400.
    """
    try:
        text, encoded = (body.decode("utf-8") if body else None), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    query_pairs = [part.partition("=") for part in query.split("&") if part] if query else []
    now = time.time()
    return {
        "resource": RESOURCE,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v for k, _, v in query_pairs} or None,
        "multiValueQueryStringParameters": {k: [v] for k, _, v in query_pairs} or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": RESOURCE,
            "httpMethod": method,
            "extendedRequestId": str(uuid.uuid4()),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{STAGE}{path}",
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "local",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
