"""Fixtures for the container tests: one real model bundle per session, one real server per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import bundle, layout
from serving.predictor import Predictor
from tests.serving.serving_helpers import build_model_dir, running


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
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real gunicorn (two workers) serving the session's bundle on a loopback port."""
    with running(model_dir, tmp_path_factory.mktemp("server") / "server.log") as srv:
        yield srv
