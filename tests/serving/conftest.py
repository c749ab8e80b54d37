"""Fixtures for the container tests: one real model bundle per session, one real server per module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from serving import bundle, layout, wsgi
from serving.predictor import Predictor
from tests.serving.serving_helpers import BIG_ROWS, MAX_BODY, build_model_dir, running, sample_records


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified bundle directory (booster.ubj, schema.json, metadata.json). Treat as read-only."""
    return build_model_dir(tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="session")
def model_tar(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle packed as model.tar.gz. Treat as read-only."""
    return bundle.pack(model_dir, tmp_path_factory.mktemp("tar") / layout.TARBALL_FILE)


@pytest.fixture(scope="session")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.from_dir(model_dir)


@pytest.fixture(scope="module")
def client(model_dir: Path) -> FlaskClient:
    """The container's app in-process (werkzeug's test client), with the launcher's body limit."""
    return wsgi.create(str(model_dir), MAX_BODY).test_client()


@pytest.fixture(scope="module")
def big_batch() -> list[dict[str, Any]]:
    """``BIG_ROWS`` generated records as they arrive in JSON, missing values (null) included; a list per module."""
    records, _ = sample_records(500, seed=11)
    assert any(v is None for r in records for v in r.values()), "the sample needs missing values"
    return json.loads(json.dumps([records[i % len(records)] for i in range(BIG_ROWS)]))


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real gunicorn (two workers) serving the session's bundle on a loopback port."""
    with running(model_dir, tmp_path_factory.mktemp("server") / "server.log") as srv:
        yield srv
