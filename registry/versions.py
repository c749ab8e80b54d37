"""Owns the registry look-ups shared by promote and export: the client, versions by number or alias, their files.

Every MLflow failure is turned into a one-line ``UserError`` naming the model and version, so the commands
never print a traceback for a missing model, version, alias or artifact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from core import tracking
from core.cli import UserError
from core.params import Params
from serving.layout import BOOSTER_FILE, SCHEMA_FILE, ModelError
from serving.predictor import Predictor
from serving.profile import PROFILE_FILE, read_profile

# Where train.py logs the booster and schema inside the registered model's directory.
ARTIFACTS_SUBDIR = "artifacts"
MODEL_FILES = (BOOSTER_FILE, SCHEMA_FILE)
# Fetched when the version has it: versions trained before reference profiles existed do not.
OPTIONAL_FILES = (PROFILE_FILE,)


@contextlib.contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """Re-raise an MLflow failure as a one-line ``UserError`` prefixed with ``what``."""
    try:
        yield
    except MlflowException as err:
        raise UserError(f"{what}: {str(err.message).splitlines()[0]}") from None


def _reason(message: str) -> str:
    """One line of an MLflow download error: the failure itself, not its header ("The following failures
    occurred while downloading ...:" then "##### File artifacts #####" then "No such artifact: ...")."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.startswith("#####")]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[-1]}; the model files are gone from the artifact store"
    return lines[0] if lines else "no reason given"


def same_version(a: ModelVersion, b: ModelVersion) -> bool:
    # MLflow returns the version number as an int from some calls and a str from others.
    return str(a.version) == str(b.version)


@dataclass(frozen=True)
class Registry:
    """One registered model in one reachable registry."""

    client: MlflowClient
    uri: str
    name: str

    def version(self, number: int | str) -> ModelVersion:
        """Raises UserError when the version does not exist."""
        try:
            return self.client.get_model_version(self.name, str(number))
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise UserError(f"version {number} of model '{self.name}' not found in {self.uri}") from None
            raise UserError(f"version {number} of '{self.name}': {err.message.splitlines()[0]}") from None

    def by_alias(self, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None when no version holds it yet."""
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as err:
            # MLflow reports a missing alias as INVALID_PARAMETER_VALUE, a missing model as RESOURCE_DOES_NOT_EXIST.
            if "not found" in str(err.message):
                return None
            raise UserError(f"alias '{alias}' of '{self.name}': {err.message.splitlines()[0]}") from None

    def from_live_run(self, mv: ModelVersion) -> bool:
        """Whether the version's training run exists, is not deleted (how the MLflow UI withdraws a run) and did not
        end FAILED or KILLED. A RUNNING run counts: a training killed after it registered leaves its run so, and
        its re-run registers nothing new.

        Raises:
            UserError: the tracking store fails while the run is read.
        """
        if not mv.run_id:
            return False
        try:
            run = self.client.get_run(mv.run_id)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":  # purged (mlflow gc)
                return False
            raise UserError(f"training run {mv.run_id} of version {mv.version}: {err.message.splitlines()[0]}") \
                from None
        return run.info.lifecycle_stage == "active" and run.info.status not in ("FAILED", "KILLED")

    def versions(self) -> list[ModelVersion]:
        with mlflow_errors(f"listing versions of '{self.name}'"):
            return list(self.client.search_model_versions(f"name='{self.name}'"))


def open_registry(params: Params) -> Registry:
    """Connect to the registry named by params (or MLFLOW_TRACKING_URI) and check the model exists.

    Raises:
        UserError: the tracking server is unreachable, or the registered model does not exist.
    """
    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    # check_reachable answers in seconds; MLflow's own client would retry an http server for minutes.
    tracking.check_reachable(uri, must_exist=True)
    name = params.model.name
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # a file store (./mlruns) is refused here
        client.get_registered_model(name)
    except MlflowException as err:
        shown = tracking.shown_uri(uri)
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"registered model '{name}' not found in {shown} (train one first: make train)") from None
        raise UserError(f"registry {shown}: {err.message.splitlines()[0]}") from None
    return Registry(client=client, uri=uri, name=name)


def fetch_model(registry: Registry, mv: ModelVersion, workdir: Path) -> tuple[Path, Predictor]:
    """Download a version's booster, schema and (if it has one) reference profile into ``workdir/model``, and
    prove the model loads and self-tests.

    Nothing else is copied, so the folder is exactly what a bundle carries before its metadata.

    Returns:
        The model folder and its loaded predictor.

    Raises:
        UserError: a file is missing from the artifact store, unreadable, corrupt (the reference profile
            included), or fails the self-test.
    """
    what = f"version {mv.version} of '{registry.name}'"
    download = workdir / "download"
    download.mkdir(parents=True)
    try:
        location = registry.client.get_model_version_download_uri(registry.name, mv.version)
        mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/{ARTIFACTS_SUBDIR}",
                                            dst_path=str(download), tracking_uri=registry.uri)
    except (MlflowException, OSError) as err:
        message = err.message if isinstance(err, MlflowException) else (err.strerror or str(err))
        raise UserError(f"{what}: cannot download its model files ({_reason(str(message))})") from None
    model_dir = workdir / "model"
    model_dir.mkdir()
    for filename in MODEL_FILES:
        found = download / ARTIFACTS_SUBDIR / filename
        if not found.is_file():
            found = download / filename
        if not found.is_file():
            raise UserError(f"{what}: {ARTIFACTS_SUBDIR}/{filename} is missing from the artifact store")
        shutil.copyfile(found, model_dir / filename)
    for filename in OPTIONAL_FILES:
        found = download / ARTIFACTS_SUBDIR / filename
        if found.is_file():
            shutil.copyfile(found, model_dir / filename)
    try:
        predictor = Predictor.from_dir(model_dir)
        predictor.self_test()
        if (model_dir / PROFILE_FILE).is_file():  # the monitoring jobs read it from the bundle: checked here
            read_profile(model_dir / PROFILE_FILE)
    except ModelError as err:
        # The message names a temp path; the version is what the user can act on.
        reason = str(err).replace(str(model_dir) + os.sep, "")
        raise UserError(f"{what}: corrupt model files ({reason})") from None
    return model_dir, predictor
