"""Tests of what the workflows do: triggers, path filters, inputs, environments, permissions, concurrency and
step order."""

from __future__ import annotations

import fnmatch
from typing import Any

import yaml

from tests.workflows.conftest import ROOT

SETUP = ["actions/checkout", "actions/setup-python", "actions/setup-node", "make release-preflight", "make setup",
         "aws-actions/configure-aws-credentials", "make data"]
# The release jobs' steps, in order: an action by name, or the make target a run: step calls. Nothing moves
# the production alias before prod serves the candidate and its smoke test passed.
DEV_ORDER = [*SETUP, "make train", "make release-gate", "make release-export", "make deploy", "make smoke",
             "make job-summary"]
PROD_ORDER = [*SETUP, "make release-gate", "make release-export", "make deploy", "make smoke",
              "make release-promote", "make verify-release", "make job-summary", "make release-restore"]
CI_ORDER = [
    "actions/checkout", "actions/setup-python", "actions/setup-node", "make setup", "make lint", "make hadolint",
    "make workflow-check", "make image-deps-check", "make test", "make ci-synth", "make metrics-diff",
]
MLFLOW_URI = "${{ vars.MLFLOW_TRACKING_URI || secrets.MLFLOW_TRACKING_URI }}"
TRAINING_INPUTS = ["data.dvc", "params.yaml", "dvc.yaml", "core/**", "experiments/**", "serving/__init__.py",
                   "serving/booster_file.py", "serving/columns.py",
                   "serving/layout.py", "serving/predictor.py", "serving/profile.py", "serving/xgb_capi.py"]


def _key(step: dict[str, Any]) -> str:
    return step["uses"].split("@")[0] if "uses" in step else step["run"].strip()


def _step(job: dict[str, Any], key: str) -> dict[str, Any]:
    return next(step for step in job["steps"] if _key(step) == key)


