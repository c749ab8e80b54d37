"""Fixtures for the registry tests: one real MLflow SQLite store with trained versions per session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from core.params import Params, load_params
from experiments import train as train_stage
from experiments.generate import generate

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "student-score-test"
DATA_HASH = "0123456789abcdef0123456789abcdef.dir"
# Small enough to train three versions in a few seconds, large enough that a 3-round model is clearly worse.
SMALL_TRAIN = {"n_trials": 3, "cv_folds": 2, "max_rounds": 60, "early_stopping_rounds": 10,
               "pruner_startup_trials": 1, "timeout_s": 120}
# One trial that stops after 3 boosting rounds at a low learning rate: a version the gate must refuse.
WEAK_TRAIN = {"n_trials": 1, "max_rounds": 3, "pruner_startup_trials": 0}
WEAK_LEARNING_RATE = {"low": 0.03, "high": 0.031}


@dataclass(frozen=True)
class Store:
    """A working directory holding params.yaml, data.dvc, the data CSV and an MLflow store with versions."""

    root: Path
    params_file: Path
    params: Params
    uri: str
    name: str
    good: tuple[str, str]   # two well-trained versions
    weak: str               # a version far worse than the good ones
    data_hash: str = DATA_HASH

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def snapshot(self) -> dict:
        """Every alias and tag of the model and its versions, to prove a failed command changed nothing."""
        client = self.client()
        model = client.get_registered_model(self.name)
        versions = {mv.version: dict(mv.tags) for mv in client.search_model_versions(f"name='{self.name}'")}
        return {"aliases": dict(model.aliases), "versions": versions, "model_tags": dict(model.tags)}

    def aliases(self) -> dict[str, str]:
        """Alias → version number."""
        return {k: str(v) for k, v in self.client().get_registered_model(self.name).aliases.items()}

    def args(self, *extra: str) -> list[str]:
        """CLI arguments pointing at this store's params.yaml."""
        return ["--params", str(self.params_file), *extra]

    def artifact_file(self, version: str, filename: str) -> Path:
        """Where a version's model file lives in the artifact store (to damage it in a test)."""
        uri = self.client().get_model_version_download_uri(self.name, version)
        return Path(uri.removeprefix("file://")) / "artifacts" / filename


def _raw_params(root: Path) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["path"] = str(root / "data" / "students.csv")
    raw["model"]["name"] = MODEL_NAME
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{root}/mlflow.db"
    raw["train"].update(SMALL_TRAIN, storage=f"journal:{root}/optuna.journal")
    # Trees only, so that the weak version below (three rounds at a low tree learning rate) is reliably weak.
    raw["train"]["search_space"]["booster"] = {"choices": ["gbtree"]}
    raw["export"]["path"] = str(root / "dist" / "model.tar.gz")
    return raw


def _with_train(raw: dict, learning_rate: dict | None = None, **train: object) -> Params:
    merged = {**raw, "train": {**raw["train"], **train}}
    if learning_rate is not None:
        space = merged["train"]["search_space"]
        merged["train"]["search_space"] = {**space, "gbtree": {**space["gbtree"], "learning_rate": learning_rate}}
    return Params.model_validate(merged)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Three registered versions of one model, trained for real: two good ones and a weak one."""
    root = tmp_path_factory.mktemp("registry")
    (root / "data").mkdir()
    generate(rows=600, seed=7).to_csv(root / "data" / "students.csv", index=False)
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"md5": DATA_HASH, "path": "data"}]}))
    raw = _raw_params(root)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    params = load_params(params_file)
    versions = []
    # None (not the resolved default) when nobody set one, so later tests still resolve it themselves.
    previous_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        # train() points MLflow's fluent API (and MLFLOW_TRACKING_URI) at the store; keep that out of
        # every other test module.
        mp.setenv("MLFLOW_TRACKING_URI", params.mlflow.tracking_uri)
        try:
            for seed in (1, 2):
                run_params = _with_train(raw, seed=seed)
                versions.append(train_stage.train(run_params, name=f"good-{seed}").version)
            versions.append(train_stage.train(_with_train(raw, WEAK_LEARNING_RATE, **WEAK_TRAIN),
                                              name="weak").version)
        finally:
            mlflow.set_tracking_uri(previous_uri)
    for leftover in ("model", "plots", "metrics.json"):
        path = root / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return Store(root=root, params_file=params_file, params=params, uri=params.mlflow.tracking_uri,
                 name=MODEL_NAME, good=(versions[0], versions[1]), weak=versions[2])


def _reset(store: Store) -> None:
    """Back to "trained, never promoted": no aliases, no gate tags, no history."""
    client = store.client()
    # search_model_versions does not fill in aliases; the registered model lists them.
    for alias in client.get_registered_model(store.name).aliases:
        client.delete_registered_model_alias(store.name, alias)
    for mv in client.search_model_versions(f"name='{store.name}'"):
        for key in mv.tags:
            if key.startswith("gate."):
                client.delete_model_version_tag(store.name, mv.version, key)
    for key in client.get_registered_model(store.name).tags:
        if key.startswith("history."):
            client.delete_registered_model_tag(store.name, key)


@pytest.fixture
def store(trained: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The session's store, reset to no aliases and no history, with the cwd in its folder."""
    _reset(trained)
    monkeypatch.chdir(trained.root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    shutil.rmtree(trained.root / "dist", ignore_errors=True)
    return trained


@pytest.fixture
def damaged(store: Store):
    """Call ``damaged(version, filename, content)`` to overwrite (or, with None, delete) a stored model file;
    the original is put back after the test."""
    saved: list[tuple[Path, bytes]] = []

    def damage(version: str, filename: str, content: bytes | None) -> Path:
        path = store.artifact_file(version, filename)
        saved.append((path, path.read_bytes()))
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        return path

    yield damage
    for path, original in reversed(saved):
        path.write_bytes(original)

