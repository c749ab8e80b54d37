"""Tests for what the monitoring jobs write to the registry: tags on a version, with other jobs at work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
KEYS = 300
# Each job connects, says it is ready, and starts tagging when the test says go: both write in the same instant.
TAGGER = """
import sys, time
from pathlib import Path
from monitoring.reference import Registry
registry = Registry(uri=sys.argv[1], name="m")
registry.client().get_model_version("m", "1")
print("ready", flush=True)
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
registry.tag_version("1", {f"live.k{i}": sys.argv[2] for i in range(int(sys.argv[4]))})
"""


@pytest.mark.slow
def test_two_jobs_tagging_one_version_at_once_both_succeed(tmp_path: Path) -> None:
    # Given a registered version, and two feedback jobs setting the same tags on it at the same time (MLflow looks
    # for a tag's row, then inserts it: the second insert broke the unique key, and its job stopped with exit 1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("m")
    client.create_model_version("m", str(tmp_path / "model"))
    go = tmp_path / "go"
    jobs = [subprocess.Popen([sys.executable, "-c", TAGGER, uri, who, str(go), str(KEYS)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    assert [job.stdout.readline() for job in jobs] == ["ready\n", "ready\n"]
    go.touch()
    # When both finish
    errors = [job.communicate(timeout=120)[1] for job in jobs]
    # Then both succeeded and every tag holds one job's value
    assert [job.returncode for job in jobs] == [0, 0], errors
    tags = client.get_model_version("m", "1").tags
    assert {k: v in ("a", "b") for k, v in tags.items()} == {f"live.k{i}": True for i in range(KEYS)}
