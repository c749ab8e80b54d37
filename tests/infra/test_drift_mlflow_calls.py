"""The drift workflow's role may make the MLflow calls the drift job makes, and no others: the real job, run against
a real ``mlflow server`` whose access log lists every REST call it served (infra/capture's ``DRIFT_MLFLOW_CALLS``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.generate import generate
from infra.capture.infrastructure import DRIFT_MLFLOW_CALLS
from serving.profile import write_profile
from tests.infra.mlflow_server import MlflowServer, mlflow_server  # noqa: F401 - the server, a fixture
from tests.monitoring.helpers import MODEL, capture_window, reference_profile, write_capture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_drift_job_makes_exactly_the_mlflow_calls_the_monitor_role_may_make(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    # Given a registered version with its profile, and an hour of traffic it answered
    url = mlflow_server.url
    version = _register_version(url, tmp_path)
    captures = write_capture(tmp_path / "bucket",
                             capture_window(generate(300, 11), version=version, start=time.time() - 3600))
    before = mlflow_server.mark()
    # When the drift job runs as the workflow runs it: first on a server without the monitoring experiment,
    # then again for one version
    _drift(url, "--capture", str(captures), "--out", str(tmp_path / "first"))
    _drift(url, "--capture", str(captures), "--version", version, "--out", str(tmp_path / "second"))
    # Then every call it made is one of DRIFT_MLFLOW_CALLS (each an IAM action), and each of those was made; an
    # artifact proxied by the server would show up as a path outside MLflow's REST API
    assert mlflow_server.calls_since(before) == set(DRIFT_MLFLOW_CALLS)
