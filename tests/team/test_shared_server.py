"""Training, promotion and export against the team's mlflow server with only MLFLOW_TRACKING_URI set."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import boto3
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from team import stack
from tests.team.conftest import MODEL, client_env, finish, start, team_params

pytestmark = pytest.mark.slow
ALIAS, PREVIOUS = "production", "previous"


@pytest.fixture(scope="module")
def two_trainings(team_stack, tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> list[dict]:
    """Two trainings started at the same moment, each with its own local study, against the one server."""
    started = []
    for name in ("a", "b"):
        folder = tmp_path_factory.mktemp(f"training-{name}")
        params = team_params(folder, sample_csv)
        proc = start("experiments.train", "--params", str(params), cwd=folder, env=client_env(team_stack),
                     log=folder / "train.log")
        started.append((folder, params, proc))
    results = []
    for folder, params, proc in started:
        out = finish(proc, folder / "train.log")
        found = re.search(r"registered student-score version (\d+) \(run (\w+)\)", out)
        assert found, out
        results.append({"folder": folder, "params": params, "version": found.group(1), "run_id": found.group(2)})
    return results


def _reset_aliases(client: MlflowClient) -> None:
    for alias in (ALIAS, PREVIOUS):
        try:
            client.delete_registered_model_alias(MODEL, alias)
        except MlflowException:
            pass


def test_concurrent_trainings_register_one_distinct_version_each(team_stack, two_trainings) -> None:
    client = MlflowClient(team_stack.tracking_uri)

    versions = client.search_model_versions(f"name='{MODEL}'")

    ours = {t["run_id"] for t in two_trainings}
    by_run = [mv for mv in versions if mv.run_id in ours]
    assert sorted(str(mv.version) for mv in by_run) == sorted(t["version"] for t in two_trainings)
    assert len({mv.version for mv in versions}) == len(versions), "no version number is used twice"


def test_artifacts_land_in_the_bucket_through_the_server(team_stack, two_trainings) -> None:
    s3 = boto3.client("s3", endpoint_url=team_stack.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="any", aws_secret_access_key="any")

    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET)
            for o in page.get("Contents", [])}

    client = MlflowClient(team_stack.tracking_uri)
    for training in two_trainings:
        assert any(k.startswith("mlflow/") and f"/{training['run_id']}/artifacts/plots/" in k for k in keys), \
            f"run {training['run_id']}'s plots are in s3://{stack.BUCKET}"
        # The server hands out mlflow-artifacts:/ URIs; the objects behind them live under the bucket prefix.
        location = client.get_model_version_download_uri(MODEL, training["version"])
        prefix = "mlflow/" + location.split(":", 1)[1].lstrip("/").rstrip("/")
        assert f"{prefix}/artifacts/booster.ubj" in keys, f"version {training['version']}'s booster at {prefix}"


def test_promote_and_export_work_unchanged_against_the_server(team_stack, two_trainings) -> None:
    client = MlflowClient(team_stack.tracking_uri)
    _reset_aliases(client)
    training = two_trainings[0]
    folder, env = training["folder"], client_env(team_stack)
    tarball = folder / "model.tar.gz"

    promote = start("registry.promote", "--params", str(training["params"]), "--version", training["version"],
                    "--no-export", cwd=folder, env=env, log=folder / "promote.log")
    finish(promote, folder / "promote.log")
    export = start("registry.export", "--params", str(training["params"]), "--out", str(tarball), cwd=folder,
                   env=env, log=folder / "export.log")
    finish(export, folder / "export.log")

    assert str(client.get_model_version_by_alias(MODEL, ALIAS).version) == training["version"]
    with tarfile.open(tarball) as tar:
        metadata = json.load(tar.extractfile("metadata.json"))
    assert metadata["version"] == training["version"]
    assert metadata["run_id"] == training["run_id"]


def test_two_promotions_at_once_end_as_if_one_ran_after_the_other(team_stack, two_trainings) -> None:
    # Started together so that, without registry/lock.py's lock, each would read "no production version".
    client = MlflowClient(team_stack.tracking_uri)
    _reset_aliases(client)
    history_before = {k for k in client.get_registered_model(MODEL).tags if k.startswith("history.")}
    first, second = two_trainings
    env = client_env(team_stack)

    procs = [(t["folder"], start("registry.promote", "--params", str(t["params"]), "--version", t["version"],
                                 "--no-export", "--reason", f"concurrent {t['version']}", cwd=t["folder"], env=env,
                                 log=t["folder"] / "concurrent-promote.log")) for t in (first, second)]
    for folder, proc in procs:
        finish(proc, folder / "concurrent-promote.log")

    model = client.get_registered_model(MODEL)
    aliases = {k: str(v) for k, v in model.aliases.items()}
    assert {aliases.get(ALIAS), aliases.get(PREVIOUS)} == {first["version"], second["version"]}, \
        f"serialised, the later promotion makes the earlier one @{PREVIOUS}; got {aliases}"
    added = sorted(k for k in model.tags if k.startswith("history.") and k not in history_before)
    assert len(added) == 2, f"both promotions are in the history, got {added}"
    earlier, later = (json.loads(model.tags[k]) for k in added)
    assert later["from"] == earlier["to"], f"the later promotion replaced the earlier one: {earlier} then {later}"
