"""Owns model loading in the container: the gunicorn app factory that each worker calls before serving.

``serving/serve`` starts gunicorn with ``serving.wsgi:create(model_dir, max_body_bytes)`` and
``preload_app = False``, so every worker loads, verifies and self-tests its own model after the fork and
before its first request. A model that cannot be loaded does not stop the worker: it serves 503 on
``/ping`` (with the reason) so SageMaker never routes traffic to it and the log says why. A model that kills
the worker while loading is loaded once per worker slot, not forever (serving/load_guard.py).

``model_dir`` (``SM_MODEL_DIR``) holds either the unpacked bundle — ``booster.ubj``, ``schema.json`` and the
required ``metadata.json`` whose sha256 sums are checked — or only ``model.tar.gz`` (the local
``docker run -v ./model.tar.gz:/opt/ml/model/model.tar.gz`` flow), which is unpacked safely into a
temporary directory under ``TMPDIR``, verified, loaded into memory and deleted again.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask

from serving import bundle, layout, load_guard
from serving.app import create_app
from serving.layout import BOOSTER_FILE, SCHEMA_FILE, ModelError
from serving.predictor import Predictor

logger = logging.getLogger(__name__)


def _load_verified(model_dir: Path) -> tuple[Predictor, dict[str, Any]]:
    metadata = bundle.verify(model_dir)
    predictor = Predictor.from_dir(model_dir)
    predictor.self_test()
    return predictor, metadata


def load_model(model_dir: str | Path) -> tuple[Predictor, dict[str, Any]]:
    """Load, verify and self-test the model in ``model_dir``.

    Returns:
        The predictor and the bundle's metadata.

    Raises:
        ModelError: no model there, a checksum or file is wrong, or the self-test fails.
    """
    model_dir = Path(model_dir)
    if (model_dir / BOOSTER_FILE).exists() or (model_dir / SCHEMA_FILE).exists():
        return _load_verified(model_dir)
    tarball = model_dir / layout.TARBALL_FILE
    if tarball.is_file():
        # The booster and schema are read into memory, so the unpacked copy is not needed after loading.
        with tempfile.TemporaryDirectory(prefix=load_guard.unpack_prefix()) as tmp:
            bundle.unpack(tarball, tmp)
            return _load_verified(Path(tmp))
    raise ModelError(f"{model_dir}: no model found (expected {BOOSTER_FILE}, {SCHEMA_FILE} and "
                     f"{layout.METADATA_FILE}, or {layout.TARBALL_FILE})")


def create(model_dir: str, max_body_bytes: int) -> Flask:
    """gunicorn app factory: load the model once in this worker and return the app serving it."""
    if (crash := load_guard.crashed()) is not None:
        return create_app(None, _metadata_if_readable(Path(model_dir)), max_body_bytes=max_body_bytes,
                          load_error=crash)
    try:
        with load_guard.loading():
            predictor, metadata = load_model(model_dir)
    except ModelError as err:
        logger.error("model not loaded from %s: %s", model_dir, err)
        return create_app(None, _metadata_if_readable(Path(model_dir)), max_body_bytes=max_body_bytes,
                          load_error=str(err))
    except Exception as err:  # a bug, not a bad model: still never report healthy
        logger.exception("model not loaded from %s", model_dir)
        return create_app(None, {}, max_body_bytes=max_body_bytes,
                          load_error=f"{type(err).__name__} (see the container log)")
    logger.info("model %s version %s loaded from %s, self-test passed",
                metadata.get("registered_name"), metadata.get("version"), model_dir)
    app = create_app(predictor, metadata, max_body_bytes=max_body_bytes)
    # The model and app live for the whole worker: freezing them keeps the cyclic GC from rescanning them.
    gc.collect()
    gc.freeze()
    return app


def _metadata_if_readable(model_dir: Path) -> dict[str, Any]:
    # Only for the tracing headers of 503 answers; a bundle still packed in a tarball reports "unknown".
    try:
        return bundle.read_metadata(model_dir)
    except ModelError:
        return {}
