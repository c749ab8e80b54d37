"""A train-deploy or drift run from another branch than main fails in red with one line, instead of skipping
every job and showing green."""

from __future__ import annotations

import pytest

from tests.workflows.conftest import ROOT, load_workflow, run_make

WORKFLOWS = ("train-deploy.yml", "drift.yml")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_a_run_from_another_branch_has_a_job_that_fails_it(name: str) -> None:
    # Given the workflow's jobs: the guard, and the ones doing the work, which run from main only
    jobs = load_workflow(name)["jobs"]
    guard = jobs.get("main-only")
    assert guard is not None, f"{name}: a dispatch from another branch skips every job and shows green"
    # Then the guard runs exactly when every other job is skipped, and calls the target tested below
    assert guard["if"] == "github.ref != 'refs/heads/main'"
    assert [step.get("run", step.get("uses", "").split("@")[0]) for step in guard["steps"]] == \
        ["actions/checkout", "make main-only"]
    assert guard["permissions"] == {"contents": "read"} and "environment" not in guard
    for other, job in jobs.items():
        if other != "main-only":
            assert "github.ref == 'refs/heads/main'" in job["if"], other


@pytest.mark.parametrize("ref", ["refs/heads/feature", "refs/tags/v1", "refs/heads/main-2", "refs/heads/x'$(id)"])
def test_main_only_fails_in_one_annotated_line_off_main(ref: str) -> None:
    done = run_make(ROOT, "main-only", env={"GITHUB_REF": ref})
    assert done.returncode != 0
    (line,) = done.stdout.splitlines()
    assert line.startswith("::error::this workflow runs from main only; this run came from 'refs/"), line
    assert "did nothing: run it again from main" in line and "$(id)" not in line
    assert "Traceback" not in done.stderr


def test_main_only_fails_without_a_ref() -> None:
    done = run_make(ROOT, "main-only")
    assert done.returncode != 0
    assert "::error::this workflow runs from main only; this run came from an unset GITHUB_REF" in done.stdout


def test_main_only_passes_on_main() -> None:
    done = run_make(ROOT, "main-only", env={"GITHUB_REF": "refs/heads/main"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "main-only: running from main" in done.stdout
