"""The scheduled drift workflow: when it runs, what it may do, its steps, and the make targets it calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.workflows.conftest import ROOT, load_workflow, run_make

ORDER = ["actions/checkout", "actions/setup-python", "make monitor-setup", "aws-actions/configure-aws-credentials",
         "make ci-drift", "make drift-summary", "actions/upload-artifact"]


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_workflow("drift.yml")


def _job(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow["jobs"]["drift"]


def _key(step: dict[str, Any]) -> str:
    return step["uses"].split("@")[0] if "uses" in step else step["run"].strip()


def _step(workflow: dict[str, Any], key: str) -> dict[str, Any]:
    return next(step for step in _job(workflow)["steps"] if _key(step) == key)


def test_it_runs_daily_and_on_dispatch_from_main_only(workflow: dict) -> None:
    (schedule,) = workflow["on"]["schedule"]
    minute, hour, *rest = schedule["cron"].split()
    assert minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"], "once a day"
    assert set(workflow["on"]["workflow_dispatch"]["inputs"]) == {"days", "model_version"}
    assert _job(workflow)["if"] == "github.ref == 'refs/heads/main'"


def test_it_runs_in_the_monitor_environment_the_monitor_role_trusts(workflow: dict) -> None:
    # infra/capture trusts repo:OWNER/REPO:environment:monitor; its secret is that environment's (zizmor auditor)
    assert _job(workflow).get("environment") == "monitor"


def test_it_holds_an_oidc_token_and_read_access_only(workflow: dict) -> None:
    assert workflow["permissions"] == {}
    assert _job(workflow)["permissions"] == {"id-token": "write", "contents": "read"}
    given = _step(workflow, "aws-actions/configure-aws-credentials")["with"]
    assert given["role-to-assume"] == "${{ vars.AWS_MONITOR_ROLE_ARN }}", "the read-only monitor role"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(given)
    assert _step(workflow, "actions/checkout")["with"]["persist-credentials"] is False


def test_steps_in_order_and_the_report_survives_a_drift_failure(workflow: dict) -> None:
    assert [_key(step) for step in _job(workflow)["steps"]] == ORDER
    for key in ("make drift-summary", "actions/upload-artifact"):
        assert _step(workflow, key)["if"] == "${{ !cancelled() }}", f"{key} must run when drift fails the job"
    assert "if" not in _step(workflow, "make ci-drift"), "drift fails the job: visible in red"
    assert _step(workflow, "actions/upload-artifact")["with"]["path"] == "dist/reports/drift/"


def test_inputs_reach_the_drift_step_through_its_environment(workflow: dict) -> None:
    env = _step(workflow, "make ci-drift")["env"]
    assert env["CAPTURE_URI"] == "${{ vars.CAPTURE_URI }}"
    assert env["DRIFT_DAYS"] == "${{ inputs.days || '1' }}"
    assert env["DRIFT_VERSION"] == "${{ inputs.model_version }}"
    assert env["MLFLOW_TRACKING_URI"] == "${{ vars.MLFLOW_TRACKING_URI || secrets.MLFLOW_TRACKING_URI }}"
    assert "secrets." not in json.dumps({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})


@pytest.mark.parametrize(("env", "message"), [
    ({}, "CAPTURE_URI must be s3://"),
    ({"CAPTURE_URI": "/local/folder"}, "CAPTURE_URI must be s3://"),
    ({"CAPTURE_URI": "s3://b/capture/", "DRIFT_DAYS": "1; rm -rf /"}, "DRIFT_DAYS must be a number"),
    ({"CAPTURE_URI": "s3://b/capture/", "DRIFT_VERSION": "$(id)"}, "DRIFT_VERSION must be a registered version"),
])
def test_ci_drift_refuses_bad_inputs_before_running_anything(env: dict[str, str], message: str) -> None:
    done = run_make(ROOT, "ci-drift", env={"CAPTURE_URI": "", "DRIFT_DAYS": "", "DRIFT_VERSION": "", **env})
    assert done.returncode != 0
    assert message in done.stderr


def test_ci_drift_judges_whole_utc_days_ending_at_today_s_midnight() -> None:
    # Given the daily job, started whenever the scheduler gets to it (the command line is echoed, not run)
    from datetime import UTC, datetime

    before = datetime.now(UTC).date().isoformat()
    done = run_make(ROOT, "ci-drift", "PY=echo", env={"CAPTURE_URI": "s3://b/capture/", "DRIFT_DAYS": "2",
                                                      "DRIFT_VERSION": ""})
    after = datetime.now(UTC).date().isoformat()
    # Then its window ends at 00:00 UTC today, not at the start time: consecutive days neither overlap nor leave
    # a gap, and the last minutes, still in Firehose's buffers when the job starts, belong to tomorrow's run
    assert done.returncode == 0, done.stderr
    args = done.stdout.split()
    assert args[args.index("--days") + 1] == "2"
    assert args[args.index("--until") + 1] in {before, after}, done.stdout


def test_drift_summary_turns_the_summary_into_markdown(tmp_path: Path) -> None:
    out = tmp_path / "drift"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({
        "verdict": "drift", "model": {"name": "student-score", "version": "3"},
        "window": {"since": "2025-12-01T00:00:00.000Z", "until": "2025-12-02T00:00:00.000Z"}, "records": 900,
        "refused_requests": 2, "alarms": ["Hours_Studied: PSI 0.900 ≥ 0.2"],
        "features": {"Hours_Studied": {"kind": "numeric", "psi": 0.9, "wasserstein": 0.93, "status": "drift"}},
        "prediction": {"kind": "numeric", "psi": 0.4, "wasserstein": 0.5, "status": "drift"}}))
    summary = tmp_path / "summary.md"
    done = run_make(ROOT, "drift-summary", f"DRIFT_OUT={out}", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert "version 3: **drift**" in text and "- Hours_Studied: PSI 0.900" in text
    assert "| Hours_Studied | numeric | 0.900 | 0.930 | drift |" in text


def test_drift_summary_says_so_when_the_job_wrote_none(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    done = run_make(ROOT, "drift-summary", f"DRIFT_OUT={tmp_path}", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0
    assert "No drift summary" in summary.read_text()


@pytest.mark.parametrize(("argv", "code", "stream", "text"), [
    (["--help"], 0, "out", "usage: python -m monitoring.summary SUMMARY_JSON"),
    (["-x"], 2, "err", "usage: python -m monitoring.summary SUMMARY_JSON"),
    ([], 2, "err", "usage: python -m monitoring.summary SUMMARY_JSON"),
])
def test_the_summary_command_reads_help_and_options_as_such_not_as_a_file(argv: list[str], code: int, stream: str,
                                                                          text: str, capsys) -> None:
    from monitoring import summary

    assert summary.main(argv) == code
    captured = capsys.readouterr()
    assert text in getattr(captured, stream) and "No drift summary" not in captured.out
