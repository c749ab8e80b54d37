"""The drift verdict on traffic from the sample generator (seed fixed): quiet on the training distribution, and
pointing at exactly the feature that moved."""

from __future__ import annotations

import pandas as pd
import pytest

from core.params import load_params
from monitoring import analysis, stats
from tests.conftest import ROOT
from tests.monitoring.helpers import capture_window, doubled_level, shifted_hours

THRESHOLDS = load_params(ROOT / "params.yaml").monitor.drift
WINDOW = 1000


def verdict(profile: dict, frame: pd.DataFrame, refusals: list | None = None) -> dict:
    return analysis.analyse(profile, capture_window(frame), refusals or [], THRESHOLDS)


def test_traffic_from_the_training_distribution_raises_no_alarm_in_at_least_95_percent_of_windows(
        profile: dict, live: pd.DataFrame) -> None:
    windows = [live.iloc[i:i + WINDOW] for i in range(0, len(live), WINDOW)]
    alarms = {i: verdict(profile, w)["alarms"] for i, w in enumerate(windows)}
    noisy = {i: a for i, a in alarms.items() if a}
    assert len(windows) == 20
    assert len(noisy) <= 1, f"false alarms in {len(noisy)} of 20 windows: {noisy}"


def test_study_hours_one_standard_deviation_up_is_flagged_and_no_other_feature(profile: dict,
                                                                              live: pd.DataFrame) -> None:
    sd = profile["features"]["Hours_Studied"]["std"]
    summary = verdict(profile, shifted_hours(live.iloc[:WINDOW], round(sd)))
    assert summary["verdict"] == "drift"
    assert summary["drifted_features"] == ["Hours_Studied"]
    hours = summary["features"]["Hours_Studied"]
    assert hours["wasserstein"] == pytest.approx(1.0, abs=0.15), "moved by one SD"
    assert summary["prediction_drift"], "more study hours, higher predicted scores"
    assert all(f["status"] in ("ok", "drift") for f in summary["features"].values()), "no quality alarm"


@pytest.mark.parametrize(("column", "level"), [("Motivation_Level", "High"), ("School_Type", "Private"),
                                               ("Learning_Disabilities", "Yes")])
def test_one_category_s_share_doubled_is_flagged_and_no_other_feature(profile: dict, live: pd.DataFrame,
                                                                      column: str, level: str) -> None:
    summary = verdict(profile, doubled_level(live.iloc[WINDOW:2 * WINDOW], column, level))
    assert summary["drifted_features"] == [column]
    assert summary["features"][column]["jensen_shannon"] >= THRESHOLDS.jensen_shannon


def test_below_the_minimum_sample_even_a_huge_shift_is_not_enough_data(profile: dict, live: pd.DataFrame) -> None:
    summary = verdict(profile, shifted_hours(live.iloc[:THRESHOLDS.min_sample - 1], 30))
    assert summary["verdict"] == "not enough data"
    assert summary["alarms"] == [] and summary["drifted_features"] == []
    assert summary["features"]["Hours_Studied"]["status"] == "not enough data"


def test_a_rising_missing_rate_is_a_quality_alarm_not_drift(profile: dict, live: pd.DataFrame) -> None:
    window = live.iloc[:WINDOW].copy()
    window.loc[window.index[:200], "Teacher_Quality"] = None
    summary = verdict(profile, window)
    assert summary["verdict"] == "drift" and summary["drifted_features"] == []
    assert summary["features"]["Teacher_Quality"]["status"] == "quality"
    assert any("Teacher_Quality: missing rate" in a for a in summary["alarms"])


def test_numbers_outside_the_training_range_are_a_quality_alarm(profile: dict, live: pd.DataFrame) -> None:
    window = live.iloc[:WINDOW].copy()
    window.loc[window.index[:30], "Attendance"] = 150
    summary = verdict(profile, window)
    assert summary["features"]["Attendance"]["out_of_range_share"] == pytest.approx(0.03)
    assert any("Attendance: 3.0% of values outside the training range" in a for a in summary["alarms"])


