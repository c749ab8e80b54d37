"""Tests of what the workflows do: triggers, path filters, inputs, permissions, concurrency and step order."""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from tests.workflows.conftest import ROOT

# The train-deploy job's steps, in order: an action by name, or the make target a run: step calls.
RELEASE_ORDER = [
    "actions/checkout", "actions/setup-python", "actions/setup-node", "make release-preflight", "make setup",
    "aws-actions/configure-aws-credentials", "make data", "make train", "make ci-promote", "make export",
    "make deploy", "make smoke", "make job-summary",
]
CI_ORDER = [
    "actions/checkout", "actions/setup-python", "actions/setup-node", "make setup", "make lint", "make hadolint",
    "make workflow-check", "make test", "make ci-synth", "make metrics-diff",
]
TRAINING_INPUTS = ["data.dvc", "params.yaml", "dvc.yaml", "core/**", "experiments/**", "serving/__init__.py",
                   "serving/layout.py", "serving/predictor.py", "serving/xgb_capi.py"]


def _key(step: dict[str, Any]) -> str:
    return step["uses"].split("@")[0] if "uses" in step else step["run"].strip()


def _step(job: dict[str, Any], key: str) -> dict[str, Any]:
    return next(step for step in job["steps"] if _key(step) == key)


def _job(workflow: dict[str, Any]) -> dict[str, Any]:
    (job,) = workflow["jobs"].values()
    return job


def test_ci_runs_on_every_pull_request_and_on_pushes_to_main(ci: dict) -> None:
    assert ci["on"]["pull_request"] is None, "every pull request, no path filter"
    assert ci["on"]["push"] == {"branches": ["main"]}


def test_ci_may_only_read_the_repository(ci: dict) -> None:
    assert ci["permissions"] == {"contents": "read"}
    assert "permissions" not in _job(ci), "the job inherits read-only; it needs no id-token"


def test_ci_steps_in_order(ci: dict) -> None:
    assert [_key(step) for step in _job(ci)["steps"]] == CI_ORDER


def test_ci_toolchains_are_python_311_and_node_20(ci: dict) -> None:
    job = _job(ci)
    assert _step(job, "actions/setup-python")["with"]["python-version"] == "3.11"
    assert _step(job, "actions/setup-node")["with"]["node-version"] == "20"


def test_ci_metrics_diff_runs_on_pull_requests_against_the_base_branch(ci: dict) -> None:
    job = _job(ci)
    step = _step(job, "make metrics-diff")
    assert step["if"] == "github.event_name == 'pull_request'"
    assert step["env"]["BASE_REF"] == "origin/${{ github.base_ref }}"
    assert _step(job, "actions/checkout")["with"]["fetch-depth"] == 0, "the base branch's metrics.json is needed"


def test_release_triggers_on_the_dvc_pointer_not_on_the_data_folder(train_deploy: dict) -> None:
    push = train_deploy["on"]["push"]
    assert push["branches"] == ["main"]
    assert push["paths"] == TRAINING_INPUTS
    assert not any(path.startswith("data/") for path in push["paths"]), "with DVC, data/ is never in git"
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    unwatched = [d for d in deps if d != "data" and not any(fnmatch.fnmatch(d, p) for p in push["paths"])]
    assert not unwatched, f"a change to {unwatched} retrains with dvc repro but would not trigger a release"


def test_release_can_be_dispatched_with_a_version_or_force(train_deploy: dict) -> None:
    inputs = train_deploy["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"model_version", "force"}
    assert inputs["model_version"]["type"] == "string" and inputs["model_version"]["required"] is False
    assert inputs["force"] == {**inputs["force"], "type": "boolean", "default": False, "required": False}


def test_two_releases_never_overlap_and_none_is_cancelled(train_deploy: dict) -> None:
    assert train_deploy["concurrency"] == {"group": "train-deploy", "cancel-in-progress": False}


def test_release_holds_an_oidc_token_and_read_access_only(train_deploy: dict) -> None:
    assert train_deploy["permissions"] == {}, "nothing by default; the job asks for what it needs"
    assert _job(train_deploy)["permissions"] == {"id-token": "write", "contents": "read"}


def test_release_steps_in_order(train_deploy: dict) -> None:
    assert [_key(step) for step in _job(train_deploy)["steps"]] == RELEASE_ORDER


def test_release_runs_from_main_only(train_deploy: dict) -> None:
    assert _job(train_deploy)["if"] == "github.ref == 'refs/heads/main'"


def test_training_is_skipped_when_a_version_is_given(train_deploy: dict) -> None:
    assert _step(_job(train_deploy), "make train")["if"] == "inputs.model_version == ''"


def test_promotion_gets_the_inputs_through_the_environment(train_deploy: dict) -> None:
    env = _step(_job(train_deploy), "make ci-promote")["env"]
    assert env["PROMOTE_VERSION"] == "${{ inputs.model_version }}"
    assert env["PROMOTE_FORCE"] == "${{ inputs.force }}"


def test_aws_credentials_come_from_the_oidc_role_not_stored_keys(train_deploy: dict) -> None:
    given = _step(_job(train_deploy), "aws-actions/configure-aws-credentials")["with"]
    assert given["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert given["aws-region"] == "${{ vars.AWS_REGION }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(given)


def test_data_comes_from_the_s3_remote(train_deploy: dict) -> None:
    assert _job(train_deploy)["env"]["DVC_REMOTE"] == "${{ vars.DVC_REMOTE || 's3' }}"


def test_the_mlflow_uri_reaches_only_the_steps_that_use_mlflow(train_deploy: dict) -> None:
    job = _job(train_deploy)
    uri = "${{ vars.MLFLOW_TRACKING_URI || secrets.MLFLOW_TRACKING_URI }}"
    given = [_key(step) for step in job["steps"] if step.get("env", {}).get("MLFLOW_TRACKING_URI") == uri]
    assert given == ["make release-preflight", "make train", "make ci-promote", "make export"]
    assert "MLFLOW_TRACKING_URI" not in job.get("env", {})


def test_secrets_appear_only_in_step_environments(train_deploy: dict, ci: dict) -> None:
    for workflow in (train_deploy, ci):
        for job in workflow["jobs"].values():
            assert "secrets." not in str(job.get("env", {}))
            for step in job["steps"]:
                assert "secrets." not in str(step.get("with", {})) + step.get("run", ""), _key(step)


def test_checkouts_do_not_keep_the_token(train_deploy: dict, ci: dict) -> None:
    for workflow in (train_deploy, ci):
        assert _step(_job(workflow), "actions/checkout")["with"]["persist-credentials"] is False
