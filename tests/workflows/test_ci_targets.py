"""Tests of the CI make targets run locally: metrics-diff, job-summary, release-preflight, ci-promote, DVC_REMOTE."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.workflows.conftest import ROOT, run_make


def _commit(repo: Path, message: str) -> None:
    for args in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)


def _retrain(repo: Path, rmse: float) -> None:
    """What `dvc repro` leaves after a params change: params.yaml and metrics.json both differ."""
    params = repo / "params.yaml"
    text, changed = re.subn(r"n_trials: (\d+)", lambda m: f"n_trials: {int(m[1]) + 1}", params.read_text())
    assert changed == 1
    params.write_text(text)
    metrics = json.loads((repo / "metrics.json").read_text())
    metrics["test"]["rmse"] = rmse
    (repo / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _tarball(path: Path, metadata: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = json.dumps(metadata).encode()
        info = tarfile.TarInfo("metadata.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_metrics_diff_writes_the_markdown_table_to_the_job_summary(mini_repo: Path, tmp_path: Path) -> None:
    # Given a change that retrained the model
    _retrain(mini_repo, rmse=1.5)
    summary = tmp_path / "summary.md"
    # When metrics-diff runs as on a pull request, against the base commit
    result = run_make(mini_repo, "metrics-diff", env={"BASE_REF": "HEAD", "GITHUB_STEP_SUMMARY": str(summary)})
    # Then the summary holds dvc's markdown diff with the new RMSE
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("### Metrics: HEAD → this change")
    assert "| Path" in text and "test.rmse" in text and "1.5" in text, text


def test_metrics_diff_prints_to_stdout_without_a_job_summary(mini_repo: Path) -> None:
    _retrain(mini_repo, rmse=1.5)
    _commit(mini_repo, "retrain")
    result = run_make(mini_repo, "metrics-diff")  # no BASE_REF, no origin/main: HEAD~1
    assert result.returncode == 0, result.stderr
    assert "### Metrics: HEAD~1 → this change" in result.stdout and "test.rmse" in result.stdout


def test_metrics_diff_has_nothing_to_compare_when_no_training_input_changed(mini_repo: Path,
                                                                             tmp_path: Path) -> None:
    # Given a change to something else than data, params or training code
    (mini_repo / "README.md").write_text("docs\n")
    summary = tmp_path / "summary.md"
    result = run_make(mini_repo, "metrics-diff", env={"BASE_REF": "HEAD", "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    assert "nothing to compare" in result.stdout
    assert not summary.exists(), "no table for a change that cannot move the metrics"


def test_metrics_diff_refuses_an_unknown_base(mini_repo: Path) -> None:
    result = run_make(mini_repo, "metrics-diff", env={"BASE_REF": "origin/nope"})
    assert result.returncode != 0
    assert "error: metrics-diff: unknown base revision 'origin/nope'" in result.stderr


def test_job_summary_names_the_released_version_and_shows_its_own_metrics(mini_repo: Path, tmp_path: Path) -> None:
    # Given an exported model (not the one metrics.json describes) and a summary already holding an earlier step's
    tar = _tarball(tmp_path / "model.tar.gz", {"registered_name": "student-score", "version": "7",
                                               "data_hash": "8ffc9142.dir", "git_commit": "d6aaee6",
                                               "metrics": {"test_rmse": 2.25, "test_r2": 0.8125}})
    workspace = json.loads((mini_repo / "metrics.json").read_text())["test"]["rmse"]
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    # When job-summary runs
    result = run_make(mini_repo, "job-summary", f"MODEL_TAR={tar}", env={"GITHUB_STEP_SUMMARY": str(summary)})
    # Then it appends the released version and dvc's metrics table
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n### Release"), "the summary is appended to, never replaced"
    assert "Released **student-score** version **7**, data `8ffc9142.dir`, commit `d6aaee6`" in text
    assert "| test_r2 | 0.8125 |\n| test_rmse | 2.2500 |" in text, "the released version's metrics"
    assert f"{workspace:.4f}" not in text and "| Path" not in text, "not the workspace's metrics.json"


def test_job_summary_says_when_the_bundle_has_no_metrics(mini_repo: Path, tmp_path: Path) -> None:
    tar = _tarball(tmp_path / "model.tar.gz", {"registered_name": "student-score", "version": "7"})
    summary = tmp_path / "summary.md"
    result = run_make(mini_repo, "job-summary", f"MODEL_TAR={tar}", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    assert "No test metrics in version 7's metadata.json." in summary.read_text()


def test_job_summary_fails_in_one_line_without_an_exported_model(mini_repo: Path, tmp_path: Path) -> None:
    result = run_make(mini_repo, "job-summary", f"MODEL_TAR={tmp_path / 'missing.tar.gz'}")
    assert result.returncode != 0
    assert f"error: {tmp_path / 'missing.tar.gz'}: no such model tarball (run make export first)" in result.stderr


@pytest.mark.parametrize("uri", ["", "sqlite:///mlflow.db", "file:./mlruns", "/srv/mlruns", "mlruns", "../mlruns",
                                 "~/mlruns", "http://127.0.0.1:5000", "http://localhost:5000",
                                 "postgresql://ci@localhost/mlflow", "https://[::1]:5000"])
def test_release_preflight_refuses_a_store_that_dies_with_the_runner(uri: str) -> None:
    result = run_make(ROOT, "release-preflight", env={"MLFLOW_TRACKING_URI": uri} if uri else None)
    assert result.returncode != 0
    assert "error: MLFLOW_TRACKING_URI" in result.stderr


@pytest.mark.parametrize("uri", ["https://ci:s3cret@mlflow.example.com",
                                 "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team",
                                 "postgresql+psycopg://ci:s3cret@db.example.com/mlflow", "https://localhost.example.com"])
def test_release_preflight_accepts_a_shared_store_without_printing_it(uri: str) -> None:
    result = run_make(ROOT, "release-preflight", env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr and "123456789012" not in result.stdout + result.stderr


@pytest.mark.parametrize(("env", "error"), [
    ({}, "error: MLFLOW_TRACKING_URI is not set"),
    ({"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, "error: MLFLOW_TRACKING_URI is a local store"),
    ({"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}, "error: SMOKE_API_KEY is not set"),
], ids=["no-registry", "local-registry", "no-api-key"])
def test_release_restore_of_prod_by_hand_refuses_before_checking_or_deploying_anything(env: dict, error: str,
                                                                                       tmp_path: Path) -> None:
    # Given a by-hand restore of the real prod endpoint (DEPLOY_TARGET deploy, the default) missing what it needs
    result = run_make(ROOT, "release-restore", "INFRA_ENV=prod", "SMOKE_URL=https://api.example.invalid/predict",
                      f"RELEASE_DIR={tmp_path / 'release'}", env=env)
    # Then it stops with one line naming what is missing, before exporting, checking or deploying anything
    assert result.returncode != 0
    assert error in result.stderr, result.stderr
    assert "registry.export" not in result.stdout and "cdk deploy" not in result.stdout
    assert not (tmp_path / "release").exists()


@pytest.mark.parametrize(("variable", "value"), [("PROMOTE_VERSION", "3; echo injected"),
                                                  ("PROMOTE_VERSION", "0"), ("PROMOTE_FORCE", "yes")])
def test_ci_promote_refuses_malformed_inputs_before_running_anything(variable: str, value: str,
                                                                      tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    result = run_make(ROOT, "ci-promote", env={variable: value, "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 2
    assert f"error: {variable} must be" in result.stderr
    assert "injected" not in result.stdout, "the input never reaches a shell as code"
    assert "registry.promote" not in result.stdout, "nothing ran"


def test_release_gate_passes_refuse_older_only_when_release_refuse_older_is_true(tmp_path: Path) -> None:
    # The command line is echoed, not run: the prod job's gate sets the variable when no version was asked for
    for value, flag in (("true", True), ("false", False), ("", False)):
        result = run_make(ROOT, "release-gate", "PY=echo", f"RELEASE_DIR={tmp_path}",
                          env={"RELEASE_REFUSE_OLDER": value})
        assert result.returncode == 0, result.stderr
        assert ("--refuse-older" in result.stdout.split()) is flag, f"{value!r}: {result.stdout}"


def test_release_gate_refuses_a_malformed_release_refuse_older_before_running_anything(tmp_path: Path) -> None:
    result = run_make(ROOT, "release-gate", "PY=echo", f"RELEASE_DIR={tmp_path}",
                      env={"RELEASE_REFUSE_OLDER": "yes; echo injected"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: RELEASE_REFUSE_OLDER must be true or false, got 'yes; echo injected'")
    assert "registry.release" not in result.stdout, "nothing ran"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ci_promote_puts_the_refusal_reason_in_the_job_summary_and_fails(tmp_path: Path) -> None:
    # Given an MLflow store without the model, and a dispatch asking for version 99 with a reason
    summary = tmp_path / "summary.md"
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # a real store, made empty
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PROMOTE_VERSION": "99",
           "PROMOTE_REASON": "Train and deploy run 12 at abc; echo 'x'", "GITHUB_STEP_SUMMARY": str(summary)}
    # When ci-promote runs
    result = run_make(ROOT, "ci-promote", env=env, timeout=230)
    # Then make promote ran with the flags from the inputs, failed, and its one-line reason is in the summary
    assert result.returncode != 0
    assert "registry.promote --no-export --version 99 --reason 'Train and deploy run 12 at abc echo x'" in result.stdout
    text = summary.read_text()
    assert text.startswith("### Release stopped at promotion\n\n")
    assert "registered model 'student-score' not found" in text
    assert "error: registered model 'student-score' not found" in result.stderr, "the log has it too"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_make_data_pulls_from_the_remote_named_by_dvc_remote(mini_repo: Path, tmp_path: Path) -> None:
    # Given a second remote holding the data, and a default remote that has nothing (as in CI: only S3 has it)
    shutil.copytree(ROOT / "sample-remote", tmp_path / "other-remote")
    dvc = str(ROOT / ".venv" / "bin" / "dvc")
    subprocess.run([dvc, "remote", "add", "-q", "other", str(tmp_path / "other-remote")], cwd=mini_repo, check=True)
    subprocess.run([dvc, "remote", "modify", "-q", "sample", "url", str(tmp_path / "empty")], cwd=mini_repo,
                   check=True)
    # When make data runs with DVC_REMOTE=other (setup taken as done: the venv is the shared one)
    result = run_make(mini_repo, "-o", "setup", "data", "DVC_REMOTE=other", timeout=230)
    # Then the CSV is pulled from that remote
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pull --quiet -r other data.dvc" in result.stdout
    assert (mini_repo / "data" / "student_performance.csv").read_bytes() == \
        (ROOT / "data" / "student_performance.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ci_synth_synthesizes_without_an_exported_model(tmp_path: Path) -> None:
    if not (ROOT / "infra" / "node_modules" / ".bin" / "cdk").is_file():
        pytest.fail("the pinned CDK CLI is missing: run `make setup` (npm ci in infra/)")
    # When ci-synth runs as on a fresh clone, where no model was ever exported
    result = run_make(ROOT, "ci-synth", f"INFRA_OUT={tmp_path / 'cdk.out'}", timeout=290)
    # Then the serving and storage templates are written
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "cdk.out").glob("*.template.json"))
    assert names == ["StudentScore-Account.template.json", "StudentScore-dev-Serving.template.json",
                     "StudentScore-dev-Storage.template.json"]


def _make_files(repo: Path) -> Path:
    """What the infra and serving targets read at make time, in a new folder with no .venv or node_modules."""
    for rel in ("Makefile", "mk", "serving/Dockerfile", "infra/package.json", "infra/package-lock.json"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / rel).is_dir() else shutil.copy)(ROOT / rel, repo / rel)
    return repo


def test_infra_and_serving_targets_keep_a_checkout_path_with_a_space_in_one_word(tmp_path: Path) -> None:
    # Given the make files in a folder whose name has a space
    repo = _make_files(tmp_path / "my repo")
    # When the commands of synth, deploy and serve-local are printed (make -n: nothing runs)
    result = run_make(repo, "-n", "synth", "deploy", "serve-local", "MODEL_TAR=dist/model.tar.gz")
    assert result.returncode == 0, result.stderr
    # Then the shell reads each absolute path as one word
    words = [w for line in result.stdout.replace("\\\n", " ").splitlines() for w in shlex.split(line)]
    for option, path in (("--output", "infra/cdk.out"), ("--outputs-file", "dist/cdk-outputs.json")):
        assert words[words.index(option) + 1] == str(repo / path), option
    assert f"model_tarball={repo / 'dist/model.tar.gz'}" in words
    assert f"SM_MODEL_DIR={repo / 'dist/serve-local'}" in words


@pytest.mark.parametrize("target", ["cdk-bootstrap", "deploy-storage", "infra-bootstrap"])
def test_first_deploy_targets_set_up_the_environment_the_cdk_app_runs_in(target: str, tmp_path: Path) -> None:
    # Given a fresh clone's make files (no .venv: infra/cdk.json's app is ../.venv/bin/python -m infra.app)
    repo = _make_files(tmp_path / "repo")
    # When the target's commands are printed
    result = run_make(repo, "-n", target, "CDK_ENVIRONMENT=aws://123456789012/eu-west-1")
    # Then the environment is synced before the CDK CLI runs the app
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sync = next(i for i, line in enumerate(lines) if "sync --frozen" in line)
    assert sync < next(i for i, line in enumerate(lines) if "&& ./node_modules/.bin/cdk " in line)


def test_metrics_diff_compares_when_only_the_metrics_changed(mini_repo: Path, tmp_path: Path) -> None:
    # Given a retrain after a change DVC does not track (a dependency bump): only the metrics file differs
    metrics = json.loads((mini_repo / "metrics.json").read_text())
    metrics["test"]["rmse"] = 9.75
    (mini_repo / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = tmp_path / "summary.md"
    # When metrics-diff runs as on that pull request
    result = run_make(mini_repo, "metrics-diff", env={"BASE_REF": "HEAD", "GITHUB_STEP_SUMMARY": str(summary)})
    # Then the summary shows the new RMSE, not "nothing to compare"
    assert result.returncode == 0, result.stderr
    assert "nothing to compare" not in result.stdout, result.stdout
    assert summary.is_file() and "test.rmse" in summary.read_text() and "9.75" in summary.read_text()
