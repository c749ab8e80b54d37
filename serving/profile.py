"""Owns the reference profile: how a model's training inputs and test predictions looked, as JSON beside the model.

Built by the train stage from the training split and the test split's predictions, saved as ``profile.json`` in
the model directory (so it travels in ``model.tar.gz`` and in the registered MLflow model), and read by the
monitoring jobs, which compare live traffic with it. It lives here, beside the schema it describes, because
training and monitoring both need it and monitoring may not import training code (tests/core/test_shape.py);
it is not part of the serving image (serving/Dockerfile copies an allow-list).

Per numeric feature: count, missing rate, min, max, mean, standard deviation, PSI bins (right-closed bins
between the deciles' distinct values, with the share of values in each) and the 101 percentiles (for the
Wasserstein distance). Per categorical feature: count, missing rate and the share of each level. The
prediction on the test split is summarised like a numeric feature. No pickles: JSON only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.columns import FLOAT32_MAX
from serving.layout import CATEGORICAL, NUMERIC, ModelError

if TYPE_CHECKING:  # only the train stage builds profiles; reading them must not import XGBoost
    from serving.predictor import Schema

PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1
PERCENTILES = np.linspace(0.0, 1.0, 101)
DECILES = np.linspace(0.1, 0.9, 9)
PREDICTION = "prediction"


def as_numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Floats with NaN for a missing value (None, NaN, or anything that is not a real number a float can hold).

    A number beyond float32's range is NaN too (an integer beyond a double's would make ``float`` raise
    OverflowError, and a few near a double's limit make a mean infinite): the container refuses them, so no
    model ever saw one.
    """
    if not isinstance(values, np.ndarray) and set(map(type, values)) <= {int, float}:
        # Every value a JSON number, as in nearly every captured column: one conversion instead of a Python loop
        # (a drift window of 100,000 records read its seven numeric columns in 1.1 s, now in 0.05 s).
        try:
            numbers = np.array(values, dtype=float)
        except OverflowError:  # an integer beyond a double's range: the loop below makes it NaN alone
            pass
        else:
            numbers[~(np.abs(numbers) <= FLOAT32_MAX)] = np.nan  # NaN compares false, so it stays NaN
            return numbers
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            try:
                number = float(value)
            except OverflowError:
                continue
            if abs(number) <= FLOAT32_MAX:
                out[i] = number
    return out


def bin_shares(edges: Sequence[float], present: np.ndarray) -> np.ndarray:
    """The share of ``present`` (no NaN) in each right-closed bin: ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), present, side="left"),
                         minlength=len(edges) + 1)
    return counts / max(1, len(present))


def numeric_summary(values: Sequence[Any] | np.ndarray, *, edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Count, missing rate, range, moments, bins and percentiles of numbers (NaN or None = missing).

    Args:
        edges: bin edges to count into (a live window uses its reference's); default: this data's deciles.
    """
    numbers = as_numbers(values) if not isinstance(values, np.ndarray) or values.dtype == object \
        else values.astype(float)
    present = numbers[~np.isnan(numbers)]
    summary: dict[str, Any] = {"kind": NUMERIC, "count": int(len(numbers)),
                               "missing_rate": float(1 - len(present) / len(numbers)) if len(numbers) else 0.0}
    if not len(present):
        return summary | {"present": 0}
    if edges is None:
        edges = [float(e) for e in np.unique(np.quantile(present, DECILES))]
    return summary | {
        "present": int(len(present)), "min": float(present.min()), "max": float(present.max()),
        "mean": float(present.mean()), "std": float(present.std()),
        "bins": {"edges": list(edges), "shares": [float(s) for s in bin_shares(edges, present)]},
        "percentiles": [float(q) for q in np.quantile(present, PERCENTILES)],
    }


