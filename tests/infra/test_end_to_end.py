"""End to end: HTTP → front door → real Lambda handler → boto3 → stand-in endpoint → real gunicorn container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from registry import export
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _through_the_chain(tarball: Path, body: object) -> tuple[int, dict[str, str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "infra.local", "--model-tarball", str(tarball), "--port", "0",
         "--request", json.dumps(body)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    # The handler's structured logs share stdout; the answer is the "HTTP ..." line and the body after it.
    lines = done.stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("HTTP ")), None)
    assert at is not None, done.stdout + done.stderr
    _, status, headers = lines[at].split(" ", 2)
    return int(status), json.loads(headers), json.loads(lines[at + 1])


def test_a_request_through_the_whole_chain_matches_the_mlflow_model(default_training, tmp_path: Path) -> None:
    folder, params, result = default_training
    tarball = tmp_path / "model.tar.gz"
    assert export.main(["--params", str(folder / "params.yaml"), "--version", result.version,
                        "--out", str(tarball)]) == 0
    frame = pd.read_csv(params.data.path).drop(columns=[params.data.target]).sample(3, random_state=5)
    records = json.loads(frame.to_json(orient="records"))
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    expected = mlflow.pyfunc.load_model(f"models:/{params.model.name}/{result.version}").predict(frame)

    status, headers, body = _through_the_chain(tarball, records)

    assert status == 200, body
    assert body["predictions"] == pytest.approx(list(expected), abs=1e-6)
    assert headers["X-Model-Version"] == result.version
    assert headers["X-Model-Name"] == params.model.name

    bad = dict(records[0], Gender="Robot")
    status, _, body = _through_the_chain(tarball, bad)
    assert status == 400, "the container's 4xx comes back as a 4xx"
    assert "Gender" in body["error"]
