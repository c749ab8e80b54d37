"""Owns which version a promotion or release picks when none is named: the best one trained on the current data.

The best is the lowest logged ``test_rmse`` among the versions whose ``data_hash`` tag equals the DVC hash of
data/, leaving out a version a rollback took production from (it misbehaved there; promoting it again by its
number makes it a candidate again) and one whose training run was deleted, ended FAILED or KILLED, or is gone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from mlflow.entities.model_registry import ModelVersion

from core.cli import UserError
from registry import history
from registry.versions import Registry


def _test_rmse(mv: ModelVersion) -> float:
    """The version's logged test RMSE; infinity (the worst) when absent, not a number, NaN or negative."""
    try:
        value = float(mv.tags.get("test_rmse", "inf"))
    except ValueError:
        return math.inf
    return value if math.isfinite(value) and value >= 0 else math.inf


def best_for_data(versions: list[ModelVersion], data_hash: str,
                  usable: Callable[[ModelVersion], bool] = lambda _mv: True) -> ModelVersion | None:
    """The version trained on ``data_hash`` with the lowest test RMSE (newest wins a tie) that ``usable`` accepts."""
    matching = sorted((mv for mv in versions if mv.tags.get("data_hash") == data_hash),
                      key=lambda mv: (_test_rmse(mv), -int(mv.version)))
    return next((mv for mv in matching if usable(mv)), None)


def pick_candidate(registry: Registry, version: int | None, data_hash: str) -> ModelVersion:
    """Version ``version`` when one is named (whatever became of it: someone vouches for it), else the best one
    for ``data_hash`` that may be picked unasked.

    Raises:
        UserError: the named version does not exist, or no version for the data may be picked.
    """
    if version is not None:
        return registry.version(version)
    gone = history.rolled_back(history.read(registry))
    best = best_for_data(registry.versions(), data_hash,
                         lambda mv: str(mv.version) not in gone and registry.from_live_run(mv))
    if best is None:
        raise UserError(f"no version of '{registry.name}' trained on the current data ({data_hash}) can be picked (a "
                        f"rolled-back version, a deleted, FAILED or KILLED run are not); train one or pass --version")
    return best
