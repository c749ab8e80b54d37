"""Owns the drift statistics: how far a live sample of one feature (or the prediction) is from its reference.

Every statistic compares a live sample with a reference summary from ``serving.profile`` (the training data
itself is not needed, and is not shipped with a model):
- PSI, the population stability index, over the reference's bins: sum((live - ref) * ln(live / ref)), with
  empty bins floored at ``EPSILON``. For numbers the bins are the reference deciles; for categories, the levels.
- Numbers: the Wasserstein-1 (earth mover's) distance between the two distributions, from their percentiles,
  in reference standard deviations ("the values moved by this many SDs on average").
- Categories: the Jensen-Shannon distance (base 2, 0 = same shares, 1 = no level in common).
- Data quality: the missing-rate change, the share of numbers outside the training min..max, the share of
  category values never seen in training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.profile import PERCENTILES, as_numbers, bin_shares

EPSILON = 1e-4


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    ref = np.maximum(np.asarray(reference, dtype=float), EPSILON)
    now = np.maximum(np.asarray(live, dtype=float), EPSILON)
    return float(np.sum((now - ref) * np.log(now / ref)))


def wasserstein(reference_percentiles: Sequence[float], live_percentiles: Sequence[float]) -> float:
    """W1 distance from the two quantile functions sampled on the same percentile grid (trapezoid rule)."""
    gap = np.abs(np.asarray(reference_percentiles, dtype=float) - np.asarray(live_percentiles, dtype=float))
    return float(np.trapezoid(gap, PERCENTILES))


def jensen_shannon(reference: Sequence[float], live: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors: 0..1."""
    p, q = np.asarray(reference, dtype=float), np.asarray(live, dtype=float)
    p, q = p / max(p.sum(), EPSILON), q / max(q.sum(), EPSILON)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def compare_numeric(reference: Mapping[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    """PSI, normalised Wasserstein distance, missing-rate change and out-of-range share of live numbers."""
    numbers = as_numbers(values)
    present = numbers[~np.isnan(numbers)]
    missing = float(1 - len(present) / len(numbers)) if len(numbers) else 0.0
    out: dict[str, Any] = {"kind": "numeric", "count": len(numbers), "present": int(len(present)),
                           "missing_rate": {"reference": reference["missing_rate"], "live": missing}}
    if not len(present) or not reference.get("present"):
        return out | {"psi": None, "wasserstein": None, "out_of_range_share": None}
    edges = reference["bins"]["edges"]
    shares = bin_shares(edges, present)
    scale = reference["std"] if reference["std"] > 0 else 1.0
    outside = np.count_nonzero((present < reference["min"]) | (present > reference["max"]))
    return out | {
        "psi": psi(reference["bins"]["shares"], shares),
        "wasserstein": wasserstein(reference["percentiles"], np.quantile(present, PERCENTILES)) / scale,
        "out_of_range_share": float(outside / len(present)),
        "bins": {"edges": edges, "reference": reference["bins"]["shares"], "live": [float(s) for s in shares]},
        "mean": {"reference": reference["mean"], "live": float(present.mean())},
    }


def compare_categorical(reference: Mapping[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    """PSI and Jensen-Shannon distance of the level shares, missing-rate change and unseen-level share."""
    present = [str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    missing = float(1 - len(present) / len(values)) if len(values) else 0.0
    out: dict[str, Any] = {"kind": "categorical", "count": len(values), "present": len(present),
                           "missing_rate": {"reference": reference["missing_rate"], "live": missing}}
    if not present:
        return out | {"psi": None, "jensen_shannon": None, "unseen_share": None}
    levels = list(reference["shares"])
    counts = dict.fromkeys(levels, 0)
    unseen = 0
    for value in present:
        if value in counts:
            counts[value] += 1
        else:
            unseen += 1
    ref = [reference["shares"][level] for level in levels] + [0.0]
    live = [counts[level] / len(present) for level in levels] + [unseen / len(present)]
    return out | {"psi": psi(ref, live), "jensen_shannon": jensen_shannon(ref, live),
                  "unseen_share": unseen / len(present),
                  "shares": {"levels": levels, "reference": ref[:-1], "live": live[:-1]}}
