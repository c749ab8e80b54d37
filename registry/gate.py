"""Owns the promotion gate: score versions on the test split of the current data and decide.

Both versions are scored here, on the same rows, through ``Predictor.predict`` (the one predict path),
so a candidate is compared with production on today's data rather than on the numbers each run logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.cli import UserError
from core.params import Params
from experiments.data import load_and_split
from serving.predictor import Predictor, SchemaError, records_from_frame


@dataclass(frozen=True)
class TestSet:
    """The raw test records of the current data and their targets."""

    records: list[dict]
    targets: np.ndarray


@dataclass(frozen=True)
class Verdict:
    """The gate's decision; ``production_rmse`` is None when there is no production version yet."""

    accepted: bool
    candidate_rmse: float
    production_rmse: float | None
    tolerance: float


def current_test_set(params: Params) -> TestSet:
    """The deterministic test split of the data params.yaml points at, exactly as training splits it."""
    _, _, test = load_and_split(params)
    features = [c for c in test.columns if c != params.data.target]
    return TestSet(records=records_from_frame(test[features]),
                   targets=test[params.data.target].to_numpy(dtype=np.float64))


def score(predictor: Predictor, tests: TestSet, label: str) -> float:
    """RMSE of one version on the test set.

    Raises:
        UserError: the current data does not fit the version's schema (e.g. a new column or category).
    """
    try:
        predicted = predictor.predict(tests.records)
    except SchemaError as err:
        raise UserError(f"{label} cannot score the current data: {err}") from None
    return math.sqrt(float(np.mean((predicted - tests.targets) ** 2)))


def decide(candidate_rmse: float, production_rmse: float | None, tolerance: float) -> Verdict:
    """Accept unless the candidate is worse than production by more than ``tolerance`` (absolute RMSE)."""
    accepted = production_rmse is None or candidate_rmse <= production_rmse + tolerance
    return Verdict(accepted=accepted, candidate_rmse=candidate_rmse, production_rmse=production_rmse,
                   tolerance=tolerance)
