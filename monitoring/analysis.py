"""Owns the drift verdict: every feature and the prediction of a window compared with the reference profile.

A feature (or the prediction) has drifted when its PSI reaches ``monitor.drift.psi`` or its distance reaches
``monitor.drift.wasserstein`` (numbers, in training standard deviations) or ``monitor.drift.jensen_shannon``
(categories). Data quality raises its own alarms: a missing rate up by ``missing_rate_change``, numbers outside
the training range in ``out_of_range_share`` of the values, and refused requests in ``refused_share`` of the
requests. The drift checks need ``min_sample`` predicted records, the refusal check as many requests; below
that the verdict is "not enough data", never an alarm. A column's distribution (its PSI, distance and
out-of-range share) is judged only on ``min_sample`` values of its own: a feature missing in most records is
"not enough data" there, its missing rate still checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.params import DriftThresholds
from monitoring import stats
from serving.layout import NUMERIC
from serving.profile import PREDICTION

DRIFT, NO_DRIFT, NOT_ENOUGH = "drift", "no drift", "not enough data"
NOT_CAPTURED = "not captured"  # a feature's status when no record of the window holds it
ABSENT = object()


def _reaches(value: float, threshold: float) -> bool:
    """A data-quality share reaching its threshold; a threshold of 0 means "any at all", not "always": 0% of values
    out of range reached 0 and raised an alarm on every feature of every window."""
    return value > 0 and value >= threshold


def _alarms(result: Mapping[str, Any], t: DriftThresholds) -> tuple[list[str], list[str]]:
    """(drift reasons, data-quality reasons) of one compared column."""
    drift, quality = [], []
    missing = result["missing_rate"]
    if _reaches(missing["live"] - missing["reference"], t.missing_rate_change):
        quality.append(f"missing rate {missing['reference']:.1%} → {missing['live']:.1%}")
    if result["present"] < t.min_sample:
        # Shares of a few values are noise: 10 numbers fill at most 10 of a reference's bins, a PSI of 1+.
        return drift, quality
    if result.get("psi") is not None and result["psi"] >= t.psi:
        drift.append(f"PSI {result['psi']:.3f} ≥ {t.psi}")
    if result.get("wasserstein") is not None and result["wasserstein"] >= t.wasserstein:
        drift.append(f"Wasserstein {result['wasserstein']:.3f} SD ≥ {t.wasserstein}")
    if result.get("jensen_shannon") is not None and result["jensen_shannon"] >= t.jensen_shannon:
        drift.append(f"Jensen-Shannon {result['jensen_shannon']:.3f} ≥ {t.jensen_shannon}")
    if result.get("out_of_range_share") is not None and _reaches(result["out_of_range_share"], t.out_of_range_share):
        quality.append(f"{result['out_of_range_share']:.1%} of values outside the training range")
    return drift, quality


def analyse(profile: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]],
            refusals: Sequence[Mapping[str, Any]], thresholds: DriftThresholds, *,
            answered: int | None = None) -> dict[str, Any]:
    """The drift summary of one window: per feature and for the prediction, plus the verdict.

    Args:
        profile: the model version's reference profile.
        predictions: the window's capture records of kind ``prediction`` for that version.
        refusals: the window's refused requests.
        thresholds: params.yaml ``monitor.drift``.
        answered: the requests every version answered in the window (default: those of ``predictions``). A
            refusal names no version, so the refused share is of all the window's requests: during a canary,
            refusals over the canary's requests alone made a 10% canary's share of them look ten times larger.
    """
    t = thresholds
    if answered is None:
        answered = len({r.get("request_id") for r in predictions})
    requests = answered + len(refusals)
    enough = len(predictions) >= t.min_sample
    refused_share = len(refusals) / requests if requests else 0.0
    features: dict[str, Any] = {}
    alarms: list[str] = []
    for name, reference in profile["features"].items():
        values = [r["record"].get(name, ABSENT) for r in predictions]
        if values and all(v is ABSENT for v in values):
            features[name] = {"kind": reference["kind"], "status": NOT_CAPTURED, "drift": False, "reasons": []}
            continue
        values = [None if v is ABSENT else v for v in values]
        compare = stats.compare_numeric if reference["kind"] == NUMERIC else stats.compare_categorical
        features[name] = _judged(compare(reference, values), t, enough, alarms, name)
    prediction = _judged(stats.compare_numeric(profile[PREDICTION], [r.get("prediction") for r in predictions]),
                         t, enough, alarms, PREDICTION)
    refused_alarm = requests >= t.min_sample and _reaches(refused_share, t.refused_share)
    if refused_alarm:
        alarms.append(f"{refused_share:.1%} of {requests} requests refused (≥ {t.refused_share:.0%})")
    verdict = DRIFT if alarms else NO_DRIFT if enough else NOT_ENOUGH
    return {
        "verdict": verdict, "records": len(predictions), "requests": requests, "refused_requests": len(refusals),
        "refused_share": refused_share, "min_sample": t.min_sample, "thresholds": t.model_dump(),
        "drifted_features": sorted(n for n, f in features.items() if f["drift"]),
        "prediction_drift": prediction["drift"], "alarms": alarms, "features": features, PREDICTION: prediction,
    }


def _judged(result: dict[str, Any], t: DriftThresholds, enough: bool, alarms: list[str], name: str) -> dict[str, Any]:
    drift, quality = _alarms(result, t) if enough else ([], [])
    alarms.extend(f"{name}: {reason}" for reason in drift + quality)
    judged = enough and result["present"] >= t.min_sample
    status = "drift" if drift else "quality" if quality else "ok" if judged else "not enough data"
    return result | {"status": status, "drift": bool(drift), "quality": quality, "reasons": drift}
