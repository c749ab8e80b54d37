"""Test for ``make synth``: the pinned ``cdk`` CLI runs the app offline, with no AWS credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "infra" / "node_modules" / ".bin" / "cdk"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_synth_runs_the_cdk_cli_offline_without_credentials(tmp_path: Path) -> None:
    if not CDK.is_file():
        pytest.fail(f"{CDK} is missing: `make setup` installs the pinned CDK CLI (npm ci in infra/)")
    # Given a dummy model and image folder, and an environment with no AWS credentials or config at all
    image = tmp_path / "image"
    image.mkdir()
    (image / "Dockerfile").write_text("FROM python:3.12-slim\n")
    (tmp_path / "model.tar.gz").write_bytes(b"not a real model")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        ALARM_EMAIL="oncall@example.com",  # as the release workflow passes it
    )
    out = tmp_path / "cdk.out"
    # When make synth runs for prod
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "synth",
            "INFRA_ENV=prod",
            f"MODEL_TAR={tmp_path / 'model.tar.gz'}",
            f"INFRA_OUT={out}",
            # The bootstrap context the README documents (DVC bucket, managed MLflow and its artifact store)
            f"INFRA_CONTEXT=-c serving_dir={image} -c github_repo=acme/student-score -c data_bucket=acme-artifacts "
            "-c mlflow_tracking_server_arn=arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team "
            "-c mlflow_artifact_uri=s3://acme-artifacts/mlflow",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    # Then it succeeds and writes the four stacks' templates
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.glob("*.template.json"))
    assert names == [
        "StudentScore-Account.template.json",
        "StudentScore-Bootstrap.template.json",
        "StudentScore-prod-Serving.template.json",
        "StudentScore-prod-Storage.template.json",
    ]
    serving = json.loads((out / "StudentScore-prod-Serving.template.json").read_text())
    configs = [r for r in serving["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    assert configs[0]["Properties"]["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 2048
    subscriptions = [r["Properties"] for r in serving["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscriptions == [{**subscriptions[0], "Protocol": "email", "Endpoint": "oncall@example.com"}]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_synth_without_a_model_fails_with_one_clear_line(tmp_path: Path) -> None:
    if not CDK.is_file():
        pytest.fail(f"{CDK} is missing: `make setup` installs the pinned CDK CLI (npm ci in infra/)")
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "synth",
            f"MODEL_TAR={tmp_path / 'absent.tar.gz'}",
            f"INFRA_OUT={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert result.returncode != 0
    assert f"error: model tarball not found: {tmp_path / 'absent.tar.gz'}" in result.stderr