def test_many_refused_requests_are_an_alarm(profile: dict, live: pd.DataFrame) -> None:
    refusals = [{"kind": "refusal", "request_id": f"r{i}", "status": 400} for i in range(20)]
    summary = verdict(profile, live.iloc[:WINDOW], refusals)
    assert summary["requests"] == 120 and summary["refused_share"] == pytest.approx(20 / 120)
    assert summary["alarms"] == [], "17% refused, but 120 requests are below the minimum sample"
    refusals = [{"kind": "refusal", "request_id": f"r{i}", "status": 400} for i in range(600)]
    summary = verdict(profile, live.iloc[:WINDOW], refusals)
    assert summary["verdict"] == "drift" and "refused" in summary["alarms"][0]


def test_a_field_dropped_at_capture_is_reported_not_judged(profile: dict, live: pd.DataFrame) -> None:
    captures = capture_window(live.iloc[:WINDOW])
    for c in captures:
        del c["record"]["Gender"]
    summary = analysis.analyse(profile, captures, [], THRESHOLDS)
    assert summary["features"]["Gender"]["status"] == "not captured"
    assert summary["verdict"] == "no drift"


def test_a_feature_present_in_a_few_records_is_not_judged_on_them(profile: dict, live: pd.DataFrame) -> None:
    # Given a feature missing in 99% of the training rows and of a window of 1,000 records from the same distribution
    import copy

    from experiments.generate import ground_truth

    sparse = copy.deepcopy(profile)
    sparse["features"]["Hours_Studied"]["missing_rate"] = 0.99
    window = live.iloc[:WINDOW].copy()
    predictions = ground_truth(window)
    window.loc[window.index[10:], "Hours_Studied"] = None
    # When the window is judged
    summary = analysis.analyse(sparse, capture_window(window, predictions=predictions), [], THRESHOLDS)
    # Then its 10 values are too few to call drift: no alarm, and the feature says why it was not judged
    hours = summary["features"]["Hours_Studied"]
    assert hours["present"] == 10 and hours["status"] == "not enough data", hours["status"]
    assert summary["alarms"] == [] and summary["verdict"] == "no drift", summary["alarms"]


def test_quality_thresholds_of_zero_alarm_on_any_rise_not_on_none(profile: dict, live: pd.DataFrame) -> None:
    # Given params.yaml asking for an alarm on any value out of range, any rise of a missing rate, any refusal
    strict = THRESHOLDS.model_copy(update={"out_of_range_share": 0.0, "missing_rate_change": 0.0,
                                           "refused_share": 0.0})
    import numpy as np

    from experiments.generate import ground_truth

    window = live.iloc[:WINDOW].copy()
    for name, f in profile["features"].items():  # every value present and inside the training range
        column = window[name]
        window[name] = column.clip(f["min"], f["max"]) if "min" in f else column.fillna(next(iter(f["shares"])))
    low, high = profile["prediction"]["min"], profile["prediction"]["max"]
    predicted = np.clip(ground_truth(window), low, high)
    # When a window without any of them is judged, then nothing is called a quality problem
    summary = analysis.analyse(profile, capture_window(window, predictions=predicted), [], strict)
    assert summary["alarms"] == [], summary["alarms"]
    # And one value out of range is
    window.loc[window.index[0], "Attendance"] = 150
    summary = analysis.analyse(profile, capture_window(window, predictions=predicted), [], strict)
    assert summary["alarms"] == ["Attendance: 0.1% of values outside the training range"], summary["alarms"]


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert stats.psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert 0 < stats.psi([0.5, 0.5], [0.6, 0.4]) < stats.psi([0.5, 0.5], [0.8, 0.2])


def test_jensen_shannon_is_0_for_equal_and_1_for_disjoint_shares() -> None:
    assert stats.jensen_shannon([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0)
    assert stats.jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1)


def test_wasserstein_of_a_shifted_distribution_is_the_shift() -> None:
    import numpy as np

    from serving.profile import PERCENTILES

    base = np.quantile(np.random.default_rng(0).normal(0, 1, 10_000), PERCENTILES)
    assert stats.wasserstein(base, base + 0.5) == pytest.approx(0.5)
