"""Fixtures for the workflow tests: the parsed workflow files, a `make` runner, and a small git repo to run in."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
# What the CI targets read: the make files, the DVC project files, the metrics, and the code job-summary runs.
MINI_REPO_FILES = ("Makefile", "mk", ".dvc/config", ".dvcignore", "data.dvc", "dvc.yaml", "params.yaml",
                   "metrics.json", "core", "experiments", "serving", "infra/__init__.py", "infra/smoke")


def load_workflow(name: str) -> dict[str, Any]:
    """A workflow as data; YAML 1.1 reads the ``on`` key as True, so it is renamed back."""
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


@pytest.fixture(scope="session")
def ci() -> dict[str, Any]:
    return load_workflow("ci.yml")


@pytest.fixture(scope="session")
def train_deploy() -> dict[str, Any]:
    return load_workflow("train-deploy.yml")


Make = Callable[..., subprocess.CompletedProcess]


def run_make(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``make --no-print-directory ARGS`` with the CI variables cleared unless ``env`` sets them."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "PROMOTE_", "RELEASE_", "SMOKE_", "DVC_REMOTE", "BASE_REF",
                                                   "MLFLOW_"))}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=base | (env or {}),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def mini_repo(tmp_path: Path) -> Path:
    """A git repo with the project's make files and DVC project files, one commit, sharing the real .venv."""
    repo = tmp_path / "repo"
    for rel in MINI_REPO_FILES:
        source, dest = ROOT / rel, repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (repo / ".gitignore").write_text(".venv\n")
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    return repo
