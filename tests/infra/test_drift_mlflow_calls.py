"""The drift workflow's role may make the MLflow calls the drift job makes, and no others: the real job, run against
a real ``mlflow server`` whose access log lists every REST call it served (infra/capture's ``DRIFT_MLFLOW_CALLS``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from experiments.generate import generate
from infra.capture.infrastructure import DRIFT_MLFLOW_CALLS
from serving.profile import write_profile
from tests.monitoring.helpers import MODEL, capture_window, reference_profile, write_capture
from tests.serving.serving_helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REQUEST = re.compile(r'"(?:GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)')
MLFLOW_API = "/api/2.0/mlflow/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` on a loopback port, SQLite in a temp folder; its access log. Artifacts are not proxied: the
    client reads and writes them itself, as it does in S3 with a SageMaker managed server."""
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
        yield url, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).ok
    except requests.RequestException:
        return False


def _register_version(url: str, folder: Path) -> str:
    """A registered version of the model whose MLflow model holds ``artifacts/profile.json``, as training leaves it."""
    client = MlflowClient(url)
    run = client.create_run(client.create_experiment("training"))
    (folder / "model" / "artifacts").mkdir(parents=True)
    write_profile(folder / "model" / "artifacts", reference_profile())
    client.log_artifacts(run.info.run_id, str(folder / "model"), artifact_path="model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    return client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id).version


def _drift(url: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env |= {"MLFLOW_TRACKING_URI": url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "monitoring.drift", "--params", str(ROOT / "params.yaml"),
                           "--days", "1", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"  # 1 is drift


def test_the_drift_job_makes_exactly_the_mlflow_calls_the_monitor_role_may_make(server, tmp_path: Path) -> None:
    # Given a registered version with its profile, and an hour of traffic it answered
    url, log = server
    version = _register_version(url, tmp_path)
    captures = write_capture(tmp_path / "bucket",
                             capture_window(generate(300, 11), version=version, start=time.time() - 3600))
    before = len(log.read_text(errors="replace"))
    # When the drift job runs as the workflow runs it: first on a server without the monitoring experiment,
    # then again for one version
    _drift(url, "--capture", str(captures), "--out", str(tmp_path / "first"))
    _drift(url, "--capture", str(captures), "--version", version, "--out", str(tmp_path / "second"))
    # Then every API call it made is one DRIFT_MLFLOW_CALLS maps to an IAM action, and each of those was made
    served = {path for path in REQUEST.findall(log.read_text(errors="replace")[before:]) if path != "/health"}
    assert {path for path in served if not path.startswith(MLFLOW_API)} == set(), "artifacts must not be proxied"
    assert {path.removeprefix(MLFLOW_API) for path in served} == set(DRIFT_MLFLOW_CALLS)
