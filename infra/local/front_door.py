"""Owns the stand-in API Gateway: turns HTTP requests into REST proxy events for the real predict handler.

What it copies from the deployed REST API (``infra/api/infrastructure.py``): the stage prefix ``/score``,
the one resource ``POST /predict-student-score``, the CORS preflight answered by the gateway itself,
gateway errors (unknown route 403 "Missing Authentication Token", body over 10 MB 413, a handler that
raises 502 "Internal server error") carrying the CORS header, and one request at a time into the handler,
as one Lambda instance takes them. With a ``LambdaPool`` (``lambdas.py``) events run on several Lambda
instances at once, and an answer later than the integration timeout (29 s, "Quotas for configuring and
running a REST API in API Gateway") is API Gateway's 504 "Endpoint request timed out" (INTEGRATION_TIMEOUT in
"Gateway response types for API Gateway"). The API's request validation: a body declared JSON (or not declared:
API Gateway then takes it for ``application/json``, "Method request behavior for payloads without mapping
templates") is checked against the wire contract's ``request_schema``, the REST API's own model, and refused
as the deployed API refuses it (400, its ``BAD_REQUEST_BODY`` response); a body of another type is not
checked ("Request validation for REST APIs in API Gateway": no model for its content type, no validation) and
the handler answers it. Media-type parameters (``charset``) are ignored when matching; AWS does not say. What
it leaves out: throttling and API keys.
"""

from __future__ import annotations

import base64
import importlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import jsonschema

from infra.local.events import LambdaContext, proxy_event
from infra.local.lambdas import LambdaPool
from serving import contract

STAGE = contract.STAGE
RESOURCE = contract.ROUTE
HANDLER_MODULE = "infra.api.runtime.handler"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT_S = 29.0
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "OPTIONS,POST",
    "Access-Control-Allow-Headers": "Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token",
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(digits: str) -> int:
    return 0  # only the document's shape is checked: an integer stays an integer, whatever its size


class RequestModel:
    """The REST API's request validation for the one method: which bodies it refuses before the handler runs."""

    def __init__(self, *, max_records: int = contract.MAX_RECORDS) -> None:
        self._validator = jsonschema.Draft4Validator(contract.request_schema(max_records=max_records))
        self.message = contract.bad_body_message(max_records=max_records)

    def refuses(self, content_type: str | None, body: bytes) -> bool:
        """True when the API would answer 400 before invoking the handler.

        A body that is not UTF-8 goes to the handler, which refuses it (see ``proxy_event``): AWS does not say
        what its validator makes of one.
        """
        media_type = contract.media_type(content_type or contract.JSON)
        if media_type != contract.JSON:
            return False
        if not body:  # validated as {}, a record: LocalStack's maintainers matched AWS so (localstack PR 7916)
            return not self._validator.is_valid({})
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        try:
            # No NaN or Infinity (not JSON); integers are not converted (the model checks no number, and Python
            # refuses to convert one of over 4,300 digits that the gateway would pass on).
            document = json.loads(text, parse_constant=_no_constant, parse_int=_integer)
        except (ValueError, RecursionError):
            return True
        return not self._validator.is_valid(document)


class FrontDoorServer(ThreadingHTTPServer):
    """A loopback HTTP server standing in for the REST API's ``score`` stage in front of the handler."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], *, handler: ModuleType | None = None, lambdas: LambdaPool | None = None
    ) -> None:
        super().__init__(address, _Handler)
        # Imported here, not at module import, so the caller sets the handler's environment first.
        self.handler = handler or importlib.import_module(HANDLER_MODULE)
        self.lock = threading.Lock()
        self.lambdas = lambdas
        self.model = RequestModel()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{STAGE}{RESOURCE}"

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Call the handler as Lambda would: on the pool's instances, or one event at a time in this process."""
        if self.lambdas is not None:
            return self.lambdas.invoke(event, timeout_s=INTEGRATION_TIMEOUT_S)
        with self.lock:
            return self.handler.lambda_handler(event, LambdaContext())


