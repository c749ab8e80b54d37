"""A real `dvc pull` + `dvc repro` in a throwaway copy of the repository, as a newcomer would run it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmarks import project_copy
from tests.conftest import FAST_TRAIN, ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files in a new git repo, data pulled from the in-repo sample remote."""
    dest = project_copy.make(tmp_path_factory.mktemp("clone"), train=FAST_TRAIN)
    pulled = _run(dest, "dvc", "pull")  # plain, as DVC users type it: only data is in a remote
    assert pulled.returncode == 0, pulled.stderr
    return dest


def _project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Files of this project that ``module`` imports, directly or through other project modules."""
    seen = set() if seen is None else seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file() or str(path) in seen:
        return seen
    seen.add(str(path))
    package = ROOT / module.split(".")[0] / "__init__.py"
    if package.is_file():
        seen.add(str(package))
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] in {"core", "experiments", "serving", "registry", "infra", "team"}:
                _project_imports(name, seen)
    return seen


def test_the_train_stage_depends_on_exactly_the_modules_it_imports() -> None:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    listed = {d for d in stage["deps"] if d != "data"}
    # The stage's own module, and the pyfunc file MLflow runs when it loads the model (a file, not an import).
    imported = _project_imports("experiments.train") | _project_imports("experiments.mlflow_model")
    assert listed == {str(Path(p).relative_to(ROOT)) for p in imported}
    assert stage["cmd"] == "python -m experiments.train"


def _versions(clone: Path) -> list:
    return MlflowClient(f"sqlite:///{clone / 'mlflow.db'}").search_model_versions("name = 'student-score'")


def test_pull_restores_the_csv_through_dvc(clone: Path) -> None:
    csv = clone / "data" / "student_performance.csv"
    assert csv.read_bytes() == (ROOT / "data" / "student_performance.csv").read_bytes()
    tracked = subprocess.run(["git", "ls-files", "data"], cwd=clone, capture_output=True, text=True).stdout
    assert tracked == "", "data/ is never a git-tracked copy"


def test_repro_trains_then_does_nothing_when_nothing_changed(clone: Path) -> None:
    first = _run(clone, "dvc", "repro")
    assert first.returncode == 0, first.stderr + first.stdout
    assert "registered student-score version 1" in first.stdout
    metrics = json.loads((clone / "metrics.json").read_text())
    assert metrics["trials"]["complete"] + metrics["trials"]["pruned"] == FAST_TRAIN["n_trials"]
    assert (clone / "model" / "booster.ubj").is_file()

    (version,) = _versions(clone)
    recorded = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]["md5"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    assert version.tags["data_hash"] == recorded, "lineage: the data version DVC recorded"
    assert version.tags["git_commit"] in (head, f"{head}-dirty"), "lineage: the commit that was trained"

    second = _run(clone, "dvc", "repro")
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout
    assert len(_versions(clone)) == 1, "an unchanged pipeline registers nothing new"

    shown = _run(clone, "dvc", "metrics", "show", "--json")
    assert shown.returncode == 0
    assert "rmse" in shown.stdout


def test_exp_run_overrides_a_param(clone: Path) -> None:
    assert _run(clone, "dvc", "repro").returncode == 0
    before = len(_versions(clone))
    done = _run(clone, "dvc", "exp", "run", "-S", "train.n_trials=4")
    assert done.returncode == 0, done.stderr + done.stdout
    metrics = json.loads((clone / "metrics.json").read_text())
    assert metrics["trials"]["complete"] + metrics["trials"]["pruned"] == 4
    assert len(_versions(clone)) == before + 1


def test_the_mlflow_model_carries_every_serving_module_the_predict_path_imports() -> None:
    from experiments.packaging import PREDICT_MODULES

    closure = _project_imports("serving.predictor") | _project_imports("experiments.mlflow_model")
    needed = {Path(p).name for p in closure if Path(p).parent == ROOT / "serving"}
    assert set(PREDICT_MODULES) == needed, "the copy of serving/ logged with the model would not import"


def test_a_default_repro_writes_the_committed_metrics(tmp_path: Path) -> None:
    """The committed metrics.json and dvc.lock are what `dvc repro` makes of the committed params and data.

    ``dvc status`` compares hashes with the lock only, so a lock edited by hand (or a stage run with other
    settings) can leave a stale metrics.json that DVC calls up to date; a newcomer's first `dvc repro` (or
    `make run`) would then show it modified. Only running the default stage tells.
    """
    copy = project_copy.make(tmp_path / "copy")
    assert _run(copy, "dvc", "pull").returncode == 0
    done = _run(copy, "dvc", "repro")
    assert done.returncode == 0, done.stderr + done.stdout
    committed = json.loads((ROOT / "metrics.json").read_text())
    assert json.loads((copy / "metrics.json").read_text()) == committed, "commit metrics.json from this repro"
    changed = _run(copy, "git", "status", "--porcelain", "--", "dvc.lock", "metrics.json")
    assert changed.stdout == "", f"dvc repro rewrote committed outputs:\n{changed.stdout}"
