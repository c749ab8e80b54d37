"""A real ``mlflow server`` on a loopback port for the role tests, and the MLflow REST calls its access log shows.

A test module takes the ``mlflow_server`` fixture by importing it (one server per module).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.serving.serving_helpers import free_port

REQUEST = re.compile(rb'"(GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)')
MLFLOW_API = "/api/2.0/mlflow/"
LOGGED_MODEL_ID = re.compile(r"(?<=^logged-models/)m-[0-9a-f]+")  # MLflow's ids: "m-" and 32 hex digits


@dataclass(frozen=True)
class MlflowServer:
    """A running server: where it answers, and its access log."""

    url: str
    log: Path

    def mark(self) -> int:
        """Where the log ends now: ``calls_since`` it sees only what is served after."""
        return self.log.stat().st_size

    def calls_since(self, mark: int) -> set[str]:
        """Every call served since ``mark``, as ``infra.mlflow_calls`` spells them (``METHOD path`` under MLflow's
        REST API, a logged model's id as ``{model_id}``); any other path (an artifact proxied, say) whole."""
        calls = set()
        for method, raw in REQUEST.findall(self.log.read_bytes()[mark:]):
            path = raw.decode()
            if path == "/health":
                continue
            if path.startswith(MLFLOW_API):
                path = LOGGED_MODEL_ID.sub("{model_id}", path.removeprefix(MLFLOW_API))
            calls.add(f"{method.decode()} {path}")
        return calls


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """``mlflow server`` with SQLite in a temp folder. Artifacts are not proxied: the client reads and writes them
    itself, as it does in S3 with a SageMaker managed server."""
    root = tmp_path_factory.mktemp("mlflow-server")
    url, log = f"http://127.0.0.1:{free_port()}", root / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--no-serve-artifacts", "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", url.rsplit(":", 1)[1], "--workers", "1"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)  # its uvicorn stops with it
    try:
        deadline = time.monotonic() + 90
        while not _answers(url):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        yield MlflowServer(url, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).ok
    except requests.RequestException:
        return False
