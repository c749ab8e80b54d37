"""The release workflow's prod job, run here step by step as make targets: a real MLflow SQLite registry with
trained versions, the real gate, export and promote, and the local stand-in (the real container behind the real
Lambda handler) in place of AWS. The deploy step is `make stand-in-deploy` instead of `make deploy`; every other
step is the workflow's own target. Whatever fails, after the run (and `make release-restore`, the workflow's
failure step) production names the version the endpoint serves.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from infra.smoke.cli import check_answer, post, self_test_record
from serving import contract
from serving.layout import bundle_metadata
from tests.registry.conftest import Store, trained  # noqa: F401 - the session's trained registry, a fixture
from tests.workflows.conftest import ROOT, load_workflow, run_make

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What the prod job runs that needs AWS or a dvc project of its own, and is not what this test is about.
NOT_HERE = {"release-preflight", "setup", "data", "job-summary"}
LINKED = ("Makefile", "mk", "core", "experiments", "registry", "serving", "infra", ".venv", ".tools")


def prod_steps() -> list[str]:
    """The make targets of the prod job's steps, in order, without the failure step and what needs AWS."""
    job = load_workflow("train-deploy.yml")["jobs"]["prod"]
    targets = [step["run"].split()[1] for step in job["steps"] if "run" in step and "if" not in step]
    return [t for t in targets if t not in NOT_HERE]


@dataclass
class Repo:
    path: Path
    store: Store
    summary: Path

    def env(self, **extra: str) -> dict[str, str]:
        # A model that cannot start answers /ping 503 until the stand-in gives up: 30 s, not SageMaker's minutes.
        return {"DEPLOY_TARGET": "stand-in-deploy", "CDK_OUTPUTS": str(self.path / "dist" / "cdk-outputs.json"),
                "SMOKE_ARGS": "--attempts 3 --delay 1", "STAND_IN_READY_TIMEOUT": "30",
                "GITHUB_STEP_SUMMARY": str(self.summary), **extra}

    def production(self) -> str | None:
        aliases = MlflowClient(self.store.uri).get_registered_model(self.store.name).aliases
        return str(aliases["production"]) if "production" in aliases else None

    def served(self) -> str:
        """The version the stand-in serves (what `make stand-in-deploy` last deployed successfully)."""
        return str(bundle_metadata(self.path / "dist" / "stand-in" / "deployed.tar.gz")["version"])

    def history(self) -> list[str]:
        tags = MlflowClient(self.store.uri).get_registered_model(self.store.name).tags
        return [tags[key] for key in sorted(tags) if key.startswith("history.")]


@dataclass
class Run:
    failed: str | None
    log: str


