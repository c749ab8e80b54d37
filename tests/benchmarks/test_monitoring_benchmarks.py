"""The monitoring benchmarks run end to end in their quick modes (figures are `make bench-*`'s, never a test's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving import bundle
from tests.benchmarks.conftest import assert_run_recorded
from tests.serving.serving_helpers import build_model_dir

pytestmark = pytest.mark.slow


def test_bench_drift_quick_analyses_every_record_it_wrote(tmp_path: Path) -> None:
    from benchmarks import drift

    assert drift.main(["--quick", "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "drift-quick.json").read_text())
    assert result["records"] == result["analysed"] == 5000
    assert result["verdict"] == "no drift", "traffic from the training distribution"
    assert result["ours_s"] > 0 and result["ours_with_mlflow_run_s"] > 0
    assert "| Drift job on 5,000 captured records" in (tmp_path / "drift-quick.md").read_text()
    assert_run_recorded(result["run"], "quick")


def test_bench_capture_quick_captures_every_request_in_every_capturing_mode(tmp_path: Path) -> None:
    from benchmarks import capture

    tarball = bundle.pack(build_model_dir(tmp_path / "model"), tmp_path / "model.tar.gz")
    assert capture.main(["--quick", "--model-tarball", str(tarball), "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "capture-quick.json").read_text())
    assert result["captured_records"] == result["expected_records"], "no capture record lost"
    assert set(result["paired_overhead"]) == {"folder", "firehose", "firehose_no_linger"}
    assert all(value > 0 for value in result["median_ms"].values())
    assert_run_recorded(result["run"], "quick")