def categorical_summary(values: Sequence[Any], *, levels: Sequence[str] = ()) -> dict[str, Any]:
    """Count, missing rate and the share of every level among present values (``levels`` listed even at 0).

    ``values`` may be a pandas ``Categorical`` (the train stage's columns): its codes are counted at once,
    without a Python object per row.
    """
    shares = dict.fromkeys(levels, 0.0)
    if hasattr(values, "codes") and hasattr(values, "categories"):
        codes = np.asarray(values.codes)
        counts = np.bincount(codes[codes >= 0], minlength=len(values.categories))
        for level, count in zip(values.categories, counts, strict=True):
            if count:
                shares[str(level)] = shares.get(str(level), 0.0) + float(count)
        present = int((codes >= 0).sum())
    else:
        kept = [str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for level in kept:
            shares[level] = shares.get(level, 0.0) + 1.0
        present = len(kept)
    total = max(1, present)
    return {"kind": CATEGORICAL, "count": len(values), "present": present,
            "missing_rate": float(1 - present / len(values)) if len(values) else 0.0,
            "shares": {level: count / total for level, count in sorted(shares.items())}}


def build_profile(schema: Schema, columns: Mapping[str, Sequence[Any]], predictions: Sequence[float]) -> dict[str, Any]:
    """The reference profile of a model: its training split's features and its test split's predictions.

    Args:
        schema: the model's schema (feature names, kinds and category levels).
        columns: the training split, feature name -> values (None or NaN where missing).
        predictions: the model's predictions on the test split.
    """
    features = {}
    for feature in schema.features:
        values = columns[feature.name]
        features[feature.name] = (numeric_summary(values) if feature.kind == NUMERIC
                                  else categorical_summary(values, levels=feature.levels))
    return {"profile_format": PROFILE_FORMAT, "target": schema.target, "rows": len(next(iter(columns.values()), [])),
            "features": features, PREDICTION: numeric_summary(np.asarray(predictions, dtype=float))}


def write_profile(model_dir: str | Path, profile: Mapping[str, Any]) -> Path:
    """Write ``profile.json`` into the model directory (strict JSON, stable key order)."""
    path = Path(model_dir) / PROFILE_FILE
    path.write_text(json.dumps(profile, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> bool:
    """Whether ``value`` is a JSON number a float holds (not a bool, NaN, infinity or a huge integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer with hundreds of digits: json.loads accepts it
        return False


# What compare_numeric reads of a numeric summary with present values, in the order a missing one is named.
_STATISTICS = ("bins", "percentiles", "std", "mean", "min", "max")


class _Summary:
    """One feature's (or the prediction's) summary, checked field by field; errors name file, feature and field."""

    def __init__(self, summary: dict[str, Any], where: str, name: str) -> None:
        self.summary, self.where, self.name = summary, where, name

    def fail(self, field: str, wanted: str, value: Any) -> ModelError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelError(f"{self.where}: feature '{self.name}': '{field}' must be {wanted}, got {shown}")

    def number(self, field: str, *, low: float = -math.inf, high: float = math.inf) -> None:
        value = self.summary[field]
        if not _finite(value) or not low <= value <= high:
            bounds = " from 0 to 1" if high == 1 else " at least 0" if low == 0 else ""
            raise self.fail(field, f"a finite number{bounds}", value)

    def numbers(self, field: str, values: Any, length: int | None = None) -> list[float]:
        if not isinstance(values, list) or not all(_finite(v) for v in values) or \
                (length is not None and len(values) != length):
            count = "" if length is None else f"{length} "
            raise self.fail(field, f"a list of {count}finite numbers", values)
        return values

    def check_numeric(self) -> None:
        present = self.summary.get("present", 0)
        if isinstance(present, bool) or not isinstance(present, int) or present < 0:
            raise self.fail("present", "a count", present)
        if not present:
            return  # an all-missing column has no statistics (see numeric_summary)
        for field in _STATISTICS:
            if field not in self.summary:
                raise ModelError(f"{self.where}: numeric feature '{self.name}' lacks {field} (a summary of present "
                                 f"values needs {', '.join(_STATISTICS)})")
        for field in ("min", "max", "mean"):
            self.number(field)
        self.number("std", low=0)
        bins = self.summary["bins"]
        if not isinstance(bins, dict) or not {"edges", "shares"} <= set(bins):
            raise self.fail("bins", "an object with 'edges' and 'shares'", bins)
        edges = self.numbers("bins.edges", bins["edges"])
        if not edges:  # present values always give at least one edge; a report labels its bins from them
            raise self.fail("bins.edges", "at least one edge (present values have a range)", edges)
        if any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
            raise self.fail("bins.edges", "in increasing order", edges)
        shares = self.numbers("bins.shares", bins["shares"], len(edges) + 1)
        if any(s < 0 for s in shares):
            raise self.fail("bins.shares", "shares of at least 0", shares)
        self.numbers("percentiles", self.summary["percentiles"], len(PERCENTILES))

    def check_categorical(self) -> None:
        shares = self.summary["shares"]
        if not isinstance(shares, dict) or not all(_finite(s) and s >= 0 for s in shares.values()):
            raise self.fail("shares", "an object of level to share (finite numbers of at least 0)", shares)


def check_profile(profile: Any, where: str) -> dict[str, Any]:
    """A parsed profile, checked so that the monitoring jobs can rely on every field they read: present, of
    its type and length, and finite.

    Raises:
        ModelError: not a profile this code understands, in one line naming ``where``, the feature and field.
    """
    if not isinstance(profile, dict) or profile.get("profile_format") != PROFILE_FORMAT:
        raise ModelError(f"{where}: not a reference profile of format {PROFILE_FORMAT}")
    features = profile.get("features")
    if not isinstance(features, dict) or not features or not isinstance(profile.get(PREDICTION), dict):
        raise ModelError(f"{where}: a reference profile needs 'features' and '{PREDICTION}'")
    if profile[PREDICTION].get("kind") != NUMERIC:  # monitoring.analysis compares it as a number
        raise ModelError(f"{where}: feature '{PREDICTION}' has no valid summary (predictions are {NUMERIC})")
    for name, summary in [*features.items(), (PREDICTION, profile[PREDICTION])]:
        kind = summary.get("kind") if isinstance(summary, dict) else None
        needed = {NUMERIC: ("missing_rate",), CATEGORICAL: ("missing_rate", "shares")}.get(kind)
        if needed is None or any(key not in summary for key in needed):
            raise ModelError(f"{where}: feature '{name}' has no valid summary")
        checked = _Summary(summary, where, name)
        checked.number("missing_rate", low=0, high=1)
        checked.check_numeric() if kind == NUMERIC else checked.check_categorical()
    return profile


def read_profile(path: str | Path) -> dict[str, Any]:
    """Read and check a ``profile.json``.

    Raises:
        ModelError: missing, unreadable, not a regular file, not JSON, or not a profile.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # reading a FIFO would wait for a writer forever
            raise ModelError(f"{path}: not a regular file")
        return check_profile(json.loads(path.read_text(encoding="utf-8")), str(path))
    except FileNotFoundError:
        raise ModelError(f"{path}: no reference profile (models trained before profiles existed have none)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:  # no permission, a name too long
        raise ModelError(f"{path}: cannot read the reference profile ({err.strerror or err})") from None