def release(repo: Repo, *, before: dict[str, Callable[[], None]] | None = None,
            step_env: dict[str, dict[str, str]] | None = None, **env: str) -> Run:
    """Run the prod job's steps until one fails, then the failure step, as GitHub Actions would."""
    log, failed = [], None
    for step in prod_steps():
        (before or {}).get(step, lambda: None)()
        target = "stand-in-deploy" if step == "deploy" else step
        started = time.monotonic()
        done = run_make(repo.path, target, env=repo.env(**env, **(step_env or {}).get(step, {})), timeout=300)
        log.append(f"$ make {target}  # {time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            failed = step
            break
    if failed:
        started = time.monotonic()
        done = run_make(repo.path, "release-restore", env=repo.env(), timeout=300)
        log.append(f"$ make release-restore  # {time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, "\n".join(log)
    return Run(failed, "\n".join(log))


def assert_registry_follows_what_is_served(repo: Repo, run: Run) -> None:
    """The run ended with verify-release passing, and independently: the API answers with production's version."""
    assert "verify-release: the endpoint serves the version production names" in run.log.rsplit("$ make", 1)[1]
    outputs = json.loads((repo.path / "dist" / "cdk-outputs.json").read_text())
    (url,) = [stack["PredictUrl"] for stack in outputs.values()]
    record = self_test_record(repo.path / "dist" / "stand-in" / "deployed.tar.gz")
    answer = post(url, json.dumps(record).encode(), {"Content-Type": contract.JSON}, timeout=30)
    _, version = check_answer(answer, expect_version=repo.production())
    assert version == repo.served(), run.log


@pytest.fixture(scope="module")
def repo(trained: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:  # noqa: F811
    """A checkout whose params.yaml points at the trained registry; the stand-in is stopped afterwards."""
    path = tmp_path_factory.mktemp("release-repo")
    for name in LINKED:
        (path / name).symlink_to(ROOT / name)
    for name in ("params.yaml", "data.dvc"):
        (path / name).write_bytes((trained.root / name).read_bytes())
    (path / "data").symlink_to(trained.root / "data")
    made = Repo(path, trained, path / "summary.md")
    yield made
    run_make(path, "stand-in-stop", env=made.env())


def _best(repo: Repo) -> str:
    client = MlflowClient(repo.store.uri)
    versions = client.search_model_versions(f"name='{repo.store.name}'")
    return str(min(versions, key=lambda mv: float(mv.tags["test_rmse"])).version)


def _damage_booster(tarball: Path) -> None:
    """Rewrite the bundle with a booster whose bytes no longer match metadata.json: it cannot start."""
    with tarfile.open(tarball) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    with tarfile.open(tarball, "w:gz") as tar:
        for member, data in members:
            if member.name.endswith("booster.ubj"):
                data = data[:-16] + b"\0" * 16
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_the_release_steps_are_the_prod_jobs() -> None:
    assert prod_steps() == ["release-gate", "release-export", "deploy", "smoke", "release-promote",
                            "verify-release"]


def test_a_first_release_ships_the_best_version_and_only_then_names_it_production(repo: Repo) -> None:
    assert repo.production() is None
    run = release(repo)
    assert run.failed is None, run.log
    assert repo.production() == _best(repo)
    assert_registry_follows_what_is_served(repo, run)
    assert "release candidate: version" in run.log


def test_a_gate_refusal_deploys_nothing_and_moves_nothing(repo: Repo) -> None:
    before = (repo.production(), repo.served(), repo.history())
    run = release(repo, PROMOTE_VERSION=repo.store.weak)
    assert run.failed == "release-gate", run.log
    assert f"gate refused version {repo.store.weak}" in run.log
    assert "nothing to restore" in run.log
    assert (repo.production(), repo.served(), repo.history()) == before
    assert not (repo.path / "dist" / "release" / "candidate").exists(), "no candidate a later step could ship"
    assert "### Release stopped at the gate (nothing was deployed)" in repo.summary.read_text()
    assert_registry_follows_what_is_served(repo, run)


def test_a_gate_refusal_on_a_fresh_runner_deploys_nothing(repo: Repo) -> None:
    # Given a runner that has not deployed in this job (no outputs file), with the endpoint serving as before
    outputs = repo.path / "dist" / "cdk-outputs.json"
    kept = outputs.read_bytes()
    outputs.unlink()
    before = (repo.production(), repo.served(), repo.history())
    summary_before = repo.summary.read_text() if repo.summary.exists() else ""
    try:
        # When the gate refuses the candidate
        run = release(repo, PROMOTE_VERSION=repo.store.weak)
        # Then the restore step sees that nothing was deployed, and deploys nothing either
        assert run.failed == "release-gate", run.log
        assert "this run deployed nothing" in run.log and "deploying production's version again" not in run.log
        assert not outputs.exists(), "no deploy ran"
        assert (repo.production(), repo.served(), repo.history()) == before
        assert "deployed again" not in repo.summary.read_text().removeprefix(summary_before)
    finally:
        outputs.write_bytes(kept)


def test_a_failed_deploy_leaves_production_and_the_endpoint_on_the_old_version(repo: Repo) -> None:
    before = (repo.production(), repo.served(), repo.history())
    # Given a candidate whose bundle cannot start (as a deploy that CloudFormation rolls back)
    model_tar = repo.path / "dist" / "model.tar.gz"
    run = release(repo, before={"deploy": lambda: _damage_booster(model_tar)},
                  PROMOTE_VERSION=repo.store.weak, PROMOTE_FORCE="true")
    assert run.failed == "deploy", run.log
    assert f"rolled back, version {before[1]} is served" in run.log
    assert "nothing to restore" in run.log
    assert (repo.production(), repo.served(), repo.history()) == before
    assert_registry_follows_what_is_served(repo, run)


def test_a_failed_smoke_test_puts_productions_version_back_on_the_endpoint(repo: Repo) -> None:
    before = (repo.production(), repo.served(), repo.history())
    # Given a deploy that succeeds but a smoke test that fails (the endpoint refuses the record it is sent)
    bad_record = json.dumps({"Hours_Studied": "a lot"})
    run = release(repo, step_env={"smoke": {"SMOKE_ARGS": f"--attempts 1 --record '{bad_record}'"}},
                  PROMOTE_VERSION=repo.store.weak, PROMOTE_FORCE="true")
    assert run.failed == "smoke", run.log
    assert f"deployed version {repo.store.weak} to the stand-in" in run.log, "the candidate was being served"
    assert "deploying production's version again" in run.log
    assert (repo.production(), repo.served(), repo.history()) == before
    assert "### Release failed; production's version was deployed again" in repo.summary.read_text()
    assert_registry_follows_what_is_served(repo, run)


def test_force_without_a_version_is_refused_before_anything_runs(repo: Repo) -> None:
    done = run_make(repo.path, "release-gate", env=repo.env(PROMOTE_FORCE="true"), timeout=120)
    assert done.returncode != 0
    assert "error: --force needs --version: a forced release names the version it vouches for" in done.stderr


def test_the_run_approved_last_never_deploys_its_older_candidate_over_a_newer_release(repo: Repo) -> None:
    # Given two runs waiting for prod's approval: A trained the best good version, B was dispatched with the newest
    # registered version (forced), and the reviewer approves B first
    older, newer = _best(repo), repo.store.weak
    assert int(older) < int(newer), "the weak version was registered last"
    run_b = release(repo, PROMOTE_VERSION=newer, PROMOTE_FORCE="true", RELEASE_REFUSE_OLDER="false")
    assert run_b.failed is None and repo.production() == newer, run_b.log
    before = (repo.production(), repo.served(), repo.history())
    # When A is approved afterwards: its gate runs as the prod job's does for a trained candidate
    run_a = release(repo, PROMOTE_VERSION=older, RELEASE_REFUSE_OLDER="true")
    # Then it stops at the gate, deploys nothing and moves nothing: the newer release stays in place
    assert run_a.failed == "release-gate", run_a.log
    assert f"error: version {older} is older than @production version {newer}" in run_a.log
    assert (repo.production(), repo.served(), repo.history()) == before
    assert_registry_follows_what_is_served(repo, run_a)
    # And a rollback dispatched with that version by name is released as asked
    rollback = release(repo, PROMOTE_VERSION=older, RELEASE_REFUSE_OLDER="false")
    assert rollback.failed is None and (repo.production(), repo.served()) == (older, older), rollback.log
