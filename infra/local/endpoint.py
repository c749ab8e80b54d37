"""Owns the stand-in SageMaker Runtime endpoint: ``POST /endpoints/{name}/invocations`` forwarded to a container.

It answers the way SageMaker Runtime's ``InvokeEndpoint`` does, so the handler's real boto3 client parses
it unchanged:
- the container's 2xx body comes back with its ``Content-Type``, ``x-Amzn-Invoked-Production-Variant``,
  and ``X-Amzn-SageMaker-Custom-Attributes`` if the container set it; SageMaker passes no other container
  header, and neither does this;
- a container answer outside 2xx becomes ``424 ModelError`` with ``OriginalStatusCode``, ``OriginalMessage``,
  ``LogStreamArn`` and SageMaker's ``Message`` ("Received client error (400) from primary with message ...");
- an unknown endpoint name is ``400 ValidationError`` "Endpoint NAME of account ACCOUNT not found.";
- a container that cannot be reached is ``503 ServiceUnavailable``; one that takes longer than the
  timeout (SageMaker's is 60 s) is a ``424 ModelError`` with status 0, as SageMaker reports timeouts.
With a ``ServerlessConfig`` it also behaves like a serverless endpoint under load (``serverless.py``): at most
``max_concurrency`` invocations at once, the rest throttled with SageMaker's ``ThrottlingException``; instances
start cold (a delay) unless provisioned; ``GET /stand-in/stats`` returns its counts (attempts, retries,
throttles, cold starts, peak concurrency), which the real service reports as CloudWatch metrics.
Requests are not signature-checked: the stand-in runs on loopback with dummy credentials.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.serverless import Capacity, ServerlessConfig, throttle_response
from serving import contract

ACCOUNT = "000000000000"
REGION = "us-east-1"
VARIANT = "AllTraffic"
CUSTOM_ATTRIBUTES = contract.CUSTOM_ATTRIBUTES
INVOKE_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
# Request headers InvokeEndpoint forwards to the container; SageMaker strips the rest.
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", CUSTOM_ATTRIBUTES)
STATS_PATH = "/stand-in/stats"


def model_error(*, endpoint_name: str, status: int, original: str) -> dict[str, Any]:
    """The body SageMaker Runtime sends with a ``424 ModelError`` for a container's non-2xx answer."""
    kind = "client" if 400 <= status < 500 else "server"
    log_group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    return {
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "LogStreamArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}",
        "Message": (
            f'Received {kind} error ({status}) from primary with message "{original}". See '
            f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logEventViewer:"
            f"group={log_group} in account {ACCOUNT} for more information."
        ),
        "OriginalMessage": original,
        "OriginalStatusCode": status,
    }


class EndpointServer(ThreadingHTTPServer):
    """A loopback HTTP server standing in for one SageMaker endpoint in front of one container."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        endpoint_name: str,
        container_url: str,
        timeout_s: float = 60.0,
        serverless: ServerlessConfig | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.endpoint_name = endpoint_name
        self.container_url = container_url.rstrip("/")
        self.timeout_s = timeout_s
        self.capacity = Capacity(serverless) if serverless else None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY a keep-alive client waits out a delayed ACK
    # (~40 ms) on every answer, which no real API Gateway or SageMaker endpoint adds.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: the front door logs each request once."""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"x-amzn-RequestId": str(uuid.uuid4()), **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, code: str, body: dict[str, Any]) -> None:
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
        self._send(status, json.dumps(body).encode(), headers)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = INVOKE_PATH.match(self.path.split("?", 1)[0])
        if not match:
            self._send_error(404, "UnknownOperationException", {"message": f"no operation at {self.path}"})
            return
        name = urllib.request.unquote(match["name"])
        if name != self.server.endpoint_name:
            message = f"Endpoint {name} of account {ACCOUNT} not found."
            self._send_error(400, "ValidationError", {"message": message})
            return
        capacity = self.server.capacity
        if capacity is None:
            self._forward(body)
            return
        with capacity.invocation(self.headers) as slot:
            if slot is None:
                status, headers, payload = throttle_response()
                self._send(status, json.dumps(payload).encode(), {**headers, "Content-Type": "application/json"})
                return
            if slot.cold:
                time.sleep(capacity.config.cold_start_s)
            self._forward(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != STATS_PATH:
            self._send_error(404, "UnknownOperationException", {"message": f"no operation at {self.path}"})
            return
        stats = self.server.capacity.stats() if self.server.capacity else {}
        self._send(200, json.dumps(stats).encode(), {"Content-Type": "application/json"})

    def _forward(self, body: bytes) -> None:
        headers = {h: self.headers[h] for h in FORWARDED_REQUEST_HEADERS if self.headers.get(h)}
        url = f"{self.server.container_url}/invocations"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.server.timeout_s) as answer:  # noqa: S310
                status, payload, answer_headers = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            status, payload, answer_headers = error.code, error.read(), error.headers
        except TimeoutError:
            message = "Your invocation timed out while waiting for a response from container primary."
            self._send_error(
                424,
                "ModelError",
                {
                    **model_error(endpoint_name=self.server.endpoint_name, status=0, original=""),
                    "Message": message,
                },
            )
            return
        except (urllib.error.URLError, ConnectionError) as error:
            self._send_error(503, "ServiceUnavailable", {"message": f"container unreachable: {error}"})
            return
        if 200 <= status < 300:
            out = {
                "Content-Type": answer_headers.get("Content-Type") or "application/json",
                "x-Amzn-Invoked-Production-Variant": VARIANT,
            }
            if answer_headers.get(CUSTOM_ATTRIBUTES):
                out[CUSTOM_ATTRIBUTES] = answer_headers[CUSTOM_ATTRIBUTES]
            self._send(200, payload, out)
            return
        original = payload.decode("utf-8", errors="replace")
        self._send_error(
            424,
            "ModelError",
            model_error(endpoint_name=self.server.endpoint_name, status=status, original=original),
        )


def start_endpoint(
    *,
    endpoint_name: str,
    container_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 60.0,
    serverless: ServerlessConfig | None = None,
) -> EndpointServer:
    """Start the stand-in endpoint on a daemon thread; ``port=0`` picks a free port. Stop with ``shutdown()``.

    Without ``serverless`` it forwards every invocation at once (no concurrency limit, no cold start).
    """
    server = EndpointServer(
        (host, port),
        endpoint_name=endpoint_name,
        container_url=container_url,
        timeout_s=timeout_s,
        serverless=serverless,
    )
    threading.Thread(target=server.serve_forever, name="endpoint-stand-in", daemon=True).start()
    return server
