"""Owns what the monitoring jobs know about a model version: its reference profile, its tags, its runs.

The profile comes from a file (``profile.json``, a model directory or ``model.tar.gz``) or from the registry
(the version's MLflow model carries ``artifacts/profile.json``). Results are logged as runs of the monitoring
experiment (params.yaml ``monitor.experiment``) tagged with the model, version and window, and summarised as
tags on the model version, so the registry shows how each version does in real life.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import tracking
from core.cli import MODEL_VERSION, UserError
from core.files import is_special
from core.params import Params
from serving.layout import METADATA_FILE, ModelError, read_member
from serving.profile import PROFILE_FILE, check_profile, read_profile

TAG_ATTEMPTS = 3  # a clash needs another job writing the same tag in the same instant; a third is very unlikely
ARTIFACTS_SUBDIR = "artifacts"  # where the train stage's MLflow model keeps its files (registry/versions.py)


def _unique_clash(err: Exception) -> bool:
    """Whether MLflow's error is the SQL store's unique-key clash (SQLAlchemy's IntegrityError, wrapped)."""
    message = str(getattr(err, "message", err))
    return "IntegrityError" in message or "UniqueViolation" in message


def profile_from_path(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A reference profile and the bundle metadata beside it (empty when there is none).

    Raises:
        UserError: no such file, not a regular file (a FIFO would be waited on forever), not a profile, or
            metadata that is not an object naming a model and version.
    """
    for file in (path / PROFILE_FILE, path / METADATA_FILE) if path.is_dir() else (path,):
        if is_special(file):
            raise UserError(f"{file}: not a regular file (a profile.json, model directory or model.tar.gz)")
    try:
        if path.is_dir():
            meta = path / METADATA_FILE
            return read_profile(path / PROFILE_FILE), _metadata(_read_json(meta), meta) if meta.is_file() else {}
        if path.name.endswith((".tar.gz", ".tgz")):
            profile = check_profile(read_member(path, PROFILE_FILE), f"{path}:{PROFILE_FILE}")
            return profile, _metadata(read_member(path, METADATA_FILE), f"{path}:{METADATA_FILE}")
        return read_profile(path), {}
    except (ModelError, ValueError) as err:
        raise UserError(str(err)) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError too
        raise UserError(f"{path}: not valid JSON ({err})") from None


def _metadata(metadata: Any, where: str | Path) -> dict[str, Any]:
    """A bundle's metadata, checked: a JSON object whose ``registered_name`` is text and ``version`` a registry
    version number (each may be missing). A version of another kind matched no captured record: an empty window.

    Raises:
        UserError: it is not.
    """
    if not isinstance(metadata, dict):
        raise UserError(f"{where}: the bundle metadata must be a JSON object, it is a JSON {_json_kind(metadata)}")
    name, version = metadata.get("registered_name"), metadata.get("version")
    if name is not None and not (isinstance(name, str) and name.strip() and name.isprintable()):
        raise UserError(f"{where}: 'registered_name' must be a model name, it is {name!r:.80}")
    if version is not None:
        text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
        if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 10
                and MODEL_VERSION.min <= int(text) <= MODEL_VERSION.max):  # what a registry can hold
            raise UserError(f"{where}: 'version' must be a model version number, it is {version!r:.80}")
        metadata = metadata | {"version": str(int(text))}
    return metadata


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


@dataclass(frozen=True)
class Registry:
    """The MLflow registry (and tracking store) params.yaml names."""

    uri: str
    name: str

    def client(self):  # noqa: ANN201 - MlflowClient, imported lazily
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as err:
            raise UserError(f"{what}: {str(err.message).splitlines()[0]}") from None

    def version_tags(self, version: str) -> dict[str, str]:
        with self.errors(f"version {version} of model '{self.name}' in {self.uri}"):
            return dict(self.client().get_model_version(self.name, str(version)).tags)

    def profile(self, version: str) -> dict[str, Any]:
        """The reference profile registered with ``version``.

        Raises:
            UserError: no such version, or it has no profile (trained before profiles existed).
        """
        import mlflow

        what = f"version {version} of model '{self.name}'"
        with self.errors(what):
            location = self.client().get_model_version_download_uri(self.name, str(version))
        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{location.rstrip('/')}/{ARTIFACTS_SUBDIR}/{PROFILE_FILE}", dst_path=tmp,
                    tracking_uri=self.uri)
            except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
                raise UserError(f"{what} has no reference profile (it was trained before profiles existed; "
                                f"retrain it, or pass --profile)") from None
            try:
                return read_profile(got)
            except ModelError as err:
                raise UserError(f"{what}: {err}") from None

    def log_run(self, experiment: str, *, run_name: str, tags: Mapping[str, str], metrics: Mapping[str, float],
                artifacts: list[Path]) -> str:
        """One run of the monitoring experiment; returns its id."""
        import mlflow

        with self.errors(f"logging to the monitoring experiment '{experiment}' in {self.uri}"):
            tracking.use_experiment(self.uri, experiment)
            with mlflow.start_run(run_name=run_name, tags=dict(tags)) as run:
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                for path in artifacts:
                    mlflow.log_artifact(str(path))
                return run.info.run_id

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on ``version``; the last of two jobs tagging it at once wins, neither fails.

        MLflow sets a tag by looking for its row and then inserting or updating it: when another job inserts the
        same tag in between, the insert breaks the table's unique key. Trying again finds that row and updates it.
        """
        from mlflow.exceptions import MlflowException

        client = self.client()
        with self.errors(f"tagging version {version} of '{self.name}'"):
            for key, value in tags.items():
                for attempt in range(TAG_ATTEMPTS):
                    try:
                        client.set_model_version_tag(self.name, str(version), key, value)
                        break
                    except MlflowException as err:
                        if attempt == TAG_ATTEMPTS - 1 or not _unique_clash(err):
                            raise


def open_registry(params: Params, *, must_exist: bool = True) -> Registry:
    """The registry params.yaml (or ``MLFLOW_TRACKING_URI``) names, checked to answer.

    ``must_exist=False`` when only a run is logged there (the drift job given ``--profile``): an embedded store
    may then be made.

    Raises:
        UserError: an unreachable tracking server, or a SQLite store in a missing folder (or, ``must_exist``,
            missing: a mistyped name would otherwise make an empty store).
    """
    uri = tracking.tracking_uri(params.mlflow.tracking_uri)
    tracking.check_reachable(uri, must_exist=must_exist)
    return Registry(uri=uri, name=params.model.name)
