"""Owns the HTTP contract of the container: ``GET /ping``, ``POST /invocations`` and every error response.

Every response, errors included, carries the model headers of the wire contract (``serving/contract.py``:
``X-Model-Name``, ``X-Model-Version``, ``X-Data-Hash`` and the same as SageMaker custom attributes) from the
bundle's ``metadata.json``, so any answer can be traced to the registered version and its training data.
Errors are JSON ``{"error": ..., "field": ..., "row": ...}``: bad records or bodies 400, unknown path 404,
wrong method 405, a body that stopped arriving 408, unsupported ``Accept`` 406 (media-type parameters such as
``charset`` are ignored), body over the limit 413, unsupported ``Content-Type``, or a ``Content-Encoding`` or
``Transfer-Encoding`` coding (gzip...), 415, no model loaded 503. A 500 means a bug in this code, never bad input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.http import parse_accept_header, parse_list_header, parse_options_header

from serving import codecs, contract, csv_columns, typed_json
from serving.predictor import Predictor, SchemaError

logger = logging.getLogger(__name__)

_PING_OK = b'{"status": "ok"}\n'


def trace_headers(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The model headers of the wire contract for a bundle's metadata; ``unknown`` where a field is absent."""
    return contract.model_headers(metadata)


def error_response(status: int, message: str, *, field: str | None = None, row: int | None = None) -> Response:
    body = json.dumps({"error": message, "field": field, "row": row})
    return Response(body, status=status, mimetype=codecs.JSON)


def _without_parameters(media_range: str) -> str:
    """``type/subtype`` and its q-value only: ``application/json; charset=utf-8`` is ``application/json``.

    Parameters are parsed, not split on ``;``: a quoted value may hold one (``format="x;q=0"`` is no q-value)."""
    kind, parameters = parse_options_header(media_range)
    return f"{kind};q={parameters['q']}" if "q" in parameters else kind


def _response_type() -> str | None:
    header = request.headers.get("Accept", "")
    # No Accept header means the client takes anything; werkzeug would otherwise match nothing.
    if not header.strip():
        return codecs.JSON
    # Werkzeug matches a range carrying parameters (charset=utf-8, as many clients send) only to an offer
    # with the same parameters, so ours would never match; only the type and its q-value decide here.
    # parse_list_header splits on commas outside quoted strings (profile="a,b" is one parameter).
    accept = parse_accept_header(",".join(map(_without_parameters, parse_list_header(header))), MIMEAccept)
    return accept.best_match(codecs.RESPONSE_TYPES)


def _read_body(max_body_bytes: int) -> bytes:
    """The request body, refused with 413 beyond ``max_body_bytes``.

    Raises:
        RequestEntityTooLarge: the body is over the limit. ClientDisconnected, TimeoutError: it stopped arriving.
    """
    length = request.content_length
    if length is None:
        body = request.get_data(cache=False)
        # A chunked body has no Content-Length: werkzeug stops reading at the limit without complaint, so
        # one more byte on the wire means the body was too large (not merely truncated JSON).
        if len(body) >= max_body_bytes and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
        return body
    if length > max_body_bytes:
        raise RequestEntityTooLarge()
    # One read of Content-Length bytes: werkzeug's stream would copy a 5 MB body in 64 KB pieces.
    body = request.environ["wsgi.input"].read(length) if length else b""
    if len(body) < length:
        raise ClientDisconnected()
    return body


def base_app(metadata: Mapping[str, Any], *, max_body_bytes: int) -> Flask:
    """The Flask app every server of ours starts from: the body limit, and trace headers on every response."""
    app = Flask("serving")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    headers = trace_headers(metadata)
    # The gunicorn worker (serving/worker.py) adds them to the errors it answers before the app is reached.
    app.config["TRACE_HEADERS"] = headers

    @app.after_request
    def add_trace_headers(response: Response) -> Response:
        response.headers.update(headers)
        return response

    return app


def create_app(predictor: Predictor | None, metadata: Mapping[str, Any], *, max_body_bytes: int,
               load_error: str | None = None) -> Flask:
    """Build the WSGI app around a loaded, self-tested predictor.

    Args:
        predictor: the model, or None when loading failed; then ``/ping`` and ``/invocations`` answer 503.
        metadata: the bundle's ``metadata.json`` (may be empty when it could not be read).
        max_body_bytes: larger request bodies are refused with 413.
        load_error: why the model is not loaded, reported in the 503 body.
    """
    app = base_app(metadata, max_body_bytes=max_body_bytes)
    not_loaded = f"model not loaded: {load_error or 'unknown error'}"
    # The fast paths for big batches, by media type: each ``matrix(body)`` is the model matrix, or None for the
    # general path.
    fast = {} if predictor is None else {codecs.JSON: typed_json.TypedRecords(predictor.schema),
                                         codecs.CSV: csv_columns.CsvColumns(predictor.schema)}

    @app.get("/ping")
    def ping() -> Response:
        if predictor is None:
            return error_response(503, not_loaded)
        return Response(_PING_OK, mimetype=codecs.JSON)

    @app.post("/invocations")
    def invocations() -> Response:
        if predictor is None:
            return error_response(503, not_loaded)
        content_type = request.mimetype
        if content_type not in codecs.REQUEST_TYPES:
            return error_response(415, f"unsupported Content-Type '{content_type or '(none)'}'; "
                                       f"use one of {sorted(codecs.REQUEST_TYPES)}")
        # A coding of the body in either header; gunicorn accepts "gzip, chunked" (RFC 9112 §6.1) and hands on the
        # compressed bytes as the body.
        for header, plain in (("Content-Encoding", ("identity",)), ("Transfer-Encoding", ("identity", "chunked"))):
            codings = [c.strip() for c in request.headers.get(header, "").lower().split(",")]
            compressed = [c for c in codings if c not in ("", *plain)]
            if compressed:
                return error_response(415, f"unsupported {header} '{', '.join(compressed)}'; "
                                           f"send the body uncompressed")
        response_type = _response_type()
        if response_type is None:
            return error_response(406, f"cannot answer with Accept '{request.headers.get('Accept')}'; "
                                       f"use one of {list(codecs.RESPONSE_TYPES)}")
        try:
            body = _read_body(max_body_bytes)
        except (TimeoutError, ClientDisconnected) as err:  # werkzeug reports the worker's read timeout as a disconnect
            if getattr(err.__context__, "malformed_body", False):  # serving/request_body.py: bad chunk syntax
                return error_response(400, str(err.__context__))
            late = err if getattr(err, "body_deadline", False) else err.__context__
            if getattr(late, "body_deadline", False):  # serving/request_body.py: the body's reads in all
                return error_response(408, str(late))
            return error_response(408, "the request body stopped arriving before its Content-Length")
        try:
            # Big batches of clean records take a fast path; it returns None for anything else, and the general
            # path (which alone words the errors) reads the body.
            reader = fast.get(codecs.REQUEST_TYPES[content_type])
            matrix = reader.matrix(body) if reader is not None else None
            if matrix is not None:
                predictions = predictor.predict_matrix(matrix)
            else:
                predictions = predictor.predict(codecs.decode(content_type, body, predictor.schema))
        except SchemaError as err:
            return error_response(400, str(err), field=err.field, row=err.row)
        return Response(codecs.encode(response_type, predictions.tolist()), mimetype=response_type)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        # Keep werkzeug's status and headers (e.g. Allow on 405), replace its HTML body with our JSON.
        response = err.get_response()
        response.set_data(json.dumps({"error": f"{err.name}: {err.description}", "field": None, "row": None}))
        response.mimetype = codecs.JSON
        return response

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error (see the container log)")

    return app
