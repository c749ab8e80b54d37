"""The drift report's figure and page (``monitoring.report``): drawn from whatever names the data has."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from monitoring import drift
from tests.monitoring.helpers import capture_window, tarball_with_profile, write_capture

PRICES = {"Low": "$", "Medium": "$$", "High": "$$$"}  # price tiers as review sites write them


def test_levels_and_names_with_dollar_signs_are_drawn_as_written(tmp_path: Path, params_file: Path, profile: dict,
                                                                 live: pd.DataFrame) -> None:
    # Given a model whose Family_Income levels are price tiers ("$", "$$", "$$$") and a column named with a "$"
    income = profile["features"]["Family_Income"]
    tiers = income | {"shares": {PRICES[level]: share for level, share in income["shares"].items()}}
    features = {("Fees $" if n == "Hours_Studied" else n): (tiers if n == "Family_Income" else f)
                for n, f in profile["features"].items()}
    captures = capture_window(live.iloc[:600])
    for c in captures:
        c["record"]["Family_Income"] = PRICES.get(c["record"]["Family_Income"])
        c["record"]["Fees $"] = c["record"].pop("Hours_Studied")
    folder = write_capture(tmp_path / "bucket", captures)
    bundle = tarball_with_profile(tmp_path / "m", profile | {"features": features})
    out = tmp_path / "r"
    # When drift writes its report
    code = drift.main(["--params", str(params_file), "--since", "2025-12-01", "--until", "2025-12-02", "--capture",
                       str(folder), "--profile", str(bundle), "--out", str(out), "--no-tracking"])
    # Then the figure is drawn (matplotlib would read "$$" as an empty formula and stop the job)
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["features"]["Family_Income"]["status"] == "ok"
    assert (out / "drift.png").stat().st_size > 0 and "Fees $" in (out / "report.html").read_text()


def test_a_captured_version_is_text_in_the_page_never_markup(tmp_path: Path, params_file: Path, profile: dict,
                                                             live: pd.DataFrame) -> None:
    # Given captures whose model version holds markup, judged against a bare profile.json (no version to check)
    version = "3</title><script>alert(1)</script>"
    folder = write_capture(tmp_path / "bucket", capture_window(live.iloc[:100], version=version))
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    out = tmp_path / "r"
    # When drift writes its report
    assert drift.main(["--params", str(params_file), "--since", "2025-12-01", "--until", "2025-12-02", "--capture",
                       str(folder), "--profile", str(tmp_path / "profile.json"), "--out", str(out),
                       "--no-tracking"]) == 0
    # Then the version is shown as text wherever the page names it
    assert "<script>" not in (out / "report.html").read_text()
