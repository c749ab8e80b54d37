"""The monitoring jobs stand on their own dependency group: light to import, and runnable from that group alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.monitoring.helpers import capture_window, generate, tarball_with_profile, write_capture

UV = ROOT / ".tools" / "bin" / "uv"
ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"  # AWS's example account id


def test_the_jobs_load_without_training_or_serving_libraries() -> None:
    code = ("import sys, monitoring.drift, monitoring.feedback, monitoring.summary; "
            "heavy = {'xgboost', 'sklearn', 'pandas', 'optuna', 'mlflow', 'flask'} & set(sys.modules); "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_monitoring_group_alone_runs_the_drift_job(tmp_path: Path, profile: dict) -> None:
    # The environment the drift workflow installs (make monitor-setup), built from the lock into a temp folder.
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv")}
    subprocess.run([str(UV), "sync", "--frozen", "--quiet", "--no-default-groups", "--group", "monitoring"],
                   cwd=ROOT, env=env, check=True, timeout=600)
    folder = write_capture(tmp_path / "bucket", capture_window(generate(600, 21)))
    tarball = tarball_with_profile(tmp_path / "model", profile)
    out = tmp_path / "report"
    done = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-m", "monitoring.drift", "--capture", str(folder),
         "--profile", str(tarball), "--since", "2025-12-01", "--until", "2025-12-02", "--out", str(out),
         "--no-tracking"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["records"] == 600
    assert (out / "report.html").is_file()
    listed = subprocess.run([str(UV), "pip", "list", "--format", "json", "--python",
                             str(tmp_path / "venv" / "bin" / "python")], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not {"xgboost", "xgboost-cpu", "optuna", "aws-cdk-lib"} & installed, "no model, search or CDK"
    # The drift workflow's MLFLOW_TRACKING_URI may be a SageMaker managed MLflow ARN: MLflow must have a store for it.
    stores = ("from mlflow.tracking._model_registry.utils import _get_store as registry; "
              "from mlflow.tracking._tracking_service.utils import _get_store as tracking; "
              f"uri = {ARN!r}; print(type(registry(uri)).__name__, type(tracking(uri)).__name__)")
    done = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c", stores], capture_output=True, text=True,
                          env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"},
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert done.stdout.split() == ["MlflowSageMakerRegistryStore", "MlflowSageMakerStore"]
