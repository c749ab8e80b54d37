"""The project's shape: import arrows point one way (everything -> core), modules stay readable in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "experiments", "registry", "serving", "infra", "team", "benchmarks", "monitoring", "capacity")
SKIP = ("node_modules", "cdk.out", "__pycache__", "container_site")
# Who may import whom. experiments is training; only what truly needs training code imports it.
ALLOWED = {
    "core": {"core"},
    "serving": {"serving"},
    "experiments": {"core", "serving", "experiments"},
    "registry": {"core", "serving", "registry"},
    "infra": {"core", "serving", "infra"},
    "team": {"core", "team"},
    "monitoring": {"core", "serving", "monitoring"},
    # The capture benchmark runs the stand-in chain (infra/local) it measures; the drift one, the verdict.
    "benchmarks": {"core", "serving", "experiments", "registry", "team", "infra", "monitoring", "benchmarks"},
    # The load test starts the stand-in (infra/local) and reads the deployment settings (infra/settings.py).
    "capacity": {"core", "serving", "infra", "capacity"},
}
# The one place outside training that needs it: the promotion gate scores versions on exactly the test split
# the train stage made (experiments.data.load_and_split).
EXCEPTIONS = {("registry/gate.py", "experiments.data")}
MAX_LINES = 300
# The predictor's hot path (validation, both encoders, one predict call) reads best as one file: splitting
# it would spread one record's journey from JSON value to matrix cell over several modules.
LONGER = {"serving/predictor.py": 450}


def _modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []:
            if not any(part in SKIP for part in path.parts):
                found.append(path)
    return found


def _project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_only_where_the_package_may_look(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    package = rel.split("/")[0]
    stray = {name for name in _project_imports(path)
             if name.split(".")[0] not in ALLOWED[package] and (rel, name) not in EXCEPTIONS}
    assert not stray, f"{rel} imports {sorted(stray)}; {package} may import only {sorted(ALLOWED[package])}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_longer_than_one_sitting(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LONGER.get(rel, MAX_LINES), f"{rel} has {lines} lines; split it by job"


def test_the_core_loads_without_training_or_tracking_libraries() -> None:
    # The CDK app, the smoke test and the stand-in import core; none of them should pay for MLflow or XGBoost.
    code = ("import sys, core.cli, core.params, core.lineage, core.tracking; "
            "heavy = {'mlflow', 'optuna', 'xgboost', 'sklearn', 'pandas'} & set(sys.modules); "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_exceptions_are_still_needed() -> None:
    for rel, name in EXCEPTIONS:
        assert name in _project_imports(ROOT / rel), f"{rel} no longer imports {name}: drop the exception"
