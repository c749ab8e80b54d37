"""The loop closed locally, in a throwaway copy of the repository: train and release a version, send requests
through the stand-in chain (capturing to moto's Firehose -> S3), check drift and live accuracy, append the
labelled records to the DVC table, and retrain on it into a new registered version with the new data hash."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmarks import project_copy
from experiments.generate import generate
from tests.conftest import FAST_TRAIN

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
REQUESTS, PER_REQUEST = 30, 10


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "STAND_IN_"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files in a new git repo with fast training, data pulled, version 1 released."""
    dest = project_copy.make(tmp_path_factory.mktemp("loop"), train=FAST_TRAIN)
    for step in (["dvc", "pull", "-q"], ["dvc", "repro"],
                 [sys.executable, "-m", "registry.promote", "--reason", "closed loop test"]):
        done = _run(dest, *step)
        assert done.returncode == 0, f"{step}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return dest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_and_send(clone: Path, frame: pd.DataFrame) -> list[str]:
    """Run the stand-in (capture: moto's Firehose), POST the frame in requests, stop it; returns the request ids."""
    port = _free_port()
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "--port", str(port), "--capture", "moto",
         "--model-tarball", str(clone / "dist" / "model.tar.gz")],
        cwd=clone, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/score/predict-student-score"
    records = json.loads(frame.drop(columns=["Exam_Score"]).to_json(orient="records"))
    ids = []
    try:
        deadline = time.monotonic() + 120
        for i in range(0, len(records), PER_REQUEST):
            body = json.dumps(records[i:i + PER_REQUEST]).encode()
            while True:
                try:
                    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                        assert answer.status == 200
                        ids.append(answer.headers["X-Request-Id"])
                        break
                except (ConnectionError, urllib.error.URLError):
                    assert stand_in.poll() is None and time.monotonic() < deadline, "the stand-in did not start"
                    time.sleep(0.5)
    finally:
        stand_in.send_signal(signal.SIGTERM)  # flushes capture, mirrors moto's bucket into the capture folder
        _, err = stand_in.communicate(timeout=120)
    assert stand_in.returncode == 0, err[-2000:]
    return ids


def test_requests_are_captured_labelled_appended_and_retrained_into_a_new_version(clone: Path) -> None:
    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    (first,) = client.search_model_versions("name = 'student-score'")
    data_hash = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]["md5"]
    assert first.tags["data_hash"] == data_hash
    traffic = generate(REQUESTS * PER_REQUEST, seed=77)

    ids = _serve_and_send(clone, traffic)

    # N requests in, N capture records out (through moto's Firehose -> S3), each naming the version that answered.
    captured = [json.loads(line) for path in (clone / "dist" / "stand-in" / "capture").rglob("*") if path.is_file()
                for line in path.read_text().splitlines()]
    assert len(captured) == REQUESTS * PER_REQUEST
    assert {c["request_id"] for c in captured} == set(ids)
    assert {(c["model_name"], c["model_version"], c["data_hash"]) for c in captured} == {
        ("student-score", str(first.version), data_hash)}

    drift = _run(clone, sys.executable, "-m", "monitoring.drift", "--days", "1")
    assert drift.returncode == 0, drift.stderr
    assert "not enough data" in drift.stdout, "300 records are below the minimum sample"

    by_key = {(c["request_id"], c["row"]): c for c in captured}
    with (clone / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request_id", "row", "actual"])
        for n, request_id in enumerate(ids):
            for row in range(PER_REQUEST):
                assert (request_id, row) in by_key
                writer.writerow([request_id, row, int(traffic["Exam_Score"].iloc[n * PER_REQUEST + row])])
        writer.writerow(["no-such-request", 0, 70])
    feedback = _run(clone, sys.executable, "-m", "monitoring.feedback", "--labels", "labels.csv", "--append")
    assert feedback.returncode in (0, 1), feedback.stderr
    assert "rejected 1: unknown request id" in feedback.stdout
    assert f"appended {REQUESTS * PER_REQUEST} new rows" in feedback.stdout
    tags = client.get_model_version("student-score", first.version).tags
    assert tags["live.labels"] == str(REQUESTS * PER_REQUEST) and float(tags["live.rmse"]) > 0

    new_hash = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]["md5"]
    assert new_hash != data_hash, "dvc add recorded the new data version"
    retrained = _run(clone, "dvc", "repro")
    assert retrained.returncode == 0, retrained.stdout[-2000:] + retrained.stderr[-2000:]
    versions = sorted(client.search_model_versions("name = 'student-score'"), key=lambda v: int(v.version))
    assert len(versions) == 2 and versions[1].tags["data_hash"] == new_hash
    table = pd.read_csv(clone / "data" / "student_performance.csv")
    assert len(table) == 6607 + REQUESTS * PER_REQUEST
