"""The deploy role may make the MLflow calls the release workflow makes, and no others: each workflow step that talks
to MLflow runs the module its make target runs, against a real ``mlflow server`` whose access log lists every REST
call it served (infra/bootstrap's ``RELEASE_MLFLOW_CALLS``).

The steps run in the order releases would: a first release on an empty server (train, a restore with no production
yet, gate, export, promote, verify), a promote run again, a second release gated against production, a candidate the
gate refuses and then a forced one, a promotion that finds the lock of one killed part-way, and a restore. make deploy,
smoke, data and job-summary make no MLflow call; deploying is what a restore adds to export, so it is left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments.generate import generate
from infra.bootstrap.infrastructure import RELEASE_MLFLOW_CALLS
from tests.infra.mlflow_server import MlflowServer, mlflow_server  # noqa: F401 - the server, a fixture
from tests.registry.conftest import DATA_HASH, SMALL_TRAIN, WEAK_LEARNING_RATE, WEAK_TRAIN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "student-score"
CANDIDATE = "dist/release/candidate"


@dataclass
class Release:
    """A project folder whose steps run against the server, and every call each step made."""

    folder: Path
    server: MlflowServer
    calls: dict[str, set[str]]

    def params(self, *, seed: int, weak: bool = False) -> None:
        """params.yaml for a small training (``weak``: one a gate must refuse), the registry's own names kept."""
        raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
        raw["data"]["path"] = "data/students.csv"
        raw["train"].update(SMALL_TRAIN, seed=seed, storage=f"journal:{self.folder / 'optuna.journal'}")
        raw["train"]["search_space"]["booster"] = {"choices": ["gbtree"]}  # a weak tree model is reliably weak
        if weak:
            raw["train"].update(WEAK_TRAIN)
            raw["train"]["search_space"]["gbtree"]["learning_rate"] = WEAK_LEARNING_RATE
        raw["export"]["path"] = "dist/model.tar.gz"
        (self.folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")

    def step(self, name: str, module: str, *args: str, exit_code: int = 0) -> str:
        """Run ``python -m module --params params.yaml ARGS`` as the step's make recipe does; its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "OPTUNA_"))}
        env |= {"MLFLOW_TRACKING_URI": self.server.url, "PYTHONPATH": str(ROOT)}
        before = self.server.mark()
        done = subprocess.run([sys.executable, "-m", module, "--params", "params.yaml", *args], cwd=self.folder,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == exit_code, f"{name}: exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
        self.calls[name] = self.server.calls_since(before)
        return done.stdout + done.stderr


@pytest.fixture
def release(mlflow_server: MlflowServer, tmp_path: Path) -> Release:  # noqa: F811 - the imported fixture
    (tmp_path / "data").mkdir()
    generate(rows=600, seed=7).to_csv(tmp_path / "data" / "students.csv", index=False)
    (tmp_path / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DATA_HASH, "path": "data"}]}))
    return Release(tmp_path, mlflow_server, {})


def _killed_promotion(url: str, *, to: str, replaced: str) -> None:
    """What a promotion of ``to`` killed right after moving ``previous`` onto ``replaced`` leaves, when no version held
    ``previous`` before it (the second release ever): previous moved, production not, its plan on the lock. The lock
    names no owner and was taken long ago, so the next promotion takes it for dead (registry.lock)."""
    client = MlflowClient(url)
    client.delete_registered_model_alias(MODEL, "previous")
    client.set_registered_model_alias(MODEL, "previous", replaced)
    event = {"action": "promote", "promotion_id": "killed", "from": replaced, "to": to, "who": "ci", "when": "then"}
    plan = {"id": "killed", "action": "promote", "alias": "production", "previous_alias": "previous", "to": to,
            "from": replaced, "previous_before": None, "event": event, "export": None}
    client.create_registered_model(f"{MODEL}.promotion-lock", tags={
        "lock.holder": "ci@another-runner pid 7", "lock.since": "1", "lock.plan": json.dumps(plan)})


def test_the_release_makes_exactly_the_mlflow_calls_the_deploy_role_may_make(release: Release) -> None:
    promote = ("registry.promote", "--no-export")  # make release-promote (ci-promote)
    verify = ("registry.export", "--out", "dist/release/production.tar.gz")  # make verify-release
    # Given an MLflow server nothing has been logged to, when the first release runs (the dev job, then prod)
    release.params(seed=1)
    release.step("train, on an empty server", "experiments.train")
    out = release.step("restore, with no production yet", *verify, exit_code=1)
    assert "has no 'production' alias yet" in out
    release.step("gate, best for the data", "registry.release", "--out", CANDIDATE)
    release.step("export the candidate", "registry.export", "--version", "1", "--out", "dist/model.tar.gz")
    release.step("promote, the first production", *promote, "--version", "1", "--reason", "run 1 at abc")
    release.step("verify", *verify)
    out = release.step("promote, run again", *promote, "--version", "1")
    assert "already holds @production; nothing to do" in out
    # And a second release, gated against production
    release.params(seed=2)
    release.step("train, on a server with the model", "experiments.train")
    release.step("gate, a version against production", "registry.release", "--version", "2", "--out", CANDIDATE)
    release.step("promote over production", *promote, "--version", "2")
    # And a version the gate refuses, dry and for real, then released by force
    release.params(seed=3, weak=True)
    release.step("train a weak version", "experiments.train")
    out = release.step("gate refusing", "registry.release", "--version", "3", "--out", CANDIDATE, exit_code=1)
    assert "gate refused version 3" in out
    release.step("promote refusing", *promote, "--version", "3", exit_code=1)
    release.step("gate, forced", "registry.release", "--version", "3", "--force", "--out", CANDIDATE)
    release.step("promote, forced", *promote, "--version", "3", "--force")
    # And a promotion finding the lock of one killed after moving only previous, which it puts back onto no version
    _killed_promotion(release.server.url, to="1", replaced="3")
    out = release.step("promote, finishing a killed one", *promote, "--version", "2")
    assert "had moved only @previous: put back" in out
    # And a failed release's restore: verify, export production's version again (deploy, verify again)
    release.step("restore", "registry.export", "--out", "dist/model.tar.gz")

    # Then every step made only calls RELEASE_MLFLOW_CALLS maps to IAM actions, and between them made each of those
    stray = {step: sorted(calls - set(RELEASE_MLFLOW_CALLS)) for step, calls in release.calls.items()}
    assert {step: calls for step, calls in stray.items() if calls} == {}, "calls the deploy role may not make"
    made = set().union(*release.calls.values())
    assert set(RELEASE_MLFLOW_CALLS) - made == set(), "granted, and no step made it"