class _Handler(BaseHTTPRequestHandler):
    server: FrontDoorServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY a keep-alive client waits out a delayed ACK
    # (~40 ms) on every answer, which no real API Gateway or SageMaker endpoint adds.
    disable_nagle_algorithm = True
    # Seconds a read may wait on the client (socketserver sets it on the socket): a request that stops arriving
    # must not hold a thread for ever. API Gateway's own idle limit is not documented; this is the integration's.
    timeout = INTEGRATION_TIMEOUT_S

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionError:  # the client hung up mid-answer: nothing to answer, nothing to log
            self.close_connection = True

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of the body it leaves out (RFC 9110, 9.3.2)
            self.wfile.write(body)

    def _read_chunked(self) -> bytes | None:
        """A ``Transfer-Encoding: chunked`` body (curl's for a body of unknown length), or None past the limit."""
        chunks, size = [], 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            length = int(line, 16)  # ValueError: not a chunk size
            if length == 0:
                while self.rfile.readline(1024).strip():  # trailer fields, then the blank line
                    pass
                return b"".join(chunks)
            size += length
            if size > MAX_BODY_BYTES:
                return None
            chunk = self.rfile.read(length)
            if len(chunk) < length:
                raise ValueError("the client stopped inside a chunk")
            chunks.append(chunk)
            self.rfile.readline(3)  # the CRLF after each chunk

    def _gateway_error(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self._send(
            status,
            body,
            {**CORS_HEADERS, "Content-Type": "application/json", "x-amzn-ErrorType": "GatewayResponse"},
        )

    def _body(self) -> bytes | None:
        """The request body, or None once a 400 or 413 has answered for it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            try:
                body = self._read_chunked()
            except ValueError:
                return self._refuse(400, "Bad Request")
            return self._refuse(413, "Request Too Long") if body is None else body
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return self._refuse(400, "Bad Request")
        if length > MAX_BODY_BYTES:
            return self._refuse(413, "Request Too Long")
        body = self.rfile.read(length)
        if len(body) < length:  # the client closed its side before sending all it declared
            return self._refuse(400, "Bad Request")
        return body

    def _refuse(self, status: int, message: str) -> None:
        """Answer a body the gateway will not read, and close: the rest of it would be read as the next request."""
        self._gateway_error(status, message)
        self.close_connection = True

    def _handle(self) -> None:
        try:
            body = self._body()
        except TimeoutError:  # a body that stopped arriving: drop the connection, as a gateway does
            self.close_connection = True
            return
        if body is None:
            return
        path, _, query = self.path.partition("?")
        prefix = f"/{STAGE}"
        route = path[len(prefix) :] if path.startswith(prefix + "/") else None
        if route != RESOURCE:
            self._gateway_error(403, "Missing Authentication Token")
            return
        if self.command == "OPTIONS":
            self._send(204, b"", PREFLIGHT_HEADERS)
            return
        if self.command != "POST":
            self._gateway_error(403, "Missing Authentication Token")
            return
        if self.server.model.refuses(self.headers.get("Content-Type"), body):
            self._gateway_error(400, self.server.model.message)
            return
        event = proxy_event(
            method=self.command,
            path=route,
            query=query,
            headers=dict(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
        )
        try:
            result = self.server.invoke(event)
        except TimeoutError:
            self._gateway_error(504, "Endpoint request timed out")
            return
        except Exception:  # a handler that raises is API Gateway's 502, whatever it was
            self._gateway_error(502, "Internal server error")
            raise
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(values)
        self._send(int(result.get("statusCode", 502)), data, headers)

    do_POST = do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle  # noqa: N815


def start_front_door(
    *, host: str = "127.0.0.1", port: int = 0, handler: ModuleType | None = None, lambdas: LambdaPool | None = None
) -> FrontDoorServer:
    """Start the front door on a daemon thread; ``port=0`` picks a free port. Stop with ``shutdown()``."""
    server = FrontDoorServer((host, port), handler=handler, lambdas=lambdas)
    threading.Thread(target=server.serve_forever, name="front-door-stand-in", daemon=True).start()
    return server