def _job(workflow: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    if name is not None:
        return workflow["jobs"][name]
    (job,) = workflow["jobs"].values()
    return job


def _jobs(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs that do the work: all but main-only, the one-step check of a run from another branch."""
    return [job for name, job in workflow["jobs"].items() if name != "main-only"]


def test_ci_runs_on_every_pull_request_and_on_pushes_to_main(ci: dict) -> None:
    assert ci["on"]["pull_request"] is None, "every pull request, no path filter"
    assert ci["on"]["push"] == {"branches": ["main"]}


def test_ci_may_only_read_the_repository(ci: dict) -> None:
    assert ci["permissions"] == {"contents": "read"}
    assert "permissions" not in _job(ci), "the job inherits read-only; it needs no id-token"


def test_ci_cancels_a_superseded_pull_request_run_but_never_a_push_to_main(ci: dict) -> None:
    # GitHub ("Control the concurrency of workflows and jobs"): a run joining a group cancels the group's *pending*
    # run, whatever cancel-in-progress says. Three quick pushes to main in one group: the second is cancelled.
    assert ci["concurrency"] == {
        "group": "ci-${{ github.event_name == 'pull_request' && github.ref || github.run_id }}",
        "cancel-in-progress": "${{ github.event_name == 'pull_request' }}"}


def test_ci_steps_in_order(ci: dict) -> None:
    assert [_key(step) for step in _job(ci)["steps"]] == CI_ORDER


def test_every_job_runs_python_311_and_node_22(ci: dict, train_deploy: dict) -> None:
    # AWS CDK supports Node 20 until 2026-10-30 and Node 22 until 2027-10-30 ("AWS CDK Node.js version support").
    for job in [*_jobs(ci), *_jobs(train_deploy)]:
        assert _step(job, "actions/setup-python")["with"]["python-version"] == "3.11"
        assert _step(job, "actions/setup-node")["with"]["node-version"] == "22"


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


def test_metrics_diff_compares_whenever_a_training_input_changed() -> None:
    text = (ROOT / "mk" / "ci.mk").read_text().replace("\\\n", " ")  # make's continued lines, joined
    line = next(ln for ln in text.splitlines() if ln.startswith("METRICS_PATHS"))
    watched = line.split(":=", 1)[1].split()
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    unwatched = [d for d in deps if d != "data" and not any(d == w or d.startswith(f"{w}/") for w in watched)]
    assert not unwatched, f"a change to {unwatched} changes the metrics but `make metrics-diff` would skip it"


def test_release_can_be_dispatched_with_a_version_or_force(train_deploy: dict) -> None:
    inputs = train_deploy["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"model_version", "force"}
    assert inputs["model_version"]["type"] == "string" and inputs["model_version"]["required"] is False
    assert inputs["force"] == {**inputs["force"], "type": "boolean", "default": False, "required": False}


def test_each_environment_releases_one_at_a_time_never_cancelling_or_dropping_a_run(train_deploy: dict) -> None:
    # GitHub ("Control the concurrency of workflows and jobs"): by default a newer run cancels a *pending* one
    # in the group; `queue: max` keeps up to 100 pending runs in order. No workflow-level group: a run waiting
    # for prod's approval must not hold back the next dev release.
    assert "concurrency" not in train_deploy
    for name in ("dev", "prod"):
        assert _job(train_deploy, name)["concurrency"] == {
            "group": f"release-{name}", "cancel-in-progress": False, "queue": "max"}


def test_release_jobs_hold_an_oidc_token_and_read_access_only(train_deploy: dict) -> None:
    assert train_deploy["permissions"] == {}, "nothing by default; each job asks for what it needs"
    for job in _jobs(train_deploy):
        assert job["permissions"] == {"id-token": "write", "contents": "read"}


def test_dev_deploys_on_its_own_and_prod_waits_for_dev_in_its_own_environment(train_deploy: dict) -> None:
    dev, prod = _job(train_deploy, "dev"), _job(train_deploy, "prod")
    # The deploy role trusts exactly these subjects: repo:OWNER/REPO:environment:dev|prod (infra/bootstrap).
    assert (dev["environment"], prod["environment"]) == ("dev", "prod")
    assert prod["needs"] == "dev"
    assert dev["env"]["INFRA_ENV"] == "dev" and prod["env"]["INFRA_ENV"] == "prod"


def test_dev_steps_in_order(train_deploy: dict) -> None:
    assert [_key(step) for step in _job(train_deploy, "dev")["steps"]] == DEV_ORDER


def test_prod_steps_in_order_with_the_restore_on_failure_last(train_deploy: dict) -> None:
    prod = _job(train_deploy, "prod")
    assert [_key(step) for step in prod["steps"]] == PROD_ORDER
    assert _step(prod, "make release-restore")["if"] == "failure()"
    assert prod["env"]["DEPLOY_TARGET"] == "deploy", "restore redeploys to AWS"
    assert [step.get("if") for step in prod["steps"][:-1]] == [None] * (len(PROD_ORDER) - 1)


def test_releases_run_from_main_only(train_deploy: dict) -> None:
    for job in _jobs(train_deploy):
        assert "github.ref == 'refs/heads/main'" in job["if"]


def test_force_is_read_only_behind_the_prod_approval(train_deploy: dict) -> None:
    dev, prod = _job(train_deploy, "dev"), _job(train_deploy, "prod")
    # The dev job never skips the gate: a forced run skips the dev job and starts at prod's approval.
    assert dev["if"] == "github.ref == 'refs/heads/main' && !inputs.force"
    assert "inputs.force" not in str(dev["steps"]) + str(dev.get("env"))
    assert "(inputs.force && needs.dev.result == 'skipped')" in prod["if"]
    assert "!cancelled()" in prod["if"], "a cancelled dev job never leads to a prod deploy"
    forced = [_key(step) for step in prod["steps"] if step.get("env", {}).get("PROMOTE_FORCE")]
    assert forced == ["make release-gate", "make release-promote"]


def test_training_is_skipped_when_a_version_is_given(train_deploy: dict) -> None:
    assert _step(_job(train_deploy, "dev"), "make train")["if"] == "inputs.model_version == ''"


def test_prod_releases_the_candidate_dev_tested(train_deploy: dict) -> None:
    dev, prod = _job(train_deploy, "dev"), _job(train_deploy, "prod")
    gate = _step(dev, "make release-gate")
    assert gate["id"] == "gate" and gate["env"]["PROMOTE_VERSION"] == "${{ inputs.model_version }}"
    assert dev["outputs"] == {"candidate": "${{ steps.gate.outputs.candidate }}"}
    assert _step(prod, "make release-gate")["env"]["PROMOTE_VERSION"] == \
        "${{ needs.dev.outputs.candidate || inputs.model_version }}"



def test_prod_refuses_a_trained_candidate_older_than_production_but_not_a_named_rollback(train_deploy: dict) -> None:
    # Two runs waiting for prod's approval may be approved in either order; the last must not undo the newer.
    dev, prod = _job(train_deploy, "dev"), _job(train_deploy, "prod")
    assert _step(prod, "make release-gate")["env"]["RELEASE_REFUSE_OLDER"] == "${{ inputs.model_version == '' }}"
    assert "RELEASE_REFUSE_OLDER" not in str(dev) + str(prod.get("env")), "only the prod gate, before the deploy"

def test_aws_credentials_come_from_the_oidc_role_not_stored_keys(train_deploy: dict) -> None:
    for job in _jobs(train_deploy):
        given = _step(job, "aws-actions/configure-aws-credentials")["with"]
        assert given["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
        assert given["aws-region"] == "${{ vars.AWS_REGION }}"
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(given)


def test_data_comes_from_the_s3_remote_and_alarms_mail_the_configured_address(train_deploy: dict) -> None:
    for job in _jobs(train_deploy):
        assert job["env"]["DVC_REMOTE"] == "${{ vars.DVC_REMOTE || 's3' }}"
        assert job["env"]["ALARM_EMAIL"] == "${{ vars.ALARM_EMAIL }}"


def test_the_mlflow_uri_reaches_only_the_steps_that_use_mlflow(train_deploy: dict) -> None:
    expected = {
        "dev": ["make release-preflight", "make train", "make release-gate", "make release-export"],
        "prod": ["make release-preflight", "make release-gate", "make release-export", "make release-promote",
                 "make verify-release", "make release-restore"],
    }
    for name, steps in expected.items():
        job = _job(train_deploy, name)
        given = [_key(step) for step in job["steps"] if step.get("env", {}).get("MLFLOW_TRACKING_URI") == MLFLOW_URI]
        assert given == steps
        assert "MLFLOW_TRACKING_URI" not in job.get("env", {})


def test_secrets_appear_only_in_step_environments(train_deploy: dict, ci: dict) -> None:
    for workflow in (train_deploy, ci):
        for job in workflow["jobs"].values():
            assert "secrets." not in str(job.get("env", {}))
            for step in job["steps"]:
                assert "secrets." not in str(step.get("with", {})) + step.get("run", ""), _key(step)


def test_checkouts_do_not_keep_the_token(train_deploy: dict, ci: dict) -> None:
    for job in [*_jobs(train_deploy), *_jobs(ci)]:
        assert _step(job, "actions/checkout")["with"]["persist-credentials"] is False
