"""Owns the no-op ceiling: our server stack answering ``POST /invocations`` with a constant, doing no work.

It runs under the same gunicorn command line as the container (``serving/serve``'s ``gunicorn_argv`` with
``serving/gunicorn_conf.py``), with the same Flask settings (body limit, tracing headers on every answer),
so the difference between it and the real container is the price of decoding, validating, predicting and
encoding: how close predictions come to the framework's own limit.
"""

from __future__ import annotations

from flask import Flask, Response

from serving import codecs
from serving.app import base_app

CONSTANT = b'{"predictions": [0.0]}'
METADATA = {"registered_name": "noop", "version": "0", "data_hash": "none"}


def create(max_body_bytes: int) -> Flask:
    """gunicorn app factory, called like ``serving.wsgi:create``: the no-op app."""
    app = base_app(METADATA, max_body_bytes=max_body_bytes)

    @app.get("/ping")
    def ping() -> Response:
        return Response(b'{"status": "ok"}\n', mimetype=codecs.JSON)

    @app.post("/invocations")
    def invocations() -> Response:
        return Response(CONSTANT, mimetype=codecs.JSON)

    return app
