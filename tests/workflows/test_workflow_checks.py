"""Tests that the workflows pass GitHub's schema and zizmor offline, and that each step is a real make target."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.workflows.conftest import ROOT, WORKFLOWS, load_workflow, run_make

BIN = ROOT / ".venv" / "bin"
FILES = sorted(WORKFLOWS.glob("*.yml"))
MAKE_CALL = re.compile(r"make ([a-z][a-z0-9-]*)")


def _steps(name: str) -> list[dict]:
    return [step for job in load_workflow(name)["jobs"].values() for step in job["steps"]]


def test_the_workflows_are_there() -> None:
    assert [f.name for f in FILES] == ["ci.yml", "drift.yml", "train-deploy.yml"]


def test_workflows_match_githubs_workflow_schema() -> None:
    # check-jsonschema ships the schema, so --builtin-schema needs no network.
    result = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *FILES],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing_of_medium_or_higher_severity() -> None:
    # All severities are requested, so a finding is filtered here, where the test can name it.
    result = subprocess.run([BIN / "zizmor", "--offline", "--no-progress", "--format", "json", WORKFLOWS],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip(), result.stderr
    findings = json.loads(result.stdout)
    serious = [f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}"
               for f in findings if f["determinations"]["severity"] in {"Medium", "High"}]
    assert serious == [], "\n".join(serious)


def test_make_workflow_check_passes() -> None:
    result = run_make(ROOT, "workflow-check")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [f.name for f in FILES])
def test_every_run_step_is_one_make_target_call(name: str) -> None:
    runs = [step["run"] for step in _steps(name) if "run" in step]
    assert runs, "the workflow runs something"
    odd = [run for run in runs if not MAKE_CALL.fullmatch(run.strip())]
    assert odd == [], f"steps must be `make <target>` so they also run locally: {odd}"


@pytest.mark.parametrize("target", sorted({MAKE_CALL.fullmatch(step["run"].strip()).group(1)
                                            for f in FILES for step in _steps(f.name)
                                            if "run" in step and MAKE_CALL.fullmatch(step["run"].strip())}))
def test_every_make_target_a_workflow_calls_exists(target: str) -> None:
    # -n prints the recipe without running it; an unknown target fails with "No rule to make target".
    result = run_make(ROOT, "-n", target)
    assert result.returncode == 0, f"make -n {target}: {result.stderr[-2000:]}"
    assert "No rule to make target" not in result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_its_version(path: Path) -> None:
    uses = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert uses, "the workflow uses actions"
    loose = [line for line in uses
             if not re.fullmatch(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line)]
    assert loose == [], f"pin each action by a 40-hex commit SHA with a # vX.Y.Z comment: {loose}"


@pytest.mark.parametrize("name", [f.name for f in FILES])
def test_no_run_script_expands_inputs_or_event_data(name: str) -> None:
    # ${{ }} in a run: is pasted into the script before the shell sees it (template injection); values reach
    # the scripts through env: instead.
    runs = [step["run"] for step in _steps(name) if "run" in step]
    assert [run for run in runs if "${{" in run] == []


def test_dependabot_watches_the_image_the_python_lock_the_npm_lock_and_the_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    watched = {(update["package-ecosystem"], update["directory"]) for update in config["updates"]}
    assert watched == {("docker", "/serving"), ("uv", "/"), ("npm", "/infra"), ("github-actions", "/")}
    for ecosystem, folder, pinned in (("docker", "serving", "Dockerfile"), ("uv", ".", "uv.lock"),
                                      ("npm", "infra", "package-lock.json"), ("github-actions", ".github", "workflows")):
        assert (ROOT / folder / pinned).exists(), f"{ecosystem}: nothing to update in /{folder}"
    assert all(update["schedule"]["interval"] == "weekly" for update in config["updates"])
