"""Tests for the load test's analysis: percentiles, the knee, and the three outputs."""

from __future__ import annotations

import json
from pathlib import Path

from capacity import report
from capacity.classify import ENDPOINT_THROTTLE, OK
from capacity.profiles import Step

STEPS = [Step(2, 4), Step(2, 8), Step(2, 12)]


def rows(per_step: list[tuple[int, float, int]]) -> list[list]:
    """Rows for each step: (requests, latency_s, errors)."""
    out = []
    for index, (count, latency, errors) in enumerate(per_step):
        for i in range(count):
            failed = i < errors
            out.append([index * 2 + i * 2 / count, 0.01 if failed else latency, 429 if failed else 200,
                        ENDPOINT_THROTTLE if failed else OK, index])
    return out


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (report.percentile(values, 50), report.percentile(values, 99), report.percentile([], 50)) == (50, 99, None)


def test_the_knee_lies_between_the_last_good_step_and_the_first_with_errors() -> None:
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.2, 0), (24, 0.2, 6)]), STEPS, {"profile": "ramp", "target": "x"})
    assert result["knee"]["last_good_rps"] == 8
    assert result["knee"]["climbs_at_rps"] == 12
    assert result["knee"]["knee_rps"] == 10
    assert "errors 25.0%" in result["knee"]["reason"]
    assert result["service_time_s"] == 0.2
    # Only the final step climbs: nothing after it shows the climb lasting, and the report says so.
    assert result["knee"]["lasting"] is False
    assert "in the final step only" in report.markdown(result)


def test_a_p99_climb_without_errors_is_a_knee_too() -> None:
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.2, 0), (24, 0.9, 0)]), STEPS, {"profile": "ramp", "target": "x"})
    assert result["knee"]["climbs_at_rps"] == 12
    assert result["knee"]["reason"].startswith("p99 900 ms")


def test_no_climb_means_the_knee_was_not_reached() -> None:
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.2, 0), (24, 0.25, 0)]), STEPS, {"profile": "ramp", "target": "x"})
    assert result["knee"]["knee_rps"] is None
    assert result["knee"]["last_good_rps"] == 12
    assert "not reached" in report.markdown(result)


def test_the_outputs_are_a_table_a_plot_and_json(tmp_path: Path) -> None:
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.2, 0), (24, 0.2, 6)]), STEPS, {"profile": "ramp", "target": "x"})
    paths = report.write(result, tmp_path, "ramp")
    assert json.loads(paths["json"].read_text())["knee"]["knee_rps"] == 10
    table = paths["md"].read_text()
    assert "| 2 | 12 | 12 | 9 |" in table, table
    assert "endpoint_throttle 6" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_a_ramp_reports_a_knee() -> None:
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.2, 0), (24, 0.9, 6)]), STEPS, {"profile": "spike", "target": "x"})
    assert result["knee"]["knee_rps"] is None
    assert "only a ramp" in report.markdown(result)


def test_a_cold_first_step_that_recovers_is_not_the_knee() -> None:
    # Throttled while the endpoint starts, then fine at twice and three times the rate: no knee in step 0.
    result = report.analyse(rows([(8, 0.2, 4), (16, 0.2, 0), (24, 0.2, 0)]), STEPS, {"profile": "ramp", "target": "x"})
    assert result["knee"]["climbs_at_rps"] is None
    assert result["knee"]["last_good_rps"] == 12
    assert result["knee"]["recovered"] == [{"step": 0, "offered_rps": 4, "reason": "errors 50.0% of requests"}]
    assert "step 0 at 4/s climbed and recovered" in report.markdown(result)


def test_the_knee_is_where_the_climb_stays() -> None:
    steps = [*STEPS, Step(2, 16), Step(2, 20)]
    # A p99 blip at 8/s, good again at 12/s, errors from 16/s to the end: the knee lies between 12 and 16.
    result = report.analyse(rows([(8, 0.2, 0), (16, 0.9, 0), (24, 0.2, 0), (32, 0.2, 8), (40, 0.2, 12)]), steps,
                            {"profile": "ramp", "target": "x"})
    assert (result["knee"]["last_good_rps"], result["knee"]["climbs_at_rps"], result["knee"]["knee_rps"]) == (12, 16, 14)
    assert [r["step"] for r in result["knee"]["recovered"]] == [1]
    assert result["knee"]["lasting"] is True and "final step only" not in report.markdown(result)


def test_every_step_climbing_puts_the_knee_below_the_first() -> None:
    result = report.analyse(rows([(8, 0.2, 4), (16, 0.2, 8), (24, 0.2, 12)]), STEPS, {"profile": "ramp", "target": "x"})
    assert (result["knee"]["knee_rps"], result["knee"]["climbs_at_rps"], result["knee"]["recovered"]) == (None, 4, [])
    assert "below the first step" in report.markdown(result)


def _steady(rps: float, duration_s: float) -> list[list[object]]:
    """Rows of a steady rate: [start, latency, status, origin, step], every request served."""
    return [[i / rps, 0.05, 200, OK, 0] for i in range(int(rps * duration_s))]


def test_the_last_window_of_a_run_that_is_not_whole_windows_reads_the_rate_it_offered() -> None:
    # Given 10 requests/s held for 40.5 s (windows of 1 s, the last one half a second)
    cut = report.windows(_steady(10, 40.5), 40.5)
    # Then every window, the short last one too, reads 10 requests/s (the last read 5 before)
    assert len(cut) == 41
    assert {w["offered_rps"] for w in cut} == {10.0}, [w["offered_rps"] for w in cut[-3:]]


def test_a_run_of_whole_windows_gets_no_sliver_of_a_window_at_its_end() -> None:
    # 60.8 s in at most 60 windows, each 60.8/60 s wide: in doubles 60.8 / (60.8 / 60) is 60.00000000000001,
    # which made a 61st window 7e-15 s wide that read 0 requests/s
    cut = report.windows(_steady(10, 60.8), 60.8)
    assert len(cut) == 60
    assert all(abs(w["offered_rps"] - 10) <= 1.0 for w in cut), [w["offered_rps"] for w in cut]
